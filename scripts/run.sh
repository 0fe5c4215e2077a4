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
export HOPPER_LISTEN="${HOPPER_LISTEN:-127.0.0.1:8080}"
export HOPPER_BLOB_DIR="${HOPPER_BLOB_DIR:-$rundir/blobs}"
cat <<EOT

Hopper is starting on http://$HOPPER_LISTEN (Redis with an append-only file in .run/).
Dashboard: http://$HOPPER_LISTEN/dashboard/  (no login on loopback until a token exists)
In another terminal:
  curl -s -X POST http://$HOPPER_LISTEN/v1/jobs -H 'Content-Type: application/json' \\
       -d '{"queue":"email","type":"email.send","payload":{"to":"a@example.com"}}'
  curl -s http://$HOPPER_LISTEN/v1/queues
  export HOPPER_REDIS_URL=$HOPPER_REDIS_URL; ./build-run/cli/hopper stats
  ./build-run/cli/hopper --help        (docs/api.md: every endpoint)

EOT
# In the background so that SIGTERM, not only Ctrl-C, reaches it and then Redis stops.
./build-run/cli/hopper run &
hopper_pid=$!
trap 'kill -TERM "$hopper_pid" 2>/dev/null' INT TERM
wait "$hopper_pid" || true
wait "$hopper_pid" 2>/dev/null || true
