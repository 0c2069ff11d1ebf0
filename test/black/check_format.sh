#!/usr/bin/env bash
# Fails when a C file of src/ or test/ differs from what .clang-format asks for.
set -u
cf=${1:-clang-format}
bad=0
while IFS= read -r f; do
    if ! "$cf" --dry-run -Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f (run: $cf -i $f)"
        bad=1
    fi
done < <(git ls-files 'src/*.c' 'src/*.h' 'test/*.c' 'test/*.h' 2>/dev/null || find src test -name '*.[ch]')
exit $bad
