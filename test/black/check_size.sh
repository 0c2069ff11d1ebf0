#!/usr/bin/env bash
# Fails when a file of src/ is over 1,000 lines or a function of src/ over 80 (issue 12's
# rules: split a file by phase, a function by step). A function is read the way clang-format
# writes one: its signature starts in column 0 and its body runs from a "{" (alone on a line,
# or ending the signature's line) to the next line that starts with "}". A flat switch table
# (one case per value, nothing else) may be longer: the comment just above its signature says
# "flat switch table". Run from the project's root (ctest does).
set -u
max_file=${MAX_FILE_LINES:-1000}
max_fn=${MAX_FUNCTION_LINES:-80}
bad=0
checked=0
while IFS= read -r f; do
    checked=$((checked + 1))
    n=$(wc -l <"$f")
    if [ "$n" -gt "$max_file" ]; then
        echo "$f: $n lines (at most $max_file: split it by phase)"
        bad=1
    fi
    out=$(awk -v max="$max_fn" -v file="$f" '
        function begin(at,    s) {
            s = at
            while (s > 1 && line[s] ~ /^[ \t]/) s-- # continuation lines of the signature
            start = s
            open = 1
        }
        { line[NR] = $0 }
        /^\{$/ { begin(NR - 1); next }
        /^[A-Za-z_].*\)[ \t]*\{[ \t]*$/ { begin(NR); next } # a brace on the signature line
        /^\}/ {
            if (!open)
                next
            len = NR - start + 1
            exempt = 0
            for (k = start - 1; k >= start - 3 && k >= 1; k--)
                if (line[k] ~ /flat switch table/)
                    exempt = 1
            if (len > max && !exempt) {
                name = line[start]
                sub(/\(.*/, "", name)
                sub(/.*[ *]/, "", name)
                printf "%s:%d: %s is %d lines (at most %d)\n", file, start, name, len, max
            }
            open = 0
        }' "$f")
    if [ -n "$out" ]; then
        echo "$out"
        bad=1
    fi
done < <(git ls-files 'src/*.c' 'src/*.h' 2>/dev/null || find src -name '*.[ch]' 2>/dev/null)
if [ "$checked" -eq 0 ]; then
    echo "no file of src/ found: run from the project's root"
    exit 1
fi
exit $bad
