#!/usr/bin/env bash
# Page times of GET /v1/jobs over HTTP on a state of 1,000,000 jobs: builds hopper
# if needed, starts a private redis-server and `hopper server`, fills one queue's
# waiting state through POST /v1/jobs/batch (1000 jobs a request; 10 of the jobs are
# of type "rare", spread evenly), then walks the whole state by next_cursor, one curl
# per page, and prints per-page latency percentiles for each walk. See bench/README.md.
#
#   ./bench/list_pages.sh                      # 1,000,000 jobs
#   LIST_JOBS=100000 ./bench/list_pages.sh     # fewer
#
# Knobs: LIST_JOBS (a multiple of 1000), LIST_LIMIT (page size of the unfiltered
# walks, default 1000), BENCH_BUILD_DIR (default <repo>/build-bench).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BENCH_BUILD_DIR:-$ROOT/build-bench}
JOBS=${LIST_JOBS:-1000000}
LIMIT=${LIST_LIMIT:-1000}
[[ $JOBS =~ ^[1-9][0-9]*000$ ]] || { echo "list_pages.sh: LIST_JOBS must be a multiple of 1000" >&2; exit 2; }
[[ $LIMIT =~ ^[1-9][0-9]*$ && $LIMIT -le 1000 ]] || { echo "list_pages.sh: LIST_LIMIT must be 1-1000" >&2; exit 2; }
for tool in redis-server redis-cli cmake curl; do
    command -v "$tool" >/dev/null || { echo "list_pages.sh: $tool not found in PATH" >&2; exit 1; }
done

if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DHOPPER_TESTS=OFF >/dev/null
fi
if ! build_log=$(cmake --build "$BUILD_DIR" -j2 --target hopper 2>&1); then
    echo "$build_log" >&2
    echo "list_pages.sh: build failed" >&2
    exit 1
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hopper-list.XXXXXX")
REDIS_PID= SERVER_PID=
cleanup() {
    for pid in $SERVER_PID $REDIS_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_in_use "$port" || { echo "$port"; return 0; }
    done
    echo "list_pages.sh: no free port" >&2
    return 1
}

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
    --maxmemory-policy noeviction --dir "$TMP" --logfile "$TMP/redis.log" --daemonize no &
REDIS_PID=$!
for _ in $(seq 1 100); do
    redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break
    sleep 0.05
done
HPORT=$(free_port)
HOPPER_LOG_LEVEL=warn "$BUILD_DIR/cli/hopper" server --listen "127.0.0.1:$HPORT" \
    --redis "redis://127.0.0.1:$RPORT" --blob-dir "$TMP/blobs" --scheduler=false 2>"$TMP/server.log" &
SERVER_PID=$!
H=http://127.0.0.1:$HPORT
for _ in $(seq 1 200); do
    curl -sf "$H/healthz" >/dev/null 2>&1 && break
    sleep 0.05
done
curl -sf "$H/healthz" >/dev/null || { cat "$TMP/server.log" >&2; echo "list_pages.sh: no server" >&2; exit 1; }

echo "== hopper list pages: GET /v1/jobs over HTTP =="
echo "commit:  $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "machine: nproc=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
echo "redis:   $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')"

# ---- Fill: JOBS/1000 batches; the batch holding a rare job has it at index 500 ----
batch() { # type of job 500
    local i sep=
    printf '{"jobs":['
    for i in $(seq 0 999); do
        if [[ $i == 500 ]]; then t=$1; else t=common; fi
        printf '%s{"queue":"big","type":"%s","payload":{"n":%d,"to":"user%d@example.com"}}' "$sep" "$t" "$i" "$i"
        sep=,
    done
    printf ']}'
}
batch common >"$TMP/common.json"
batch rare >"$TMP/rare.json"
batches=$((JOBS / 1000))
every=$((batches / 10 > 0 ? batches / 10 : 1))
t0=$(date +%s.%N)
for b in $(seq 0 $((batches - 1))); do
    body=$TMP/common.json
    ((b % every == every / 2)) && body=$TMP/rare.json
    echo "url = \"$H/v1/jobs/batch\""
    echo "data-binary = \"@$body\""
    echo 'header = "Content-Type: application/json"'
    echo 'output = "/dev/null"'
    echo 'next'
done | sed '$d' >"$TMP/fill.curl"
curl -s -K "$TMP/fill.curl" --fail-early --fail
t1=$(date +%s.%N)
waiting=$(curl -s "$H/v1/queues/big" | sed -n 's/.*"waiting":\([0-9]*\).*/\1/p')
printf 'filled:  %s waiting jobs in %s s\n\n' "$waiting" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"

# ---- Walks ----
# walk NAME QUERY: follows next_cursor from the start; one line per page
# "<seconds> <jobs>" into $TMP/NAME.
walk() {
    local name=$1 query=$2 cursor= out line time jobs
    : >"$TMP/$name"
    while :; do
        out=$(curl -s -w '\n%{time_total}' "$H/v1/jobs?queue=big&$query${cursor:+&cursor=$cursor}")
        time=${out##*$'\n'}
        out=${out%$'\n'*}
        jobs=$({ grep -o '"id":"' <<<"$out" || true; } | wc -l)
        echo "$time $jobs" >>"$TMP/$name"
        cursor=$(sed -n 's/.*"next_cursor":"\([^"]*\)".*/\1/p' <<<"$out")
        [[ -z $cursor ]] && break
    done
}
report() { # name label
    sort -n "$TMP/$1" | awk -v label="$2" '
        function at(q,   i) { i = int(NR * q + 0.999999); return t[i < 1 ? 1 : i] }
        { t[NR] = $1 * 1000; jobs += $2 }
        END {
            printf "%-42s %5d pages %8d jobs   p50 %6.1f  p90 %6.1f  p99 %6.1f  max %6.1f ms\n",
                label, NR, jobs, at(0.50), at(0.90), at(0.99), t[NR]
        }'
}
walk plain "limit=$LIMIT"
report plain "waiting, limit=$LIMIT"
walk plain_desc "limit=$LIMIT&order=desc"
report plain_desc "waiting, limit=$LIMIT, order=desc"
walk rare "limit=50&type=rare"
report rare "waiting, limit=50, type=rare"
walk rare_desc "limit=50&type=rare&order=desc"
report rare_desc "waiting, limit=50, type=rare, order=desc"
walk err "limit=50&error=timeout"
report err "waiting, limit=50, error=timeout (none)"
echo
echo "Times are curl's time_total per request (a new connection each), in ms."
