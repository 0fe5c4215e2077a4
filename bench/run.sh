#!/usr/bin/env bash
# The broker benchmark in one command: builds bench/broker_bench if needed, starts a
# private redis-server, runs a redis-benchmark baseline and every broker scenario
# BENCH_RUNS times (interleaved), and prints medians and ratios. See bench/README.md.
#
#   ./bench/run.sh                  # default sizes, 3 runs
#   BENCH_RUNS=5 ./bench/run.sh     # more runs
#   BENCH_QUICK=1 ./bench/run.sh    # tiny sizes, 1 run: a smoke test, not comparable
#
# Other knobs: BENCH_BUILD_DIR (default <repo>/build-bench), BENCH_OUT (also write
# the raw per-run lines to this file).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BENCH_BUILD_DIR:-$ROOT/build-bench}
QUICK=${BENCH_QUICK:-0}
[[ $QUICK == 0 ]] && RUNS=${BENCH_RUNS:-3} || RUNS=${BENCH_RUNS:-1}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: BENCH_RUNS must be a positive number" >&2; exit 2; }

SCENARIOS=(enqueue_single enqueue_batch reserve_ack_1 reserve_ack_8 reserve_ackb_1 reserve_ackb_8
           wake_latency memory worker_drain worker_latency)
declare -A SIZE=()
RB_N=200000
if [[ $QUICK != 0 ]]; then
    SIZE=([enqueue_single]=500 [enqueue_batch]=5000 [reserve_ack_1]=2000 [reserve_ack_8]=4000
          [reserve_ackb_1]=2000 [reserve_ackb_8]=4000 [worker_drain]=5000 [worker_latency]=100
          [wake_latency]=20 [memory]=10000)
    RB_N=10000
fi

HTTP_SECS=${BENCH_HTTP_SECS:-5}
[[ $QUICK != 0 ]] && HTTP_SECS=1
for tool in redis-server redis-cli redis-benchmark cmake wrk curl; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool not found in PATH" >&2; exit 1; }
done

# ---- Build (incremental: the bench, the hopper binary and the bench plugin) ----
if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DHOPPER_TESTS=OFF >/dev/null
fi
if ! build_log=$(cmake --build "$BUILD_DIR" -j2 --target broker_bench hopper bench_plugin 2>&1); then
    echo "$build_log" >&2
    echo "run.sh: build failed" >&2
    exit 1
fi
BENCH=$BUILD_DIR/bench/broker_bench

# ---- Private redis-server ----
TMP=$(mktemp -d "${TMPDIR:-/tmp}/hopper-bench.XXXXXX")
REDIS_PID=
cleanup() {
    if [[ -n $REDIS_PID ]]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_redis() {
    local port
    for _ in $(seq 1 20); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_in_use "$port" && continue
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --maxmemory-policy noeviction --dir "$TMP" --logfile "$TMP/redis.log" \
            --daemonize no &
        REDIS_PID=$!
        for _ in $(seq 1 100); do
            if ! kill -0 "$REDIS_PID" 2>/dev/null; then break; fi # exited: port taken
            # It must be our server answering, not someone else's on the same port.
            if redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' |
                grep -qx "process_id:$REDIS_PID"; then
                PORT=$port
                return 0
            fi
            sleep 0.05
        done
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=
    done
    echo "run.sh: could not start redis-server" >&2
    [[ -f $TMP/redis.log ]] && tail -5 "$TMP/redis.log" >&2
    return 1
}
start_redis
URL=redis://127.0.0.1:$PORT
rcli() { redis-cli -p "$PORT" "$@"; }

# ---- Header ----
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ $commit != unknown && -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    commit="$commit+dirty"
fi
redis_version=$(redis-server --version)
cpu=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
echo "== hopper broker bench =="
echo "commit:  $commit"
echo "machine: nproc=$(nproc) ${cpu:+($cpu) }load=$load"
echo "redis:   $redis_version"
echo "runs:    $RUNS$([[ $QUICK != 0 ]] && echo '  QUICK sizes: smoke test only, not comparable')"
echo

RESULTS=$TMP/results
: >"$RESULTS"
record() { # run, then "<figure> <metric> <value>" lines on stdin
    local run=$1 line
    while read -r line; do
        [[ -z $line ]] && continue
        echo "$run $line" >>"$RESULTS"
        printf '  run %d  %s\n' "$run" "$line"
    done
}

baseline() { # redis-benchmark, parsed into requests/s
    local suffix=$1; shift
    redis-benchmark -p "$PORT" -t rpush,lpop -n "$RB_N" -q "$@" 2>&1 | tr '\r' '\n' |
        awk -v s="$suffix" '/requests per second/ {
            name = tolower($1); sub(":", "", name)
            printf "redis_%s%s requests_per_s %.0f\n", name, s, $2 }'
}

# ---- HTTP: hopper server under wrk (keep-alive), POST /v1/jobs and GET /v1/jobs/{id} ----
HTTP_BODY='{"queue":"bench","type":"noop","payload":{"to":"a@example.com","n":1}}'
http_bench() { # run
    local run=$1 hport log="$TMP/server.log" spid id up=0
    for _ in $(seq 1 20); do
        hport=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_in_use "$hport" || break
    done
    HOPPER_LOG_LEVEL=warn "$BUILD_DIR/cli/hopper" server --listen "127.0.0.1:$hport" \
        --redis "$URL" --blob-dir "$TMP/blobs" --scheduler=false 2>"$log" &
    spid=$!
    for _ in $(seq 1 200); do
        if curl -sf "http://127.0.0.1:$hport/healthz" >/dev/null 2>&1; then up=1; break; fi
        sleep 0.05
    done
    if [[ $up == 0 ]]; then
        cat "$log" >&2
        echo "run.sh: hopper server did not come up on port $hport (run $run)" >&2
        kill "$spid" 2>/dev/null || true
        exit 1
    fi
    id=$(curl -sf -X POST -H 'Content-Type: application/json' -d "$HTTP_BODY" \
        "http://127.0.0.1:$hport/v1/jobs" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' || true)
    if [[ -z $id ]]; then
        echo "run.sh: POST /v1/jobs did not answer with an id (run $run)" >&2
        exit 1
    fi
    for c in 32 128; do
        WRK_NAME=http_healthz_$c wrk -t2 -c$c -d${HTTP_SECS}s -s "$ROOT/bench/wrk_report.lua" \
            "http://127.0.0.1:$hport/healthz" | grep '^http_' | record "$run"
        WRK_NAME=http_post_$c WRK_METHOD=POST WRK_BODY=$HTTP_BODY wrk -t2 -c$c -d${HTTP_SECS}s \
            -s "$ROOT/bench/wrk_report.lua" "http://127.0.0.1:$hport/v1/jobs" |
            grep '^http_' | record "$run"
        WRK_NAME=http_get_$c wrk -t2 -c$c -d${HTTP_SECS}s -s "$ROOT/bench/wrk_report.lua" \
            "http://127.0.0.1:$hport/v1/jobs/$id" | grep '^http_' | record "$run"
    done
    echo "http_server rss_kib $(awk '/VmRSS/ {print $2}' "/proc/$spid/status")" | record "$run"
    kill -TERM "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
}

t_start=$(date +%s)
for run in $(seq 1 "$RUNS"); do
    if [[ ${BENCH_HTTP:-1} != 0 ]]; then
        http_bench "$run"
        rcli flushall >/dev/null
    fi
    baseline "" | record "$run"
    rcli flushall >/dev/null
    baseline "_P16" -P 16 | record "$run"
    rcli flushall >/dev/null
    for sc in "${SCENARIOS[@]}"; do
        args=(--redis "$URL")
        [[ -n ${SIZE[$sc]:-} ]] && args+=(--n "${SIZE[$sc]}")
        [[ $sc == memory ]] && args+=(--allow-flush)
        [[ $sc == worker_* ]] && args+=(--hopper "$BUILD_DIR/cli/hopper" --plugin "$BUILD_DIR/bench/bench_plugin.so")
        if ! out=$("$BENCH" "${args[@]}" "$sc" 2>"$TMP/stderr"); then
            echo "$out"
            cat "$TMP/stderr" >&2
            echo "run.sh: scenario $sc failed (run $run)" >&2
            exit 1
        fi
        echo "$out" | record "$run"
        rcli flushall >/dev/null
    done
done
elapsed=$(($(date +%s) - t_start))
[[ -n ${BENCH_OUT:-} ]] && cp "$RESULTS" "$BENCH_OUT"

# ---- Summary: medians over the runs ----
# Rows in a fixed order; "<figure> <metric>" keys as broker_bench prints them.
ORDER="enqueue_single:jobs_per_s enqueue_batch:jobs_per_s reserve_ack_1:jobs_per_s
reserve_ack_8:jobs_per_s reserve_ackb_1:jobs_per_s reserve_ackb_8:jobs_per_s
worker_drain:jobs_per_s worker_latency:p50_us worker_latency:p99_us worker_rss:idle_kib wake_latency:p50_us wake_latency:p99_us memory:bytes_per_job
redis_rpush:requests_per_s redis_lpop:requests_per_s redis_rpush_P16:requests_per_s
redis_lpop_P16:requests_per_s
http_post_32:requests_per_s http_post_32:p50_us http_post_32:p99_us http_post_32:errors
http_post_128:requests_per_s http_post_128:p50_us http_post_128:p99_us
http_get_32:requests_per_s http_get_32:p50_us http_get_32:p99_us
http_get_128:requests_per_s http_get_128:p50_us http_get_128:p99_us
http_healthz_32:requests_per_s http_healthz_32:p50_us http_healthz_32:p99_us
http_healthz_128:requests_per_s http_server:rss_kib"
echo
echo "== summary: median of $RUNS run(s), commit $commit, nproc=$(nproc), redis $(echo "$redis_version" | sed -n 's/.*v=\([^ ]*\).*/\1/p'), ${elapsed}s =="
awk -v order="$ORDER" '
    { key = $2 ":" $3; vals[key] = vals[key] " " $4; n[key]++ }
    function median(key,   a, m, i, j, t) {
        m = split(substr(vals[key], 2), a, " ")
        for (i = 2; i <= m; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        lo = a[1]; hi = a[m]
        return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    # A row keeps one decimal when its figure came with decimals (bytes_per_job).
    function fmt(v, key) { return (vals[key] ~ /\./) ? sprintf("%.1f", v) : sprintf("%d", v + 0.5) }
    END {
        printf "%-18s %-15s %10s %10s %10s\n", "figure", "unit", "median", "min", "max"
        k = split(order, keys, /[ \n]+/)
        for (i = 1; i <= k; i++) {
            key = keys[i]
            if (!(key in n)) continue
            med[key] = median(key)
            split(key, p, ":")
            printf "%-18s %-15s %10s %10s %10s\n", p[1], p[2], fmt(med[key], key), fmt(lo, key), fmt(hi, key)
        }
        print ""
        print "ratios of the medians (baseline: redis-benchmark, same server, same command):"
        ratio("enqueue_single / redis rpush", "enqueue_single:jobs_per_s", "redis_rpush:requests_per_s")
        ratio("enqueue_batch / redis rpush -P16", "enqueue_batch:jobs_per_s", "redis_rpush_P16:requests_per_s")
        ratio("reserve_ack_8 / redis lpop -P16", "reserve_ack_8:jobs_per_s", "redis_lpop_P16:requests_per_s")
        ratio("reserve_ackb_8 / redis lpop -P16", "reserve_ackb_8:jobs_per_s", "redis_lpop_P16:requests_per_s")
        ratio("http POST /v1/jobs / GET /healthz, c32", "http_post_32:requests_per_s", "http_healthz_32:requests_per_s")
        ratio("http POST /v1/jobs / GET /healthz, c128", "http_post_128:requests_per_s", "http_healthz_128:requests_per_s")
        ratio("http GET /v1/jobs/{id} / GET /healthz, c32", "http_get_32:requests_per_s", "http_healthz_32:requests_per_s")
    }
    function ratio(label, a, b) {
        if ((a in med) && (b in med) && med[b] > 0)
            printf "  %-44s %.3f\n", label, med[a] / med[b]
        else
            printf "  %-44s n/a\n", label
    }
' "$RESULTS"
