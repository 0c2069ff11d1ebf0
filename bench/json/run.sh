#!/bin/sh
# bench/json/run.sh [OLD_COMMIT] [MIB] - the request body scan on its worst shapes, ms per MiB.
#
# Builds lx_route and the layers below it in release mode (build/bench-json), compiles
# bench/json/json_bench.c against them and prints a Markdown table. With OLD_COMMIT, that
# commit's body scan (src/gateway/body.c, or src/llm/body*.c) is compiled beside it with its
# symbols renamed, and timed on the same bodies in an extra column. MIB sets the size of each
# body (default 1).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${BUILD:-$root/build/bench-json}
old=${1:-}
mib=${2:-1}
cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=Release -DLLMUX_TESTS=OFF >/dev/null
cmake --build "$out" -j"$(nproc)" --target lx_route >/dev/null
cflags="-O2 -std=c11 -D_GNU_SOURCE -I$root/src"
libs="$out/liblx_route.a $out/liblx_llm.a $out/liblx_config.a $out/liblx_tls.a $out/liblx_obs.a $out/liblx_core.a"
extra=""
if [ -n "$old" ]; then
    # the old commit's body scan: src/gateway/body.c before the llm/ layer, src/llm/body*.c
    # after; compiled beside the current one with every symbol it defines renamed old_*
    tmp="$out/old-$old"
    rm -rf "$tmp"
    mkdir -p "$tmp/gateway" "$tmp/llm"
    files=$(git -C "$root" ls-tree --name-only "$old" src/gateway/body.c src/gateway/body.h \
        src/llm/ | grep -E 'src/(gateway|llm)/body[a-z_]*\.[ch]$')
    for f in $files; do
        git -C "$root" show "$old:$f" >"$tmp/${f#src/}"
    done
    srcs=$(ls "$tmp"/gateway/body*.c "$tmp"/llm/body*.c 2>/dev/null || true)
    for c in $srcs; do cc -I"$tmp" $cflags -c "$c" -o "$c.o"; done
    defs=$(nm -g --defined-only $(for c in $srcs; do echo "$c.o"; done) | awk 'NF == 3 {print "-D" $3 "=old_" $3}' | sort -u)
    objs=""
    for c in $srcs; do
        cc -I"$tmp" $cflags $defs -c "$c" -o "$c.old.o"
        objs="$objs $c.old.o"
    done
    extra="-DLX_BENCH_OLD $objs"
    echo "old: $(git -C "$root" log -1 --format='%h %s' "$old" | cut -c1-100)"
fi
cc $cflags "$root/bench/json/json_bench.c" $extra $libs -lm -o "$out/json-bench"
echo "commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- src || echo '+changes'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $(cc --version | head -1)"
"$out/json-bench" "$mib"
