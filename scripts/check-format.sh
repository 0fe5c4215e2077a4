#!/usr/bin/env bash
# Fails when a C file differs from what .clang-format asks for.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
bad=0
for f in $files; do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "format: $f differs from .clang-format (run: clang-format -i $f)" >&2
        bad=1
    fi
done
[ $bad -eq 0 ] && echo "format: all C files match .clang-format"
exit $bad
