#!/bin/sh
# bench/json/run.sh [OLD_COMMIT] [MIB] - the request body scan on its worst shapes, ms per MiB.
#
# Builds lx_gateway in release mode (build/bench-json), compiles bench/json/json_bench.c
# against it and prints a Markdown table. With OLD_COMMIT, that commit's src/gateway/body.c
# (and body.h) is compiled beside it with its symbols renamed, and timed on the same bodies in
# an extra column. MIB sets the size of each body (default 1).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${BUILD:-$root/build/bench-json}
old=${1:-}
mib=${2:-1}
cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=Release -DLLMUX_TESTS=OFF >/dev/null
cmake --build "$out" -j"$(nproc)" --target lx_gateway >/dev/null
cflags="-O2 -std=c11 -D_GNU_SOURCE -I$root/src"
libs="$out/liblx_gateway.a $out/liblx_proxy.a $out/liblx_http.a $out/liblx_net.a $out/liblx_tls.a $out/liblx_config.a $out/liblx_obs.a $out/liblx_core.a"
extra=""
if [ -n "$old" ]; then
    tmp="$out/old-$old"
    mkdir -p "$tmp/gateway"
    git -C "$root" show "$old:src/gateway/body.c" >"$tmp/old_body.c"
    git -C "$root" show "$old:src/gateway/body.h" >"$tmp/gateway/body.h"
    cc $cflags -I"$tmp" -Dlx_body_scan=old_lx_body_scan -Dlx_body_splice=old_lx_body_splice \
        -Dlx_body_unescape=old_lx_body_unescape -c "$tmp/old_body.c" -o "$tmp/old_body.o"
    extra="-DLX_BENCH_OLD $tmp/old_body.o"
    echo "old: $(git -C "$root" log -1 --format='%h %s' "$old" | cut -c1-100)"
fi
cc $cflags "$root/bench/json/json_bench.c" $extra $libs -lm -o "$out/json-bench"
echo "commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- src || echo '+changes'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $(cc --version | head -1)"
"$out/json-bench" "$mib"
