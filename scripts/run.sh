#!/usr/bin/env bash
# Sets up, builds and starts Hopper in one process, with a private redis-server on a
# Unix socket under .run/ that stops when Hopper does. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh build-run -DHOPPER_TESTS=OFF

rundir="$PWD/.run"
mkdir -p "$rundir"
sock="$rundir/redis.sock"
redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$rundir" \
    --save "" --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
    --daemonize yes --pidfile "$rundir/redis.pid" --logfile "$rundir/redis.log"
stop_redis() { kill "$(cat "$rundir/redis.pid")" 2>/dev/null || true; }
trap stop_redis EXIT
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done

export HOPPER_REDIS_URL="unix://$sock"
cat <<EOT

Hopper is starting. Redis (append-only file in .run/) listens on $sock.
In another terminal:
  export HOPPER_REDIS_URL=$HOPPER_REDIS_URL
  ./build-run/cli/hopper enqueue --queue email --type email.send --payload '{"to":"a@example.com"}'
  ./build-run/cli/hopper stats
  ./build-run/cli/hopper --help

EOT
# In the background so that SIGTERM, not only Ctrl-C, reaches it and then Redis stops.
./build-run/cli/hopper run &
hopper_pid=$!
trap 'kill -TERM "$hopper_pid" 2>/dev/null' INT TERM
wait "$hopper_pid" || true
wait "$hopper_pid" 2>/dev/null || true
