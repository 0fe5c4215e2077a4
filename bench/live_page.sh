#!/usr/bin/env bash
# Does the dashboard keep up with a steady stream of events? Builds hopper and the
# bench plugin if needed, then runs bench/live_page.mjs: a private redis-server,
# `hopper server`, `hopper worker` and headless Chromium on the overview page, fed
# 0 (the baseline), 1000, 5000 and 10000 events/s in turn; prints the page's event
# handling lag, frame gaps, long tasks and catch-up time. See bench/README.md.
#
#   ./bench/live_page.sh
#   LIVE_RATES=0,5000 LIVE_RUNS=5 LIVE_SECS=20 ./bench/live_page.sh
#
# Needs what scripts/setup.sh installs: node, chromium, and playwright-core in
# tests/browser/node_modules.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BENCH_BUILD_DIR:-$ROOT/build-bench}
for tool in redis-server cmake node; do
    command -v "$tool" >/dev/null || { echo "live_page.sh: $tool not found in PATH" >&2; exit 1; }
done
[[ -d $ROOT/tests/browser/node_modules/playwright-core ]] ||
    { echo "live_page.sh: playwright-core missing: run scripts/setup.sh (or npm ci in tests/browser)" >&2; exit 1; }

if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DHOPPER_TESTS=OFF >/dev/null
fi
if ! build_log=$(cmake --build "$BUILD_DIR" -j2 --target hopper bench_plugin 2>&1); then
    echo "$build_log" >&2
    echo "live_page.sh: build failed" >&2
    exit 1
fi

export HOPPER_BIN=$BUILD_DIR/cli/hopper
export BENCH_PLUGIN=$BUILD_DIR/bench/bench_plugin.so
export HOPPER_SCREENSHOT_DIR=${HOPPER_SCREENSHOT_DIR:-$BUILD_DIR/browser-screenshots}
exec node "$ROOT/bench/live_page.mjs"
