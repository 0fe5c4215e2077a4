#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite: the normal build, then the same
# suite under AddressSanitizer + UndefinedBehaviorSanitizer, then the style check.
# HOPPER_TEST_SANITIZE=0 skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
jobs=$(nproc)

./scripts/build.sh build-test -DHOPPER_WERROR=ON
(cd build-test && ctest --output-on-failure -j "$jobs" --timeout 300)

if [ "${HOPPER_TEST_SANITIZE:-1}" != 0 ]; then
    ./scripts/build.sh build-asan -DHOPPER_WERROR=ON -DHOPPER_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --output-on-failure -j "$jobs" --timeout 600)
fi

./scripts/check-format.sh
