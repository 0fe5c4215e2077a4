/*
 * End to end: schedules fired by real `hopper server` processes on one private
 * redis-server, watched from outside through the broker API the way an operator
 * would see them: the jobs a schedule enqueued (each carries its schedule and tick),
 * the schedule's record and run history, and what the servers log.
 *
 * Covered: three servers firing a per-second schedule (one job per tick, no gaps),
 * a server killed across several ticks under misfire skip and once, schedules from
 * a config file across restarts (no duplicates, unchanged ones keep their next
 * fire, changed ones are updated, a bad one refuses the start), API changes taking
 * effect on another server without a restart, and the `hopper schedule` verbs.
 *
 * Each server runs in a process group of its own with PR_SET_PDEATHSIG, and the
 * teardown SIGKILLs whatever a test left running; when a test fails the teardown
 * prints the servers' logs. Nothing here asserts on speed (the machine may be a
 * loaded 2-core VM): waits poll with generous deadlines, and every count is read
 * from the tick numbers the jobs carry, not from the clock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "broker/broker.h"
#include "scheduler/scheduler.h"
#include "tests/support/test_cli.h"
#include "tests/support/test_redis.h"

#define START_WAIT_MS 20000 /* how long a server may take to say "serving" */
#define STOP_WAIT_MS  20000 /* how long a graceful stop may take */
#define FIRE_WAIT_MS  20000 /* how long a due tick may take to show up as a job */
#define MAX_SERVERS   8
#define MAX_TICKS     4096

extern char **environ;

static test_redis_t redis;
static broker_t *B;

/* ---- Servers ---- */

typedef struct server_s {
    pid_t pid;
    int port;
    bool reaped;
    int status; /* exit status, or 128 + signal */
    char log[64];
} server_t;

static server_t servers[MAX_SERVERS];
static int nservers;

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
        if (cap - n < 1024)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static size_t count_substr(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static bool server_try_reap(server_t *s)
{
    if (s->reaped)
        return true;
    int st;
    if (waitpid(s->pid, &st, WNOHANG) != s->pid)
        return false;
    s->reaped = true;
    s->status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
    return true;
}

/* Starts HOPPER_BIN server --listen 127.0.0.1:0 --threads 1 --broker-threads 1
 * ARGS... with our Redis, `env` ("NAME=value", NULL-terminated; may be NULL) and
 * stderr in a temporary file; does not wait. */
static server_t *server_spawn(const char *const *args, const char *const *env)
{
    assert_true(nservers < MAX_SERVERS);
    server_t *s = &servers[nservers];
    memset(s, 0, sizeof(*s));
    snprintf(s->log, sizeof(s->log), "/tmp/hopper-test-sched-XXXXXX");
    int errfd = mkstemp(s->log);
    assert_true(errfd >= 0);
    const char *argv[48] = {
        HOPPER_BIN, "server",           "--listen", "127.0.0.1:0",         "--threads",
        "1",        "--broker-threads", "1",        "--maintain-interval", "1s"};
    int argc = 10;
    for (int i = 0; args && args[i]; i++) {
        assert_true(argc < 46);
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    const char **envp = calloc(nenv + 8, sizeof(*envp));
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "HOPPER_", 7) != 0)
            envp[k++] = environ[i];
    char url[128];
    snprintf(url, sizeof(url), "HOPPER_REDIS_URL=%s", redis.url);
    envp[k++] = url;
    envp[k++] = "HOPPER_LOG_LEVEL=info";
    for (int i = 0; env && env[i] && k < nenv + 7; i++)
        envp[k++] = env[i];
    envp[k] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(errfd, 2);
        execve(HOPPER_BIN, (char *const *)argv, (char *const *)envp);
        dprintf(2, "test_schedules: cannot run %s: %s\n", HOPPER_BIN, strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    close(errfd);
    free(envp);
    s->pid = pid;
    nservers++;
    return s;
}

/* Waits for the "serving ... (port N)" line and reads the port. */
static void server_wait_serving(server_t *s)
{
    int64_t end = hp_mono_ms() + START_WAIT_MS;
    for (;;) {
        char *log = slurp(s->log);
        const char *at = strstr(log, "(port ");
        if (at)
            s->port = atoi(at + strlen("(port "));
        free(log);
        if (s->port > 0)
            return;
        if (server_try_reap(s))
            fail_msg("server exited with status %d before serving", s->status);
        if (hp_mono_ms() > end)
            fail_msg("server not serving after %d ms", START_WAIT_MS);
        hp_sleep_ms(20);
    }
}

static server_t *server_start(const char *const *args, const char *const *env)
{
    server_t *s = server_spawn(args, env);
    server_wait_serving(s);
    return s;
}

#define START_SERVER(...) server_start((const char *const[]){__VA_ARGS__, NULL}, NULL)

/* Sends `sig` and waits up to timeout_ms for the exit; returns the status or -1. */
static int server_signal_wait(server_t *s, int sig, int64_t timeout_ms)
{
    if (!s->reaped)
        kill(s->pid, sig);
    int64_t end = hp_mono_ms() + timeout_ms;
    while (!server_try_reap(s)) {
        if (hp_mono_ms() > end)
            return -1;
        hp_sleep_ms(10);
    }
    return s->status;
}

static void server_stop(server_t *s)
{
    int st = server_signal_wait(s, SIGTERM, STOP_WAIT_MS);
    if (st != 0)
        fail_msg("server: SIGTERM ended with status %d (-1: still running)", st);
}

static void server_crash(server_t *s)
{
    assert_int_equal(server_signal_wait(s, SIGKILL, STOP_WAIT_MS), 128 + SIGKILL);
}

/* ---- HTTP, over a plain socket ---- */

typedef struct http_res_s {
    int status;
    char body[65536];
} http_res_t;

/* One request with Connection: close; the body is read to EOF. */
static void http(const server_t *s, const char *method, const char *path, const char *body,
                 http_res_t *res)
{
    memset(res, 0, sizeof(*res));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char head[1024];
    size_t blen = body ? strlen(body) : 0;
    int hl = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      method, path, blen);
    assert_true(write(fd, head, (size_t)hl) == hl);
    if (blen)
        assert_true(write(fd, body, blen) == (ssize_t)blen);
    static char raw[sizeof(res->body) + 4096];
    size_t n = 0;
    ssize_t got;
    while (n < sizeof(raw) - 1 && (got = read(fd, raw + n, sizeof(raw) - 1 - n)) > 0)
        n += (size_t)got;
    raw[n] = '\0';
    close(fd);
    assert_true(sscanf(raw, "HTTP/1.1 %d", &res->status) == 1);
    const char *start = strstr(raw, "\r\n\r\n");
    snprintf(res->body, sizeof(res->body), "%s", start ? start + 4 : "");
}

static void http_ok(const server_t *s, const char *method, const char *path, const char *body,
                    int want, http_res_t *res)
{
    http(s, method, path, body, res);
    if (res->status != want)
        fail_msg("%s %s: status %d, expected %d: %s", method, path, res->status, want, res->body);
}

/* ---- What a schedule did ---- */

/* The ticks of the jobs in `queue` that `name` fired, sorted; every job in the
 * queue must come from `name`. Returns the count. Triggered jobs are counted in
 * *triggered (may be NULL) and left out of ticks. */
static size_t schedule_ticks(const char *queue, const char *name, int64_t *ticks, size_t *triggered)
{
    size_t n = 0, trig = 0;
    for (int st = 0; st < JOB_STATE_COUNT; st++) {
        char *cursor = NULL;
        do {
            job_list_t list = {0};
            assert_int_equal(broker_list(B, queue, (job_state_t)st, cursor, 1000, &list), 0);
            free(cursor);
            cursor = list.next_cursor ? strdup(list.next_cursor) : NULL;
            for (size_t i = 0; i < list.n; i++) {
                const job_t *j = list.jobs[i];
                if (!j->schedule || strcmp(j->schedule, name) != 0)
                    fail_msg("job %s in %s has schedule %s, expected %s", j->id, queue,
                             j->schedule ? j->schedule : "(none)", name);
                assert_true(j->schedule_tick_ms > 0);
                if (j->schedule_tick_ms % 1000 != 0) { /* a trigger carries "now" */
                    trig++;
                    continue;
                }
                assert_true(n < MAX_TICKS);
                ticks[n++] = j->schedule_tick_ms;
            }
            job_list_cleanup(&list);
        } while (cursor);
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: a few dozen */
        for (size_t k = i; k > 0 && ticks[k - 1] > ticks[k]; k--) {
            int64_t t = ticks[k];
            ticks[k] = ticks[k - 1];
            ticks[k - 1] = t;
        }
    if (triggered)
        *triggered = trig;
    return n;
}

/* Waits until `name` has fired at least `want` jobs (ticks) in `queue`. */
static size_t wait_ticks(const char *queue, const char *name, size_t want, int64_t *ticks)
{
    int64_t end = hp_mono_ms() + FIRE_WAIT_MS + (int64_t)want * 1000;
    for (;;) {
        size_t n = schedule_ticks(queue, name, ticks, NULL);
        if (n >= want)
            return n;
        if (hp_mono_ms() > end)
            fail_msg("schedule %s: %zu jobs after waiting, expected at least %zu", name, n, want);
        hp_sleep_ms(100);
    }
}

static void assert_distinct(const int64_t *ticks, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (ticks[i] == ticks[i - 1])
            fail_msg("two jobs for the tick %lld", (long long)ticks[i]);
}

static schedule_t *get_schedule(const char *name)
{
    schedule_t *s = NULL;
    int err = broker_schedule_get(B, name, &s);
    if (err)
        fail_msg("schedule %s: %s", name, broker_errmsg(B));
    return s;
}

/* How many history entries of `name` have `outcome`. */
static size_t history_count(const char *name, const char *outcome)
{
    schedule_t *s = get_schedule(name);
    char needle[64];
    snprintf(needle, sizeof(needle), "\"outcome\":\"%s\"", outcome);
    size_t n = count_substr(s->history, needle);
    schedule_free(s);
    return n;
}

/* A definition (as PUT takes it) of a schedule on `queue`. */
static char *definition(const char *cron, const char *queue, const char *extra)
{
    static char text[1024];
    snprintf(text, sizeof(text),
             "{\"cron\":\"%s\",\"job\":{\"queue\":\"%s\",\"type\":\"t.sched\"}%s}", cron, queue,
             extra ? extra : "");
    return text;
}

/* Puts a schedule straight into the broker, as a server's API would. */
static void put_schedule(const char *name, const char *cron, const char *queue, const char *extra)
{
    const char *def = definition(cron, queue, extra);
    schedule_t *s = NULL;
    char err[600];
    if (sched_schedule_from_json(name, def, strlen(def), hp_now_ms(), &s, err, sizeof(err)))
        fail_msg("%s", err);
    assert_int_equal(broker_schedule_put(B, s, NULL), 0);
    schedule_free(s);
}

/* ---- Setup ---- */

static int group_setup(void **state)
{
    (void)state;
    if (test_redis_start(&redis, NULL) != 0)
        return -1;
    char *msg = NULL;
    broker_config_t cfg = {.url = redis.url};
    if (broker_open(&cfg, &B, &msg) != 0) {
        fprintf(stderr, "broker_open: %s\n", msg ? msg : "?");
        hp_free(msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    broker_close(B);
    test_redis_stop(&redis);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    nservers = 0;
    return 0;
}

static bool passed;
#define PASSED() (passed = true)

/* Kills what the test left running; prints the logs when it failed. */
static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < nservers; i++) {
        server_t *s = &servers[i];
        if (!s->reaped) {
            kill(-s->pid, SIGKILL);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->reaped = true;
        }
        if (!passed) {
            char *log = slurp(s->log);
            fprintf(stderr, "---- server %d (port %d) log ----\n%s\n", i, s->port, log);
            free(log);
        }
        unlink(s->log);
    }
    /* Schedules of one test must not fire into the next. */
    schedule_t **list = NULL;
    size_t n = 0;
    if (broker_schedules(B, &list, &n) == 0)
        for (size_t i = 0; i < n; i++)
            broker_schedule_delete(B, list[i]->name);
    schedules_free(list, n);
    passed = false;
    return 0;
}

/* ---- Tests ---- */

/* Three servers, one per-second schedule, ~20 s: one job per tick and no gaps. */
static void test_three_servers_exactly_once(void **state)
{
    (void)state;
    const char *q = test_queue_name("three");
    server_t *a = START_SERVER("--scheduler");
    START_SERVER("--scheduler");
    START_SERVER("--scheduler");
    http_res_t res;
    char path[256];
    snprintf(path, sizeof(path), "/v1/schedules/every-second");
    http_ok(a, "PUT", path, definition("* * * * * *", q, NULL), 201, &res);
    assert_non_null(strstr(res.body, "\"explain\":\"every second\""));
    int64_t put_at = hp_now_ms();
    while (hp_now_ms() - put_at < 20000)
        hp_sleep_ms(200);
    http_ok(a, "POST", "/v1/schedules/every-second/pause", NULL, 200, &res);
    hp_sleep_ms(1500); /* a fire that was under way when the pause landed */

    static int64_t ticks[MAX_TICKS];
    size_t n = schedule_ticks(q, "every-second", ticks, NULL);
    /* 20 s of ticks; a loaded machine may start late, so ask for well over half. */
    if (n < 12)
        fail_msg("only %zu jobs in 20 s of a per-second schedule", n);
    assert_distinct(ticks, n);
    for (size_t i = 1; i < n; i++)
        if (ticks[i] - ticks[i - 1] != 1000)
            fail_msg("a gap: ticks %lld and %lld are %lld ms apart (history: %zu missed)",
                     (long long)ticks[i - 1], (long long)ticks[i],
                     (long long)(ticks[i] - ticks[i - 1]), history_count("every-second", "missed"));
    /* The schedule's record agrees with the jobs. */
    schedule_t *s = get_schedule("every-second");
    assert_int_equal(s->last_fire_ms, ticks[n - 1]);
    schedule_free(s);
    assert_int_equal(history_count("every-second", "missed"), 0);
    PASSED();
}

/* Kills the only server for ~4 s and restarts it; returns the last tick before. */
static int64_t crash_across_ticks(const char *q, const char *name, server_t *srv, int64_t *ticks)
{
    wait_ticks(q, name, 2, ticks);
    server_crash(srv);
    size_t n = schedule_ticks(q, name, ticks, NULL);
    int64_t last = ticks[n - 1];
    hp_sleep_ms(4000);
    START_SERVER("--scheduler");
    return last;
}

static void test_misfire_skip(void **state)
{
    (void)state;
    const char *q = test_queue_name("mskip");
    server_t *srv = START_SERVER("--scheduler");
    put_schedule("mf-skip", "* * * * * *", q, ",\"misfire\":\"skip\"");
    static int64_t ticks[MAX_TICKS];
    int64_t last = crash_across_ticks(q, "mf-skip", srv, ticks);
    /* Firing resumes: two more ticks after the restart. */
    size_t n = 0;
    int64_t end = hp_mono_ms() + FIRE_WAIT_MS;
    for (;;) {
        n = schedule_ticks(q, "mf-skip", ticks, NULL);
        size_t after = 0;
        for (size_t i = 0; i < n; i++)
            after += ticks[i] > last;
        if (after >= 2)
            break;
        if (hp_mono_ms() > end)
            fail_msg("misfire skip: %zu jobs after the restart, expected firing to resume", after);
        hp_sleep_ms(100);
    }
    assert_distinct(ticks, n);
    /* No job for the missed ticks: the first after the restart is seconds later. */
    size_t first = 0;
    while (ticks[first] <= last)
        first++;
    if (ticks[first] - last < 3000)
        fail_msg("misfire skip: a job for tick %lld, %lld ms after the last before the crash",
                 (long long)ticks[first], (long long)(ticks[first] - last));
    /* One "missed" entry stands for them, at the first missed tick. */
    assert_int_equal(history_count("mf-skip", "missed"), 1);
    schedule_t *s = get_schedule("mf-skip");
    char needle[64];
    snprintf(needle, sizeof(needle), "{\"tick\":%lld,", (long long)(last + 1000));
    const char *entry = strstr(s->history, needle);
    if (!entry || !strstr(entry, "\"outcome\":\"missed\""))
        fail_msg("no missed entry for tick %lld in %s", (long long)(last + 1000), s->history);
    schedule_free(s);
    PASSED();
}

static void test_misfire_once(void **state)
{
    (void)state;
    const char *q = test_queue_name("monce");
    server_t *srv = START_SERVER("--scheduler");
    put_schedule("mf-once", "* * * * * *", q, ",\"misfire\":\"once\"");
    static int64_t ticks[MAX_TICKS];
    int64_t last = crash_across_ticks(q, "mf-once", srv, ticks);
    size_t n = 0;
    int64_t end = hp_mono_ms() + FIRE_WAIT_MS;
    for (;;) {
        n = schedule_ticks(q, "mf-once", ticks, NULL);
        size_t after = 0;
        for (size_t i = 0; i < n; i++)
            after += ticks[i] > last;
        if (after >= 3)
            break;
        if (hp_mono_ms() > end)
            fail_msg("misfire once: %zu jobs after the restart, expected firing to resume", after);
        hp_sleep_ms(100);
    }
    assert_distinct(ticks, n);
    size_t first = 0;
    while (ticks[first] <= last)
        first++;
    /* Exactly one catch-up job, for the first missed tick; then nothing until the
     * ticks after the restart, which follow one a second. */
    if (ticks[first] != last + 1000)
        fail_msg("misfire once: the first job after the crash is for tick %lld, expected the "
                 "first missed tick %lld",
                 (long long)ticks[first], (long long)(last + 1000));
    if (ticks[first + 1] - ticks[first] < 3000)
        fail_msg("misfire once: a second catch-up job, for tick %lld", (long long)ticks[first + 1]);
    for (size_t i = first + 2; i < n; i++)
        assert_int_equal(ticks[i] - ticks[i - 1], 1000);
    assert_int_equal(history_count("mf-once", "missed"), 0);
    PASSED();
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Waits until the server's log says the config's schedules were applied. */
static void wait_config_applied(server_t *s)
{
    int64_t end = hp_mono_ms() + START_WAIT_MS;
    for (;;) {
        char *log = slurp(s->log);
        bool done = strstr(log, "schedules from the config file applied") != NULL;
        free(log);
        if (done)
            return;
        if (server_try_reap(s))
            fail_msg("server exited with status %d", s->status);
        if (hp_mono_ms() > end)
            fail_msg("config schedules not applied after %d ms", START_WAIT_MS);
        hp_sleep_ms(20);
    }
}

/* A config file with two schedules on `queue`: cfg-daily (cron `daily`, in
 * Europe/Berlin) and cfg-tick (every second, misfire once). */
static void config_text(char *text, size_t len, const char *daily, const char *queue)
{
    snprintf(text, len,
             "{\"threads\": 1, \"schedules\": {"
             "\"cfg-daily\": {\"cron\": \"%s\", \"tz\": \"Europe/Berlin\", "
             "\"job\": {\"queue\": \"%s\", \"type\": \"t.daily\"}},"
             "\"cfg-tick\": {\"cron\": \"* * * * * *\", \"misfire\": \"once\", "
             "\"job\": {\"queue\": \"%s\", \"type\": \"t.tick\"}}}}",
             daily, queue, queue);
}

static void test_config_file(void **state)
{
    (void)state;
    const char *q = test_queue_name("cfg");
    char path[64] = "/tmp/hopper-test-sched-cfg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char text[1024];

    config_text(text, sizeof(text), "0 3 * * *", q);
    write_file(path, text);

    server_t *srv = START_SERVER("--config", path);
    wait_config_applied(srv);
    schedule_t *daily = get_schedule("cfg-daily");
    assert_string_equal(daily->tz, "Europe/Berlin");
    assert_true(daily->next_fire_ms > hp_now_ms());
    static int64_t ticks[MAX_TICKS];
    wait_ticks(q, "cfg-tick", 2, ticks);
    server_stop(srv);

    /* Same file again: still two schedules, nothing rewritten, no tick twice. */
    srv = START_SERVER("--config", path);
    wait_config_applied(srv);
    schedule_t **list = NULL;
    size_t n = 0;
    assert_int_equal(broker_schedules(B, &list, &n), 0);
    assert_int_equal(n, 2);
    schedules_free(list, n);
    schedule_t *again = get_schedule("cfg-daily");
    assert_int_equal(again->next_fire_ms, daily->next_fire_ms);
    assert_int_equal(again->updated_ms, daily->updated_ms);
    assert_int_equal(again->version, daily->version);
    schedule_free(again);
    size_t before = schedule_ticks(q, "cfg-tick", ticks, NULL);
    wait_ticks(q, "cfg-tick", before + 2, ticks);
    server_stop(srv);
    n = schedule_ticks(q, "cfg-tick", ticks, NULL);
    assert_distinct(ticks, n);

    /* A changed definition is updated at the next start. */
    config_text(text, sizeof(text), "30 4 * * 1-5", q);
    write_file(path, text);
    srv = START_SERVER("--config", path);
    wait_config_applied(srv);
    again = get_schedule("cfg-daily");
    assert_string_equal(again->cron, "30 4 * * 1-5");
    assert_true(again->version > daily->version);
    assert_int_equal(again->created_ms, daily->created_ms);
    schedule_free(again);
    server_stop(srv);
    n = schedule_ticks(q, "cfg-tick", ticks, NULL);
    assert_distinct(ticks, n);
    schedule_free(daily);

    /* A bad schedule refuses the start, naming it. */
    snprintf(text, sizeof(text),
             "{\"schedules\": {\"broken\": {\"cron\": \"61 * * * *\", "
             "\"job\": {\"queue\": \"%s\", \"type\": \"t\"}}}}",
             q);
    write_file(path, text);
    srv = server_spawn((const char *const[]){"--config", path, NULL}, NULL);
    int64_t end = hp_mono_ms() + START_WAIT_MS;
    while (!server_try_reap(srv)) {
        if (hp_mono_ms() > end)
            fail_msg("a server with a bad schedule in its config file is still running");
        hp_sleep_ms(20);
    }
    assert_int_not_equal(srv->status, 0);
    char *log = slurp(srv->log);
    if (!strstr(log, "schedules.broken") || !strstr(log, "minute"))
        fail_msg("the refusal does not name schedules.broken and the field: %s", log);
    free(log);
    unlink(path);
    PASSED();
}

/* Counts the jobs (ticks and triggers) of `name` in `queue`. */
static size_t count_jobs(const char *queue, const char *name)
{
    static int64_t ticks[MAX_TICKS];
    size_t trig = 0;
    size_t n = schedule_ticks(queue, name, ticks, &trig);
    return n + trig;
}

/* Changes through the API of a server that fires nothing reach the one that does,
 * without a restart. */
static void test_api_changes_live(void **state)
{
    (void)state;
    const char *q = test_queue_name("api");
    /* A bool flag can only say true: false comes from the environment. */
    server_t *api = server_start(NULL, (const char *const[]){"HOPPER_SCHEDULER=false", NULL});
    START_SERVER("--scheduler");
    http_res_t res;
    static int64_t ticks[MAX_TICKS];
    const char *path = "/v1/schedules/live";

    /* Even seconds, then odd ones. */
    http_ok(api, "PUT", path, definition("*/2 * * * * *", q, NULL), 201, &res);
    size_t n = wait_ticks(q, "live", 2, ticks);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ticks[i] % 2000, 0);
    http_ok(api, "PUT", path, definition("1/2 * * * * *", q, NULL), 200, &res);
    assert_non_null(strstr(res.body, "\"cron\":\"1/2 * * * * *\""));
    int64_t changed = hp_now_ms();
    int64_t end = hp_mono_ms() + FIRE_WAIT_MS;
    size_t odd = 0;
    while (odd < 2) {
        n = schedule_ticks(q, "live", ticks, NULL);
        odd = 0;
        for (size_t i = 0; i < n; i++) {
            if (ticks[i] % 2000 == 1000)
                odd++;
            else if (ticks[i] > changed + 1500) /* the old cron, after the change was seen */
                fail_msg("an even tick %lld after the cron changed to odd seconds",
                         (long long)ticks[i]);
        }
        if (hp_mono_ms() > end)
            fail_msg("the new cron never fired (%zu odd ticks)", odd);
        hp_sleep_ms(100);
    }
    assert_distinct(ticks, n);

    /* Paused: nothing; resumed: firing again. */
    http_ok(api, "POST", "/v1/schedules/live/pause", NULL, 200, &res);
    assert_non_null(strstr(res.body, "\"paused\":true"));
    hp_sleep_ms(1500);
    size_t paused_at = count_jobs(q, "live");
    hp_sleep_ms(4000);
    assert_int_equal(count_jobs(q, "live"), paused_at);
    http_ok(api, "POST", "/v1/schedules/live/resume", NULL, 200, &res);
    assert_non_null(strstr(res.body, "\"paused\":false"));
    n = wait_ticks(q, "live", schedule_ticks(q, "live", ticks, NULL) + 2, ticks);
    assert_distinct(ticks, n);

    /* Trigger: a job at once, recorded as triggered. */
    http_ok(api, "POST", "/v1/schedules/live/trigger", NULL, 201, &res);
    json_t *doc = json_loads(res.body, 0, NULL);
    assert_non_null(doc);
    const char *id = json_string_value(json_object_get(doc, "job_id"));
    assert_non_null(id);
    job_t *job = NULL;
    assert_int_equal(broker_get(B, id, &job), 0);
    assert_string_equal(job->schedule, "live");
    assert_true(job->schedule_tick_ms > 0);
    job_free(job);
    json_decref(doc);
    assert_true(history_count("live", "triggered") == 1);

    /* Deleted: it stops. */
    http_ok(api, "DELETE", path, NULL, 200, &res);
    hp_sleep_ms(1500);
    size_t deleted_at = count_jobs(q, "live");
    hp_sleep_ms(3000);
    assert_int_equal(count_jobs(q, "live"), deleted_at);
    http_ok(api, "GET", path, NULL, 404, &res);
    PASSED();
}

/* ---- next_fires ---- */

/* The schedule's "next_fires" (and "next_fire") from an answer, as Unix ms; the
 * count. Every one must be RFC 3339 in UTC ("Z"). */
static size_t next_fires(json_t *schedule, int64_t *out, size_t cap, int64_t *next_fire)
{
    json_t *list = json_object_get(schedule, "next_fires");
    assert_true(json_is_array(list));
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *text = json_string_value(v);
        assert_non_null(text);
        assert_int_equal(text[strlen(text) - 1], 'Z');
        assert_true(i < cap);
        assert_int_equal(hp_parse_rfc3339_ms(text, &out[i]), 0);
    }
    json_t *nf = json_object_get(schedule, "next_fire");
    *next_fire = 0;
    if (json_is_string(nf))
        assert_int_equal(hp_parse_rfc3339_ms(json_string_value(nf), next_fire), 0);
    return json_array_size(list);
}

static json_t *schedule_named(json_t *list, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(list, "schedules"), i, v)
    {
        if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0)
            return v;
    }
    fail_msg("GET /v1/schedules does not list %s", name);
    return NULL;
}

/* GET /v1/schedules/{name} and GET /v1/schedules show the same next five fires,
 * read in the schedule's zone; a paused schedule shows none. The zone is checked
 * with the C library's own tables (TZ), not with the scheduler's code. */
static void test_next_fires(void **state)
{
    (void)state;
    const char *q = test_queue_name("nextfires");
    server_t *api = server_start(NULL, (const char *const[]){"HOPPER_SCHEDULER=false", NULL});
    http_res_t res;
    char def[1024];
    snprintf(def, sizeof(def),
             "{\"cron\":\"30 2 * * *\",\"tz\":\"Europe/Berlin\",\"job\":{\"queue\":\"%s\","
             "\"type\":\"t.sched\"}}",
             q);
    int64_t before = hp_now_ms();
    http_ok(api, "PUT", "/v1/schedules/nf-berlin", def, 201, &res);
    http_ok(api, "PUT", "/v1/schedules/nf-quarter", definition("*/15 * * * *", q, NULL), 201, &res);

    http_ok(api, "GET", "/v1/schedules/nf-berlin", NULL, 200, &res);
    json_t *one = json_loads(res.body, 0, NULL);
    assert_non_null(one);
    int64_t fires[8], next;
    assert_int_equal(next_fires(one, fires, 8, &next), 5);
    assert_true(next > before);
    assert_int_equal(fires[0], next);
    setenv("TZ", "Europe/Berlin", 1);
    tzset();
    struct tm prev = {0};
    for (int i = 0; i < 5; i++) {
        time_t t = (time_t)(fires[i] / 1000);
        struct tm local;
        localtime_r(&t, &local);
        assert_int_equal(fires[i] % 1000, 0);
        /* 02:30 local; 03:00 on the day the clocks skip 02:00-03:00 */
        bool at_0230 = local.tm_hour == 2 && local.tm_min == 30;
        bool skipped = local.tm_hour == 3 && local.tm_min == 0 && local.tm_isdst == 1;
        if (!(at_0230 || skipped) || local.tm_sec != 0)
            fail_msg("fire %d is %02d:%02d:%02d in Berlin", i, local.tm_hour, local.tm_min,
                     local.tm_sec);
        if (i > 0) { /* the next day, every time */
            assert_true(fires[i] > fires[i - 1]);
            struct tm day = prev;
            day.tm_mday++;
            day.tm_isdst = -1;
            mktime(&day);
            assert_int_equal(local.tm_year, day.tm_year);
            assert_int_equal(local.tm_yday, day.tm_yday);
        }
        prev = local;
    }
    unsetenv("TZ");
    tzset();

    /* The list shows the same. */
    http_ok(api, "GET", "/v1/schedules", NULL, 200, &res);
    json_t *all = json_loads(res.body, 0, NULL);
    assert_non_null(all);
    int64_t again[8], next_again;
    assert_int_equal(next_fires(schedule_named(all, "nf-berlin"), again, 8, &next_again), 5);
    assert_memory_equal(again, fires, 5 * sizeof(int64_t));
    int64_t quarter[8], qnext;
    assert_int_equal(next_fires(schedule_named(all, "nf-quarter"), quarter, 8, &qnext), 5);
    assert_int_equal(quarter[0], qnext);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(quarter[i] % (15 * 60 * 1000), 0);
        if (i > 0)
            assert_int_equal(quarter[i] - quarter[i - 1], 15 * 60 * 1000);
    }
    json_decref(all);
    json_decref(one);

    /* Paused: none, and no next fire; resumed: five again. */
    http_ok(api, "POST", "/v1/schedules/nf-berlin/pause", NULL, 200, &res);
    one = json_loads(res.body, 0, NULL);
    assert_int_equal(next_fires(one, fires, 8, &next), 0);
    assert_true(json_is_null(json_object_get(one, "next_fire")));
    json_decref(one);
    http_ok(api, "GET", "/v1/schedules/nf-berlin", NULL, 200, &res);
    one = json_loads(res.body, 0, NULL);
    assert_int_equal(next_fires(one, fires, 8, &next), 0);
    json_decref(one);
    http_ok(api, "POST", "/v1/schedules/nf-berlin/resume", NULL, 200, &res);
    one = json_loads(res.body, 0, NULL);
    assert_int_equal(next_fires(one, fires, 8, &next), 5);
    assert_int_equal(fires[0], next);
    assert_true(next > before);
    json_decref(one);
    http_ok(api, "DELETE", "/v1/schedules/nf-berlin", NULL, 200, &res);
    http_ok(api, "DELETE", "/v1/schedules/nf-quarter", NULL, 200, &res);
    PASSED();
}

/* ---- The CLI ---- */

#define HOP(...) test_cli_run(&r, redis.url, (const char *const[]){__VA_ARGS__, NULL})

static void test_cli_verbs(void **state)
{
    (void)state;
    const char *q = test_queue_name("cli");
    cli_result_t r;
    HOP("schedule", "set", "cli-s", "--cron", "0 6 * * MON-FRI", "--tz", "America/New_York",
        "--queue", q, "--type", "t.cli", "--payload", "{\"n\":1}", "--misfire", "once", "--overlap",
        "skip", "--jitter", "30s");
    if (r.status != 0)
        fail_msg("set: %d %s", r.status, r.err);
    assert_non_null(strstr(r.out, "schedule cli-s created, next fire "));
    HOP("schedule", "set", "cli-s", "--cron", "0 7 * * MON-FRI", "--tz", "America/New_York",
        "--job", "{\"queue\":\"x\",\"type\":\"t.cli\"}", "--queue", q);
    assert_int_equal(r.status, 2); /* --job and --queue together */
    char job[256];
    snprintf(job, sizeof(job), "{\"queue\":\"%s\",\"type\":\"t.cli\",\"priority\":3}", q);
    HOP("schedule", "set", "cli-s", "--cron", "0 7 * * MON-FRI", "--tz", "America/New_York",
        "--job", job, "--misfire", "once", "--overlap", "skip", "--jitter", "30s");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "schedule cli-s updated"));

    HOP("schedule", "list");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "cli-s"));
    assert_non_null(strstr(r.out, "0 7 * * MON-FRI"));
    assert_non_null(strstr(r.out, "America/New_York"));
    HOP("schedule", "list", "--json");
    assert_int_equal(r.status, 0);
    json_t *doc = json_loads(r.out, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "misfire")), "once");
    assert_string_equal(json_string_value(json_object_get(doc, "overlap")), "skip");
    assert_int_equal(json_integer_value(json_object_get(doc, "jitter_ms")), 30000);
    json_decref(doc);

    HOP("schedule", "get", "cli-s");
    assert_int_equal(r.status, 0);
    doc = json_loads(r.out, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "cron")), "0 7 * * MON-FRI");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "job"), "priority")),
                     3);
    assert_int_equal(json_array_size(json_object_get(doc, "next_fires")), 5);
    json_decref(doc);

    HOP("schedule", "trigger", "cli-s");
    assert_int_equal(r.status, 0);
    job_t *j = NULL;
    assert_int_equal(broker_get(B, r.out, &j), 0);
    assert_string_equal(j->schedule, "cli-s");
    assert_int_equal(j->priority, 3);
    job_free(j);
    assert_int_equal(history_count("cli-s", "triggered"), 1);

    HOP("schedule", "pause", "cli-s");
    assert_int_equal(r.status, 0);
    schedule_t *s = get_schedule("cli-s");
    assert_true(s->paused);
    schedule_free(s);
    HOP("schedule", "resume", "cli-s");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "resumed, next fire"));
    s = get_schedule("cli-s");
    assert_false(s->paused);
    assert_true(s->next_fire_ms > hp_now_ms());
    schedule_free(s);

    HOP("schedule", "delete", "cli-s");
    assert_int_equal(r.status, 0);
    HOP("schedule", "get", "cli-s");
    assert_int_equal(r.status, 3);
    HOP("schedule", "trigger", "cli-s");
    assert_int_equal(r.status, 3);
    HOP("schedule", "pause", "nope");
    assert_int_equal(r.status, 3);

    /* Bad input: exit 2, the parser's message naming the field. */
    HOP("schedule", "set", "bad", "--cron", "61 * * * *", "--queue", q, "--type", "t");
    assert_int_equal(r.status, 2);
    if (!strstr(r.err, "field"))
        fail_msg("the message does not name the field: %s", r.err);
    HOP("schedule", "set", "bad", "--cron", "* * * *", "--queue", q, "--type", "t");
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "field"));
    HOP("schedule", "set", "bad", "--cron", "* * * * *", "--tz", "Mars/Olympus", "--queue", q,
        "--type", "t");
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "tz"));
    HOP("schedule", "set", "bad", "--cron", "* * * * *", "--queue", q);
    assert_int_equal(r.status, 2);
    HOP("schedule", "frob");
    assert_int_equal(r.status, 2);
    HOP("schedule", "set", "--help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--misfire"));
    schedule_t *gone = NULL;
    assert_int_equal(broker_schedule_get(B, "bad", &gone), HP_ENOTFOUND);
    PASSED();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cli_verbs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_three_servers_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misfire_skip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misfire_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_changes_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_fires, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
