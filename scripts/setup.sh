#!/usr/bin/env bash
# Installs the Debian packages Hopper needs to build, run and test, and nothing
# else. Does nothing (and needs no network) when they are already there.
set -euo pipefail

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
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's package starts a redis-server on 6379; Hopper runs its own and needs not that one.
