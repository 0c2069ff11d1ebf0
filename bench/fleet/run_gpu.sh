#!/usr/bin/env bash
# bench/fleet/run_gpu.sh - the GPU-fleet benchmark with freshly built release binaries.
#
#   bash bench/fleet/run_gpu.sh [llmux-fleet-gpu options]   (e.g. --quick, --no-fleet-keys)
#
# Builds the release preset (llmux and llmux-fleet-gpu), then runs every load against every
# target and saves the Markdown report under bench/results/fleet-gpu-<date>.md. nginx and
# HAProxy are taken from /usr/sbin (--nginx, --haproxy to change).
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake --preset release >/dev/null
cmake --build --preset release --target llmux llmux-fleet-gpu -j1 >/dev/null
mkdir -p bench/results
exec build/release/llmux-fleet-gpu --llmux build/release/llmux "$@"
