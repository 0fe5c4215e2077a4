/*
 * tests/plugins/testhandlers.c -- the "testhandlers" plugin the worker's end-to-end
 * tests load. Each job type does one predictable thing (succeed, echo, sleep, fail,
 * crash, hang, report progress, read config), so a test can drive the worker
 * through every path a real handler could take. Built only against
 * <hopper/plugin.h>: like any plugin, it never sees Hopper's internals.
 *
 *   test.noop        succeeds, no result
 *   test.echo        result = the payload text
 *   test.sleep       {"ms": N}: sleeps N ms in <= 10 ms slices, honouring cancel;
 *                    result {"slept_ms": N}; canceled -> retryable failure
 *   test.fail        {"permanent": bool, "message": "..."}: fails that way
 *   test.fail_if     {"fail": bool, "file": "/path", "message": "..."}: fails permanently
 *                    while "fail" is true or the file exists, else succeeds with
 *                    {"ok": true} (a dead job that a retry, or an edited payload, mends)
 *   test.crash       a real SIGSEGV (invalid write), raise(SIGSEGV) as fallback
 *   test.abort       abort()
 *   test.hang        never returns, ignores cancel
 *   test.progress    {"step_ms": N (10)}: progress 0..100 in 5 steps; {"steps":5}
 *   test.fork.echo   test.echo in a forked child (5 s CPU, 1 GiB address space)
 *   test.fork.crash  test.crash in a forked child
 *   test.config      result {"greeting": <config "greeting" as a JSON string, or null>}
 *
 * On shutdown, if HOPPER_TEST_SHUTDOWN_FILE is set, appends "shutdown\n" to it.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <hopper/plugin.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

HOPPER_EXPORT int hopper_plugin_init(const hopper_host_api_t *api, hopper_plugin_t *plugin,
                                     char **errmsg);

/* The plugin handle from init, for hopper_config at job time. */
static hopper_plugin_t *g_plugin;

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static hopper_status_t handle_noop(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    return hopper_succeed(job, NULL);
}

static hopper_status_t handle_echo(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    size_t len = 0;
    const char *payload = hopper_job_payload(job, &len);
    if (!payload || len == 0)
        return hopper_succeed(job, NULL);
    if (hopper_set_result(job, payload, len, HOPPER_TRANSIENT) != 0)
        return hopper_fail(job, HOPPER_FAIL_PERMANENT, "test.echo: the host refused the result");
    return HOPPER_OK;
}

static hopper_status_t handle_sleep(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    long long ms = 0;
    if (hopper_payload_int(job, "ms", &ms) != 0 || ms < 0)
        return hopper_fail(job, HOPPER_FAIL_PERMANENT,
                           "test.sleep: payload needs a non-negative integer \"ms\"");
    long long slept = 0;
    while (slept < ms) {
        if (hopper_job_canceled(job))
            return hopper_fail(job, HOPPER_FAIL_RETRYABLE, "canceled after %lld ms", slept);
        long long slice = ms - slept < 10 ? ms - slept : 10;
        sleep_ms((long)slice);
        slept += slice;
    }
    char result[64];
    snprintf(result, sizeof result, "{\"slept_ms\":%lld}", ms);
    return hopper_succeed(job, result);
}

static hopper_status_t handle_fail(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    int permanent = 0;
    if (hopper_payload_bool(job, "permanent", &permanent) != 0)
        permanent = 0;
    const char *message = hopper_payload_string(job, "message");
    if (!message)
        message = "test.fail asked to fail";
    return hopper_fail(job, permanent ? HOPPER_FAIL_PERMANENT : HOPPER_FAIL_RETRYABLE, "%s",
                       message);
}

static hopper_status_t handle_fail_if(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    int fail = 0;
    if (hopper_payload_bool(job, "fail", &fail) != 0)
        fail = 0;
    const char *file = hopper_payload_string(job, "file");
    if (file && access(file, F_OK) == 0)
        fail = 1;
    if (!fail)
        return hopper_succeed(job, "{\"ok\":true}");
    const char *message = hopper_payload_string(job, "message");
    return hopper_fail(job, HOPPER_FAIL_PERMANENT, "%s",
                       message ? message : "test.fail_if asked to fail");
}

/* Volatile pointer to volatile: the compiler cannot know it is NULL, so it emits a
 * real store (not a trap instruction), and the store cannot be removed. */
static volatile int *volatile g_crash_target = NULL;

/* Not instrumented: under the sanitizer build the bad write must still be a real
 * SIGSEGV, not a sanitizer report and exit(1). */
__attribute__((no_sanitize("address", "undefined"))) static hopper_status_t
handle_crash(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    *g_crash_target = 42; /* SIGSEGV */
    raise(SIGSEGV);       /* in case the write somehow did not fault */
    return hopper_fail(job, HOPPER_FAIL_PERMANENT, "test.crash failed to crash");
}

static hopper_status_t handle_abort(hopper_job_t *job, void *ctx)
{
    (void)job;
    (void)ctx;
    abort();
}

static volatile int g_hang_forever = 1;

static hopper_status_t handle_hang(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    while (g_hang_forever)
        sleep_ms(50); /* deliberately ignores hopper_job_canceled */
    return hopper_fail(job, HOPPER_FAIL_PERMANENT, "test.hang returned");
}

static hopper_status_t handle_progress(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    long long step_ms = 10;
    if (hopper_payload_int(job, "step_ms", &step_ms) != 0)
        step_ms = 10;
    if (step_ms < 0)
        return hopper_fail(job, HOPPER_FAIL_PERMANENT,
                           "test.progress: \"step_ms\" must be a non-negative integer");
    for (int step = 1; step <= 5; step++) {
        int percent = (step - 1) * 25;
        char message[32];
        snprintf(message, sizeof message, "step %d", step);
        hopper_progress(job, percent, message);
        hopper_log(job, HOPPER_LOG_INFO, "progress %d%%", percent);
        if (step < 5)
            sleep_ms((long)step_ms);
    }
    return hopper_succeed(job, "{\"steps\":5}");
}

/* Appends `s` to `out` as a JSON string (with quotes). `out` needs 6 * strlen(s) + 3. */
static void json_quote(char *out, const char *s)
{
    *out++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *out++ = '\\';
            *out++ = (char)*p;
        } else if (*p < 0x20) {
            out += sprintf(out, "\\u%04x", *p);
        } else {
            *out++ = (char)*p;
        }
    }
    *out++ = '"';
    *out = '\0';
}

static hopper_status_t handle_config(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    const char *greeting = hopper_config(g_plugin, "greeting");
    if (!greeting)
        return hopper_succeed(job, "{\"greeting\":null}");
    size_t cap = strlen(greeting) * 6 + 32;
    char *result = malloc(cap);
    if (!result)
        return hopper_fail(job, HOPPER_FAIL_RETRYABLE, "test.config: out of memory");
    strcpy(result, "{\"greeting\":");
    json_quote(result + strlen(result), greeting);
    strcat(result, "}");
    int rc = hopper_set_result(job, result, 0, HOPPER_TRANSIENT);
    free(result);
    if (rc != 0)
        return hopper_fail(job, HOPPER_FAIL_PERMANENT, "test.config: the host refused the result");
    return HOPPER_OK;
}

/* test.blob: {"in": "<blob id>"} -> a new blob with the bytes reversed, result
 * {"out": "<id>", "size": N}. Exercises every host blob function. */
static hopper_status_t handle_blob(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    const char *in = hopper_payload_string(job, "in");
    long long size = 0;
    const char *ctype = NULL;
    int fd = in ? hopper_blob_open(job, in, &size, &ctype) : -1;
    if (fd < 0)
        return hopper_fail(job, HOPPER_FAIL_PERMANENT, "test.blob: no blob %s", in ? in : "-");
    if (!hopper_blob_path(job, in)) {
        close(fd);
        return hopper_fail(job, HOPPER_FAIL_PERMANENT, "test.blob: no path for %s", in);
    }
    char *data = malloc(size ? (size_t)size : 1);
    ssize_t got = data ? read(fd, data, (size_t)size) : -1;
    close(fd);
    if (got != size) {
        free(data);
        return hopper_fail(job, HOPPER_FAIL_RETRYABLE, "test.blob: short read");
    }
    for (long long i = 0; i < size / 2; i++) {
        char t = data[i];
        data[i] = data[size - 1 - i];
        data[size - 1 - i] = t;
    }
    hopper_blob_writer_t *w = hopper_blob_create(job, ctype);
    if (!w || hopper_blob_write(w, data, (size_t)size) != 0) {
        if (w)
            hopper_blob_abort(w);
        free(data);
        return hopper_fail(job, HOPPER_FAIL_RETRYABLE, "test.blob: cannot write");
    }
    free(data);
    char id[65];
    long long out_size = 0;
    if (hopper_blob_commit(w, id, &out_size) != 0)
        return hopper_fail(job, HOPPER_FAIL_RETRYABLE, "test.blob: cannot commit");
    char result[160];
    snprintf(result, sizeof(result), "{\"out\":\"%s\",\"size\":%lld}", id, out_size);
    return hopper_succeed(job, result);
}

static void on_shutdown(void *arg)
{
    (void)arg;
    const char *path = getenv("HOPPER_TEST_SHUTDOWN_FILE");
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "a");
    if (!f)
        return;
    fputs("shutdown\n", f);
    fclose(f);
}

static const hopper_job_type_t types[] = {
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "test.noop", .handle = handle_noop},
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "test.echo", .handle = handle_echo},
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "test.sleep", .handle = handle_sleep},
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "test.fail", .handle = handle_fail},
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "test.fail_if", .handle = handle_fail_if},
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "test.crash", .handle = handle_crash},
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "test.abort", .handle = handle_abort},
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "test.hang", .handle = handle_hang},
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "test.progress", .handle = handle_progress},
    {.version = HOPPER_JOB_TYPE_VERSION,
     .name = "test.fork.echo",
     .handle = handle_echo,
     .isolation = HOPPER_ISOLATION_FORK,
     .fork_cpu_seconds = 5,
     .fork_memory_bytes = 1L << 30},
    {.version = HOPPER_JOB_TYPE_VERSION,
     .name = "test.fork.crash",
     .handle = handle_crash,
     .isolation = HOPPER_ISOLATION_FORK},
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "test.config", .handle = handle_config},
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "test.blob", .handle = handle_blob},
};

static int init_error(char **errmsg, const char *what, const char *name)
{
    if (errmsg) {
        char buf[160];
        snprintf(buf, sizeof buf, "testhandlers: %s%s%s failed", what, name ? " " : "",
                 name ? name : "");
        *errmsg = strdup(buf);
    }
    return -1;
}

HOPPER_PLUGIN_INIT(api, plugin, errmsg)
{
    HOPPER_USE(api);
    g_plugin = plugin;
    if (hopper_register(plugin, "testhandlers", "1.0.0") != 0)
        return init_error(errmsg, "register_plugin", NULL);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (hopper_register_type(plugin, &types[i]) != 0)
            return init_error(errmsg, "register_type", types[i].name);
    hopper_on_shutdown(plugin, on_shutdown, NULL);
    return 0;
}
