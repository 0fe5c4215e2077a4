/*
 * End to end: the email plugin (plugins/email) in the real `hopper worker`, sending
 * through a real SMTP server -- Debian's python3-aiosmtpd, run by
 * fixtures/email/smtpd.py on a private port -- and watched the way a user would:
 * the job's state, result and errors from the broker, and the message the server
 * captured, parsed by Python's standard email parser (fixtures/email/
 * inspect_message.py): recipients in the envelope and the headers (bcc only in the
 * envelope), the UTF-8 subject and names, both bodies, byte-exact attachments
 * from the blob store, line lengths and line ends.
 *
 * Failures: a 451 reply is retryable (the job waits in "failed" for its retry), a
 * 550 permanent (dead, and nobody got the message), header injection and bad
 * addresses are permanent with the field named, a server that is down is
 * retryable, and after breaker_threshold such failures jobs fail fast with
 * "circuit open for 127.0.0.1:PORT" until a trial after breaker_open_ms succeeds.
 * TLS and AUTH: STARTTLS "required" against a server without it sends nothing; a
 * trusted CA (tls_ca_file) delivers over TLS, an untrusted one is refused; AUTH
 * works with the password from the environment (never in a log), and a wrong
 * password is retryable.
 *
 * Timing: waits poll with generous deadlines; the one fixed sleep outlasts the
 * breaker's 5 s open period.
 */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "broker/broker.h"
#include "common/common.h"
#include "tests/support/test_proc.h"
#include "tests/support/test_redis.h"

#ifndef HOPPER_PLUGIN_DIR
#error "HOPPER_PLUGIN_DIR must name the directory of the shipped plugins"
#endif
#ifndef HOPPER_EMAIL_FIXTURES
#error "HOPPER_EMAIL_FIXTURES must name tests/e2e/fixtures/email"
#endif
#define EMAIL_PLUGIN HOPPER_PLUGIN_DIR "/email.so"
#define PYTHON       "/usr/bin/python3" /* Debian's, which has aiosmtpd */
#define SECRET       "pw-Tr0ub4dor&3-not-in-logs"

#define WAIT_MS  20000 /* how long a job may take to get where it is going */
#define START_MS 20000 /* how long a worker or server may take to start */

static test_redis_t redis;
static broker_t *B;
static test_proc_t smtpd; /* the main SMTP server, with AUTH */
static int smtp_port;
static char maildir[] = "/tmp/hopper-test-mail-XXXXXX";
static char blobdir[] = "/tmp/hopper-test-mail-blobs-XXXXXX";
static blobstore_t *bs;
static test_proc_t worker_a; /* all tests but the breaker's and STARTTLS's use it */
static const char *queue_a;
static test_proc_t worker_b, smtpd_b;             /* the breaker's, then a server on its port */
static test_proc_t worker_c;                      /* STARTTLS required */
static test_proc_t worker_d, worker_e, smtpd_tls; /* STARTTLS: CA trusted, and not */
static test_proc_t worker_f;                      /* a wrong password */
static int passed;                                /* tests that got to their end */
static char scratch[2][64];                       /* per-test directories, removed at the end */

/* ---- Helpers ---- */

static void print_log(const char *label, const test_proc_t *p)
{
    if (!p->pid)
        return;
    char *log = test_proc_log(p);
    size_t n = strlen(log);
    fprintf(stderr, "---- %s log ----\n%s\n", label, n > 12000 ? log + n - 12000 : log);
    free(log);
}

/* `hopper worker` on `queue` with the email plugin and `config` as its section of
 * --plugin-config; the password reaches it only through the environment. */
static void start_worker(test_proc_t *w, const char *queue, int threads, const char *config)
{
    char cfg[1024], th[16], url[128];
    snprintf(cfg, sizeof(cfg), "{\"email\":%s}", config);
    snprintf(th, sizeof(th), "%d", threads);
    snprintf(url, sizeof(url), "HOPPER_REDIS_URL=%s", redis.url);
    const char *argv[] = {HOPPER_BIN,        "worker",     "--queues",   queue,
                          "--plugins",       EMAIL_PLUGIN, "--threads",  th,
                          "--processes",     "1",          "--blob-dir", blobdir,
                          "--plugin-config", cfg,          NULL};
    const char *env[] = {url,
                         "HOPPER_LOG_LEVEL=info",
                         "HOPPER_QUEUES=",
                         "HOPPER_THREADS=",
                         "HOPPER_TEST_SMTP_PASSWORD=" SECRET,
                         NULL};
    assert_int_equal(test_proc_start(w, argv, env), 0);
    if (!test_proc_wait_log(w, ": serving ", START_MS)) {
        print_log("worker", w);
        fail_msg("the worker on %s did not start serving", queue);
    }
}

/* smtpd.py on `port`, saving to `dir`; with AUTH for "user:password" when auth is set,
 * with STARTTLS required when tls names a directory with cert.pem and key.pem. */
static void start_smtpd(test_proc_t *p, int port, const char *dir, const char *auth,
                        const char *tls)
{
    char ports[16], cert[256], key[256];
    snprintf(ports, sizeof(ports), "%d", port);
    snprintf(cert, sizeof(cert), "%s/cert.pem", tls ? tls : "");
    snprintf(key, sizeof(key), "%s/key.pem", tls ? tls : "");
    const char *argv[10] = {PYTHON, HOPPER_EMAIL_FIXTURES "/smtpd.py", "--port", ports, "--dir",
                            dir};
    int n = 6;
    if (auth) {
        argv[n++] = "--auth";
        argv[n++] = auth;
    } else if (tls) {
        argv[n++] = "--tls";
        argv[n++] = cert;
        argv[n++] = key;
    }
    assert_int_equal(test_proc_start(p, argv, NULL), 0);
    if (!test_proc_wait_log(p, "smtpd: listening", START_MS)) {
        print_log("smtpd", p);
        fail_msg("the SMTP server did not start on port %d", port);
    }
}

/* A job on `queue`; retries (when max_attempts allows) wait 60 s, so a retryable
 * failure stays visible in "failed". The payload is stolen. */
static char *enqueue(const char *queue, json_t *payload, int max_attempts)
{
    char *text = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    job_spec_t spec = {.queue = queue,
                       .type = "email.send",
                       .payload = text,
                       .max_attempts = max_attempts,
                       .backoff = {.kind = BACKOFF_FIXED, .base_ms = 60000, .cap_ms = 60000}};
    enqueue_result_t r;
    memset(&r, 0, sizeof(r));
    if (broker_enqueue(B, &spec, 1, &r))
        fail_msg("enqueue on %s: %s (%s)", queue, broker_errmsg(B), r.errmsg);
    free(text);
    return strdup(r.id);
}

static void show_job(const job_t *j)
{
    char *json = job_to_json(j, 2);
    fprintf(stderr, "job:\n%s\n", json);
    hp_free(json);
}

/* Polls the job until it is in `want` (returned; job_free it); fails if it ends in
 * another final state or the wait runs out. */
static job_t *wait_state_at(const char *id, job_state_t want, int line)
{
    int64_t end = hp_mono_ms() + WAIT_MS;
    for (;;) {
        job_t *j = NULL;
        if (broker_get(B, id, &j))
            fail_msg("broker_get %s: %s", id, broker_errmsg(B));
        if (j->state == want)
            return j;
        bool final = j->state == JOB_STATE_SUCCEEDED || j->state == JOB_STATE_DEAD ||
                     j->state == JOB_STATE_CANCELED;
        if (final || (j->state == JOB_STATE_FAILED && want != JOB_STATE_FAILED) ||
            hp_mono_ms() > end) {
            show_job(j);
            fail_msg("job %s is %s, expected %s (test_plugin_email.c:%d)", id,
                     job_state_name(j->state), job_state_name(want), line);
        }
        job_free(j);
        hp_sleep_ms(20);
    }
}
#define wait_state(id, want) wait_state_at((id), (want), __LINE__)

/* The last error of j must contain every string given (NULL-terminated). */
static void error_has_at(const job_t *j, int line, ...)
{
    const char *msg = j->nerrors ? j->errors[j->nerrors - 1].message : "";
    va_list ap;
    va_start(ap, line);
    for (const char *want; (want = va_arg(ap, const char *));) {
        if (!strstr(msg, want)) {
            show_job(j);
            fail_msg("job %s: error \"%s\" should contain \"%s\" (test_plugin_email.c:%d)", j->id,
                     msg, want, line);
        }
    }
    va_end(ap);
}
#define error_has(j, ...) error_has_at((j), __LINE__, __VA_ARGS__, NULL)

/* Waits for the job to end in `want` with an error holding the strings; frees it. */
#define expect_failure(id, want, ...)                                                              \
    do {                                                                                           \
        job_t *j_ = wait_state((id), (want));                                                      \
        error_has(j_, __VA_ARGS__);                                                                \
        job_free(j_);                                                                              \
    } while (0)

/* Messages the main server has captured. */
static int mail_count(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        n += len > 4 && strcmp(e->d_name + len - 4, ".eml") == 0;
    }
    closedir(d);
    return n;
}

/* Message n as Python's email parser sees it (inspect_message.py's JSON). */
static json_t *inspect_mail(const char *dir, int n)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), PYTHON " " HOPPER_EMAIL_FIXTURES "/inspect_message.py %s/%d.eml",
             dir, n);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    json_error_t err;
    json_t *j = json_loadf(f, 0, &err);
    int st = pclose(f);
    if (!j || st != 0)
        fail_msg("inspect_message.py %s/%d.eml failed (status %d): %s", dir, n, st, err.text);
    return j;
}

static json_t *envelope(const char *dir, int n)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%d.json", dir, n);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j)
        fail_msg("%s: %s", path, err.text);
    return j;
}

static const char *jstr(json_t *obj, const char *path)
{
    json_t *v = obj;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
        char *end;
        long idx = strtol(k, &end, 10);
        v = *end == '\0' ? json_array_get(v, (size_t)idx) : json_object_get(v, k);
    }
    return json_string_value(v);
}

static void assert_jstr(json_t *obj, const char *path, const char *want)
{
    const char *got = jstr(obj, path);
    if (!got || strcmp(got, want) != 0) {
        char *dump = json_dumps(obj, JSON_INDENT(1));
        fprintf(stderr, "%s\n", dump);
        free(dump);
        fail_msg("%s is \"%s\", expected \"%s\"", path, got ? got : "(none)", want);
    }
}

/* A blob in the store the worker uses; its id is the SHA-256 of the bytes. */
static void put_blob(const void *data, size_t len, const char *ctype, char id[65])
{
    blob_writer_t *w = NULL;
    assert_int_equal(blob_write_begin(bs, ctype, 1 << 24, &w), 0);
    assert_int_equal(blob_write(w, data, len), 0);
    blob_info_t info;
    assert_int_equal(blob_write_commit(w, &info), 0);
    snprintf(id, 65, "%s", info.id);
}

/* "\r\n" -> "\n", in place. */
static char *unix_lines(char *s)
{
    char *o = s;
    for (const char *p = s; *p; p++) {
        if (!(p[0] == '\r' && p[1] == '\n'))
            *o++ = *p;
    }
    *o = '\0';
    return s;
}

static bool log_contains(const test_proc_t *p, const char *text)
{
    char *log = test_proc_log(p);
    bool found = strstr(log, text) != NULL;
    free(log);
    return found;
}

/* ---- Tests ---- */

/* A full message: everything a user checks in the mail they get. */
static void test_delivery(void **state)
{
    (void)state;
    unsigned char *bin = malloc(100000);
    uint32_t x = 12345;
    for (size_t i = 0; i < 100000; i++) {
        x = x * 1103515245u + 12345u;
        bin[i] = i < 256 ? (unsigned char)i : (unsigned char)(x >> 24); /* every byte value */
    }
    char bin_id[65], csv_id[65];
    put_blob(bin, 100000, "application/octet-stream", bin_id);
    put_blob("name,city\r\nZoë,Zürich\r\n", strlen("name,city\r\nZoë,Zürich\r\n"), "text/csv",
             csv_id);
    free(bin);

    const char *subject = "Grüße aus Zürich — Quartalsbericht Q3 ✓ with a long tail that "
                          "needs folding over more than one header line";
    char text[2048];
    snprintf(text, sizeof(text),
             "Hello Ada,\n\nThe report is attached. 1 + 1 = 2; a=b.\nTrailing spaces   \n"
             ".a line that starts with a dot\n.\nA long line: %s\nZürich, Ελλάδα, Москва\n",
             "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
             "incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis nostrud "
             "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat");
    const char *html = "<html><body><p>Grüße aus <b>Zürich</b> &mdash; Ελλάδα</p></body></html>\n";
    json_t *p = json_pack(
        "{s:{s:s,s:s}, s:[s,{s:s,s:s}], s:s, s:[s], s:s, s:s, s:s, s:s, s:[{s:s,s:s,s:s},{s:s}],"
        " s:{s:s,s:s}}",
        "from", "name", "Zoë Ågren", "email", "zoe@example.org", "to",
        "Ada Lovelace <ada@example.com>", "email", "bob@example.com", "name", "Bob, Jr.", "cc",
        "carol@example.com", "bcc", "dave@example.net", "reply_to", "replies@example.org",
        "subject", subject, "text", text, "html", html, "attachments", "blob", bin_id, "filename",
        "Bericht Q3 — 2026 (final) — a long name for continuations.bin", "content_type",
        "application/octet-stream", "blob", csv_id, "headers", "X-Campaign", "spring-2026",
        "X-Note", "café crème");
    assert_non_null(p);
    int before = mail_count(maildir);
    char *id = enqueue(queue_a, p, 3);
    job_t *j = wait_state(id, JOB_STATE_SUCCEEDED);
    assert_int_equal(j->attempts, 1);
    assert_int_equal(j->progress, 100);
    assert_non_null(j->logs);
    assert_non_null(strstr(j->logs, "sending <hopper."));
    assert_null(strstr(j->logs, SECRET));
    assert_int_equal(mail_count(maildir), before + 1);

    /* The result: who the server took, and what it said. */
    json_t *result = json_loads(j->result, 0, NULL);
    assert_non_null(result);
    assert_int_equal(json_array_size(json_object_get(result, "accepted")), 4);
    assert_jstr(result, "accepted.3", "dave@example.net");
    assert_non_null(strstr(jstr(result, "reply"), "250 2.0.0 Ok: queued as hopper-test-"));
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%d", smtp_port);
    assert_jstr(result, "server", server);

    /* The envelope: every recipient, bcc included; the AUTH user. */
    json_t *env = envelope(maildir, before + 1);
    assert_jstr(env, "mail_from", "zoe@example.org");
    assert_int_equal(json_array_size(json_object_get(env, "rcpt_tos")), 4);
    assert_jstr(env, "rcpt_tos.0", "ada@example.com");
    assert_jstr(env, "rcpt_tos.1", "bob@example.com");
    assert_jstr(env, "rcpt_tos.2", "carol@example.com");
    assert_jstr(env, "rcpt_tos.3", "dave@example.net");
    assert_jstr(env, "auth_user", "hopper");

    /* The message as a mail reader sees it. */
    json_t *m = inspect_mail(maildir, before + 1);
    if (json_array_size(json_object_get(m, "defects")))
        fail_msg("the parser found defects: %s", json_dumps(json_object_get(m, "defects"), 0));
    assert_jstr(m, "from.0.name", "Zoë Ågren");
    assert_jstr(m, "from.0.email", "zoe@example.org");
    assert_int_equal(json_array_size(json_object_get(m, "to")), 2);
    assert_jstr(m, "to.0.name", "Ada Lovelace");
    assert_jstr(m, "to.0.email", "ada@example.com");
    assert_jstr(m, "to.1.name", "Bob, Jr.");
    assert_jstr(m, "to.1.email", "bob@example.com");
    assert_jstr(m, "cc.0.email", "carol@example.com");
    assert_true(json_is_null(json_object_get(m, "bcc")));
    assert_jstr(m, "reply_to.0.email", "replies@example.org");
    assert_jstr(m, "subject", subject);
    assert_jstr(m, "message_id", jstr(result, "message_id"));
    assert_non_null(strstr(jstr(m, "message_id"), "@example.org>"));
    assert_non_null(jstr(m, "date_parsed"));
    assert_jstr(m, "mime_version", "1.0");
    assert_jstr(m, "content_type", "multipart/mixed");
    assert_true(json_is_true(json_object_get(m, "alternative")));
    assert_jstr(m, "headers.X-Campaign", "spring-2026");
    assert_jstr(m, "headers.X-Note", "café crème");
    char *got_text = strdup(jstr(m, "text"));
    char *got_html = strdup(jstr(m, "html"));
    assert_string_equal(unix_lines(got_text), text);
    assert_string_equal(unix_lines(got_html), html);
    free(got_text);
    free(got_html);
    assert_int_equal(json_array_size(json_object_get(m, "attachments")), 2);
    assert_jstr(m, "attachments.0.filename",
                "Bericht Q3 — 2026 (final) — a long name for continuations.bin");
    assert_jstr(m, "attachments.0.content_type", "application/octet-stream");
    assert_jstr(m, "attachments.0.sha256", bin_id); /* byte-exact */
    assert_jstr(m, "attachments.0.encoding", "base64");
    assert_jstr(m, "attachments.1.filename", "attachment-2");
    assert_jstr(m, "attachments.1.content_type", "text/csv"); /* the blob's own type */
    assert_jstr(m, "attachments.1.sha256", csv_id);
    /* Lines: CRLF only, none over 78 octets (SMTP allows 998). */
    assert_int_equal(json_integer_value(json_object_get(m, "bare_lf")), 0);
    json_int_t longest = json_integer_value(json_object_get(m, "max_line"));
    fprintf(stderr, "delivered %lld bytes, longest line %lld octets\n",
            (long long)json_integer_value(json_object_get(result, "size")), (long long)longest);
    assert_true(longest <= 78);

    json_decref(m);
    json_decref(env);
    json_decref(result);
    job_free(j);
    free(id);
    passed++;
}

/* What the server refuses, and what the plugin refuses before asking it. */
static void test_refusals(void **state)
{
    (void)state;
    int before = mail_count(maildir);
    char *tempfail = enqueue(queue_a,
                             json_pack("{s:s,s:s,s:s}", "to", "tempfail@example.com", "subject",
                                       "greylisted", "text", "hi"),
                             3);
    char *reject = enqueue(queue_a,
                           json_pack("{s:[s,s],s:s}", "to", "ok@example.com", "reject@example.com",
                                     "text", "nobody may get this: one recipient is refused"),
                           3);
    char *inj_subject = enqueue(queue_a,
                                json_pack("{s:s,s:s,s:s}", "to", "ok@example.com", "subject",
                                          "Hello\r\nBcc: victim@example.com", "text", "x"),
                                3);
    char *inj_to = enqueue(
        queue_a,
        json_pack("{s:s,s:s}", "to", "ok@example.com\nBcc: victim@example.com", "text", "x"), 3);
    char *inj_name = enqueue(queue_a,
                             json_pack("{s:{s:s,s:s},s:s}", "to", "email", "ok@example.com", "name",
                                       "Ok\r\nBcc: victim@example.com", "text", "x"),
                             3);
    char *inj_header = enqueue(queue_a,
                               json_pack("{s:s,s:{s:s},s:s}", "to", "ok@example.com", "headers",
                                         "X-Note", "a\r\nBcc: victim@example.com", "text", "x"),
                               3);
    char *bad_addr = enqueue(
        queue_a, json_pack("{s:[s,s],s:s}", "to", "ok@example.com", "not-an-address", "text", "x"),
        3);
    char *no_blob =
        enqueue(queue_a,
                json_pack("{s:s,s:[{s:s}]}", "to", "ok@example.com", "attachments", "blob",
                          "0000000000000000000000000000000000000000000000000000000000000000"),
                3);
    char *typo = enqueue(
        queue_a, json_pack("{s:s,s:s,s:[]}", "to", "ok@example.com", "text", "x", "attachment"), 3);
    char *deflt = enqueue(queue_a,
                          json_pack("{s:s,s:s}", "to", "default-from@example.com", "text",
                                    "from the configured sender"),
                          3);

    expect_failure(tempfail, JOB_STATE_FAILED, "to[0]", "tempfail@example.com", "451");
    expect_failure(reject, JOB_STATE_DEAD, "to[1]", "reject@example.com", "550");
    expect_failure(inj_subject, JOB_STATE_DEAD, "\"subject\"", "header injection");
    expect_failure(inj_to, JOB_STATE_DEAD, "\"to\"", "header injection");
    expect_failure(inj_name, JOB_STATE_DEAD, "\"to.name\"", "header injection");
    expect_failure(inj_header, JOB_STATE_DEAD, "\"headers.X-Note\"", "header injection");
    expect_failure(bad_addr, JOB_STATE_DEAD, "\"to[1]\"", "not-an-address");
    expect_failure(no_blob, JOB_STATE_DEAD, "\"attachments[0].blob\"", "no blob");
    expect_failure(typo, JOB_STATE_DEAD, "unknown field \"attachment\"");
    job_t *j = wait_state(deflt, JOB_STATE_SUCCEEDED);
    job_free(j);

    /* Only the last one reached anybody: with one recipient refused, the others did
     * not get the message either (no DATA was sent), so a retry sends no duplicate. */
    assert_int_equal(mail_count(maildir), before + 1);
    json_t *m = inspect_mail(maildir, before + 1);
    assert_jstr(m, "from.0.name", "Hopper Test");
    assert_jstr(m, "from.0.email", "noreply@example.org");
    assert_jstr(m, "to.0.email", "default-from@example.com");
    json_decref(m);

    char *ids[] = {tempfail,   reject,   inj_subject, inj_to, inj_name,
                   inj_header, bad_addr, no_blob,     typo,   deflt};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        free(ids[i]);
    passed++;
}

/* A server that is down: retryable; then the breaker opens, and a trial closes it. */
static void test_server_down_and_breaker(void **state)
{
    (void)state;
    int port = test_free_port();
    assert_true(port > 0);
    char cfg[256], where[64];
    snprintf(cfg, sizeof(cfg),
             "{\"host\":\"127.0.0.1\",\"port\":%d,\"from\":\"a@example.org\","
             "\"breaker_threshold\":2,\"breaker_open_ms\":5000,\"timeout_ms\":5000}",
             port);
    snprintf(where, sizeof(where), "127.0.0.1:%d", port);
    const char *q = test_queue_name("email-down");
    test_proc_t *w = &worker_b;
    start_worker(w, q, 1, cfg);

    json_t *p = json_pack("{s:s,s:s}", "to", "ada@example.com", "text", "hello");
    char *ids[5];
    for (int i = 0; i < 2; i++) {
        ids[i] = enqueue(q, json_deep_copy(p), 2);
        expect_failure(ids[i], JOB_STATE_FAILED, "cannot deliver through", where, "refused");
    }
    int64_t t0 = hp_mono_ms();
    ids[2] = enqueue(q, json_deep_copy(p), 2);
    char open_msg[96];
    snprintf(open_msg, sizeof(open_msg), "circuit open for %s", where);
    expect_failure(ids[2], JOB_STATE_FAILED, open_msg);
    fprintf(stderr, "breaker: the third job failed fast, %lld ms from enqueue\n",
            (long long)(hp_mono_ms() - t0));

    /* The server comes up; once the open period is over, one trial goes through
     * and closes the circuit for the jobs after it. */
    char dir[] = "/tmp/hopper-test-mail2-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(scratch[0], sizeof(scratch[0]), "%s", dir);
    start_smtpd(&smtpd_b, port, dir, NULL, NULL);
    int64_t left = 5500 - (hp_mono_ms() - t0);
    if (left > 0)
        hp_sleep_ms(left);
    ids[3] = enqueue(q, json_deep_copy(p), 2);
    ids[4] = enqueue(q, json_deep_copy(p), 2);
    job_free(wait_state(ids[3], JOB_STATE_SUCCEEDED));
    job_free(wait_state(ids[4], JOB_STATE_SUCCEEDED));
    assert_int_equal(mail_count(dir), 2);
    json_decref(p);

    assert_false(log_contains(w, "ERROR"));
    assert_int_equal(test_proc_stop(w, 20000), 0);
    test_proc_stop(&smtpd_b, 5000);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < 5; i++)
        free(ids[i]);
    passed++;
}

/* starttls "required" against a server that does not offer it: nothing is sent. */
static void test_starttls_required(void **state)
{
    (void)state;
    char cfg[256];
    snprintf(cfg, sizeof(cfg),
             "{\"host\":\"127.0.0.1\",\"port\":%d,\"from\":\"a@example.org\","
             "\"starttls\":\"required\"}",
             smtp_port);
    const char *q = test_queue_name("email-tls");
    test_proc_t *w = &worker_c;
    start_worker(w, q, 1, cfg);
    int before = mail_count(maildir);
    char *id = enqueue(q, json_pack("{s:s,s:s}", "to", "ada@example.com", "text", "secret"), 2);
    expect_failure(id, JOB_STATE_FAILED, "STARTTLS is required", "does not offer it");
    assert_int_equal(mail_count(maildir), before);
    assert_int_equal(test_proc_stop(w, 20000), 0);
    free(id);
    passed++;
}

/* STARTTLS with certificate checks: a worker that trusts the server's CA (config
 * "tls_ca_file") sends over TLS; one that does not
 * refuses the certificate, sends nothing, and may retry. */
static void test_starttls_verified(void **state)
{
    (void)state;
    char tls[] = "/tmp/hopper-test-mail-tls-XXXXXX";
    assert_non_null(mkdtemp(tls));
    snprintf(scratch[1], sizeof(scratch[1]), "%s", tls);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
             "-nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost >openssl.log 2>&1 && mkdir mail",
             tls);
    assert_int_equal(system(cmd), 0);
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/mail", tls);
    int port = test_free_port();
    start_smtpd(&smtpd_tls, port, dir, NULL, tls);

    char cfg_ok[512], cfg_bad[256];
    snprintf(cfg_ok, sizeof(cfg_ok),
             "{\"host\":\"localhost\",\"port\":%d,\"from\":\"a@example.org\","
             "\"starttls\":\"required\",\"tls_ca_file\":\"%s/cert.pem\"}",
             port, tls);
    snprintf(cfg_bad, sizeof(cfg_bad),
             "{\"host\":\"localhost\",\"port\":%d,\"from\":\"a@example.org\","
             "\"starttls\":\"required\"}",
             port);
    const char *trusted = test_queue_name("email-tls-ok");
    const char *untrusted = test_queue_name("email-tls-bad");
    start_worker(&worker_d, trusted, 1, cfg_ok);
    start_worker(&worker_e, untrusted, 1, cfg_bad);
    char *ok = enqueue(trusted, json_pack("{s:s,s:s}", "to", "ada@example.com", "text", "tls"), 2);
    char *bad =
        enqueue(untrusted, json_pack("{s:s,s:s}", "to", "ada@example.com", "text", "tls"), 2);
    job_free(wait_state(ok, JOB_STATE_SUCCEEDED));
    expect_failure(bad, JOB_STATE_FAILED, "TLS certificate", "did not verify");
    assert_int_equal(mail_count(dir), 1);
    json_t *env = envelope(dir, 1);
    assert_true(json_is_true(json_object_get(env, "tls")));
    json_decref(env);

    assert_int_equal(test_proc_stop(&worker_d, 20000), 0);
    assert_int_equal(test_proc_stop(&worker_e, 20000), 0);
    test_proc_stop(&smtpd_tls, 5000);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tls);
    assert_int_equal(system(cmd), 0);
    free(ok);
    free(bad);
    passed++;
}

/* Credentials the server refuses: the operator's problem, not the job's; retryable. */
static void test_auth_refused(void **state)
{
    (void)state;
    char cfg[256];
    snprintf(cfg, sizeof(cfg),
             "{\"host\":\"127.0.0.1\",\"port\":%d,\"from\":\"a@example.org\","
             "\"username\":\"hopper\",\"password\":\"wrong-password\"}",
             smtp_port);
    const char *q = test_queue_name("email-auth");
    start_worker(&worker_f, q, 1, cfg);
    int before = mail_count(maildir);
    char *id = enqueue(q, json_pack("{s:s,s:s}", "to", "ada@example.com", "text", "x"), 2);
    expect_failure(id, JOB_STATE_FAILED, "AUTH");
    assert_int_equal(mail_count(maildir), before);
    assert_false(log_contains(&worker_f, "wrong-password"));
    assert_int_equal(test_proc_stop(&worker_f, 20000), 0);
    free(id);
    passed++;
}

/* Last: the shared worker stops cleanly, and never logged the password. */
static void test_worker_stops_clean(void **state)
{
    (void)state;
    assert_false(log_contains(&worker_a, SECRET));
    assert_int_equal(test_proc_stop(&worker_a, 20000), 0);
    /* In the sanitizer build, an ASan/UBSan report from a worker process shows here.
     * (Not leaks: worker processes end with _exit, so LeakSanitizer never runs.) */
    assert_false(log_contains(&worker_a, "Sanitizer"));
    assert_false(log_contains(&worker_a, "runtime error"));
    passed++;
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
    char err[256];
    if (!mkdtemp(maildir) || !mkdtemp(blobdir) || !(bs = blobstore_open(blobdir, err, sizeof(err))))
        return -1;
    smtp_port = test_free_port();
    start_smtpd(&smtpd, smtp_port, maildir, "hopper:" SECRET, NULL);
    char cfg[512];
    snprintf(cfg, sizeof(cfg),
             "{\"host\":\"127.0.0.1\",\"port\":%d,\"username\":\"hopper\","
             "\"password_env\":\"HOPPER_TEST_SMTP_PASSWORD\","
             "\"from\":\"Hopper Test <noreply@example.org>\",\"timeout_ms\":10000}",
             smtp_port);
    queue_a = strdup(test_queue_name("email"));
    start_worker(&worker_a, queue_a, 4, cfg);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (passed < 7) {
        print_log("worker A", &worker_a);
        print_log("worker B (breaker)", &worker_b);
        print_log("worker C (STARTTLS)", &worker_c);
        print_log("worker D (CA trusted)", &worker_d);
        print_log("worker E (CA not trusted)", &worker_e);
        print_log("worker F (wrong password)", &worker_f);
        print_log("smtpd", &smtpd);
        print_log("smtpd (TLS)", &smtpd_tls);
    }
    test_proc_cleanup(&worker_a);
    test_proc_cleanup(&worker_b);
    test_proc_cleanup(&worker_c);
    test_proc_cleanup(&worker_d);
    test_proc_cleanup(&worker_e);
    test_proc_cleanup(&worker_f);
    test_proc_cleanup(&smtpd_tls);
    test_proc_cleanup(&smtpd_b);
    test_proc_cleanup(&smtpd);
    free((void *)queue_a);
    blobstore_close(bs);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s' '%s' '%s'", maildir, blobdir, scratch[0],
             scratch[1]);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s, %s\n", maildir, blobdir);
    broker_close(B);
    test_redis_stop(&redis);
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delivery),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_server_down_and_breaker),
        cmocka_unit_test(test_starttls_required),
        cmocka_unit_test(test_starttls_verified),
        cmocka_unit_test(test_auth_refused),
        cmocka_unit_test(test_worker_stops_clean),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
