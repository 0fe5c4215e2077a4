#!/usr/bin/env bash
# Sets up, builds and starts Hopper in one process, with a private redis-server on a
# Unix socket under .run/ that stops when Hopper does. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh build

rundir="$PWD/.run"
mkdir -p "$rundir"
sock="$rundir/redis.sock"
redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$rundir" \
    --save "" --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
    --daemonize yes --pidfile "$rundir/redis.pid" --logfile "$rundir/redis.log"
trap 'kill "$(cat "$rundir/redis.pid")" 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done

export HOPPER_REDIS_URL="unix://$sock"
cat <<EOT

Hopper is starting. Redis (append-only file in .run/) listens on $sock.
In another terminal:
  export HOPPER_REDIS_URL=$HOPPER_REDIS_URL
  ./build/cli/hopper enqueue --queue email --type email.send --payload '{"to":"a@example.com"}'
  ./build/cli/hopper stats
  ./build/cli/hopper --help

EOT
./build/cli/hopper run
