/*
 * broker_bench -- one broker benchmark scenario per run, one machine-readable
 * line per figure on stdout ("<scenario> <metric> <value>"), progress and
 * errors on stderr. bench/run.sh starts the private redis-server, runs every
 * scenario several times and prints the medians; see bench/README.md.
 *
 *   broker_bench --redis redis://127.0.0.1:PORT [--n JOBS] [--allow-flush] SCENARIO
 *
 * Every broker call's return code is checked: on error the program prints the
 * call and broker_errmsg() and exits 1.
 */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "broker/broker.h"
#include "common/common.h"

#define PAYLOAD_LEN   100
#define BATCH         1000 /* JOB_BATCH_MAX */
#define RESERVE_MAX_N 100
#define LEASE_MS      30000
#define WAIT_MS       5000
#define THREADS_8     8

static const char *g_url;
static long g_n; /* --n: overrides the scenario's default size; 0 = default */
static bool g_allow_flush;
static const char *g_hopper; /* --hopper: the hopper binary, for worker_* scenarios */
static const char *g_plugin; /* --plugin: bench_plugin.so */

/* ---- Helpers ---- */

#define CHECK(b, call)                                                                             \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ < 0)                                                                               \
            die_broker((b), #call, rc_);                                                           \
    } while (0)

static void die_broker(const broker_t *b, const char *call, int rc)
{
    fprintf(stderr, "broker_bench: %s failed: %s (%d): %s\n", call, hp_err_name(rc), rc,
            broker_errmsg(b));
    exit(1);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("broker_bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static broker_t *open_broker(void)
{
    broker_config_t cfg = {.url = g_url, .command_timeout_ms = 30000};
    broker_t *b = NULL;
    char *msg = NULL;
    int rc = broker_open(&cfg, &b, &msg);
    if (rc)
        die("broker_open(%s) failed: %s (%d): %s", g_url, hp_err_name(rc), rc,
            msg ? msg : "(no message)");
    return b;
}

/* A fresh queue name per scenario run: "bench-<scenario>-<8 hex>". */
static void fresh_queue(char *out, size_t len, const char *scenario)
{
    char hex[9];
    hp_random_hex(hex, 4);
    snprintf(out, len, "bench-%s-%s", scenario, hex);
}

/* The ~100-byte JSON payload of job i (always exactly PAYLOAD_LEN bytes). */
static void make_payload(char out[PAYLOAD_LEN + 1], long i)
{
    int len = snprintf(out, PAYLOAD_LEN + 1,
                       "{\"to\":\"user%04ld@example.com\",\"subject\":\"Welcome to Hopper\","
                       "\"template\":\"welcome-v2\",\"locale\":\"en-US\"}",
                       i % 10000);
    if (len != PAYLOAD_LEN)
        die("payload is %d bytes, expected %d", len, PAYLOAD_LEN);
}

/* Enqueues `total` jobs into `queue` in batches of up to BATCH. */
static const char *g_job_type = "email.send"; /* what enqueue_batched submits */

static void enqueue_batched(broker_t *b, const char *queue, long total)
{
    static char payloads[BATCH][PAYLOAD_LEN + 1];
    static job_spec_t specs[BATCH];
    static enqueue_result_t results[BATCH];
    for (long done = 0; done < total;) {
        size_t n = total - done < BATCH ? (size_t)(total - done) : BATCH;
        for (size_t i = 0; i < n; i++) {
            make_payload(payloads[i], done + (long)i);
            specs[i] = (job_spec_t){.queue = queue,
                                    .type = g_job_type,
                                    .payload = payloads[i],
                                    .payload_len = PAYLOAD_LEN};
        }
        CHECK(b, broker_enqueue(b, specs, n, results));
        done += (long)n;
    }
}

static double per_s(long count, int64_t us)
{
    return us > 0 ? (double)count * 1e6 / (double)us : 0.0;
}

static long size_or(long dflt)
{
    return g_n > 0 ? g_n : dflt;
}

/* ---- hiredis side channel (INFO, FLUSHALL): not the broker's connection ---- */

static redisContext *raw_connect(void)
{
    /* g_url is redis://host:port[/db] as run.sh passes it. */
    char host[256] = "127.0.0.1";
    int port = 6379;
    const char *p = g_url;
    if (strncmp(p, "redis://", 8) != 0)
        die("--redis: the side channel needs a redis://host:port url, got %s", g_url);
    p += 8;
    const char *at = strrchr(p, '@');
    if (at)
        die("--redis: urls with a password are not supported by the bench's side channel");
    size_t hl = strcspn(p, ":/");
    if (hl > 0 && hl < sizeof(host)) {
        memcpy(host, p, hl);
        host[hl] = '\0';
    }
    if (p[hl] == ':')
        port = atoi(p + hl + 1);
    redisContext *c = redisConnect(host, port);
    if (!c || c->err)
        die("hiredis connect %s:%d: %s", host, port, c ? c->errstr : "out of memory");
    return c;
}

static redisReply *raw_command(redisContext *c, const char *cmd)
{
    redisReply *r = redisCommand(c, cmd);
    if (!r)
        die("redis %s: %s", cmd, c->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        die("redis %s: %s", cmd, r->str);
    return r;
}

/* One integer field of INFO <section>, e.g. used_memory. */
static long long info_field(redisContext *c, const char *section, const char *field)
{
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "INFO %s", section);
    redisReply *r = raw_command(c, cmd);
    if (r->type != REDIS_REPLY_STRING)
        die("redis %s: unexpected reply type %d", cmd, r->type);
    size_t fl = strlen(field);
    long long v = -1;
    for (const char *line = r->str; line && *line;) {
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = atoll(line + fl + 1);
            break;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    freeReplyObject(r);
    if (v < 0)
        die("redis %s: no field %s", cmd, field);
    return v;
}

/* ---- Scenarios ---- */

static void sc_enqueue_single(void)
{
    long n = size_or(20000);
    char queue[JOB_QUEUE_NAME_MAX + 1];
    fresh_queue(queue, sizeof(queue), "enqueue_single");
    broker_t *b = open_broker();
    char payload[PAYLOAD_LEN + 1];
    enqueue_result_t res;
    int64_t t0 = hp_mono_us();
    for (long i = 0; i < n; i++) {
        make_payload(payload, i);
        job_spec_t spec = {
            .queue = queue, .type = "email.send", .payload = payload, .payload_len = PAYLOAD_LEN};
        CHECK(b, broker_enqueue(b, &spec, 1, &res));
    }
    int64_t us = hp_mono_us() - t0;
    printf("enqueue_single jobs_per_s %.0f\n", per_s(n, us));
    broker_close(b);
}

static void sc_enqueue_batch(void)
{
    long n = size_or(200000);
    char queue[JOB_QUEUE_NAME_MAX + 1];
    fresh_queue(queue, sizeof(queue), "enqueue_batch");
    broker_t *b = open_broker();
    int64_t t0 = hp_mono_us();
    enqueue_batched(b, queue, n);
    int64_t us = hp_mono_us() - t0;
    printf("enqueue_batch jobs_per_s %.0f\n", per_s(n, us));
    broker_close(b);
}

/* reserve_ack_*: workers reserve up to 100 and ack each one (one round trip per
 * ack) until reserve hands out nothing. reserve_ackb_*: the same, but each reserved
 * batch is acked with one broker_ack_batch call, as a worker that coalesces the
 * acks of its threads would. */
typedef struct worker_s {
    pthread_t thread;
    int index;
    const char *queue;
    broker_t *b;
    long done;
    bool batch_acks;
    pthread_barrier_t *start;
} worker_t;

static void *reserve_ack_worker(void *arg)
{
    worker_t *w = arg;
    char name[32];
    snprintf(name, sizeof(name), "bench-worker-%d", w->index);
    if (w->start)
        pthread_barrier_wait(w->start);
    for (;;) {
        job_list_t list;
        CHECK(w->b, broker_reserve(w->b, w->queue, RESERVE_MAX_N, LEASE_MS, name, &list));
        if (list.n == 0) {
            job_list_cleanup(&list);
            break;
        }
        if (w->batch_acks) {
            job_ack_t acks[RESERVE_MAX_N];
            for (size_t i = 0; i < list.n; i++)
                acks[i] = (job_ack_t){.id = list.jobs[i]->id, .token = list.jobs[i]->lease_token};
            CHECK(w->b, broker_ack_batch(w->b, acks, list.n));
        } else {
            for (size_t i = 0; i < list.n; i++) {
                const job_t *j = list.jobs[i];
                CHECK(w->b, broker_ack(w->b, j->id, j->lease_token, NULL, 0));
            }
        }
        w->done += (long)list.n;
        job_list_cleanup(&list);
    }
    return NULL;
}

static void reserve_ack(const char *scenario, int nthreads, long njobs, bool batch_acks)
{
    char queue[JOB_QUEUE_NAME_MAX + 1];
    fresh_queue(queue, sizeof(queue), scenario);
    broker_t *producer = open_broker();
    enqueue_batched(producer, queue, njobs);
    broker_close(producer);

    worker_t *w = hp_calloc((size_t)nthreads, sizeof(*w));
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
    for (int i = 0; i < nthreads; i++) {
        w[i] = (worker_t){.index = i,
                          .queue = queue,
                          .b = open_broker(),
                          .start = &start,
                          .batch_acks = batch_acks};
        if (pthread_create(&w[i].thread, NULL, reserve_ack_worker, &w[i]))
            die("pthread_create failed");
    }
    pthread_barrier_wait(&start);
    int64_t t0 = hp_mono_us();
    long total = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].thread, NULL);
        total += w[i].done;
    }
    int64_t us = hp_mono_us() - t0;
    pthread_barrier_destroy(&start);

    /* Nothing may be left behind: every job reserved once, acked once. */
    broker_t *b = w[0].b;
    queue_stats_t st;
    CHECK(b, broker_queue_stats(b, queue, &st));
    if (total != njobs || st.counts[JOB_STATE_WAITING] != 0 || st.counts[JOB_STATE_ACTIVE] != 0 ||
        st.succeeded_total != njobs)
        die("%s: processed %ld of %ld jobs; stats: waiting %lld active %lld succeeded_total %lld",
            scenario, total, njobs, (long long)st.counts[JOB_STATE_WAITING],
            (long long)st.counts[JOB_STATE_ACTIVE], (long long)st.succeeded_total);
    for (int i = 0; i < nthreads; i++)
        broker_close(w[i].b);
    hp_free(w);
    printf("%s jobs_per_s %.0f\n", scenario, per_s(total, us));
}

static void sc_reserve_ack_1(void)
{
    reserve_ack("reserve_ack_1", 1, size_or(50000), false);
}

static void sc_reserve_ackb_1(void)
{
    reserve_ack("reserve_ackb_1", 1, size_or(100000), true);
}

static void sc_reserve_ackb_8(void)
{
    reserve_ack("reserve_ackb_8", THREADS_8, size_or(200000), true);
}

static void sc_reserve_ack_8(void)
{
    reserve_ack("reserve_ack_8", THREADS_8, size_or(100000), false);
}

/* wake_latency: the consumer blocks in broker_wait, then reserves; the producer
 * waits until the consumer is really blocked in Redis (INFO blocked_clients),
 * takes hp_mono_us() and enqueues one job. Latency = that instant to the moment
 * reserve returned the job. */
typedef struct wake_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long ready; /* iterations the consumer is ready for (it is about to wait) */
    long done;  /* iterations finished */
    _Atomic int64_t t_enqueue;
    int64_t *lat_us;
    long iterations;
    const char *queue;
} wake_t;

static void *wake_consumer(void *arg)
{
    wake_t *s = arg;
    broker_t *b = open_broker();
    const char *queues[] = {s->queue};
    for (long it = 0; it < s->iterations; it++) {
        pthread_mutex_lock(&s->mu);
        s->ready = it + 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        int64_t t_done;
        job_list_t list;
        for (;;) {
            int rc = broker_wait(b, queues, 1, WAIT_MS);
            if (rc < 0)
                die_broker(b, "broker_wait(queue, 5000 ms)", rc);
            if (rc == 0)
                die("wake_latency iteration %ld: broker_wait timed out after %d ms although a "
                    "job was enqueued (missed wake-up?)",
                    it, WAIT_MS);
            CHECK(b, broker_reserve(b, s->queue, 1, LEASE_MS, "bench-waiter", &list));
            t_done = hp_mono_us();
            if (list.n > 0)
                break;
            job_list_cleanup(&list); /* a stale wake-up: wait again */
        }
        s->lat_us[it] = t_done - atomic_load(&s->t_enqueue);
        CHECK(b, broker_ack(b, list.jobs[0]->id, list.jobs[0]->lease_token, NULL, 0));
        job_list_cleanup(&list);
        pthread_mutex_lock(&s->mu);
        s->done = it + 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    broker_close(b);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static int64_t percentile(const int64_t *sorted, long n, double p)
{
    long rank = (long)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

static void sc_wake_latency(void)
{
    long iterations = size_or(200);
    char queue[JOB_QUEUE_NAME_MAX + 1];
    fresh_queue(queue, sizeof(queue), "wake_latency");
    wake_t s = {.iterations = iterations, .queue = queue};
    s.lat_us = hp_calloc((size_t)iterations, sizeof(int64_t));
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    broker_t *b = open_broker();
    redisContext *raw = raw_connect();
    long long blocked_before = info_field(raw, "clients", "blocked_clients");

    pthread_t consumer;
    if (pthread_create(&consumer, NULL, wake_consumer, &s))
        die("pthread_create failed");
    char payload[PAYLOAD_LEN + 1];
    enqueue_result_t res;
    for (long it = 0; it < iterations; it++) {
        pthread_mutex_lock(&s.mu);
        while (s.ready < it + 1)
            pthread_cond_wait(&s.cv, &s.mu);
        pthread_mutex_unlock(&s.mu);
        /* Ready means "about to call broker_wait"; wait until it is blocked in Redis. */
        int64_t give_up = hp_mono_ms() + WAIT_MS;
        while (info_field(raw, "clients", "blocked_clients") <= blocked_before) {
            if (hp_mono_ms() > give_up)
                die("wake_latency: the consumer never blocked in broker_wait");
            hp_sleep_ms(1);
        }
        make_payload(payload, it);
        job_spec_t spec = {
            .queue = queue, .type = "email.send", .payload = payload, .payload_len = PAYLOAD_LEN};
        atomic_store(&s.t_enqueue, hp_mono_us());
        CHECK(b, broker_enqueue(b, &spec, 1, &res));
        pthread_mutex_lock(&s.mu);
        while (s.done < it + 1)
            pthread_cond_wait(&s.cv, &s.mu);
        pthread_mutex_unlock(&s.mu);
    }
    pthread_join(consumer, NULL);
    qsort(s.lat_us, (size_t)iterations, sizeof(int64_t), cmp_i64);
    printf("wake_latency p50_us %lld\n", (long long)percentile(s.lat_us, iterations, 50));
    printf("wake_latency p99_us %lld\n", (long long)percentile(s.lat_us, iterations, 99));
    redisFree(raw);
    broker_close(b);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    hp_free(s.lat_us);
}

static void sc_memory(void)
{
    long n = size_or(100000);
    if (!g_allow_flush)
        die("memory: this scenario runs FLUSHALL on the server; pass --allow-flush "
            "(bench/run.sh does, on its private redis-server)");
    redisContext *raw = raw_connect();
    freeReplyObject(raw_command(raw, "FLUSHALL"));
    /* Warm up on another queue so the scripts are loaded before "before" is taken;
     * close the broker so no client buffers are counted. */
    char warm[JOB_QUEUE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1];
    fresh_queue(warm, sizeof(warm), "memory-warmup");
    fresh_queue(queue, sizeof(queue), "memory");
    broker_t *b = open_broker();
    enqueue_batched(b, warm, 10);
    broker_close(b);
    long long before = info_field(raw, "memory", "used_memory");
    b = open_broker();
    enqueue_batched(b, queue, n);
    broker_close(b);
    hp_sleep_ms(50); /* let the server notice the closed connection */
    long long after = info_field(raw, "memory", "used_memory");
    fprintf(stderr, "memory: used_memory before %lld after %lld for %ld jobs\n", before, after, n);
    printf("memory bytes_per_job %.1f\n", (double)(after - before) / (double)n);
    redisFree(raw);
}

/* ---- Main ---- */

/* ---- worker_*: the real `hopper worker` binary, end to end ---- */

static pid_t start_worker(const char *queue, int processes, int threads)
{
    if (!g_hopper || !g_plugin)
        die("worker scenarios need --hopper PATH and --plugin PATH");
    char sp[16], st[16];
    snprintf(sp, sizeof(sp), "%d", processes);
    snprintf(st, sizeof(st), "%d", threads);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("HOPPER_REDIS_URL", g_url, 1);
        setenv("HOPPER_LOG_LEVEL", "warn", 1);
        execl(g_hopper, "hopper", "worker", "--queues", queue, "--plugins", g_plugin, "--processes",
              sp, "--threads", st, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void stop_worker(pid_t pid)
{
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
}

static void wait_succeeded(broker_t *b, const char *queue, long n, int64_t timeout_ms)
{
    int64_t give_up = hp_mono_ms() + timeout_ms;
    for (;;) {
        queue_stats_t st;
        CHECK(b, broker_queue_stats(b, queue, &st));
        if (st.succeeded_total >= n)
            return;
        if (st.dead_total || st.failed_total)
            die("worker: %lld dead, %lld failed attempts", (long long)st.dead_total,
                (long long)st.failed_total);
        if (hp_mono_ms() > give_up)
            die("worker: only %lld of %ld jobs succeeded in time", (long long)st.succeeded_total,
                n);
        hp_sleep_ms(2);
    }
}

/* worker_drain: N no-op jobs queued first, then one worker (2 processes x 8 threads)
 * drains them; jobs/s from its start to the last ack. */
static void sc_worker_drain(void)
{
    long n = size_or(200000);
    char queue[JOB_QUEUE_NAME_MAX + 1];
    fresh_queue(queue, sizeof(queue), "worker_drain");
    broker_t *b = open_broker();
    g_job_type = "bench.noop";
    enqueue_batched(b, queue, n);
    int64_t t0 = hp_mono_us();
    pid_t pid = start_worker(queue, 2, 8);
    wait_succeeded(b, queue, n, 600000);
    int64_t us = hp_mono_us() - t0;
    stop_worker(pid);
    broker_close(b);
    printf("worker_drain jobs_per_s %.0f\n", per_s(n, us));
}

/* The largest VmRSS (KiB) among the processes whose parent is `parent`. */
static long children_rss_kib(pid_t parent)
{
    long best = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], buf[4096];
        snprintf(path, sizeof(path), "/proc/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        long ppid = -1, rss = 0;
        while (fgets(buf, sizeof(buf), f)) {
            sscanf(buf, "PPid: %ld", &ppid);
            sscanf(buf, "VmRSS: %ld", &rss);
        }
        fclose(f);
        if (ppid == parent && rss > best)
            best = rss;
    }
    if (d)
        closedir(d);
    return best;
}

static int compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* worker_latency: an idle worker (2 x 8) gets jobs at a steady 500/s; latency from
 * just before enqueue to the handler's start (both wall clock, same machine). Also
 * the worker processes' resident memory while idle. */
static void sc_worker_latency(void)
{
    long n = size_or(2500);
    char queue[JOB_QUEUE_NAME_MAX + 1];
    fresh_queue(queue, sizeof(queue), "worker_latency");
    broker_t *b = open_broker();
    queue_conf_t conf = {0};
    conf.keep_count[JOB_STATE_SUCCEEDED] = n + 10;
    CHECK(b, broker_queue_configure(b, queue, &conf));
    pid_t pid = start_worker(queue, 2, 8);
    hp_sleep_ms(1000);
    long rss = children_rss_kib(pid);
    char(*ids)[JOB_ID_MAX] = hp_malloc((size_t)n * sizeof(*ids));
    int64_t *sent = hp_malloc((size_t)n * sizeof(int64_t));
    int64_t t0 = hp_mono_us();
    for (long i = 0; i < n; i++) {
        int64_t due = t0 + i * 2000; /* 500 jobs/s */
        while (hp_mono_us() < due)
            hp_sleep_ms(0);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        sent[i] = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        job_spec_t spec = {.queue = queue, .type = "bench.stamp"};
        enqueue_result_t res;
        CHECK(b, broker_enqueue(b, &spec, 1, &res));
        memcpy(ids[i], res.id, JOB_ID_MAX);
    }
    wait_succeeded(b, queue, n, 60000);
    int64_t *lat = hp_malloc((size_t)n * sizeof(int64_t));
    for (long i = 0; i < n; i++) {
        job_t *job;
        CHECK(b, broker_get(b, ids[i], &job));
        const char *at = job->result ? strstr(job->result, "\"start_us\":") : NULL;
        lat[i] = at ? atoll(at + 11) - sent[i] : 0;
        job_free(job);
    }
    qsort(lat, (size_t)n, sizeof(int64_t), compare_i64);
    stop_worker(pid);
    printf("worker_latency p50_us %lld\n", (long long)lat[n / 2]);
    printf("worker_latency p99_us %lld\n", (long long)lat[n * 99 / 100]);
    printf("worker_rss idle_kib %ld\n", rss);
    hp_free(lat);
    hp_free(sent);
    hp_free(ids);
    broker_close(b);
}

static const struct {
    const char *name;
    void (*run)(void);
} scenarios[] = {
    {"enqueue_single", sc_enqueue_single}, {"enqueue_batch", sc_enqueue_batch},
    {"reserve_ack_1", sc_reserve_ack_1},   {"reserve_ack_8", sc_reserve_ack_8},
    {"reserve_ackb_1", sc_reserve_ackb_1}, {"reserve_ackb_8", sc_reserve_ackb_8},
    {"wake_latency", sc_wake_latency},     {"memory", sc_memory},
    {"worker_drain", sc_worker_drain},     {"worker_latency", sc_worker_latency},
};
#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: broker_bench --redis URL [--n N] [--allow-flush] SCENARIO\n"
               "  --n N          size: jobs (iterations for wake_latency); default per scenario\n"
               "  --allow-flush  let the memory scenario FLUSHALL the server\n"
               "scenarios:");
    for (size_t i = 0; i < NSCENARIOS; i++)
        fprintf(f, " %s", scenarios[i].name);
    fputc('\n', f);
}

int main(int argc, char **argv)
{
    const char *scenario = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--redis") == 0 && i + 1 < argc) {
            g_url = argv[++i];
        } else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
            g_n = strtol(argv[++i], NULL, 10);
            if (g_n <= 0)
                die("--n: expected a positive number, got %s", argv[i]);
        } else if (strcmp(argv[i], "--hopper") == 0 && i + 1 < argc) {
            g_hopper = argv[++i];
        } else if (strcmp(argv[i], "--plugin") == 0 && i + 1 < argc) {
            g_plugin = argv[++i];
        } else if (strcmp(argv[i], "--allow-flush") == 0) {
            g_allow_flush = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] != '-' && !scenario) {
            scenario = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!g_url || !scenario) {
        usage(stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < NSCENARIOS; i++) {
        if (strcmp(scenario, scenarios[i].name) == 0) {
            scenarios[i].run();
            return 0;
        }
    }
    fprintf(stderr, "broker_bench: unknown scenario \"%s\"\n", scenario);
    usage(stderr);
    return 2;
}
