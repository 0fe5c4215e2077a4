#!/usr/bin/env bash
# Installs the Debian packages Hopper needs to build, run and test, and nothing
# else, and the browser tests' npm package (playwright-core, pinned by
# tests/browser/package-lock.json). Does nothing (and needs no network) when they
# are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    build-essential cmake pkg-config      # build
    libhiredis-dev libjansson-dev libssl-dev libuv1-dev   # libraries
    node-llhttp                           # llhttp's C sources (the HTTP parser)
    libesmtp-dev libhpdf-dev libcurl4-openssl-dev libzstd-dev zlib1g-dev libpng-dev libjpeg-dev
    fonts-dejavu-core                     # the plugins: email, pdf, upload, cpu
    python3-aiosmtpd nginx qpdf poppler-utils openssl zstd   # servers and checkers in plugin tests
    redis-server                          # the broker, for `run` and the tests
    libcmocka-dev clang-format            # tests and the style check
    wrk                                   # the HTTP benchmark (bench/run.sh)
    chromium                              # the dashboard's browser tests (tests/browser)
)
# Node.js runs the browser tests (never the server): Debian's, unless one is there.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian's package starts a redis-server on 6379; Hopper runs its own and needs not that one.
fi

# playwright-core for the browser tests, exactly as the lock file pins it (no
# browser download: the tests drive Debian's chromium).
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "setup: npm ci in tests/browser" >&2
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >/dev/null)
fi
