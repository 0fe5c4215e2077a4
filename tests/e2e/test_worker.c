/*
 * End to end: the real `hopper worker` (a supervisor and its P worker processes)
 * running the testhandlers plugin against a private redis-server, watched from
 * outside through the broker API, the way an operator would see it: job states,
 * results, errors, the worker registry, exit statuses and what the worker logs.
 *
 * Each test starts its own worker(s) on its own queue. A worker runs in a process
 * group of its own, so the teardown can SIGKILL the whole group: no worker process
 * outlives a test, however it ends. When a test fails, the teardown prints the
 * logs of the workers it started.
 *
 * Nothing here asserts on speed: waits poll with generous deadlines, and a
 * deadline only separates "happens" from "never happens" (e.g. a canceled 60 s
 * job must end long before its 60 s are up).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "broker/broker.h"
#include "tests/support/test_cli.h"
#include "tests/support/test_proc.h"
#include "tests/support/test_redis.h"

#ifndef HOPPER_TEST_PLUGIN_DIR
#error "HOPPER_TEST_PLUGIN_DIR must name the directory of the test plugins"
#endif
#define PLUGIN(name) HOPPER_TEST_PLUGIN_DIR "/" name ".so"
#define TESTHANDLERS PLUGIN("testhandlers")

/* In the sanitizer build (HOPPER_SANITIZE: ASan and UBSan together) the plugins are
 * instrumented too, and UBSan stops test.crash's null store before it faults: the
 * process exits with status 1 after "runtime error: store to null pointer" instead
 * of dying of SIGSEGV. The crash tests accept that (and check for UBSan's line). */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define WAIT_MS       20000 /* how long a job may take to get where it is going */
#define START_WAIT_MS 20000 /* how long a worker may take to say "serving" */
#define STOP_WAIT_MS  20000 /* how long a graceful stop of idle workers may take */

extern char **environ;

static test_redis_t redis;
static broker_t *B;
static test_proc_t api_server; /* `hopper server` on the same Redis, for the /v1/workers tests */
static int api_port;
static char api_blob_dir[64];

/* ---- Small helpers ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static size_t count_substr(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static bool contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

/* The parent of `pid` from /proc, or -1. */
static pid_t parent_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *text = slurp(path);
    const char *close_paren = strrchr(text, ')'); /* the name may hold anything */
    int ppid = -1;
    char state;
    if (!close_paren || sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2)
        ppid = -1;
    free(text);
    return (pid_t)ppid;
}

/* ---- Workers ---- */

typedef struct worker_s {
    pid_t pid; /* the supervisor, leader of its own process group */
    bool reaped;
    int status;        /* once reaped: exit status, or 128 + signal */
    char log[64];      /* its stderr, where it logs */
    char out[64];      /* its stdout */
    const char *label; /* for the failure report */
} worker_t;

#define MAX_WORKERS 8
static worker_t workers[MAX_WORKERS];
static int nworkers;
static bool test_passed; /* set at the end of each test; the teardown reports otherwise */

static char *worker_log(const worker_t *w)
{
    return slurp(w->log);
}

static void print_worker_logs(void)
{
    for (int i = 0; i < nworkers; i++) {
        worker_t *w = &workers[i];
        char *err = slurp(w->log), *out = slurp(w->out);
        size_t n = strlen(err);
        const char *tail = n > 12000 ? err + n - 12000 : err;
        fprintf(stderr, "---- worker %d (%s), supervisor pid %d%s ----\n%s%s%s", i, w->label,
                (int)w->pid, w->reaped ? ", exited" : "", tail, out[0] ? "---- stdout:\n" : "",
                out);
        free(err);
        free(out);
    }
}

/* Reaps the supervisor if it has exited; true when it has. */
static bool worker_try_reap(worker_t *w)
{
    if (w->reaped)
        return true;
    int st;
    pid_t r = waitpid(w->pid, &st, WNOHANG);
    if (r != w->pid)
        return false;
    w->reaped = true;
    w->status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
    return true;
}

static bool worker_alive(worker_t *w)
{
    return !worker_try_reap(w);
}

/* Waits up to timeout_ms for the supervisor to exit; returns its status (exit code,
 * or 128 + signal), or -1 if it is still running. */
static int worker_wait_exit(worker_t *w, int64_t timeout_ms)
{
    int64_t end = hp_mono_ms() + timeout_ms;
    while (!worker_try_reap(w)) {
        if (hp_mono_ms() > end)
            return -1;
        hp_sleep_ms(10);
    }
    return w->status;
}

/* SIGTERM to the supervisor (a graceful stop), then waits; status as above. */
static int worker_stop(worker_t *w, int64_t timeout_ms)
{
    if (!w->reaped)
        kill(w->pid, SIGTERM);
    return worker_wait_exit(w, timeout_ms);
}

/* SIGKILL to the whole process group: supervisor, worker processes, job children. */
static void worker_kill_all(worker_t *w)
{
    kill(-w->pid, SIGKILL);
    if (!w->reaped) {
        int st = 0;
        pid_t r;
        while ((r = waitpid(w->pid, &st, 0)) < 0 && errno == EINTR) {
        }
        w->reaped = true;
        if (r != w->pid)
            st = 0;
        w->status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
    }
}

static bool env_is_ours(const char *entry)
{
    return strncmp(entry, "HOPPER_", 7) == 0 || strncmp(entry, "ASAN_OPTIONS=", 13) == 0;
}

/* Starts HOPPER_BIN worker ARGS... in its own process group, with HOPPER_REDIS_URL
 * set to our server, no other HOPPER_* variable from our environment (so a
 * developer's HOPPER_QUEUES cannot leak in), `env` added (NULL-terminated
 * "NAME=value"), and stdout/stderr in temporary files. Does not wait. */
static worker_t *worker_spawn(const char *label, const char *const *args, const char *const *env)
{
    assert_true(nworkers < MAX_WORKERS);
    worker_t *w = &workers[nworkers];
    memset(w, 0, sizeof(*w));
    w->label = label;
    snprintf(w->log, sizeof(w->log), "/tmp/hopper-test-worker-XXXXXX");
    snprintf(w->out, sizeof(w->out), "/tmp/hopper-test-worker-out-XXXXXX");
    int errfd = mkstemp(w->log), outfd = mkstemp(w->out);
    assert_true(errfd >= 0 && outfd >= 0);

    const char *argv[64] = {HOPPER_BIN, "worker"};
    int argc = 2;
    for (int i = 0; args[i]; i++) {
        assert_true(argc < 62);
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;

    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    const char **envp = calloc(nenv + 16, sizeof(*envp));
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (!env_is_ours(environ[i]))
            envp[k++] = environ[i];
    char url[128];
    snprintf(url, sizeof(url), "HOPPER_REDIS_URL=%s", redis.url);
    envp[k++] = url;
    envp[k++] = "HOPPER_LOG_LEVEL=info"; /* the "serving" lines are info */
    /* Under the sanitizer build, a handler's SIGSEGV or abort() must stay a real
     * signal that kills the process, as in production. */
    envp[k++] = "ASAN_OPTIONS=handle_segv=0:handle_abort=0:detect_leaks=0";
    for (int i = 0; env && env[i]; i++) {
        assert_true(k < nenv + 15);
        envp[k++] = env[i];
    }
    envp[k] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the test died: so does the supervisor */
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(outfd, 1);
        dup2(errfd, 2);
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
            close((int)fd);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(HOPPER_BIN, (char *const *)argv, (char *const *)envp);
        dprintf(2, "test_worker: cannot run %s: %s\n", HOPPER_BIN, strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* as the child does: whichever runs first */
    close(errfd);
    close(outfd);
    free(envp);
    w->pid = pid;
    nworkers++;
    return w;
}

/* Waits until `processes` worker processes have logged "serving". */
static void worker_wait_serving(worker_t *w, int processes)
{
    int64_t end = hp_mono_ms() + START_WAIT_MS;
    for (;;) {
        char *log = worker_log(w);
        size_t serving = count_substr(log, ": serving ");
        free(log);
        if ((int)serving >= processes)
            return;
        if (worker_try_reap(w))
            fail_msg("worker %s exited with status %d before serving", w->label, w->status);
        if (hp_mono_ms() > end)
            fail_msg("worker %s: %zu of %d processes serving after %d ms", w->label, serving,
                     processes, START_WAIT_MS);
        hp_sleep_ms(20);
    }
}

/* hopper worker --queues Q --plugins testhandlers.so --processes P --threads T [extra...],
 * started and serving. */
static worker_t *start_worker_env(const char *queue, int processes, int threads,
                                  const char *const *extra, const char *const *env)
{
    char sp[16], st[16];
    snprintf(sp, sizeof(sp), "%d", processes);
    snprintf(st, sizeof(st), "%d", threads);
    const char *args[48] = {"--queues",    queue, "--plugins", TESTHANDLERS,
                            "--processes", sp,    "--threads", st};
    int n = 8;
    for (int i = 0; extra && extra[i]; i++) {
        assert_true(n < 46);
        args[n++] = extra[i];
    }
    args[n] = NULL;
    worker_t *w = worker_spawn(queue, args, env);
    worker_wait_serving(w, processes);
    return w;
}

#define START_WORKER(queue, processes, threads, ...)                                               \
    start_worker_env((queue), (processes), (threads), (const char *const[]){__VA_ARGS__, NULL},    \
                     NULL)

/* A graceful stop that must end with exit status 0 within `timeout_ms`. */
static void stop_worker_ok(worker_t *w, int64_t timeout_ms)
{
    int status = worker_stop(w, timeout_ms);
    if (status == -1)
        fail_msg("worker %s still running %lld ms after SIGTERM", w->label, (long long)timeout_ms);
    if (status != 0)
        fail_msg("worker %s exited with status %d after SIGTERM, expected 0", w->label, status);
}

/* ---- Jobs ---- */

typedef struct jid_s {
    char s[JOB_ID_MAX];
} jid_t;

static jid_t enqueue_spec(const job_spec_t *spec)
{
    enqueue_result_t r;
    memset(&r, 0, sizeof(r));
    int err = broker_enqueue(B, spec, 1, &r);
    if (err)
        fail_msg("enqueue %s on %s: %s (%s)", spec->type, spec->queue, broker_errmsg(B), r.errmsg);
    jid_t id;
    snprintf(id.s, sizeof(id.s), "%s", r.id);
    return id;
}

/* ENQ(.queue = q, .type = "test.noop", ...): any job_spec_t fields. */
#define ENQ(...) enqueue_spec(&(job_spec_t){__VA_ARGS__})

static job_t *get_job(const char *id)
{
    job_t *j = NULL;
    int err = broker_get(B, id, &j);
    if (err)
        fail_msg("broker_get %s: %s", id, broker_errmsg(B));
    return j;
}

static bool is_final(job_state_t s)
{
    return s == JOB_STATE_SUCCEEDED || s == JOB_STATE_DEAD || s == JOB_STATE_CANCELED;
}

static void show_job(const char *why, const job_t *j)
{
    char *json = job_to_json(j, 2);
    fprintf(stderr, "%s:\n%s\n", why, json);
    hp_free(json);
}

/* Polls the job until it is in `want` (returned; job_free it). Fails at once if it
 * reaches another final state, or when timeout_ms passes. */
static job_t *wait_state_at(const char *id, job_state_t want, int64_t timeout_ms, int line)
{
    int64_t end = hp_mono_ms() + timeout_ms;
    for (;;) {
        job_t *j = get_job(id);
        if (j->state == want)
            return j;
        bool late = hp_mono_ms() > end;
        if (is_final(j->state) || late) {
            show_job("job", j);
            fail_msg("job %s is %s, expected %s%s (test_worker.c:%d)", id, job_state_name(j->state),
                     job_state_name(want), late ? " (timed out waiting)" : "", line);
        }
        job_free(j);
        hp_sleep_ms(10);
    }
}

#define wait_state(id, want, timeout_ms) wait_state_at((id), (want), (timeout_ms), __LINE__)
#define expect_state(id, want)           job_free(wait_state((id), (want), WAIT_MS))

static void job_error_contains_at(const job_t *j, size_t i, const char *text, int line)
{
    if (i >= j->nerrors || !contains(j->errors[i].message, text)) {
        show_job("job", j);
        fail_msg("job %s: error %zu should contain \"%s\" (test_worker.c:%d)", j->id, i, text,
                 line);
    }
}
#define assert_job_error_contains(j, i, text) job_error_contains_at((j), (i), (text), __LINE__)

/* The pid in a "host:pid" worker id. */
static pid_t pid_of_worker_id(const char *worker)
{
    const char *colon = worker ? strrchr(worker, ':') : NULL;
    assert_non_null(colon);
    return (pid_t)atoi(colon + 1);
}

/* ---- The worker registry ---- */

/* The integer after "key": in a JSON object's text, or -1. */
static long json_int_field(const char *json, const char *key)
{
    char quoted[64];
    snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    const char *p = strstr(json, quoted);
    if (!p)
        return -1;
    p += strlen(quoted);
    while (*p == ' ' || *p == ':')
        p++;
    char *end;
    long v = strtol(p, &end, 10);
    return end == p ? -1 : v;
}

/* The pids of the live registry entries that serve `queue`, sorted; returns how many. */
static size_t registry_pids(const char *queue, long *pids, size_t cap)
{
    char **infos = NULL;
    size_t n = 0;
    int err = broker_workers(B, &infos, &n);
    if (err)
        fail_msg("broker_workers: %s", broker_errmsg(B));
    char quoted[96];
    snprintf(quoted, sizeof(quoted), "\"%s\"", queue);
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        if (!contains(infos[i], quoted))
            continue;
        long pid = json_int_field(infos[i], "pid");
        if (pid <= 0) {
            fprintf(stderr, "registry entry: %s\n", infos[i]);
            fail_msg("a registry entry for %s has no \"pid\"", queue);
        }
        if (found < cap)
            pids[found] = pid;
        found++;
    }
    broker_queues_free(infos, n);
    for (size_t i = 1; i < found && i < cap; i++) /* insertion sort: a handful */
        for (size_t k = i; k > 0 && pids[k - 1] > pids[k]; k--) {
            long t = pids[k];
            pids[k] = pids[k - 1];
            pids[k - 1] = t;
        }
    return found;
}

/* Waits until exactly `want` registry entries serve `queue`. */
static void wait_registry(const char *queue, size_t want, long *pids, size_t cap)
{
    int64_t end = hp_mono_ms() + WAIT_MS;
    size_t n;
    while ((n = registry_pids(queue, pids, cap)) != want) {
        if (hp_mono_ms() > end)
            fail_msg("%zu registry entries serve %s, expected %zu", n, queue, want);
        hp_sleep_ms(20);
    }
}

/* The registry's JSON text of the one entry whose pid is `pid`, or NULL; free() it. */
static char *registry_entry(long pid)
{
    char **infos = NULL;
    size_t n = 0;
    assert_int_equal(broker_workers(B, &infos, &n), 0);
    char *found = NULL;
    for (size_t i = 0; i < n && !found; i++)
        if (json_int_field(infos[i], "pid") == pid)
            found = strdup(infos[i]);
    broker_queues_free(infos, n);
    return found;
}

/* ---- Setup ---- */

static int group_setup(void **state)
{
    (void)state;
    if (test_redis_start(&redis, NULL))
        return -1;
    broker_config_t bc = {.url = redis.url};
    char *msg = NULL;
    if (broker_open(&bc, &B, &msg)) {
        fprintf(stderr, "broker_open %s: %s\n", redis.url, msg);
        hp_free(msg);
        return -1;
    }
    /* No tokens on this Redis, loopback: the server needs none. */
    snprintf(api_blob_dir, sizeof(api_blob_dir), "/tmp/hopper-test-blobs-XXXXXX");
    if (!mkdtemp(api_blob_dir))
        return -1;
    const char *argv[] = {HOPPER_BIN,          "server",     "--listen",   "127.0.0.1:0",
                          "--redis",           redis.url,    "--threads",  "1",
                          "--scheduler=false", "--blob-dir", api_blob_dir, NULL};
    const char *env[] = {"HOPPER_LOG_LEVEL=info", "HOPPER_ADMIN_TOKEN=", NULL};
    if (test_proc_start(&api_server, argv, env) ||
        !test_proc_wait_log(&api_server, "(port ", START_WAIT_MS)) {
        char *log = test_proc_log(&api_server);
        fprintf(stderr, "hopper server did not serve:\n%s\n", log);
        free(log);
        return -1;
    }
    char *log = test_proc_log(&api_server);
    api_port = atoi(strstr(log, "(port ") + strlen("(port "));
    free(log);
    return api_port > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    int status = test_proc_stop(&api_server, STOP_WAIT_MS);
    char *log = test_proc_log(&api_server);
    bool clean = status == 0 && !strstr(log, "Sanitizer") && !strstr(log, "runtime error:");
    if (!clean)
        fprintf(stderr, "hopper server exited with status %d:\n%s\n", status, log);
    free(log);
    test_proc_cleanup(&api_server);
    rmdir(api_blob_dir); /* nothing was uploaded */
    broker_close(B);
    test_redis_stop(&redis);
    return clean ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    nworkers = 0;
    test_passed = false;
    return 0;
}

/* Whatever happened: no worker process survives the test. */
static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < nworkers; i++)
        worker_kill_all(&workers[i]);
    if (!test_passed)
        print_worker_logs();
    for (int i = 0; i < nworkers; i++) {
        unlink(workers[i].log);
        unlink(workers[i].out);
    }
    nworkers = 0;
    return 0;
}

/* What no worker may log, whatever the test: a sanitizer's report (but for UBSan's
 * line about test.crash's deliberate null store), or an ERROR line. */
static const char *bad_log_line(const char *log, size_t *len)
{
    for (const char *p = log; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) - 1 ? n : sizeof(line) - 1), p);
        bool deliberate = strstr(line, "testhandlers.c") && strstr(line, "store to null pointer");
        if (!deliberate && (strstr(line, "Sanitizer") || strstr(line, "runtime error:") ||
                            strstr(line, " ERROR "))) {
            *len = n;
            return p;
        }
        p += n + (nl ? 1 : 0);
    }
    return NULL;
}

static void assert_logs_clean(void)
{
    for (int i = 0; i < nworkers; i++) {
        char *log = worker_log(&workers[i]);
        size_t len = 0;
        const char *bad = bad_log_line(log, &len);
        if (bad)
            fail_msg("worker %s logged: %.*s", workers[i].label, (int)len, bad);
        free(log);
    }
}

/* The end of a test that passed: the workers' logs are clean too. */
#define PASSED()                                                                                   \
    do {                                                                                           \
        assert_logs_clean();                                                                       \
        test_passed = true;                                                                        \
    } while (0)

/* ---- 1. Many short jobs, each exactly once ---- */

#define MANY  1000
#define BATCH 250

static void test_thousand_noops(void **state)
{
    (void)state;
    const char *q = test_queue_name("noop");
    queue_conf_t conf;
    memset(&conf, 0, sizeof(conf));
    conf.keep_count[JOB_STATE_SUCCEEDED] = 10 * MANY; /* keep them all, to look at */
    assert_int_equal(broker_queue_configure(B, q, &conf), 0);

    worker_t *w = START_WORKER(q, 2, 4, "--lease", "5s");
    jid_t *ids = calloc(MANY, sizeof(*ids));
    job_spec_t specs[BATCH];
    enqueue_result_t res[BATCH];
    for (int b = 0; b < MANY / BATCH; b++) {
        for (int i = 0; i < BATCH; i++)
            specs[i] = (job_spec_t){.queue = q, .type = "test.noop"};
        int err = broker_enqueue(B, specs, BATCH, res);
        if (err)
            fail_msg("enqueue batch %d: %s", b, broker_errmsg(B));
        for (int i = 0; i < BATCH; i++)
            memcpy(ids[b * BATCH + i].s, res[i].id, sizeof(res[i].id));
    }

    queue_stats_t st;
    int64_t end = hp_mono_ms() + 60000;
    for (;;) {
        assert_int_equal(broker_queue_stats(B, q, &st), 0);
        if (st.succeeded_total >= MANY || st.failed_total > 0 || st.dead_total > 0)
            break;
        if (hp_mono_ms() > end)
            fail_msg("%lld of %d jobs succeeded in 60 s (waiting %lld, active %lld)",
                     (long long)st.succeeded_total, MANY, (long long)st.counts[JOB_STATE_WAITING],
                     (long long)st.counts[JOB_STATE_ACTIVE]);
        hp_sleep_ms(20);
    }
    assert_int_equal(st.enqueued_total, MANY);
    assert_int_equal(st.succeeded_total, MANY);
    assert_int_equal(st.failed_total, 0);
    assert_int_equal(st.dead_total, 0);
    assert_int_equal(st.counts[JOB_STATE_SUCCEEDED], MANY);
    assert_int_equal(st.counts[JOB_STATE_WAITING], 0);
    assert_int_equal(st.counts[JOB_STATE_ACTIVE], 0);
    assert_int_equal(st.counts[JOB_STATE_SCHEDULED], 0);
    assert_int_equal(st.counts[JOB_STATE_FAILED], 0);

    /* Exactly once: each job reserved once (attempts 1), with no error. */
    for (int i = 0; i < MANY; i++) {
        job_t *j = get_job(ids[i].s);
        if (j->state != JOB_STATE_SUCCEEDED || j->attempts != 1 || j->nerrors != 0) {
            show_job("job", j);
            fail_msg("job %d: expected succeeded after exactly one attempt", i);
        }
        job_free(j);
    }
    free(ids);
    stop_worker_ok(w, STOP_WAIT_MS);
    PASSED();
}

/* ---- 2. Results, progress, logs, plugin config ---- */

static void test_results_progress_config(void **state)
{
    (void)state;
    const char *q = test_queue_name("results");
    worker_t *w =
        START_WORKER(q, 1, 4, "--plugin-config", "{\"testhandlers\":{\"greeting\":\"hi\"}}");

    /* test.echo: the result is the payload text, byte for byte (spacing, number
     * spellings, escapes and UTF-8 untouched). */
    const char *payload =
        "{\"b\": [1, 2.50, -0, 1e3, 1E-2,  0.10],\n"
        " \"s\" : \"\\u00e9\\n\\\"q\\\"\\/\","
        "\"u\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",  \"n\":null ,\"t\":true}";
    jid_t echo = ENQ(.queue = q, .type = "test.echo", .payload = payload);
    size_t big_len = 200 * 1024;
    char *big = malloc(big_len + 1);
    big[0] = '"';
    for (size_t i = 1; i < big_len - 1; i++)
        big[i] = (char)('a' + i % 26);
    big[big_len - 1] = '"';
    big[big_len] = '\0';
    jid_t echo_big = ENQ(.queue = q, .type = "test.echo", .payload = big);
    jid_t array = ENQ(.queue = q, .type = "test.echo", .payload = "[ 1 ,\t\"x\" ]");
    jid_t progress = ENQ(.queue = q, .type = "test.progress");
    jid_t config = ENQ(.queue = q, .type = "test.config");

    job_t *j = wait_state(echo.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    assert_non_null(j->result);
    assert_string_equal(j->result, payload);
    assert_int_equal(strlen(j->result), strlen(payload));
    job_free(j);

    j = wait_state(echo_big.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    assert_non_null(j->result);
    assert_int_equal(strlen(j->result), big_len);
    assert_memory_equal(j->result, big, big_len);
    job_free(j);
    free(big);

    j = wait_state(array.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    assert_non_null(j->result);
    assert_string_equal(j->result, "[ 1 ,\t\"x\" ]");
    job_free(j);

    /* test.progress: 0, 25, 50, 75, 100 with "step N", and a log line for each. */
    j = wait_state(progress.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    assert_int_equal(j->progress, 100);
    assert_non_null(j->progress_message);
    assert_string_equal(j->progress_message, "step 5");
    assert_non_null(j->result);
    assert_string_equal(j->result, "{\"steps\":5}");
    assert_non_null(j->logs);
    size_t lines = 0;
    const char *p = j->logs;
    for (int step = 0; step < 5; step++) {
        char want[32];
        snprintf(want, sizeof(want), "progress %d%%", step * 25);
        const char *at = strstr(p, want);
        if (!at) {
            show_job("job", j);
            fail_msg("log line \"%s\" missing or out of order", want);
        }
        p = at + strlen(want);
    }
    for (const char *l = j->logs; *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        lines += len > 0;
        l += len + (nl ? 1 : 0);
    }
    if (lines != 5) {
        show_job("job", j);
        fail_msg("test.progress: %zu log lines, expected 5", lines);
    }
    job_free(j);

    /* test.config: the plugin's section of --plugin-config. */
    j = wait_state(config.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    assert_non_null(j->result);
    assert_string_equal(j->result, "{\"greeting\":\"hi\"}");
    job_free(j);

    stop_worker_ok(w, STOP_WAIT_MS);
    PASSED();
}

/* --config FILE with the same names as the flags; a flag overrides the file. */
static void test_config_file(void **state)
{
    (void)state;
    const char *q = test_queue_name("cfgfile");
    char path[] = "/tmp/hopper-test-worker-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f,
            "{\"queues\": \"%s\", \"plugins\": \"%s\", \"processes\": 1, \"threads\": 2,\n"
            " \"lease\": \"5s\", \"plugin_config\": {\"testhandlers\": {\"greeting\": \"from "
            "file\"}}}\n",
            q, TESTHANDLERS);
    fclose(f);
    worker_t *w =
        worker_spawn(q, (const char *const[]){"--config", path, "--threads", "3", NULL}, NULL);
    worker_wait_serving(w, 1);
    unlink(path); /* read at start */

    jid_t config = ENQ(.queue = q, .type = "test.config");
    job_t *j = wait_state(config.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    assert_string_equal(j->result, "{\"greeting\":\"from file\"}");
    job_free(j);

    long pids[4];
    wait_registry(q, 1, pids, 4);
    char *entry = registry_entry(pids[0]);
    assert_non_null(entry);
    if (json_int_field(entry, "threads") != 3) {
        fprintf(stderr, "registry entry: %s\n", entry);
        fail_msg("--threads 3 on the command line should override \"threads\": 2 in the file");
    }
    free(entry);
    stop_worker_ok(w, STOP_WAIT_MS);
    PASSED();
}

/* ---- 3. Failures, retries, backoff ---- */

static void test_fail_retry_and_permanent(void **state)
{
    (void)state;
    const char *q = test_queue_name("fail");
    worker_t *w = START_WORKER(q, 1, 2, "--lease", "5s");
    jid_t retry = ENQ(.queue = q, .type = "test.fail",
                      .payload = "{\"permanent\":false,\"message\":\"boom: retry me\"}",
                      .max_attempts = 3, .backoff = {.kind = BACKOFF_FIXED, .base_ms = 200});
    jid_t perm = ENQ(.queue = q, .type = "test.fail",
                     .payload = "{\"permanent\":true,\"message\":\"boom: give up\"}",
                     .max_attempts = 3, .backoff = {.kind = BACKOFF_FIXED, .base_ms = 200});

    job_t *j = wait_state(retry.s, JOB_STATE_DEAD, WAIT_MS);
    if (j->attempts != 3 || j->nerrors != 3)
        show_job("retryable failure", j);
    assert_int_equal(j->attempts, 3);
    assert_int_equal(j->nerrors, 3);
    for (size_t i = 0; i < j->nerrors; i++) {
        assert_string_equal(j->errors[i].message, "boom: retry me");
        assert_int_equal(j->errors[i].attempt, (int)i + 1);
    }
    job_free(j);

    j = wait_state(perm.s, JOB_STATE_DEAD, WAIT_MS);
    if (j->attempts != 1 || j->nerrors != 1)
        show_job("permanent failure", j);
    assert_int_equal(j->attempts, 1);
    assert_int_equal(j->nerrors, 1);
    assert_string_equal(j->errors[0].message, "boom: give up");
    job_free(j);

    queue_stats_t st;
    assert_int_equal(broker_queue_stats(B, q, &st), 0);
    assert_int_equal(st.failed_total, 4);
    assert_int_equal(st.dead_total, 2);
    stop_worker_ok(w, STOP_WAIT_MS);
    PASSED();
}

/* ---- 4. A handler that crashes takes down only its process ---- */

/* One crashing job type: the job ends dead with the reason, the supervisor lives on,
 * restarts the process, and the next job runs (in the new process). */
static void crash_then_noop(worker_t *w, const char *q, const char *type, const char *signame)
{
    jid_t crash = ENQ(.queue = q, .type = type, .max_attempts = 1);
    job_t *j = wait_state(crash.s, JOB_STATE_DEAD, WAIT_MS);
    assert_int_equal(j->attempts, 1);
    assert_int_equal(j->nerrors, 1);
    char *log = worker_log(w);
    if (SANITIZED && strcmp(type, "test.crash") == 0 &&
        contains(log, "runtime error: store to null pointer")) {
        /* UBSan stopped the store first (see SANITIZED above) */
        assert_job_error_contains(j, 0, "worker process exited with status 1");
    } else {
        assert_job_error_contains(j, 0, "crashed");
        assert_job_error_contains(j, 0, signame);
    }
    free(log);
    pid_t crashed_in = pid_of_worker_id(j->worker);
    job_free(j);

    if (!worker_alive(w))
        fail_msg("the supervisor exited (status %d) after a handler crashed", w->status);
    jid_t noop = ENQ(.queue = q, .type = "test.noop");
    j = wait_state(noop.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    pid_t ran_in = pid_of_worker_id(j->worker);
    job_free(j);
    if (ran_in == crashed_in)
        fail_msg("the noop ran in process %d, which should have died of the crash", (int)ran_in);
    assert_int_equal(parent_of(ran_in), w->pid);
    assert_true(worker_alive(w));
}

static void test_crash_and_abort(void **state)
{
    (void)state;
    const char *q = test_queue_name("crash");
    /* one process: the noop can only run if that process was restarted */
    worker_t *w = START_WORKER(q, 1, 2, "--lease", "5s");
    crash_then_noop(w, q, "test.crash", "SIGSEGV");
    crash_then_noop(w, q, "test.abort", "SIGABRT");
    char *log = worker_log(w);
    assert_true(count_substr(log, ": serving ") >= 3); /* the first and two restarts */
    free(log);
    stop_worker_ok(w, STOP_WAIT_MS);
    PASSED();
}

/* A process holds up to threads x prefetch jobs (default prefetch 4). When a handler
 * crashes it, the jobs it held but had not started never ran: like the jobs a
 * stopping process has not started, they should go back unrun (attempt not
 * counted), not be failed with the crash, which on their last attempt kills them. */
static void test_crash_spares_prefetched_jobs(void **state)
{
    (void)state;
    const char *q = test_queue_name("prefetch");
    /* Enqueued before the worker starts, so its one process reserves all four in one
     * round: the crash first (FIFO), the noops next in line behind the one thread. */
    jid_t crash = ENQ(.queue = q, .type = "test.crash", .max_attempts = 1);
    jid_t noops[3];
    for (int i = 0; i < 3; i++)
        noops[i] = ENQ(.queue = q, .type = "test.noop", .max_attempts = 1);
    START_WORKER(q, 1, 1, "--prefetch", "4", "--lease", "5s");
    expect_state(crash.s, JOB_STATE_DEAD);
    for (int i = 0; i < 3; i++) {
        job_t *j = wait_state(noops[i].s, JOB_STATE_SUCCEEDED, WAIT_MS);
        if (j->attempts != 1 || j->nerrors != 0) {
            show_job("noop", j);
            fail_msg("noop %d never ran before the crash, so it should not be charged for it", i);
        }
        job_free(j);
    }
    PASSED();
}

/* ---- 5. A handler that ignores its timeout: its process is restarted ---- */

static void test_hang_timeout(void **state)
{
    (void)state;
    const char *q = test_queue_name("hang");
    worker_t *w = START_WORKER(q, 1, 2, "--timeout-grace", "1s", "--lease", "5s");
    jid_t hang = ENQ(.queue = q, .type = "test.hang", .timeout_ms = 1000, .max_attempts = 1);
    job_t *j = wait_state(hang.s, JOB_STATE_DEAD, WAIT_MS);
    assert_int_equal(j->attempts, 1);
    assert_int_equal(j->nerrors, 1);
    assert_job_error_contains(j, 0, "timed out after 1 s");
    pid_t hung_in = pid_of_worker_id(j->worker);
    job_free(j);

    jid_t noop = ENQ(.queue = q, .type = "test.noop");
    j = wait_state(noop.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    pid_t ran_in = pid_of_worker_id(j->worker);
    job_free(j);
    if (ran_in == hung_in)
        fail_msg("the noop ran in process %d, which should have been restarted", (int)ran_in);
    assert_true(worker_alive(w));
    stop_worker_ok(w, STOP_WAIT_MS);
    PASSED();
}

/* ---- 6. Cancel reaches a running handler by the next heartbeat ---- */

static void test_cancel_running(void **state)
{
    (void)state;
    const char *q = test_queue_name("cancel");
    worker_t *w = START_WORKER(q, 1, 2, "--lease", "3s");
    jid_t id = ENQ(.queue = q, .type = "test.sleep", .payload = "{\"ms\":60000}");
    expect_state(id.s, JOB_STATE_ACTIVE);
    job_state_t after = JOB_STATE_COUNT;
    int err = broker_cancel(B, id.s, &after);
    if (err)
        fail_msg("broker_cancel: %s", broker_errmsg(B));
    assert_int_equal(after, JOB_STATE_ACTIVE);
    /* heartbeats come every second: far less than the 60 s the job would sleep */
    job_t *j = wait_state(id.s, JOB_STATE_CANCELED, 15000);
    assert_true(j->nerrors >= 1);
    assert_job_error_contains(j, j->nerrors - 1, "canceled after");
    job_free(j);
    stop_worker_ok(w, STOP_WAIT_MS);
    PASSED();
}

/* ---- 7. SIGTERM: running jobs finish within the grace, or go back unrun ---- */

/* A job is active in Redis the moment it is reserved, a moment before its worker
 * process has taken it in (its slot in the table the supervisor reads, a handler
 * thread). Signals sent in that moment meet a job the process does not hold yet;
 * the tests below are about jobs being run, so they let that moment pass. */
static void let_jobs_start(void)
{
    hp_sleep_ms(100);
}

static void wait_all_active(const jid_t *ids, int n)
{
    for (int i = 0; i < n; i++)
        expect_state(ids[i].s, JOB_STATE_ACTIVE);
    let_jobs_start();
}

static void test_sigterm_grace(void **state)
{
    (void)state;
    const char *q = test_queue_name("grace");
    worker_t *w = START_WORKER(q, 1, 4, "--grace", "10s", "--lease", "5s");
    jid_t ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = ENQ(.queue = q, .type = "test.sleep", .payload = "{\"ms\":1500}");
    wait_all_active(ids, 4);
    stop_worker_ok(w, 30000);
    for (int i = 0; i < 4; i++) {
        job_t *j = get_job(ids[i].s);
        if (j->state != JOB_STATE_SUCCEEDED || j->attempts != 1) {
            show_job("after a graceful stop", j);
            fail_msg("job %d should have finished within the grace period", i);
        }
        assert_string_equal(j->result, "{\"slept_ms\":1500}");
        job_free(j);
    }

    /* Past the grace: the jobs go back to waiting, the attempt not counted. */
    const char *q2 = test_queue_name("grace-over");
    w = START_WORKER(q2, 1, 4, "--grace", "1s", "--lease", "5s");
    jid_t long_ids[2];
    for (int i = 0; i < 2; i++)
        long_ids[i] = ENQ(.queue = q2, .type = "test.sleep", .payload = "{\"ms\":30000}");
    wait_all_active(long_ids, 2);
    stop_worker_ok(w, 10000); /* the jobs would take 30 s */
    for (int i = 0; i < 2; i++) {
        job_t *j = get_job(long_ids[i].s);
        if (j->state != JOB_STATE_WAITING || j->attempts != 0) {
            show_job("after the grace period", j);
            fail_msg("job %d should be waiting again with attempts 0", i);
        }
        job_free(j);
    }
    queue_stats_t st;
    assert_int_equal(broker_queue_stats(B, q2, &st), 0);
    assert_int_equal(st.counts[JOB_STATE_ACTIVE], 0);
    assert_int_equal(st.counts[JOB_STATE_WAITING], 2);
    assert_int_equal(st.failed_total, 0);
    PASSED();
}

/* --plugins may name a directory: every .so in it is loaded. */
static void test_plugin_directory(void **state)
{
    (void)state;
    const char *q = test_queue_name("plugdir");
    char dir[] = "/tmp/hopper-test-plugins-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char link_path[256];
    snprintf(link_path, sizeof(link_path), "%s/testhandlers.so", dir);
    assert_int_equal(symlink(TESTHANDLERS, link_path), 0);
    const char *args[] = {"--queues", q,           "--plugins", dir, "--processes",
                          "1",        "--threads", "1",         NULL};
    worker_t *w = worker_spawn(q, args, NULL);
    worker_wait_serving(w, 1);
    jid_t id = ENQ(.queue = q, .type = "test.noop");
    job_free(wait_state(id.s, JOB_STATE_SUCCEEDED, WAIT_MS));
    stop_worker_ok(w, 10000);
    unlink(link_path);
    rmdir(dir);
    PASSED();
}

/* The worker's config can put a type in FORK isolation the plugin did not ask for. */
static void test_fork_types_from_config(void **state)
{
    (void)state;
    const char *q = test_queue_name("forkcfg");
    worker_t *w = START_WORKER(q, 1, 2, "--fork-types", "test.crash", "--fork-cpu", "5s");
    jid_t crash = ENQ(.queue = q, .type = "test.crash", .max_attempts = 1);
    job_t *j = wait_state(crash.s, JOB_STATE_DEAD, WAIT_MS);
    job_error_contains_at(j, 0, "job process crashed", __LINE__);
    job_free(j);
    jid_t ok = ENQ(.queue = q, .type = "test.noop");
    job_free(wait_state(ok.s, JOB_STATE_SUCCEEDED, WAIT_MS));
    char *log = worker_log(w);
    bool restarted = contains(log, "restarting");
    free(log);
    assert_false(restarted); /* only the job's own process died */
    stop_worker_ok(w, 10000);
    const char *args[] = {"--queues", q, "--plugins", TESTHANDLERS, "--fork-types", "nope", NULL};
    w = worker_spawn(q, args, NULL);
    assert_int_equal(worker_wait_exit(w, 10000), 2);
    PASSED();
}

/* Every option can come from HOPPER_<NAME>; flags win over the environment. */
static void test_config_from_environment(void **state)
{
    (void)state;
    const char *q = test_queue_name("env");
    char queues[128], plugins[512];
    snprintf(queues, sizeof(queues), "HOPPER_QUEUES=%s", q);
    snprintf(plugins, sizeof(plugins), "HOPPER_PLUGINS=%s", TESTHANDLERS);
    const char *env[] = {queues,
                         plugins,
                         "HOPPER_PROCESSES=1",
                         "HOPPER_THREADS=3",
                         "HOPPER_PLUGIN_CONFIG={\"testhandlers\":{\"greeting\":\"env\"}}",
                         NULL};
    const char *args[] = {"--threads", "2", NULL}; /* beats HOPPER_THREADS */
    worker_t *w = worker_spawn(q, args, env);
    worker_wait_serving(w, 1);
    char *log = worker_log(w);
    bool two = contains(log, "with 2 thread(s)");
    free(log);
    assert_true(two);
    jid_t id = ENQ(.queue = q, .type = "test.config");
    job_t *j = wait_state(id.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    assert_string_equal(j->result, "{\"greeting\":\"env\"}");
    job_free(j);
    stop_worker_ok(w, 10000);
    /* A bad value names the variable. */
    const char *bad_env[] = {queues, plugins, "HOPPER_THREADS=lots", NULL};
    w = worker_spawn(q, (const char *const[]){NULL}, bad_env);
    assert_int_equal(worker_wait_exit(w, 10000), 2);
    log = slurp(w->log);
    bool named = contains(log, "HOPPER_THREADS");
    free(log);
    assert_true(named);
    PASSED();
}

/* ---- SIGTSTP quiets; a second SIGINT forces ---- */

static void test_quiet_then_stop(void **state)
{
    (void)state;
    const char *q = test_queue_name("quiet");
    worker_t *w = START_WORKER(q, 1, 2, "--lease", "30s");
    assert_int_equal(kill(w->pid, SIGTSTP), 0);
    for (int i = 0; i < 200; i++) {
        char *log = worker_log(w);
        bool heard = contains(log, "quiet");
        free(log);
        if (heard)
            break;
        hp_sleep_ms(10);
    }
    hp_sleep_ms(300); /* the process has had time to hear it */
    jid_t id = ENQ(.queue = q, .type = "test.noop");
    hp_sleep_ms(1500);
    job_t *j = get_job(id.s);
    if (j->state != JOB_STATE_WAITING) {
        show_job("a quiet worker took a job", j);
        fail_msg("quiet: expected the job to stay waiting");
    }
    job_free(j);
    stop_worker_ok(w, 10000);
    PASSED();
}

static void test_second_sigint_forces(void **state)
{
    (void)state;
    const char *q = test_queue_name("force");
    worker_t *w = START_WORKER(q, 1, 2, "--grace", "60s");
    jid_t ids[2];
    for (int i = 0; i < 2; i++)
        ids[i] = ENQ(.queue = q, .type = "test.sleep", .payload = "{\"ms\":60000}");
    wait_all_active(ids, 2);
    assert_int_equal(kill(w->pid, SIGINT), 0); /* graceful: would wait 60 s */
    hp_sleep_ms(300);
    assert_true(worker_alive(w));
    int64_t t0 = hp_mono_ms();
    assert_int_equal(kill(w->pid, SIGINT), 0); /* forced */
    int status = worker_wait_exit(w, 10000);
    assert_int_equal(status, 0);
    assert_true(hp_mono_ms() - t0 < 10000);
    for (int i = 0; i < 2; i++) { /* given back unrun, not failed, not stuck active */
        job_t *j = get_job(ids[i].s);
        if (j->state != JOB_STATE_WAITING || j->attempts != 0 || j->nerrors != 0) {
            show_job("after a forced stop", j);
            fail_msg("job %d should be waiting again with attempts 0", i);
        }
        job_free(j);
    }
    PASSED();
}

/* ---- 8. SIGKILL: of one worker process, and of the whole worker ---- */

static void test_sigkill_process(void **state)
{
    (void)state;
    const char *q = test_queue_name("kill9");
    worker_t *w = START_WORKER(q, 2, 2, "--lease", "5s");
    jid_t id = ENQ(.queue = q, .type = "test.sleep", .payload = "{\"ms\":500}", .max_attempts = 3,
                   .backoff = {.kind = BACKOFF_FIXED, .base_ms = 100});
    job_t *j = wait_state(id.s, JOB_STATE_ACTIVE, WAIT_MS);
    pid_t victim = pid_of_worker_id(j->worker);
    job_free(j);
    let_jobs_start();
    assert_true(victim > 0);
    assert_int_not_equal(victim, w->pid); /* a worker process, not the supervisor */
    assert_int_equal(parent_of(victim), w->pid);
    assert_int_equal(kill(victim, SIGKILL), 0);

    j = wait_state(id.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    if (j->attempts != 2 || j->nerrors != 1)
        show_job("job", j);
    assert_int_equal(j->attempts, 2);
    assert_int_equal(j->nerrors, 1);
    assert_job_error_contains(j, 0, "signal 9");
    assert_int_not_equal(pid_of_worker_id(j->worker), victim);
    job_free(j);
    assert_true(worker_alive(w));
    stop_worker_ok(w, STOP_WAIT_MS);
    PASSED();
}

static void test_sigkill_whole_worker(void **state)
{
    (void)state;
    const char *q = test_queue_name("kill9all");
    worker_t *w = START_WORKER(q, 1, 2, "--lease", "2s");
    jid_t id = ENQ(.queue = q, .type = "test.sleep", .payload = "{\"ms\":500}", .max_attempts = 3,
                   .backoff = {.kind = BACKOFF_FIXED, .base_ms = 100});
    expect_state(id.s, JOB_STATE_ACTIVE);
    let_jobs_start();
    worker_kill_all(w); /* supervisor and processes: nobody left to fail the job */
    job_t *j = get_job(id.s);
    assert_int_equal(j->state, JOB_STATE_ACTIVE);
    job_free(j);

    START_WORKER(q, 1, 2, "--lease", "2s");
    j = wait_state(id.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    if (j->attempts != 2 || j->nerrors != 1)
        show_job("job", j);
    assert_int_equal(j->attempts, 2);
    assert_int_equal(j->nerrors, 1);
    assert_job_error_contains(j, 0, "lease expired");
    job_free(j);
    PASSED();
}

/* ---- 9. A job type no plugin handles ---- */

static void test_unknown_type(void **state)
{
    (void)state;
    const char *q = test_queue_name("notype");
    worker_t *w = START_WORKER(q, 1, 2, "--lease", "5s");
    jid_t id = ENQ(.queue = q, .type = "no.such");
    job_t *j = wait_state(id.s, JOB_STATE_DEAD, WAIT_MS);
    assert_int_equal(j->attempts, 1);
    assert_int_equal(j->nerrors, 1);
    assert_string_equal(j->errors[0].message, "no handler for type 'no.such'");
    job_free(j);
    stop_worker_ok(w, STOP_WAIT_MS);
    PASSED();
}

/* ---- 10. Refusing to start ---- */

/* Runs the worker with args; it must exit 2 without serving, saying `words` on stderr. */
static void expect_refused(const char *label, const char *const *args, const char *words)
{
    worker_t *w = worker_spawn(label, args, NULL);
    int status = worker_wait_exit(w, START_WAIT_MS);
    char *err = worker_log(w);
    if (status != 2 || !contains(err, words) || contains(err, ": serving ")) {
        fail_msg("%s: exit status %d (expected 2), stderr should mention \"%s\" and nothing "
                 "should have served",
                 label, status, words);
    }
    free(err);
}

static void test_bad_plugins(void **state)
{
    (void)state;
    const char *q = test_queue_name("badplugin");
    expect_refused("bad_abi",
                   (const char *const[]){"--queues", q, "--plugins", PLUGIN("bad_abi"),
                                         "--processes", "1", NULL},
                   "ABI");
    expect_refused("no_entry",
                   (const char *const[]){"--queues", q, "--plugins", PLUGIN("no_entry"),
                                         "--processes", "1", NULL},
                   "no entry point");
    expect_refused("dup_type",
                   (const char *const[]){"--queues", q, "--plugins",
                                         TESTHANDLERS "," PLUGIN("dup_type"), "--processes", "1",
                                         NULL},
                   "already registered");
    expect_refused("missing",
                   (const char *const[]){"--queues", q, "--plugins", PLUGIN("does_not_exist"),
                                         "--processes", "1", NULL},
                   PLUGIN("does_not_exist"));
    expect_refused("no queues",
                   (const char *const[]){"--plugins", TESTHANDLERS, "--processes", "1", NULL},
                   "queues");
    PASSED();
}

/* ---- 11. The worker registry ---- */

static void test_registry(void **state)
{
    (void)state;
    const char *q = test_queue_name("registry");
    worker_t *w = START_WORKER(q, 2, 2, "--lease", "5s");
    long pids[8];
    wait_registry(q, 2, pids, 8);
    assert_int_not_equal(pids[0], pids[1]);
    for (int i = 0; i < 2; i++) {
        assert_int_not_equal(pids[i], w->pid);
        assert_int_equal(parent_of((pid_t)pids[i]), w->pid);
    }
    /* Operators see the same through `hopper workers`. */
    cli_result_t *cli = hp_malloc(sizeof(*cli));
    test_cli_run(cli, redis.url, (const char *const[]){"workers", NULL});
    assert_int_equal(cli->status, 0);
    for (int i = 0; i < 2; i++) {
        char pid_text[32];
        snprintf(pid_text, sizeof(pid_text), "pid %ld", pids[i]);
        if (!strstr(cli->out, pid_text))
            fail_msg("hopper workers does not show %s:\n%s", pid_text, cli->out);
    }
    assert_non_null(strstr(cli->out, q));
    hp_free(cli);
    stop_worker_ok(w, STOP_WAIT_MS);
    size_t left = registry_pids(q, pids, 8);
    if (left)
        fail_msg("%zu registry entries left after a graceful stop", left);
    PASSED();
}

/* ---- 11b. Operators through the HTTP API: /v1/workers ---- */

/* One request to the API server, on a connection of its own; returns the status
 * and, in *body (may be NULL), the answer as JSON (NULL if it is not JSON). */
static int api(const char *method, const char *path, json_t **body)
{
    int fd = test_connect_local(api_port, 10);
    assert_true(fd >= 0);
    char head[512];
    int n =
        snprintf(head, sizeof(head),
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", method, path);
    assert_true(n > 0 && n < (int)sizeof(head));
    assert_int_equal(send(fd, head, (size_t)n, MSG_NOSIGNAL), n);
    char *buf = test_read_to_close(fd, NULL);
    close(fd);
    assert_non_null(buf); /* NULL: the server did not answer in time */
    int status = 0;
    assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &status), 1);
    const char *end = strstr(buf, "\r\n\r\n");
    assert_non_null(end);
    if (body)
        *body = json_loads(end + 4, 0, NULL);
    free(buf);
    return status;
}

/* GET path: must answer `want`; the body (json_decref it). */
static json_t *api_expect(const char *method, const char *path, int want)
{
    json_t *body = NULL;
    int status = api(method, path, &body);
    if (status != want) {
        char *text = body ? json_dumps(body, 0) : NULL;
        fail_msg("%s %s: %d, expected %d: %s", method, path, status, want, text ? text : "");
    }
    return body;
}

static long jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("\"%s\" is not an integer", key);
    return (long)json_integer_value(v);
}

static const char *jstr(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    if (!v)
        fail_msg("\"%s\" is not a string", key);
    return v;
}

static bool serves_queue(json_t *w, const char *queue)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(w, "queues"), i, v)
    {
        if (strcmp(json_string_value(v), queue) == 0)
            return true;
    }
    return false;
}

/* The entries of GET /v1/workers that serve `queue`, as a JSON array (decref). */
static json_t *api_workers_of(const char *queue)
{
    json_t *all = api_expect("GET", "/v1/workers", 200);
    json_t *mine = json_array();
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(all, "workers"), i, w)
    {
        if (serves_queue(w, queue))
            json_array_append(mine, w);
    }
    json_decref(all);
    return mine;
}

/* Polls GET /v1/workers/{id} until its state (NULL: any), running and held (-1:
 * any) are as given; returns that answer. */
static json_t *wait_worker(const char *id, const char *state, long running, long held)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/workers/%s", id);
    int64_t end = hp_mono_ms() + WAIT_MS;
    for (;;) {
        json_t *w = api_expect("GET", path, 200);
        if ((!state || strcmp(jstr(w, "state"), state) == 0) &&
            (running < 0 || jint(w, "running") == running) && (held < 0 || jint(w, "held") == held))
            return w;
        if (hp_mono_ms() > end) {
            char *text = json_dumps(w, 0);
            fail_msg("worker %s never showed state %s, running %ld, held %ld; last: %s", id,
                     state ? state : "*", running, held, text);
        }
        json_decref(w);
        hp_sleep_ms(20);
    }
}

/* The one worker process serving `queue`: its id, once it is registered. */
static void only_worker_id(const char *queue, char id[WORKER_ID_MAX])
{
    int64_t end = hp_mono_ms() + WAIT_MS;
    for (;;) {
        json_t *mine = api_workers_of(queue);
        size_t n = json_array_size(mine);
        if (n == 1)
            snprintf(id, WORKER_ID_MAX, "%s", jstr(json_array_get(mine, 0), "id"));
        json_decref(mine);
        if (n == 1)
            return;
        if (hp_mono_ms() > end)
            fail_msg("%zu workers registered for %s, expected 1", n, queue);
        hp_sleep_ms(20);
    }
}

#define PAGES_THREADS  6
#define PAGES_PREFETCH 4
#define PAGES_JOBS     (PAGES_THREADS * PAGES_PREFETCH)

/* A worker busy on all its threads shows them running; the jobs it holds page
 * through GET /v1/workers/{id}, disjoint and complete; the list shows the first 20. */
static void test_api_worker_jobs(void **state)
{
    (void)state;
    const char *q = test_queue_name("apipages");
    worker_t *w =
        START_WORKER(q, 1, PAGES_THREADS, "--prefetch", "4", "--lease", "30s", "--grace", "1s");
    jid_t ids[PAGES_JOBS];
    for (int i = 0; i < PAGES_JOBS; i++)
        ids[i] = ENQ(.queue = q, .type = "test.sleep", .payload = "{\"ms\":60000}");
    char wid[WORKER_ID_MAX];
    only_worker_id(q, wid);
    json_t *one = wait_worker(wid, "running", PAGES_THREADS, PAGES_JOBS);
    assert_int_equal(jint(one, "pid"), pid_of_worker_id(wid));
    assert_int_equal(json_array_size(json_object_get(one, "jobs")), PAGES_JOBS); /* limit 50 */
    json_decref(one);

    /* Pages of 7: 7, 7, 7, 3, then none; running ones first. */
    char seen[PAGES_JOBS][JOB_ID_MAX];
    size_t nseen = 0;
    for (int offset = 0; offset <= PAGES_JOBS; offset += 7) {
        char path[256];
        snprintf(path, sizeof(path), "/v1/workers/%s?offset=%d&limit=7", wid, offset);
        json_t *page = api_expect("GET", path, 200);
        assert_int_equal(jint(page, "running"), PAGES_THREADS);
        assert_int_equal(jint(page, "held"), PAGES_JOBS);
        json_t *jobs = json_object_get(page, "jobs");
        size_t want = PAGES_JOBS - offset < 7 ? (size_t)(PAGES_JOBS - offset) : 7;
        assert_int_equal(json_array_size(jobs), want);
        size_t i;
        json_t *j;
        json_array_foreach(jobs, i, j)
        {
            const char *id = jstr(j, "id");
            assert_string_equal(jstr(j, "type"), "test.sleep");
            assert_true(json_is_string(json_object_get(j, "started_at")));
            assert_int_equal(json_is_true(json_object_get(j, "running")), nseen < PAGES_THREADS);
            for (size_t k = 0; k < nseen; k++)
                if (strcmp(seen[k], id) == 0)
                    fail_msg("job %s is on two pages", id);
            snprintf(seen[nseen++], JOB_ID_MAX, "%s", id);
        }
        json_decref(page);
    }
    assert_int_equal(nseen, PAGES_JOBS);
    for (int i = 0; i < PAGES_JOBS; i++) { /* each job we enqueued, and held by this worker */
        bool listed = false;
        for (size_t k = 0; k < nseen && !listed; k++)
            listed = strcmp(seen[k], ids[i].s) == 0;
        if (!listed)
            fail_msg("job %s is on no page", ids[i].s);
        job_t *j = get_job(ids[i].s);
        assert_int_equal(j->state, JOB_STATE_ACTIVE);
        assert_string_equal(j->worker, wid);
        job_free(j);
    }

    /* The list: the same worker, its first 20 jobs in the same order. */
    json_t *mine = api_workers_of(q);
    assert_int_equal(json_array_size(mine), 1);
    json_t *listed = json_array_get(mine, 0);
    assert_string_equal(jstr(listed, "id"), wid);
    assert_string_equal(jstr(listed, "state"), "running");
    assert_int_equal(jint(listed, "running"), PAGES_THREADS);
    assert_int_equal(jint(listed, "held"), PAGES_JOBS);
    json_t *jobs = json_object_get(listed, "jobs");
    assert_int_equal(json_array_size(jobs), 20);
    for (size_t i = 0; i < 20; i++)
        assert_string_equal(jstr(json_array_get(jobs, i), "id"), seen[i]);
    json_decref(mine);

    /* Bad input. */
    static const char *const bad[] = {"limit=0", "limit=501", "limit=ten",
                                      "limit=",  "offset=-1", "offset=1x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "/v1/workers/%s?%s", wid, bad[i]);
        json_t *p = api_expect("GET", path, 400);
        assert_int_equal(jint(p, "status"), 400);
        json_decref(p);
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/workers/%s?limit=500", wid);
    json_decref(api_expect("GET", path, 200));
    json_decref(api_expect("GET", "/v1/workers/no-such-host:1", 404));
    json_decref(api_expect("GET", "/v1/workers/bad%7Cid", 404));
    json_decref(api_expect("POST", "/v1/workers/no-such-host:1/quiet", 404));
    json_decref(api_expect("POST", "/v1/workers/no-such-host:1/stop", 404));

    stop_worker_ok(w, STOP_WAIT_MS); /* the grace is 1 s: they go back */
    for (int i = 0; i < PAGES_JOBS; i++)
        expect_state(ids[i].s, JOB_STATE_WAITING);
    snprintf(path, sizeof(path), "/v1/workers/%s", wid);
    json_decref(api_expect("GET", path, 404));
    PASSED();
}

/* quiet: the running jobs finish, the one leased but not started goes back, no new
 * job is taken, and the process stays, registered as "quiet", not restarted. */
static void test_api_quiet(void **state)
{
    (void)state;
    const char *q = test_queue_name("apiquiet");
    worker_t *w = START_WORKER(q, 1, 2, "--prefetch", "2", "--lease", "30s");
    jid_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = ENQ(.queue = q, .type = "test.sleep", .payload = "{\"ms\":3000}");
    char wid[WORKER_ID_MAX];
    only_worker_id(q, wid);
    json_t *before = wait_worker(wid, "running", 2, 3);
    json_t *third = json_array_get(json_object_get(before, "jobs"), 2);
    assert_false(json_is_true(json_object_get(third, "running")));
    char next_in_line[JOB_ID_MAX];
    snprintf(next_in_line, sizeof(next_in_line), "%s", jstr(third, "id"));
    json_decref(before);

    char path[256];
    snprintf(path, sizeof(path), "/v1/workers/%s/quiet", wid);
    json_t *ok = api_expect("POST", path, 202);
    assert_string_equal(jstr(ok, "id"), wid);
    assert_string_equal(jstr(ok, "command"), "quiet");
    json_decref(ok);
    json_decref(wait_worker(wid, "quiet", -1, -1));

    /* The one not started is given back unrun; the running ones finish. */
    job_t *j = wait_state(next_in_line, JOB_STATE_WAITING, WAIT_MS);
    assert_int_equal(j->attempts, 0);
    assert_int_equal(j->nerrors, 0);
    job_free(j);
    for (int i = 0; i < 3; i++)
        if (strcmp(ids[i].s, next_in_line) != 0)
            expect_state(ids[i].s, JOB_STATE_SUCCEEDED);
    json_decref(wait_worker(wid, "quiet", 0, 0));

    /* Idle threads, waiting jobs: a worker that takes jobs would have them in
     * milliseconds. This one has 1.5 s and must not. */
    jid_t later = ENQ(.queue = q, .type = "test.noop");
    hp_sleep_ms(1500);
    j = get_job(later.s);
    if (j->state != JOB_STATE_WAITING)
        show_job("a quiet worker took a job", j);
    assert_int_equal(j->state, JOB_STATE_WAITING);
    job_free(j);
    j = get_job(next_in_line);
    assert_int_equal(j->state, JOB_STATE_WAITING);
    job_free(j);
    /* Still there, the same process, quiet: the supervisor left it alone. */
    json_t *after = wait_worker(wid, "quiet", 0, 0);
    assert_int_equal(jint(after, "pid"), pid_of_worker_id(wid));
    json_decref(after);
    assert_true(worker_alive(w));
    char *log = worker_log(w);
    assert_int_equal(count_substr(log, ": serving "), 1);
    assert_true(contains(log, "quiet (asked by an operator)"));
    assert_false(contains(log, "restarting"));
    free(log);
    json_decref(api_expect("POST", path, 202));  /* again: no harm */
    cli_result_t *cli = hp_malloc(sizeof(*cli)); /* operators see it in `hopper workers` */
    test_cli_run(cli, redis.url, (const char *const[]){"workers", NULL});
    assert_int_equal(cli->status, 0);
    if (!strstr(cli->out, wid) || !strstr(cli->out, "(quiet)"))
        fail_msg("hopper workers does not show %s as quiet:\n%s", wid, cli->out);
    hp_free(cli);

    stop_worker_ok(w, STOP_WAIT_MS);
    expect_state(later.s, JOB_STATE_WAITING);
    PASSED();
}

/* The same from the command line: `hopper workers quiet|stop ID`; the quiet comes
 * while every place of the process is taken (its fetch loop waits for a free one),
 * and the job enqueued after it stays waiting when places free up, and when the
 * quiet process dies and another is started in its place. */
static void test_cli_quiet_stop(void **state)
{
    (void)state;
    const char *q = test_queue_name("cliquiet");
    worker_t *w = START_WORKER(q, 1, 2, "--prefetch", "1", "--lease", "30s");
    jid_t busy[2];
    for (int i = 0; i < 2; i++)
        busy[i] = ENQ(.queue = q, .type = "test.sleep", .payload = "{\"ms\":2500}");
    char wid[WORKER_ID_MAX];
    only_worker_id(q, wid);
    json_decref(wait_worker(wid, "running", 2, 2));
    cli_result_t *cli = hp_malloc(sizeof(*cli));
    test_cli_run(cli, redis.url, (const char *const[]){"workers", "quiet", wid, NULL});
    if (cli->status != 0 || !strstr(cli->out, "told to quiet"))
        fail_msg("hopper workers quiet %s: status %d\n%s%s", wid, cli->status, cli->out, cli->err);
    json_decref(wait_worker(wid, "quiet", -1, -1));
    jid_t later = ENQ(.queue = q, .type = "test.noop");
    for (int i = 0; i < 2; i++)
        expect_state(busy[i].s, JOB_STATE_SUCCEEDED); /* waits for it */
    hp_sleep_ms(1500); /* places are free: a worker that takes jobs would have it */
    expect_state(later.s, JOB_STATE_WAITING);

    /* The quiet process dies: the one restarted in its place is quiet too. */
    pid_t victim = pid_of_worker_id(wid);
    assert_int_equal(kill(victim, SIGKILL), 0);
    char again[WORKER_ID_MAX] = "";
    int64_t end = hp_mono_ms() + WAIT_MS;
    while (!again[0] || strcmp(again, wid) == 0) {
        if (hp_mono_ms() > end)
            fail_msg("no process came in the place of %s", wid);
        hp_sleep_ms(50);
        json_t *mine = api_workers_of(q); /* the dead one may linger in the list */
        size_t i;
        json_t *e;
        json_array_foreach(mine, i, e)
        {
            if (strcmp(jstr(e, "id"), wid) != 0)
                snprintf(again, sizeof(again), "%s", jstr(e, "id"));
        }
        json_decref(mine);
    }
    json_decref(wait_worker(again, "quiet", -1, -1));
    hp_sleep_ms(1500);
    expect_state(later.s, JOB_STATE_WAITING);
    snprintf(wid, sizeof(wid), "%s", again);

    test_cli_run(cli, redis.url, (const char *const[]){"workers", "stop", "nosuch:1", NULL});
    assert_int_equal(cli->status, 3); /* not found */
    test_cli_run(cli, redis.url, (const char *const[]){"workers", "stop", wid, NULL});
    assert_int_equal(cli->status, 0);
    int status = worker_wait_exit(w, 30000);
    if (status != 0)
        fail_msg("worker exited with status %d after hopper workers stop, expected 0", status);
    char *log = worker_log(w);
    assert_true(contains(log, "told to stop by an operator"));
    free(log);
    expect_state(later.s, JOB_STATE_WAITING);
    hp_free(cli);
    PASSED();
}

/* stop, sent to one process: the whole worker stops as on SIGTERM. Jobs finish in
 * the grace or go back unrun; nothing is restarted; the registry empties. */
static void test_api_stop(void **state)
{
    (void)state;
    const char *q = test_queue_name("apistop");
    worker_t *w = START_WORKER(q, 2, 2, "--prefetch", "1", "--lease", "30s", "--grace", "10s");
    jid_t longer = ENQ(.queue = q, .type = "test.sleep", .payload = "{\"ms\":60000}");
    jid_t ids[5];
    for (int i = 0; i < 5; i++) /* 3 run with `longer`, 2 wait */
        ids[i] = ENQ(.queue = q, .type = "test.sleep", .payload = "{\"ms\":4000}");
    job_t *j = wait_state(longer.s, JOB_STATE_ACTIVE, WAIT_MS);
    char holder[WORKER_ID_MAX];
    snprintf(holder, sizeof(holder), "%s", j->worker);
    job_free(j);
    /* Both processes registered and running two each. */
    char other[WORKER_ID_MAX] = "";
    int64_t end = hp_mono_ms() + WAIT_MS;
    for (;;) {
        json_t *mine = api_workers_of(q);
        long running = 0;
        size_t i;
        json_t *e;
        json_array_foreach(mine, i, e)
        {
            running += jint(e, "running");
            if (strcmp(jstr(e, "id"), holder) != 0)
                snprintf(other, sizeof(other), "%s", jstr(e, "id"));
        }
        size_t n = json_array_size(mine);
        json_decref(mine);
        if (n == 2 && running == 4 && other[0])
            break;
        if (hp_mono_ms() > end)
            fail_msg("%zu workers, %ld jobs running for %s; expected 2 and 4", n, running, q);
        hp_sleep_ms(20);
    }
    pid_t pids[2] = {pid_of_worker_id(holder), pid_of_worker_id(other)};

    /* The stop goes to the process that does not hold the long job. */
    char path[256];
    snprintf(path, sizeof(path), "/v1/workers/%s/stop", other);
    json_t *ok = api_expect("POST", path, 202);
    assert_string_equal(jstr(ok, "command"), "stop");
    json_decref(ok);
    json_decref(wait_worker(holder, "stopping", -1, -1)); /* it runs the long job in the grace */

    int status = worker_wait_exit(w, 60000);
    if (status != 0)
        fail_msg("worker exited with status %d after an API stop, expected 0", status);
    for (int i = 0; i < 2; i++)
        assert_true(kill(pids[i], 0) == -1 && errno == ESRCH);
    j = get_job(longer.s); /* ran past the grace: back, unrun */
    if (j->state != JOB_STATE_WAITING || j->nerrors != 0)
        show_job("the long job", j);
    assert_int_equal(j->state, JOB_STATE_WAITING);
    assert_int_equal(j->nerrors, 0);
    job_free(j);
    int succeeded = 0;
    for (int i = 0; i < 5; i++) { /* finished in the grace, or never started */
        j = get_job(ids[i].s);
        if ((j->state != JOB_STATE_SUCCEEDED && j->state != JOB_STATE_WAITING) || j->nerrors)
            show_job("a short job", j);
        assert_true(j->state == JOB_STATE_SUCCEEDED || j->state == JOB_STATE_WAITING);
        assert_int_equal(j->nerrors, 0);
        succeeded += j->state == JOB_STATE_SUCCEEDED;
        job_free(j);
    }
    assert_true(succeeded >= 3); /* the three running ones had the grace to finish */
    json_t *mine = api_workers_of(q);
    assert_int_equal(json_array_size(mine), 0);
    json_decref(mine);
    snprintf(path, sizeof(path), "/v1/workers/%s", holder);
    json_decref(api_expect("GET", path, 404));
    char *log = worker_log(w);
    assert_true(contains(log, "stop (asked by an operator)"));
    assert_true(contains(log, "told to stop by an operator"));
    assert_int_equal(count_substr(log, ": serving "), 2);
    assert_false(contains(log, "restarting"));
    free(log);
    PASSED();
}

/* ---- 12. Fork isolation: a job's crash is its own ---- */

static void test_fork_isolation(void **state)
{
    (void)state;
    const char *q = test_queue_name("fork");
    worker_t *w = START_WORKER(q, 1, 2, "--lease", "5s");
    long before[4], after[4];
    wait_registry(q, 1, before, 4);

    const char *payload = "{\"in a child\": [1, 2.0, \"\\u00e9\"]}";
    jid_t echo = ENQ(.queue = q, .type = "test.fork.echo", .payload = payload);
    job_t *j = wait_state(echo.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    assert_non_null(j->result);
    assert_string_equal(j->result, payload);
    job_free(j);

    jid_t crash = ENQ(.queue = q, .type = "test.fork.crash", .max_attempts = 1);
    j = wait_state(crash.s, JOB_STATE_DEAD, WAIT_MS);
    assert_int_equal(j->attempts, 1);
    char *log = worker_log(w);
    if (SANITIZED && contains(log, "runtime error: store to null pointer")) {
        assert_job_error_contains(j, 0, "job process exited with status 1");
    } else {
        assert_job_error_contains(j, 0, "job process crashed");
        assert_job_error_contains(j, 0, "SIGSEGV");
    }
    free(log);
    assert_int_equal(pid_of_worker_id(j->worker), before[0]);
    job_free(j);

    /* the worker process was not restarted: same pid, and it runs the next job */
    jid_t noop = ENQ(.queue = q, .type = "test.noop");
    j = wait_state(noop.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    assert_int_equal(pid_of_worker_id(j->worker), before[0]);
    job_free(j);
    assert_int_equal(registry_pids(q, after, 4), 1);
    assert_int_equal(after[0], before[0]);
    log = worker_log(w);
    assert_int_equal(count_substr(log, ": serving "), 1);
    assert_false(contains(log, "restarting"));
    free(log);
    stop_worker_ok(w, STOP_WAIT_MS);
    PASSED();
}

/* ---- 13. Plugins' shutdown hooks run when a process stops gracefully ---- */

static size_t count_lines_equal(const char *text, const char *line, size_t *others)
{
    size_t n = 0, len = strlen(line);
    *others = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (l == len && strncmp(p, line, len) == 0)
            n++;
        else if (l > 0)
            (*others)++;
        p += l + (nl ? 1 : 0);
    }
    return n;
}

/* Plugins read and write the blob store through the host (ABI 1.1). */
static void test_blobs(void **state)
{
    (void)state;
    char dir[] = "/tmp/hopper-test-blobs-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char err[256];
    blobstore_t *bs = blobstore_open(dir, err, sizeof(err));
    assert_non_null(bs);
    blob_writer_t *bw = NULL;
    assert_int_equal(blob_write_begin(bs, "text/plain", 1 << 20, &bw), 0);
    assert_int_equal(blob_write(bw, "hello, blob", 11), 0);
    blob_info_t in;
    assert_int_equal(blob_write_commit(bw, &in), 0);

    const char *q = test_queue_name("blobs");
    worker_t *w = START_WORKER(q, 1, 2, "--blob-dir", dir);
    char payload[128];
    snprintf(payload, sizeof(payload), "{\"in\":\"%s\"}", in.id);
    jid_t ok = ENQ(.queue = q, .type = "test.blob", .payload = payload);
    jid_t missing = ENQ(.queue = q, .type = "test.blob",
                        .payload = "{\"in\":\"0000000000000000000000000000000000000000000000000000"
                                   "000000000000\"}");
    jid_t traversal =
        ENQ(.queue = q, .type = "test.blob", .payload = "{\"in\":\"../../etc/passwd\"}");
    job_t *j = wait_state(ok.s, JOB_STATE_SUCCEEDED, WAIT_MS);
    json_t *result = json_loads(j->result, 0, NULL);
    const char *out = json_string_value(json_object_get(result, "out"));
    assert_non_null(out);
    assert_int_equal(json_integer_value(json_object_get(result, "size")), 11);
    int fd = -1;
    blob_info_t info;
    assert_int_equal(blob_open_read(bs, out, &fd, &info), 0);
    char back[32] = "";
    assert_int_equal(read(fd, back, sizeof(back)), 11);
    close(fd);
    assert_memory_equal(back, "bolb ,olleh", 11);
    assert_string_equal(info.content_type, "text/plain");
    json_decref(result);
    job_free(j);
    j = wait_state(missing.s, JOB_STATE_DEAD, WAIT_MS);
    job_free(j);
    j = wait_state(traversal.s, JOB_STATE_DEAD, WAIT_MS);
    job_free(j);
    stop_worker_ok(w, STOP_WAIT_MS);
    blobstore_close(bs);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_shutdown_hook(void **state)
{
    (void)state;
    const char *q = test_queue_name("shutdown");
    char path[] = "/tmp/hopper-test-worker-shutdown-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char env[128];
    snprintf(env, sizeof(env), "HOPPER_TEST_SHUTDOWN_FILE=%s", path);
    worker_t *w = start_worker_env(q, 2, 2, (const char *const[]){"--lease", "5s", NULL},
                                   (const char *const[]){env, NULL});
    /* The supervisor loads and unloads the plugins once before it forks, to refuse a
     * bad one early; whatever that wrote is there before the processes serve. */
    char *text = slurp(path);
    size_t others = 0;
    size_t at_start = count_lines_equal(text, "shutdown", &others);
    free(text);
    stop_worker_ok(w, STOP_WAIT_MS);
    text = slurp(path);
    size_t at_end = count_lines_equal(text, "shutdown", &others);
    if (at_end - at_start != 2 || others) {
        fprintf(stderr, "shutdown file:\n%s\n", text);
        fail_msg("expected one \"shutdown\" line per worker process (2) after the stop, got "
                 "%zu (%zu before it)",
                 at_end - at_start, at_start);
    }
    free(text);
    unlink(path);
    PASSED();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_thousand_noops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_progress_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_retry_and_permanent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_and_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_spares_prefetched_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hang_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_grace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_types_from_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_from_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiet_then_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_sigint_forces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_whole_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_plugins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_worker_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_quiet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_quiet_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blobs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
