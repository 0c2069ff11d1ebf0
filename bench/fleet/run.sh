#!/usr/bin/env bash
# bench/fleet/run.sh - the fleet simulation with freshly built release binaries.
#
#   bash bench/fleet/run.sh [llmux-fleet options]     (e.g. --quick, --scenario outage)
#
# Builds the release preset (llmux and llmux-fleet), then runs every scenario with each routing
# strategy and saves the Markdown report under bench/results/fleet-<date>.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake --preset release >/dev/null
cmake --build --preset release --target llmux llmux-fleet -j2 >/dev/null
mkdir -p bench/results
exec build/release/llmux-fleet --llmux build/release/llmux "$@"
