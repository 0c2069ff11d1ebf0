#!/usr/bin/env bash
# Fails when a file of src/ is over 1,000 lines or a function of src/ over 80 (issue 12's
# rules: split a file by phase, a function by step). A function is read the way clang-format
# writes one: its signature starts in column 0, its body is the lines from a "{" alone on a
# line to the next "}" alone on a line. A flat switch table (one case per value, nothing else)
# may be longer: the comment just above its signature says "flat switch table".
set -u
max_file=${MAX_FILE_LINES:-1000}
max_fn=${MAX_FUNCTION_LINES:-80}
bad=0
while IFS= read -r f; do
    n=$(wc -l <"$f")
    if [ "$n" -gt "$max_file" ]; then
        echo "$f: $n lines (at most $max_file: split it by phase)"
        bad=1
    fi
    out=$(awk -v max="$max_fn" -v file="$f" '
        { line[NR] = $0 }
        /^\{$/ {
            s = NR - 1
            while (s > 1 && line[s] ~ /^[ \t]/) s--   # continuation lines of the signature
            start = s; open = NR
        }
        /^\}$/ && open {
            len = NR - start + 1
            exempt = 0
            for (k = start - 1; k >= start - 3 && k >= 1; k--)
                if (line[k] ~ /flat switch table/) exempt = 1
            if (len > max && !exempt) {
                name = line[start]; sub(/\(.*/, "", name); sub(/.*[ *]/, "", name)
                printf "%s:%d: %s is %d lines (at most %d)\n", file, start, name, len, max
            }
            open = 0
        }' "$f")
    if [ -n "$out" ]; then
        echo "$out"
        bad=1
    fi
done < <(git ls-files 'src/*.c' 'src/*.h' 2>/dev/null || find src -name '*.[ch]')
exit $bad
