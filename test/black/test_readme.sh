#!/usr/bin/env bash
# The README's test command is the one .ci/run runs, and its run command names files that exist.
source "$(dirname "$0")/lib.sh"
readme_test=$(grep -A2 '^## Tests' -m1 README.md >/dev/null; awk '/^## Tests/{t=1} t && /^apt-get/{print; exit}' README.md)
[ -n "$readme_test" ] || fail "no test command in README"
grep -qxF "$readme_test" .ci/run || fail ".ci/run does not run the README's test command"
readme_run=$(awk '/^## Quick start/{t=1} t && /^apt-get/{print; exit}' README.md)
[ -n "$readme_run" ] || fail "no run command in README"
for f in conf/llmux.yaml; do
    grep -qF "$f" <<<"$readme_run" || fail "run command does not use $f"
done
# the demo fleet in the run command matches the endpoints of the shipped configuration
for port in $(grep -oE '127\.0\.0\.1:91[0-9][0-9]' conf/llmux.yaml | sort -u); do
    grep -qF -- "-l $port" <<<"$readme_run" || fail "run command starts no mock on $port"
done
echo "test_readme: ok"
