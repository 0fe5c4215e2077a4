/*
 * End to end: the upload plugin (upload.put) in the real `hopper worker`, sending
 * blobs to a real nginx (Debian's, with its WebDAV module) started by this test on
 * private ports, and, for multipart POST, to a real `hopper server`. Checked the
 * way a user would: the file the server stored has the blob's SHA-256, the job's
 * state, attempts, errors, progress and result, what the server logged (the S3
 * signature is recomputed from nginx's log of the request headers), the worker's
 * peak memory during a 50 MiB upload, and that no secret shows up anywhere.
 *
 * nginx serves two ports from one process (daemon off, master_process off, every
 * path inside a temporary directory):
 *   /dav/    PUT stores the body (create_full_put_path)
 *   /s3/     the same, logging the SigV4 headers to s3.log
 *   /forbidden/ 403, /fail/ 503, /busy/ 429 with Retry-After: 7
 * Each test starts its own worker (its own breaker), stopped at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "broker/broker.h"
#include "common/common.h"
#include "tests/support/test_proc.h"
#include "tests/support/test_redis.h"

#ifndef HOPPER_PLUGIN_DIR
#error "HOPPER_PLUGIN_DIR must name the directory of the shipped plugins"
#endif
#define UPLOAD_SO HOPPER_PLUGIN_DIR "/upload.so"

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

#define WAIT_MS    30000 /* how long a job may take to get where it is going */
#define BIG_SIZE   (50LL * 1024 * 1024)
#define RSS_MAX_KB (30 * 1024) /* a worker process's peak RSS across the 50 MiB upload */

/* Secrets the worker is configured with: none may appear in anything it shows. */
#define USER      "uploader"
#define PASSWORD  "pw-Zq8sEcret-41"
#define URL_PASS  "urlPa55-secret"
#define S3_KEY    "AKIDEXAMPLE7"
#define S3_SECRET "s3-SeCrEt-key-9f3a"

static test_redis_t redis;
static broker_t *B;
static blobstore_t *bs;
static char blob_dir[] = "/tmp/hopper-upload-blobs-XXXXXX";
static char web_dir[] = "/tmp/hopper-upload-nginx-XXXXXX";
static test_proc_t nginx;
static int port, port2; /* nginx's two ports */

static test_proc_t procs[4]; /* workers and servers a test started */
static int nprocs;
static bool test_passed;

/* ---- Small helpers ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap);
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

static bool contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", in[i]);
}

/* The SHA-256 of a file in hex, or "" when it cannot be read. */
static void sha256_file(const char *path, char out[65])
{
    out[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    static unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        EVP_DigestUpdate(ctx, buf, n);
    fclose(f);
    unsigned char md[32];
    EVP_DigestFinal_ex(ctx, md, NULL);
    EVP_MD_CTX_free(ctx);
    hex(md, 32, out);
}

/* Stores `len` bytes from gen(i, buf, n) as a blob, in 1 MiB pieces; returns the id. */
static void put_blob(const char *ctype, long long len, const char *text, char id[65])
{
    blob_writer_t *w = NULL;
    assert_int_equal(blob_write_begin(bs, ctype, INT64_MAX, &w), 0);
    if (text) {
        assert_int_equal(blob_write(w, text, strlen(text)), 0);
    } else {
        static unsigned char chunk[1 << 20];
        uint64_t x = 0x9e3779b97f4a7c15ULL;
        for (long long done = 0; done < len;) {
            for (size_t i = 0; i < sizeof(chunk); i += 8) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift: incompressible */
                memcpy(chunk + i, &x, 8);
            }
            size_t n = len - done < (long long)sizeof(chunk) ? (size_t)(len - done) : sizeof(chunk);
            assert_int_equal(blob_write(w, chunk, n), 0);
            done += (long long)n;
        }
    }
    blob_info_t info;
    assert_int_equal(blob_write_commit(w, &info), 0);
    memcpy(id, info.id, 65);
}

/* ---- nginx ---- */

static void nginx_start(void)
{
    port = test_free_port();
    port2 = test_free_port();
    while (port2 == port)
        port2 = test_free_port();
    char path[512], conf[4096];
    snprintf(path, sizeof(path), "%s/www", web_dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/tmp", web_dir);
    assert_int_equal(mkdir(path, 0700), 0);
    const char *d = web_dir;
    snprintf(conf, sizeof(conf),
             "daemon off;\nmaster_process off;\nworker_processes 1;\n"
             "pid %s/nginx.pid;\nerror_log %s/error.log info;\n"
             "events { worker_connections 64; }\n"
             "http {\n"
             "  client_body_temp_path %s/tmp/body; proxy_temp_path %s/tmp/proxy;\n"
             "  fastcgi_temp_path %s/tmp/fcgi; uwsgi_temp_path %s/tmp/uwsgi;\n"
             "  scgi_temp_path %s/tmp/scgi;\n"
             "  log_format who '$server_port $request_method $uri $status user=$remote_user';\n"
             "  log_format s3 '$request_method|$request_uri|$http_host|$http_authorization|'\n"
             "                '$http_x_amz_date|$http_x_amz_content_sha256|$content_type';\n"
             "  access_log %s/access.log who;\n"
             "  client_max_body_size 0;\n"
             "  root %s/www;\n"
             "  server {\n"
             "    listen 127.0.0.1:%d; listen 127.0.0.1:%d;\n"
             "    location /dav/ { dav_methods PUT; create_full_put_path on; }\n"
             "    location /s3/ { dav_methods PUT; create_full_put_path on;\n"
             "                    access_log %s/s3.log s3; }\n"
             "    location /forbidden/ { return 403; }\n"
             "    location /fail/ { return 503; }\n"
             "    location /busy/ { add_header Retry-After 7 always; return 429; }\n"
             "  }\n"
             "}\n",
             d, d, d, d, d, d, d, d, d, port, port2, d);
    char conf_path[512];
    snprintf(conf_path, sizeof(conf_path), "%s/nginx.conf", d);
    write_file(conf_path, conf);
    char errlog[512];
    snprintf(errlog, sizeof(errlog), "%s/error.log", d);
    const char *argv[] = {"/usr/sbin/nginx", "-p", d, "-c", conf_path, "-e", errlog, NULL};
    assert_int_equal(test_proc_start(&nginx, argv, NULL), 0);
    if (!test_wait_port(port, 10000) || !test_wait_port(port2, 10000)) {
        char *log = test_proc_log(&nginx), *err = slurp(errlog);
        fail_msg("nginx did not listen on %d and %d:\n%s\n%s", port, port2, log, err);
    }
}

/* The stored file under nginx's root, e.g. "dav/a/b.txt". */
static void www_path(const char *rel, char *out, size_t cap)
{
    snprintf(out, cap, "%s/www/%s", web_dir, rel);
}

static char *nginx_file(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", web_dir, name);
    return slurp(path);
}

/* ---- Worker and server ---- */

/* hopper worker on `queue` with upload.so, one process of `threads` threads and a
 * 3 s lease (heartbeats, which carry cancels, every second), started and serving. */
static test_proc_t *worker_start(const char *queue, int threads, const char *plugin_config)
{
    assert_true(nprocs < 4);
    test_proc_t *p = &procs[nprocs++];
    char url[128], th[16];
    snprintf(url, sizeof(url), "HOPPER_REDIS_URL=%s", redis.url);
    snprintf(th, sizeof(th), "%d", threads);
    const char *argv[] = {HOPPER_BIN,  "worker",     "--queues",        queue,         "--plugins",
                          UPLOAD_SO,   "--blob-dir", blob_dir,          "--processes", "1",
                          "--threads", th,           "--plugin-config", plugin_config, "--lease",
                          "3s",        NULL};
    const char *env[] = {url,
                         "HOPPER_LOG_LEVEL=info",
                         "HOPPER_QUEUES=",
                         "AWS_ACCESS_KEY_ID=",
                         "AWS_SECRET_ACCESS_KEY=",
                         "AWS_SESSION_TOKEN=",
                         "ASAN_OPTIONS=detect_leaks=1",
                         NULL};
    assert_int_equal(test_proc_start(p, argv, env), 0);
    if (!test_proc_wait_log(p, ": serving ", 20000)) {
        char *log = test_proc_log(p);
        fail_msg("worker did not start serving:\n%s", log);
    }
    return p;
}

/* The default config: credentials for 127.0.0.1 only, a breaker that stays shut. */
static char *default_config(void)
{
    static char cfg[1024];
    snprintf(cfg, sizeof(cfg),
             "{\"upload\":{\"username\":\"" USER "\",\"password\":\"" PASSWORD "\","
             "\"s3_access_key\":\"" S3_KEY "\",\"s3_secret_key\":\"" S3_SECRET "\","
             "\"s3_region\":\"eu-west-3\",\"auth_hosts\":\"127.0.0.1\","
             "\"breaker_threshold\":1000,\"connect_timeout_ms\":5000,"
             "\"max_send_speed\":%d}}",
             25 * 1024 * 1024);
    return cfg;
}

/* ---- Jobs ---- */

typedef struct jid_s {
    char s[JOB_ID_MAX];
} jid_t;

static jid_t enqueue(const char *queue, const char *payload, int max_attempts)
{
    job_spec_t spec = {.queue = queue,
                       .type = "upload.put",
                       .payload = payload,
                       .max_attempts = max_attempts,
                       .backoff = {BACKOFF_FIXED, 200, 200}};
    enqueue_result_t r;
    memset(&r, 0, sizeof(r));
    if (broker_enqueue(B, &spec, 1, &r))
        fail_msg("enqueue on %s: %s (%s)", queue, broker_errmsg(B), r.errmsg);
    jid_t id;
    snprintf(id.s, sizeof(id.s), "%s", r.id);
    return id;
}

/* An upload.put payload: {"blob": id, "url": url} plus `extra` members (",..."). */
static char *payload(const char *blob, const char *url, const char *extra)
{
    static char buf[8][1024];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 1024, "{\"blob\":\"%s\",\"url\":\"%s\"%s}", blob, url, extra ? extra : "");
    return p;
}

static job_t *get_job(const char *id)
{
    job_t *j = NULL;
    if (broker_get(B, id, &j))
        fail_msg("broker_get %s: %s", id, broker_errmsg(B));
    return j;
}

static void show_job(const job_t *j)
{
    char *json = job_to_json(j, 2);
    fprintf(stderr, "job:\n%s\n", json);
    hp_free(json);
}

static bool is_final(job_state_t s)
{
    return s == JOB_STATE_SUCCEEDED || s == JOB_STATE_DEAD || s == JOB_STATE_CANCELED;
}

/* Polls until the job is final; it must be in `want`. Returned: job_free it. */
static job_t *wait_final_at(const char *id, job_state_t want, int line)
{
    int64_t end = hp_mono_ms() + WAIT_MS;
    for (;;) {
        job_t *j = get_job(id);
        if (is_final(j->state) || hp_mono_ms() > end) {
            if (j->state != want) {
                show_job(j);
                fail_msg("job %s is %s, expected %s (line %d)", id, job_state_name(j->state),
                         job_state_name(want), line);
            }
            return j;
        }
        job_free(j);
        hp_sleep_ms(20);
    }
}
#define wait_final(id, want) wait_final_at((id), (want), __LINE__)

static void error_contains_at(const job_t *j, size_t i, const char *text, int line)
{
    if (i >= j->nerrors || !contains(j->errors[i].message, text)) {
        show_job(j);
        fail_msg("job %s: error %zu should contain \"%s\" (line %d)", j->id, i, text, line);
    }
}
#define assert_error_contains(j, i, text) error_contains_at((j), (i), (text), __LINE__)

/* What the worker wrote into the job, as one text: errors, logs, result and
 * progress message (not the payload, which is the submitter's own text). */
static char *job_text(const job_t *j)
{
    size_t cap = 1024 + (j->logs ? strlen(j->logs) : 0) + (j->result ? strlen(j->result) : 0);
    for (size_t i = 0; i < j->nerrors; i++)
        cap += strlen(j->errors[i].message) + 1;
    char *text = calloc(1, cap);
    for (size_t i = 0; i < j->nerrors; i++) {
        strcat(text, j->errors[i].message);
        strcat(text, "\n");
    }
    strcat(text, j->logs ? j->logs : "");
    strcat(text, j->result ? j->result : "");
    strncat(text, j->progress_message ? j->progress_message : "", 512);
    return text;
}

static void assert_no_secrets_at(const char *text, const char *what, int line)
{
    static const char *const secrets[] = {PASSWORD, URL_PASS, S3_SECRET};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        if (contains(text, secrets[i]))
            fail_msg("%s shows the secret \"%s\" (line %d):\n%s", what, secrets[i], line, text);
    }
}
#define assert_no_secrets(text, what) assert_no_secrets_at((text), (what), __LINE__)

/* A member of the job's JSON result as an integer, or -1. */
static long long result_int(const job_t *j, const char *key)
{
    json_t *root = j->result ? json_loads(j->result, 0, NULL) : NULL;
    json_t *v = json_object_get(root, key);
    long long n = json_is_integer(v) ? json_integer_value(v) : -1;
    json_decref(root);
    return n;
}

/* The peak RSS (VmHWM, kB) of the largest process whose parent is `ppid`. */
static long children_peak_rss_kb(pid_t ppid, int *count)
{
    long peak = 0;
    *count = 0;
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 0)
            continue;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/status", pid);
        char *st = slurp(path);
        const char *pp = strstr(st, "\nPPid:");
        const char *hwm = strstr(st, "\nVmHWM:");
        if (pp && atoi(pp + 6) == (int)ppid && hwm) {
            long kb = atol(hwm + 7);
            peak = kb > peak ? kb : peak;
            (*count)++;
        }
        free(st);
    }
    closedir(d);
    return peak;
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
        fprintf(stderr, "broker_open: %s\n", msg);
        hp_free(msg);
        return -1;
    }
    char err[256];
    if (!mkdtemp(blob_dir) || !mkdtemp(web_dir) ||
        !(bs = blobstore_open(blob_dir, err, sizeof(err))))
        return -1;
    nginx_start();
    return 0;
}

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

static int group_teardown(void **state)
{
    (void)state;
    test_proc_stop(&nginx, 5000);
    test_proc_cleanup(&nginx);
    blobstore_close(bs);
    broker_close(B);
    test_redis_stop(&redis);
    rm_rf(blob_dir);
    rm_rf(web_dir);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    nprocs = 0;
    test_passed = false;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < nprocs; i++) {
        test_proc_stop(&procs[i], 10000);
        if (!test_passed) {
            char *log = test_proc_log(&procs[i]);
            fprintf(stderr, "---- process %d log ----\n%s\n", i, log);
            free(log);
        }
        test_proc_cleanup(&procs[i]);
    }
    nprocs = 0;
    return 0;
}

/* A graceful stop with exit status 0, and a log with no secret, no sanitizer report
 * and no ERROR line. */
static void stop_clean(test_proc_t *p)
{
    char *log = test_proc_log(p);
    assert_no_secrets(log, "the worker's log");
    free(log);
    int status = test_proc_stop(p, 20000);
    log = test_proc_log(p);
    if (status != 0 || contains(log, "Sanitizer") || contains(log, "runtime error:") ||
        contains(log, " ERROR "))
        fail_msg("process exited with %d; log:\n%s", status, log);
    free(log);
}

/* ---- 1. PUT: small and 50 MiB, byte-exact, streamed, with progress ---- */

static void test_put(void **state)
{
    (void)state;
    const char *q = test_queue_name("upload");
    test_proc_t *w = worker_start(q, 2, default_config());

    char small[65], big[65];
    put_blob("text/plain", 0, "hello from hopper\n", small);
    put_blob("application/octet-stream", BIG_SIZE, NULL, big);

    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dav/a/b/small.txt", port);
    jid_t js = enqueue(q, payload(small, url, NULL), 3);
    job_t *j = wait_final(js.s, JOB_STATE_SUCCEEDED);
    char path[512], sum[65];
    www_path("dav/a/b/small.txt", path, sizeof(path));
    sha256_file(path, sum);
    assert_string_equal(sum, small);
    assert_int_equal(result_int(j, "status"), 201);
    assert_int_equal(result_int(j, "bytes"), 18);
    assert_int_equal(j->attempts, 1);
    assert_true(contains(j->result, url));
    char *text = job_text(j);
    assert_no_secrets(text, "the small job");
    free(text);
    job_free(j);
    /* The configured credentials went to 127.0.0.1 (it is in auth_hosts). */
    char *access = nginx_file("access.log");
    assert_true(contains(access, "PUT /dav/a/b/small.txt 201 user=" USER));
    free(access);

    /* 50 MiB at the configured 25 MiB/s: about 2 s, long enough to watch progress. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dav/big.bin", port);
    jid_t jb = enqueue(q, payload(big, url, NULL), 1);
    int seen[101] = {0}, distinct = 0, last = -1;
    bool monotonic = true;
    int64_t end = hp_mono_ms() + WAIT_MS;
    int count = 0;
    long rss_kb = 0;
    for (;;) {
        j = get_job(jb.s);
        if (j->progress >= 0 && j->progress <= 100) {
            if (j->progress < last)
                monotonic = false;
            last = j->progress;
            if (!seen[j->progress]++ && j->progress > 0 && j->progress < 100)
                distinct++;
        }
        bool done = is_final(j->state) || hp_mono_ms() > end;
        job_free(j);
        if (done)
            break;
        hp_sleep_ms(10);
    }
    /* Still running: the worker process's peak memory over the whole upload. */
    rss_kb = children_peak_rss_kb(w->pid, &count);
    j = wait_final(jb.s, JOB_STATE_SUCCEEDED);
    www_path("dav/big.bin", path, sizeof(path));
    struct stat stt;
    assert_int_equal(stat(path, &stt), 0);
    assert_int_equal((long long)stt.st_size, BIG_SIZE);
    sha256_file(path, sum);
    assert_string_equal(sum, big);
    assert_int_equal(result_int(j, "bytes"), BIG_SIZE);
    assert_int_equal(j->progress, 100);
    fprintf(stderr,
            "50 MiB upload: %d distinct progress values in 1..99; "
            "%d worker process(es), peak RSS %ld kB\n",
            distinct, count, rss_kb);
    if (distinct < 2 || !monotonic) {
        show_job(j);
        fail_msg("progress: %d values between 0 and 100 seen (monotonic %d)", distinct, monotonic);
    }
    assert_true(count >= 1);
    if (!SANITIZED && rss_kb > RSS_MAX_KB)
        fail_msg("the worker's peak RSS was %ld kB during a 50 MiB upload (limit %d kB)", rss_kb,
                 RSS_MAX_KB);
    job_free(j);
    stop_clean(w);
    test_passed = true;
}

/* ---- 2. Failures: permanent and retryable, and no secret in any of them ---- */

static void test_failures(void **state)
{
    (void)state;
    const char *q = test_queue_name("upfail");
    test_proc_t *w = worker_start(q, 4, default_config());
    char blob[65];
    put_blob("text/plain", 0, "not welcome\n", blob);

    char url[256];
    /* 403, with a password in the URL: permanent, one attempt of three. */
    snprintf(url, sizeof(url), "http://someone:" URL_PASS "@127.0.0.1:%d/forbidden/x.txt", port);
    jid_t forbidden = enqueue(q, payload(blob, url, NULL), 3);
    /* 503: retryable, so both attempts run. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/fail/x.txt", port);
    jid_t unavailable = enqueue(q, payload(blob, url, NULL), 2);
    /* 429 with Retry-After: retryable, the wait in the message. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/busy/x.txt", port);
    jid_t busy = enqueue(q, payload(blob, url, NULL), 2);
    /* Nobody listening: retryable. */
    int down_port = test_free_port();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dav/x.txt", down_port);
    jid_t down = enqueue(q, payload(blob, url, NULL), 2);
    /* Bad payloads: permanent, the message names the field. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dav/x.txt", port);
    jid_t no_url = enqueue(q, payload(blob, "", NULL), 3);
    jid_t bad_scheme = enqueue(q, payload(blob, "file:///etc/passwd", NULL), 3);
    jid_t no_blob = enqueue(
        q, payload("0000000000000000000000000000000000000000000000000000000000000000", url, NULL),
        3);
    jid_t bad_method = enqueue(q, payload(blob, url, ",\"method\":\"DELETE\""), 3);

    job_t *j = wait_final(forbidden.s, JOB_STATE_DEAD);
    assert_int_equal(j->attempts, 1);
    char safe[256];
    snprintf(safe, sizeof(safe), "http://127.0.0.1:%d/forbidden/x.txt", port);
    assert_error_contains(j, 0, "HTTP 403");
    assert_error_contains(j, 0, safe);
    char *text = job_text(j);
    assert_no_secrets(text, "the 403 job");
    free(text);
    job_free(j);

    j = wait_final(unavailable.s, JOB_STATE_DEAD);
    assert_int_equal(j->attempts, 2);
    assert_int_equal(j->nerrors, 2);
    assert_error_contains(j, 0, "HTTP 503");
    assert_error_contains(j, 1, "HTTP 503");
    job_free(j);

    j = wait_final(busy.s, JOB_STATE_DEAD);
    assert_int_equal(j->attempts, 2);
    assert_error_contains(j, 0, "HTTP 429");
    assert_error_contains(j, 0, "retry after 7 s");
    job_free(j);

    j = wait_final(down.s, JOB_STATE_DEAD);
    assert_int_equal(j->attempts, 2);
    char hostport[64];
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", down_port);
    assert_error_contains(j, 1, hostport);
    assert_error_contains(j, 1, "onnect");
    job_free(j);

    const struct {
        jid_t *id;
        const char *field;
    } bad[] = {{&no_url, "payload \"url\""},
               {&bad_scheme, "payload \"url\""},
               {&no_blob, "payload \"blob\""},
               {&bad_method, "payload \"method\""}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = wait_final(bad[i].id->s, JOB_STATE_DEAD);
        assert_int_equal(j->attempts, 1);
        assert_error_contains(j, 0, bad[i].field);
        job_free(j);
    }
    stop_clean(w);
    test_passed = true;
}

/* ---- 3. The circuit breaker ---- */

static void test_breaker(void **state)
{
    (void)state;
    const char *q = test_queue_name("upbreak");
    /* One thread: the jobs run one after the other, in the order enqueued. */
    test_proc_t *w =
        worker_start(q, 1, "{\"upload\":{\"breaker_threshold\":3,\"breaker_open_ms\":6000}}");
    char blob[65];
    put_blob("text/plain", 0, "breaker\n", blob);
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/fail/x.txt", port);
    for (int i = 0; i < 3; i++) {
        jid_t id = enqueue(q, payload(blob, url, NULL), 1);
        job_t *j = wait_final(id.s, JOB_STATE_DEAD);
        assert_error_contains(j, 0, "HTTP 503");
        job_free(j);
    }
    int64_t opened = hp_mono_ms();

    /* Open: a job for that host fails fast, even one that would succeed... */
    char circuit[64];
    snprintf(circuit, sizeof(circuit), "circuit open for 127.0.0.1:%d", port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dav/breaker/1.txt", port);
    jid_t fast = enqueue(q, payload(blob, url, NULL), 1);
    job_t *j = wait_final(fast.s, JOB_STATE_DEAD);
    assert_error_contains(j, 0, circuit);
    job_free(j);
    char path[512];
    www_path("dav/breaker/1.txt", path, sizeof(path));
    assert_int_equal(access(path, F_OK), -1); /* it never reached nginx */
    if (hp_mono_ms() - opened >= 6000)
        fail_msg("the machine is too slow for this test: the circuit closed before the check");

    /* ...while another host:port is not affected. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dav/breaker/2.txt", port2);
    jid_t other = enqueue(q, payload(blob, url, NULL), 1);
    job_free(wait_final(other.s, JOB_STATE_SUCCEEDED));

    /* Once open_ms has passed, a trial job goes through and closes it. */
    int64_t left = opened + 6000 + 300 - hp_mono_ms();
    if (left > 0)
        hp_sleep_ms(left);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dav/breaker/3.txt", port);
    jid_t trial = enqueue(q, payload(blob, url, NULL), 1);
    job_free(wait_final(trial.s, JOB_STATE_SUCCEEDED));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dav/breaker/4.txt", port);
    jid_t after = enqueue(q, payload(blob, url, NULL), 1);
    job_free(wait_final(after.s, JOB_STATE_SUCCEEDED));
    stop_clean(w);
    test_passed = true;
}

/* ---- 4. S3 (SigV4) and multipart POST ---- */

static void hmac256(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &n);
}

/* Recomputes the SigV4 signature of the request nginx logged in s3.log (method|uri|
 * host|authorization|x-amz-date|x-amz-content-sha256|content-type) with the secret,
 * and checks it against the one sent. */
static void check_sigv4(const char *line, const char *blob)
{
    char f[7][256];
    const char *p = line;
    for (int i = 0; i < 7; i++) {
        size_t n = strcspn(p, i < 6 ? "|" : "\n");
        snprintf(f[i], sizeof(f[i]), "%.*s", (int)n, p);
        p += n + (p[n] ? 1 : 0);
    }
    const char *auth = f[3], *date = f[4];
    assert_string_equal(f[5], blob); /* the payload hash is the blob id */
    char scope[128];
    snprintf(scope, sizeof(scope), "Credential=" S3_KEY "/%.8s/eu-west-3/s3/aws4_request", date);
    if (!contains(auth, "AWS4-HMAC-SHA256 ") || !contains(auth, scope))
        fail_msg("Authorization \"%s\" lacks \"%s\"", auth, scope);
    const char *sh = strstr(auth, "SignedHeaders="), *sig = strstr(auth, "Signature=");
    assert_non_null(sh);
    assert_non_null(sig);
    char signed_headers[128];
    snprintf(signed_headers, sizeof(signed_headers), "%.*s", (int)strcspn(sh + 14, ", "), sh + 14);
    assert_string_equal(signed_headers, "content-type;host;x-amz-content-sha256;x-amz-date");

    char canonical[4096];
    snprintf(canonical, sizeof(canonical),
             "%s\n%s\n\ncontent-type:%s\nhost:%s\nx-amz-content-sha256:%s\nx-amz-date:%s\n\n%s\n%s",
             f[0], f[1], f[6], f[2], f[5], date, signed_headers, blob);
    unsigned char md[32];
    char md_hex[65];
    SHA256((const unsigned char *)canonical, strlen(canonical), md);
    hex(md, 32, md_hex);
    char to_sign[1024];
    snprintf(to_sign, sizeof(to_sign), "AWS4-HMAC-SHA256\n%s\n%.8s/eu-west-3/s3/aws4_request\n%s",
             date, date, md_hex);
    unsigned char k[32];
    char day[9];
    snprintf(day, sizeof(day), "%.8s", date);
    hmac256("AWS4" S3_SECRET, strlen("AWS4" S3_SECRET), day, k);
    hmac256(k, 32, "eu-west-3", k);
    hmac256(k, 32, "s3", k);
    hmac256(k, 32, "aws4_request", k);
    unsigned char s[32];
    char want[65];
    hmac256(k, 32, to_sign, s);
    hex(s, 32, want);
    if (strncmp(sig + 10, want, 64) != 0)
        fail_msg("SigV4 signature %.64s, expected %s", sig + 10, want);
}

static void test_s3_and_post(void **state)
{
    (void)state;
    const char *q = test_queue_name("ups3");
    test_proc_t *w = worker_start(q, 2, default_config());
    char blob[65];
    put_blob("application/json", 0, "{\"report\":42}\n", blob);

    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/s3/bucket/reports/42.json", port);
    jid_t s3 = enqueue(q, payload(blob, url, ",\"s3\":true"), 1);
    job_t *j = wait_final(s3.s, JOB_STATE_SUCCEEDED);
    char *text = job_text(j);
    assert_no_secrets(text, "the S3 job");
    free(text);
    job_free(j);
    char path[512], sum[65];
    www_path("s3/bucket/reports/42.json", path, sizeof(path));
    sha256_file(path, sum);
    assert_string_equal(sum, blob);
    char *log = nginx_file("s3.log");
    assert_true(contains(log, "PUT|/s3/bucket/reports/42.json|"));
    check_sigv4(log, blob);
    free(log);

    /* S3 credentials go to auth_hosts only: "localhost" is not listed. */
    snprintf(url, sizeof(url), "http://localhost:%d/s3/bucket/x.json", port);
    jid_t elsewhere = enqueue(q, payload(blob, url, ",\"s3\":true"), 3);
    j = wait_final(elsewhere.s, JOB_STATE_DEAD);
    assert_int_equal(j->attempts, 1);
    assert_error_contains(j, 0, "auth_hosts");
    job_free(j);

    /* Multipart POST to a real `hopper server`: its blob store gets the same bytes. */
    char server_blobs[] = "/tmp/hopper-upload-server-XXXXXX";
    assert_non_null(mkdtemp(server_blobs));
    int api_port = test_free_port();
    char listen[64], redis_env[128];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", api_port);
    snprintf(redis_env, sizeof(redis_env), "HOPPER_REDIS_URL=%s", redis.url);
    test_proc_t *server = &procs[nprocs++];
    const char *argv[] = {HOPPER_BIN,          "server",     "--listen",  listen,
                          "--blob-dir",        server_blobs, "--threads", "1",
                          "--scheduler=false", NULL};
    const char *env[] = {redis_env, "ASAN_OPTIONS=detect_leaks=1", NULL};
    assert_int_equal(test_proc_start(server, argv, env), 0);
    if (!test_wait_port(api_port, 20000))
        fail_msg("hopper server did not listen on %d", api_port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/blobs", api_port);
    jid_t post = enqueue(q, payload(blob, url, ",\"method\":\"POST\",\"filename\":\"r.json\""), 1);
    j = wait_final(post.s, JOB_STATE_SUCCEEDED);
    assert_int_equal(result_int(j, "status"), 201);
    assert_true(contains(j->result, blob)); /* the server's answer names the blob */
    job_free(j);
    snprintf(path, sizeof(path), "%s/%.2s/%s", server_blobs, blob, blob);
    sha256_file(path, sum);
    assert_string_equal(sum, blob);
    rm_rf(server_blobs);
    stop_clean(w);
    test_passed = true;
}

/* ---- 5. Cancel stops a running transfer ---- */

static void test_cancel(void **state)
{
    (void)state;
    const char *q = test_queue_name("upcancel");
    /* 1 MiB/s: the 50 MiB upload would take 50 s. */
    test_proc_t *w = worker_start(q, 1, "{\"upload\":{\"max_send_speed\":1048576}}");
    char big[65];
    put_blob("application/octet-stream", BIG_SIZE, NULL, big);
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dav/canceled.bin", port);
    jid_t id = enqueue(q, payload(big, url, NULL), 3);
    int64_t end = hp_mono_ms() + WAIT_MS;
    for (;;) { /* until bytes are flowing */
        job_t *j = get_job(id.s);
        bool sending = j->state == JOB_STATE_ACTIVE && j->progress >= 1;
        if (is_final(j->state) || hp_mono_ms() > end) {
            show_job(j);
            fail_msg("the upload never got going");
        }
        job_free(j);
        if (sending)
            break;
        hp_sleep_ms(20);
    }
    job_state_t after = JOB_STATE_COUNT;
    if (broker_cancel(B, id.s, &after))
        fail_msg("broker_cancel: %s", broker_errmsg(B));
    int64_t t0 = hp_mono_ms();
    job_t *j = wait_final(id.s, JOB_STATE_CANCELED);
    int64_t took = hp_mono_ms() - t0;
    assert_true(took < 20000); /* far less than the 45 s still to go */
    assert_true(j->nerrors >= 1);
    assert_error_contains(j, j->nerrors - 1, "canceled");
    assert_true(j->progress < 100);
    job_free(j);
    char path[512];
    www_path("dav/canceled.bin", path, sizeof(path));
    assert_int_equal(access(path, F_OK), -1); /* nginx never stored a partial file */
    stop_clean(w);
    test_passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_breaker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_and_post, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
