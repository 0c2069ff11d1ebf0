#!/bin/sh
# Builds the TLS benchmark against a release build of llmux's libraries and runs it.
#   bench/tls/run.sh [build-dir]     (default: build/bench-tls, configured Release here)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build/bench-tls}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLMUX_TESTS=OFF -DLLMUX_MOCK=OFF >/dev/null
cmake --build "$build" --target lx_net -j2 >/dev/null
cc -O2 -std=c11 -D_GNU_SOURCE -I"$root/src" -o "$build/llmux-tls-bench" "$root/bench/tls/tls_bench.c" \
    "$build/liblx_net.a" "$build/liblx_config.a" "$build/liblx_obs.a" "$build/liblx_tls.a" \
    "$build/liblx_core.a" -luv -lyaml -lmbedtls -lmbedx509 -lmbedcrypto -lpthread -lm
echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
"$build/llmux-tls-bench"
