/*
 * The host side of the plugin ABI: the function table handed to plugins, the
 * hopper_job_t they see, and running a handler, on this thread or, for FORK job
 * types, in a fresh child process with resource limits.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "worker/internal.h"

/* ---- About the job ---- */

static const char *h_job_id(const hopper_job_t *j)
{
    return j->job->id;
}

static const char *h_job_queue(const hopper_job_t *j)
{
    return j->job->queue;
}

static const char *h_job_type(const hopper_job_t *j)
{
    return j->job->type;
}

static int h_job_attempt(const hopper_job_t *j)
{
    return j->job->attempts;
}

static int h_job_max_attempts(const hopper_job_t *j)
{
    return j->job->max_attempts;
}

static const char *h_job_payload(const hopper_job_t *j, size_t *len)
{
    if (len)
        *len = j->job->payload_len;
    return j->job->payload;
}

static int64_t h_job_deadline_ms(const hopper_job_t *j)
{
    return j->deadline_ms;
}

static int h_job_canceled(const hopper_job_t *j)
{
    return atomic_load(&((hopper_job_t *)j)->canceled);
}

/* ---- Payload accessors ---- */

/* The member `key` of an object payload, parsed once per job (a job is handled by
 * one thread, so no lock). */
static json_t *member(hopper_job_t *j, const char *key)
{
    if (!j->doc) {
        j->doc = json_loadb(j->job->payload, j->job->payload_len, JSON_DECODE_ANY, NULL);
        if (!j->doc) /* an integer past 64 bits: read numbers as doubles instead */
            j->doc = json_loadb(j->job->payload, j->job->payload_len,
                                JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
    }
    return key ? json_object_get(j->doc, key) : NULL;
}

static const char *h_payload_string(hopper_job_t *j, const char *key)
{
    return json_string_value(member(j, key));
}

static int h_payload_int(hopper_job_t *j, const char *key, long long *out)
{
    json_t *v = member(j, key);
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    double d = json_real_value(v);
    if (json_is_real(v) && d == (double)(long long)d) {
        *out = (long long)d;
        return 0;
    }
    return -1;
}

static int h_payload_double(hopper_job_t *j, const char *key, double *out)
{
    json_t *v = member(j, key);
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return 0;
}

static int h_payload_bool(hopper_job_t *j, const char *key, int *out)
{
    json_t *v = member(j, key);
    if (!json_is_boolean(v))
        return -1;
    *out = json_is_true(v);
    return 0;
}

/* ---- Reporting ---- */

static void h_progress(hopper_job_t *j, int percent, const char *message)
{
    percent = percent < 0 ? 0 : percent > 100 ? 100 : percent;
    if (j->report)
        j->report(j->report_ctx, j->job->id, j->job->lease_token, percent, message, 0, NULL);
}

static void h_log(hopper_job_t *j, hopper_log_level_t level, const char *fmt, ...)
{
    char line[JOB_LOG_LINE_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    int lvl = level < HOPPER_LOG_DEBUG ? 0 : level > HOPPER_LOG_ERROR ? 3 : (int)level;
    if (j->report)
        j->report(j->report_ctx, j->job->id, j->job->lease_token, -1, NULL, lvl, line);
}

/* The host is done with the buffer at once (it copies), so a destructor runs now;
 * on refusal too, as SQLite does. */
static int h_set_result(hopper_job_t *j, const char *json, size_t len, hopper_free_fn free_fn)
{
    len = json && !len ? strlen(json) : len;
    int rc = json && len <= j->max_result && hp_json_check(json, len, NULL, 0) == 0 ? 0 : -1;
    if (rc == 0) {
        hp_free(j->result);
        j->result = hp_strndup(json, len);
        j->result_len = len;
    }
    if (json && free_fn != HOPPER_STATIC && free_fn != HOPPER_TRANSIENT)
        free_fn((void *)json);
    return rc;
}

static hopper_status_t h_set_failure(hopper_job_t *j, hopper_fail_kind_t kind, const char *fmt, ...)
{
    char msg[JOB_ERROR_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt ? fmt : "failed", ap);
    va_end(ap);
    hp_free(j->failure);
    j->failure = hp_strdup(msg);
    return kind == HOPPER_FAIL_PERMANENT ? HOPPER_FAIL : HOPPER_RETRY;
}

/* ---- Blobs ---- */

/* Opened on first use, so a worker whose plugins use no blobs never creates the
 * directory; once per worker process. */
static pthread_mutex_t blob_lock = PTHREAD_MUTEX_INITIALIZER;
static blobstore_t *_Atomic blob_store;
static char *blob_dir;
static int64_t blob_max;
static bool blob_failed;

/* A FORK job's child starts with whatever another thread held at the fork: a
 * lock taken mid-open would never be released there. */
static void reset_blob_lock(void)
{
    pthread_mutex_init(&blob_lock, NULL);
}

static void register_reset(void)
{
    pthread_atfork(NULL, NULL, reset_blob_lock);
}

void worker__blobs_configure(const char *dir, int64_t max_bytes)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_reset);
    hp_free(blob_dir);
    blob_dir = hp_strdup(dir ? dir : "hopper-blobs");
    blob_max = max_bytes;
}

static blobstore_t *store(void)
{
    blobstore_t *open_now = blob_store;
    if (open_now)
        return open_now; /* the common case: no lock */
    pthread_mutex_lock(&blob_lock);
    if (!blob_store && !blob_failed && blob_dir) {
        char err[256];
        blob_store = blobstore_open(blob_dir, err, sizeof(err));
        if (!blob_store) {
            blob_failed = true; /* said once; every blob call then fails */
            hp_error("blob store %s: %s", blob_dir, err);
        }
    }
    pthread_mutex_unlock(&blob_lock);
    return blob_store;
}

/* The job keeps strings it hands out until it is freed. */
static const char *keep(hopper_job_t *j, char *s)
{
    if (!s)
        return NULL;
    j->kept = hp_realloc(j->kept, (j->nkept + 1) * sizeof(*j->kept));
    j->kept[j->nkept++] = s;
    return s;
}

static int h_blob_open(hopper_job_t *j, const char *id, long long *size, const char **ctype)
{
    blob_info_t info;
    int fd = -1;
    if (!id || !store() || blob_open_read(blob_store, id, &fd, &info) != 0)
        return -1;
    if (size)
        *size = info.size;
    if (ctype)
        *ctype = keep(j, hp_strdup(info.content_type));
    return fd;
}

static const char *h_blob_path(hopper_job_t *j, const char *id)
{
    blob_info_t info;
    if (!id || !store() || blob_stat(blob_store, id, &info) != 0)
        return NULL;
    return keep(j, blob_path(blob_store, id));
}

static hopper_blob_writer_t *h_blob_create(hopper_job_t *j, const char *content_type)
{
    (void)j;
    blob_writer_t *w = NULL;
    if (!store() || blob_write_begin(blob_store, content_type ? content_type : BLOB_DEFAULT_TYPE,
                                     blob_max, &w) != 0)
        return NULL;
    return (hopper_blob_writer_t *)w;
}

static int h_blob_write(hopper_blob_writer_t *w, const void *data, size_t len)
{
    return blob_write((blob_writer_t *)w, data, len) == 0 ? 0 : -1;
}

static int h_blob_commit(hopper_blob_writer_t *w, char id[65], long long *size)
{
    blob_info_t info;
    if (blob_write_commit((blob_writer_t *)w, &info) != 0)
        return -1;
    memcpy(id, info.id, BLOB_ID_LEN + 1);
    if (size)
        *size = info.size;
    return 0;
}

static void h_blob_abort(hopper_blob_writer_t *w)
{
    blob_write_abort((blob_writer_t *)w);
}

static const hopper_host_api_t host_api = {
    .abi_version = HOPPER_ABI_VERSION,
    .size = sizeof(hopper_host_api_t),
    .register_plugin = worker__register_plugin,
    .register_type = worker__register_type,
    .on_shutdown = worker__on_shutdown,
    .config = worker__plugin_config,
    .job_id = h_job_id,
    .job_queue = h_job_queue,
    .job_type = h_job_type,
    .job_attempt = h_job_attempt,
    .job_max_attempts = h_job_max_attempts,
    .job_payload = h_job_payload,
    .job_deadline_ms = h_job_deadline_ms,
    .job_canceled = h_job_canceled,
    .payload_string = h_payload_string,
    .payload_int = h_payload_int,
    .payload_double = h_payload_double,
    .payload_bool = h_payload_bool,
    .progress = h_progress,
    .log = h_log,
    .set_result = h_set_result,
    .set_failure = h_set_failure,
    .blob_open = h_blob_open,
    .blob_path = h_blob_path,
    .blob_create = h_blob_create,
    .blob_write = h_blob_write,
    .blob_commit = h_blob_commit,
    .blob_abort = h_blob_abort,
};

const hopper_host_api_t *worker__host_api(void)
{
    return &host_api;
}

/* ---- Jobs ---- */

hopper_job_t *worker__job_new(job_t *job, const worker_type_t *type, int64_t deadline_ms,
                              size_t max_result)
{
    hopper_job_t *hj = hp_calloc(1, sizeof(*hj));
    hj->job = job;
    hj->type = type;
    hj->deadline_ms = deadline_ms;
    hj->max_result = max_result;
    hj->slot = -1;
    atomic_init(&hj->canceled, 0);
    return hj;
}

void worker__job_free(hopper_job_t *hj)
{
    if (!hj)
        return;
    job_free(hj->job);
    hp_free(hj->result);
    hp_free(hj->failure);
    json_decref(hj->doc);
    for (size_t i = 0; i < hj->nkept; i++)
        hp_free(hj->kept[i]);
    hp_free(hj->kept);
    hp_free(hj);
}

/* ---- Fork isolation ----
 * The child reports through a pipe in frames: kind (1 byte), length (4), data.
 *   'P' progress: int percent, then the message    'L' log: int level, then the line
 *   'R' result JSON    'F' failure message    'S' status: int hopper_status_t (last) */

static void frame_write(int fd, char kind, const void *a, size_t alen, const void *b, size_t blen)
{
    uint32_t len = (uint32_t)(alen + blen);
    char head[5] = {kind};
    memcpy(head + 1, &len, 4);
    struct frame_part {
        const void *p;
        size_t n;
    } parts[3] = {{head, 5}, {a, alen}, {b, blen}};
    for (int i = 0; i < 3; i++) {
        const char *p = parts[i].p;
        size_t left = parts[i].n;
        while (left > 0) {
            ssize_t w = write(fd, p, left);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return;
            p += w;
            left -= (size_t)w;
        }
    }
}

static void child_report(void *ctx, const char *id, const char *token, int percent,
                         const char *message, int level, const char *line)
{
    (void)id;
    (void)token;
    int fd = *(int *)ctx;
    int n = line ? level : percent;
    const char *text = line ? line : message ? message : "";
    frame_write(fd, line ? 'L' : 'P', &n, sizeof(n), text, strlen(text));
}

static void __attribute__((noreturn)) run_child(hopper_job_t *hj, int fd)
{
    const hopper_job_type_t *t = &hj->type->type;
    if (t->fork_cpu_seconds > 0) {
        struct rlimit r = {(rlim_t)t->fork_cpu_seconds, (rlim_t)t->fork_cpu_seconds + 1};
        setrlimit(RLIMIT_CPU, &r);
    }
    if (t->fork_memory_bytes > 0) {
        struct rlimit r = {(rlim_t)t->fork_memory_bytes, (rlim_t)t->fork_memory_bytes};
        setrlimit(RLIMIT_AS, &r);
    }
    hj->report = child_report;
    hj->report_ctx = &fd;
    int status = (int)t->handle(hj, t->ctx);
    if (hj->result)
        frame_write(fd, 'R', hj->result, hj->result_len, NULL, 0);
    if (hj->failure)
        frame_write(fd, 'F', hj->failure, strlen(hj->failure), NULL, 0);
    frame_write(fd, 'S', &status, sizeof(status), NULL, 0);
    _exit(0);
}

/* Reads one frame; 0 on EOF or a broken frame. */
static int frame_read(int fd, char *kind, char **data, uint32_t *len)
{
    char head[5];
    size_t got = 0;
    while (got < 5) {
        ssize_t r = read(fd, head + got, 5 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        got += (size_t)r;
    }
    *kind = head[0];
    memcpy(len, head + 1, 4);
    if (*len > JOB_PAYLOAD_DEFAULT_MAX * 16u)
        return 0;
    *data = hp_malloc(*len + 1);
    for (got = 0; got < *len;) {
        ssize_t r = read(fd, *data + got, *len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            hp_free(*data);
            return 0;
        }
        got += (size_t)r;
    }
    (*data)[*len] = '\0';
    return 1;
}

static void take_frame(hopper_job_t *hj, char kind, char *data, uint32_t len, int *status)
{
    int n = 0;
    if ((kind == 'P' || kind == 'L' || kind == 'S') && len >= sizeof(int))
        memcpy(&n, data, sizeof(int));
    if (kind == 'P' && len >= sizeof(int))
        h_progress(hj, n, data + sizeof(int));
    else if (kind == 'L' && len >= sizeof(int))
        h_log(hj, (hopper_log_level_t)n, "%s", data + sizeof(int));
    else if (kind == 'R')
        h_set_result(hj, data, len, HOPPER_TRANSIENT);
    else if (kind == 'F')
        h_set_failure(hj, HOPPER_FAIL_RETRYABLE, "%s", data);
    else if (kind == 'S' && len >= sizeof(int))
        *status = n;
}

static const char *signal_name(int sig, char *buf, size_t len)
{
    const char *abbrev = sigabbrev_np(sig);
    snprintf(buf, len, "SIG%s", abbrev ? abbrev : "?");
    return buf;
}

/* Waits for the child's frames until it ends, the deadline plus grace passes, or the
 * job is canceled (then the child is killed: it cannot see the cancel flag). */
static void run_forked(hopper_job_t *hj, int64_t timeout_grace_ms)
{
    int fds[2];
    if (pipe(fds) != 0) {
        h_set_failure(hj, HOPPER_FAIL_RETRYABLE, "cannot create a pipe: %s", strerror(errno));
        hj->status = HOPPER_RETRY;
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        run_child(hj, fds[1]);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        h_set_failure(hj, HOPPER_FAIL_RETRYABLE, "cannot fork: %s", strerror(errno));
        hj->status = HOPPER_RETRY;
        return;
    }
    int status = -1;
    const char *killed_for = NULL;
    for (;;) {
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int64_t now = hp_now_ms();
        if (!killed_for && now > hj->deadline_ms)
            killed_for = "timed out";
        else if (!killed_for && atomic_load(&hj->canceled))
            killed_for = "canceled";
        if (killed_for) {
            kill(pid, SIGKILL);
            break;
        }
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        char kind, *data;
        uint32_t len;
        if (!frame_read(fds[0], &kind, &data, &len))
            break;
        take_frame(hj, kind, data, len, &status);
        hp_free(data);
    }
    (void)timeout_grace_ms; /* the child cannot be asked; it is killed at the deadline */
    close(fds[0]);
    int wstatus = 0;
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    char sig[32];
    if (killed_for) {
        h_set_failure(hj, HOPPER_FAIL_RETRYABLE, "%s: job process killed", killed_for);
        hj->status = HOPPER_RETRY;
    } else if (WIFSIGNALED(wstatus)) {
        h_set_failure(hj, HOPPER_FAIL_RETRYABLE, "job process crashed: signal %d (%s)",
                      WTERMSIG(wstatus), signal_name(WTERMSIG(wstatus), sig, sizeof(sig)));
        hj->status = HOPPER_RETRY;
    } else if (status < 0) {
        h_set_failure(hj, HOPPER_FAIL_RETRYABLE, "job process exited with status %d and no answer",
                      WEXITSTATUS(wstatus));
        hj->status = HOPPER_RETRY;
    } else {
        hj->status = (hopper_status_t)status;
    }
}

void worker__job_run(hopper_job_t *hj, int64_t timeout_grace_ms)
{
    const hopper_job_type_t *t = &hj->type->type;
    if (t->isolation == HOPPER_ISOLATION_FORK)
        run_forked(hj, timeout_grace_ms);
    else
        hj->status = t->handle(hj, t->ctx);
}
