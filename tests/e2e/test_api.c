/*
 * End to end: the real `hopper server` binary over HTTP, against a private
 * redis-server, checking what a user of the API checks: status codes, headers,
 * problem+json bodies that name the field, payloads that come back byte for byte,
 * and the limits of issue 4 ("Limits and bad input", "Security").
 *
 * HTTP is spoken over plain sockets by a small client below, so raw protocol cases
 * (pipelining, chunked bodies, 100-continue, slow or oversized requests) can be
 * written exactly. Each server logs to a file; the port it picked (--listen
 * 127.0.0.1:0) is read from its "serving ... (port N)" line, and a server must
 * stop on SIGTERM with exit status 0 and no sanitizer report in its log.
 *
 * Time bounds are generous on purpose (a loaded 2-core machine): they tell "answers
 * promptly" from "hangs", nothing finer.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "broker/broker.h"
#include "common/common.h"
#include "tests/support/test_cli.h"
#include "tests/support/test_redis.h"

#define START_WAIT_MS 20000 /* how long a server may take to say "serving" */
#define STOP_WAIT_MS  20000 /* how long a SIGTERM'd server may take to exit */
#define IO_WAIT_MS    10000 /* how long an ordinary answer may take */
#define MAX_BODY      (256 * 1024)
#define MAX_BLOB      (5 * 1000 * 1000)
#define CORS_ORIGIN   "https://dash.example"
#define BLOB_ZERO     "0000000000000000000000000000000000000000000000000000000000000000"

extern char **environ;

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

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ---- Servers ---- */

typedef struct server_s {
    pid_t pid;
    int port;
    bool reaped;
    int status; /* once reaped: exit status, or 128 + signal */
    char log[64];
    char blobs[64];
} server_t;

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

static int server_wait_exit(server_t *s, int64_t timeout_ms)
{
    int64_t end = hp_mono_ms() + timeout_ms;
    while (!server_try_reap(s)) {
        if (hp_mono_ms() > end)
            return -1;
        hp_sleep_ms(10);
    }
    return s->status;
}

static void print_log(const server_t *s)
{
    char *log = slurp(s->log);
    size_t n = strlen(log);
    fprintf(stderr, "---- server log (%s) ----\n%s\n----\n", s->log,
            n > 12000 ? log + n - 12000 : log);
    free(log);
}

static bool env_is_ours(const char *entry)
{
    return strncmp(entry, "HOPPER_", 7) == 0;
}

/* Starts `hopper server --listen LISTEN --blob-dir (fresh) ARGS...` with
 * HOPPER_REDIS_URL=redis_url, `env` added ("NAME=value", NULL-terminated), its
 * stderr in a file. Does not wait. */
static void server_spawn(server_t *s, const char *redis_url, const char *listen,
                         const char *const *args, const char *const *env)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->log, sizeof(s->log), "/tmp/hopper-test-api-XXXXXX");
    snprintf(s->blobs, sizeof(s->blobs), "/tmp/hopper-test-blobs-XXXXXX");
    int errfd = mkstemp(s->log);
    assert_true(errfd >= 0);
    assert_non_null(mkdtemp(s->blobs));

    const char *argv[64] = {HOPPER_BIN,         "server", "--listen",  listen,
                            "--blob-dir",       s->blobs, "--threads", "2",
                            "--broker-threads", "2"};
    int argc = 10;
    for (int i = 0; args && args[i]; i++) {
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
    snprintf(url, sizeof(url), "HOPPER_REDIS_URL=%s", redis_url);
    envp[k++] = url;
    envp[k++] = "HOPPER_LOG_LEVEL=info"; /* the request lines are info */
    for (int i = 0; env && env[i]; i++) {
        assert_true(k < nenv + 15);
        envp[k++] = env[i];
    }
    envp[k] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the test died: so does the server */
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(errfd, 2);
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        execve(HOPPER_BIN, (char *const *)argv, (char *const *)envp);
        dprintf(2, "test_api: cannot run %s: %s\n", HOPPER_BIN, strerror(errno));
        _exit(127);
    }
    close(errfd);
    free(envp);
    s->pid = pid;
}

/* Waits for the "(port N)" of the serving line; 0, or -1 when the server exited
 * or never said it. */
static int server_wait_serving(server_t *s)
{
    int64_t end = hp_mono_ms() + START_WAIT_MS;
    while (hp_mono_ms() < end) {
        char *log = slurp(s->log);
        const char *at = strstr(log, "(port ");
        if (at)
            s->port = atoi(at + 6);
        free(log);
        if (s->port > 0)
            return 0;
        if (server_try_reap(s))
            return -1;
        hp_sleep_ms(20);
    }
    return -1;
}

static void server_start(server_t *s, const char *redis_url, const char *const *args,
                         const char *const *env)
{
    server_spawn(s, redis_url, "127.0.0.1:0", args, env);
    if (server_wait_serving(s) != 0) {
        print_log(s);
        fail_msg("hopper server did not start (exit status %d)", s->reaped ? s->status : -1);
    }
}

/* What no server may log: a sanitizer report. */
static void assert_log_clean(const server_t *s)
{
    char *log = slurp(s->log);
    bool bad = contains(log, "AddressSanitizer") || contains(log, "LeakSanitizer") ||
               contains(log, "runtime error:") || contains(log, "ThreadSanitizer");
    free(log);
    if (bad) {
        print_log(s);
        fail_msg("the server's log has a sanitizer report");
    }
}

/* SIGTERM, then the exit status (-1 if it did not exit in time: then SIGKILL). */
static int server_stop(server_t *s)
{
    if (s->pid <= 0)
        return 0;
    if (!s->reaped)
        kill(s->pid, SIGTERM);
    int st = server_wait_exit(s, STOP_WAIT_MS);
    if (st < 0) {
        kill(s->pid, SIGKILL);
        server_wait_exit(s, STOP_WAIT_MS);
    }
    return st;
}

static void server_cleanup(server_t *s)
{
    if (s->pid > 0 && !s->reaped) {
        kill(s->pid, SIGKILL);
        server_wait_exit(s, STOP_WAIT_MS);
    }
    if (s->log[0])
        unlink(s->log);
    if (s->blobs[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->blobs);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", s->blobs);
    }
    memset(s, 0, sizeof(*s));
}

/* Stops the server and checks it went cleanly: exit 0, nothing from a sanitizer. */
static void server_stop_clean(server_t *s)
{
    int st = server_stop(s);
    if (st != 0) {
        print_log(s);
        fail_msg("hopper server exited with status %d after SIGTERM, expected 0", st);
    }
    assert_log_clean(s);
}

/* ---- An HTTP client over a plain socket ---- */

typedef struct conn_s {
    int fd;
    char *buf; /* received and not yet consumed */
    size_t len, cap;
    bool eof;
} conn_t;

typedef struct resp_s {
    int status;
    char head[16384]; /* status line and headers */
    char *body;       /* NUL-terminated */
    size_t body_len;
} resp_t;

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void report_dead_servers(void);

static void conn_open(conn_t *c, int port)
{
    memset(c, 0, sizeof(*c));
    c->fd = connect_port(port);
    if (c->fd < 0) {
        int e = errno;
        report_dead_servers();
        fail_msg("cannot connect to 127.0.0.1:%d: %s", port, strerror(e));
    }
}

static void conn_close(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

/* Closes with a reset (SO_LINGER 0): the server's next write fails at once. */
static void conn_reset(conn_t *c)
{
    struct linger lg = {1, 0};
    if (c->fd >= 0)
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    conn_close(c);
}

/* Sends everything; false when the peer is gone. */
static bool conn_send(conn_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool conn_sends(conn_t *c, const char *text)
{
    return conn_send(c, text, strlen(text));
}

/* Reads what is there within timeout_ms into c->buf; false on timeout or EOF. */
static bool conn_fill(conn_t *c, int timeout_ms)
{
    if (c->eof)
        return false;
    struct pollfd p = {c->fd, POLLIN, 0};
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0)
        return false;
    if (c->cap - c->len < 65536) {
        c->cap = c->cap * 2 + 65536;
        c->buf = realloc(c->buf, c->cap + 1);
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n <= 0) {
        c->eof = true;
        return false;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    return true;
}

static void consume(conn_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    c->buf[c->len] = '\0';
}

static bool find_header(const char *head, const char *name, char *out, size_t len)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p, "\r\n")) {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r\n");
            if (out) {
                snprintf(out, len, "%.*s", (int)vl, v);
            }
            return true;
        }
    }
    return false;
}

static void resp_reset(resp_t *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/*
 * Reads one response (a 1xx one included) within timeout_ms. The body is read by
 * Content-Length, or to EOF when there is none. 0, or -1 on timeout or an EOF
 * before the head was complete.
 */
static int read_response(conn_t *c, resp_t *r, int timeout_ms)
{
    resp_reset(r);
    int64_t end = hp_mono_ms() + timeout_ms;
    char *eoh;
    while (!c->buf || !(eoh = strstr(c->buf, "\r\n\r\n"))) {
        int left = (int)(end - hp_mono_ms());
        if (left <= 0 || !conn_fill(c, left))
            return -1;
    }
    size_t hl = (size_t)(eoh - c->buf) + 4;
    snprintf(r->head, sizeof(r->head), "%.*s", (int)hl, c->buf);
    consume(c, hl);
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    char cl[32];
    bool has_len = find_header(r->head, "Content-Length", cl, sizeof(cl));
    if (r->status < 200) {
        r->body = strdup("");
        return 0;
    }
    size_t want = has_len ? strtoull(cl, NULL, 10) : SIZE_MAX;
    while (c->len < want) {
        int left = (int)(end - hp_mono_ms());
        if (left <= 0 || !conn_fill(c, left)) {
            if (!has_len && c->eof)
                break;
            return -1;
        }
    }
    size_t take = c->len < want ? c->len : want;
    r->body = malloc(take + 1);
    memcpy(r->body, c->buf, take);
    r->body[take] = '\0';
    r->body_len = take;
    consume(c, take);
    return 0;
}

/* Whether the server closes the connection within timeout_ms (what it sends
 * meanwhile is dropped). */
static bool wait_closed(conn_t *c, int timeout_ms)
{
    int64_t end = hp_mono_ms() + timeout_ms;
    while (!c->eof) {
        int left = (int)(end - hp_mono_ms());
        if (left <= 0)
            return false;
        conn_fill(c, left);
        c->len = 0;
    }
    return true;
}

/* Reads until `needle` is in the received text, within timeout_ms. */
static bool read_until(conn_t *c, const char *needle, int timeout_ms)
{
    int64_t end = hp_mono_ms() + timeout_ms;
    while (!contains(c->buf, needle)) {
        int left = (int)(end - hp_mono_ms());
        if (left <= 0 || !conn_fill(c, left))
            return false;
    }
    return true;
}

/* A request's text: METHOD PATH, Host, extra header lines ("Name: v\r\n"...),
 * and with a body its Content-Type (unless the extra lines give one) and
 * Content-Length. */
static char *build_request(const char *method, const char *path, const char *headers,
                           const char *body, size_t body_len, size_t *len)
{
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_printf(&sb, "%s %s HTTP/1.1\r\nHost: test\r\n%s", method, path,
                     headers ? headers : "");
    if (body) {
        if (!headers || !strcasestr(headers, "Content-Type:"))
            hp_strbuf_appends(&sb, "Content-Type: application/json\r\n");
        hp_strbuf_printf(&sb, "Content-Length: %zu\r\n", body_len);
    }
    hp_strbuf_appends(&sb, "\r\n");
    if (body)
        hp_strbuf_append(&sb, body, body_len);
    return hp_strbuf_steal(&sb, len);
}

static server_t S;      /* the main server: no tokens, loopback */
static test_redis_t RD; /* its redis */
static broker_t *B;     /* the test's own broker connection to RD */
static resp_t RESP;     /* the last answer of http() */
static resp_t *const R = &RESP;

/* When the main server died, say how, with its log (once). */
static void report_dead_servers(void)
{
    static bool reported;
    if (S.pid > 0 && !reported && server_try_reap(&S)) {
        reported = true;
        print_log(&S);
        print_error("the main server exited with status %d\n", S.status);
    }
}

static void show(const char *what, const resp_t *r)
{
    print_error("%s\n---- response ----\n%s%.3000s\n----\n", what, r->head, r->body ? r->body : "");
}

/* One request on its own connection to `port`; the answer is in R. Returns the
 * status, or fails the test when none came. */
static int http_len(int port, const char *method, const char *path, const char *headers,
                    const char *body, size_t body_len)
{
    conn_t c;
    conn_open(&c, port);
    size_t len;
    char *req = build_request(method, path, headers, body, body_len, &len);
    bool sent = conn_send(&c, req, len);
    hp_free(req);
    int rc = read_response(&c, R, IO_WAIT_MS);
    conn_close(&c);
    if (rc != 0) {
        report_dead_servers();
        if (port == S.port && !S.reaped)
            print_log(&S);
        fail_msg("%s %s: no answer within %d ms (sent: %d)", method, path, IO_WAIT_MS, sent);
    }
    return R->status;
}

static int http(int port, const char *method, const char *path, const char *headers,
                const char *body)
{
    return http_len(port, method, path, headers, body, body ? strlen(body) : 0);
}

#define GET(path)        http(S.port, "GET", (path), NULL, NULL)
#define POST(path, body) http(S.port, "POST", (path), NULL, (body))
#define DELETE(path)     http(S.port, "DELETE", (path), NULL, NULL)

#define expect_status(r, code)                                                                     \
    do {                                                                                           \
        if ((r)->status != (code)) {                                                               \
            show("unexpected status", (r));                                                        \
            fail_msg("status %d, expected %d", (r)->status, (code));                               \
        }                                                                                          \
    } while (0)

static bool has_header(const resp_t *r, const char *name, const char *value_part)
{
    char v[1024];
    if (!find_header(r->head, name, v, sizeof(v)))
        return false;
    return !value_part || strcasestr(v, value_part) != NULL;
}

static void expect_header(const resp_t *r, const char *name, const char *part)
{
    if (!has_header(r, name, part)) {
        show("missing header", r);
        fail_msg("expected header %s%s%s", name, part ? " containing " : "", part ? part : "");
    }
}

#define expect_body_has(r, text)                                                                   \
    do {                                                                                           \
        if (!contains((r)->body, (text))) {                                                        \
            show("body lacks expected text", (r));                                                 \
            fail_msg("expected the body to contain %s", (text));                                   \
        }                                                                                          \
    } while (0)

/* A number of a parsed body (numbers are parsed as reals, so a 30-digit payload
 * integer parses too). */
static long long jnum(const json_t *v)
{
    return (long long)json_number_value(v);
}

/* A problem+json answer with this status whose detail mentions `word`. */
static void expect_problem(const resp_t *r, int status, const char *word)
{
    expect_status(r, status);
    expect_header(r, "Content-Type", "application/problem+json");
    json_t *doc = json_loads(r->body, 0, NULL);
    const char *detail = json_string_value(json_object_get(doc, "detail"));
    bool ok =
        detail && jnum(json_object_get(doc, "status")) == status && (!word || strstr(detail, word));
    json_decref(doc);
    if (!ok) {
        show("problem body", r);
        fail_msg("expected a problem with status %d and a detail naming \"%s\"", status,
                 word ? word : "");
    }
}

/* The body as JSON (fails when it is not); json_decref it. */
static json_t *body_json(const resp_t *r)
{
    json_error_t e;
    json_t *doc = json_loads(r->body, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
    if (!doc) {
        show("not JSON", r);
        fail_msg("the body is not JSON: %s", e.text);
    }
    return doc;
}

/* A string member of the body, copied to out. */
static void body_string(const resp_t *r, const char *key, char *out, size_t len)
{
    json_t *doc = body_json(r);
    const char *v = json_string_value(json_object_get(doc, key));
    if (!v) {
        show("missing member", r);
        json_decref(doc);
        fail_msg("expected a string \"%s\" in the body", key);
    }
    snprintf(out, len, "%s", v ? v : "");
    json_decref(doc);
}

/* Enqueues one job over HTTP; its id into id. */
static void enqueue_with(int port, const char *queue, const char *extra_json, char *id, size_t len)
{
    char body[1024];
    snprintf(body, sizeof(body), "{\"queue\":\"%s\",\"type\":\"t\",\"payload\":{\"n\":1}%s%s}",
             queue, extra_json ? "," : "", extra_json ? extra_json : "");
    http(port, "POST", "/v1/jobs", NULL, body);
    expect_status(R, 201);
    body_string(R, "id", id, len);
}

static void enqueue(const char *queue, const char *extra_json, char *id, size_t len)
{
    enqueue_with(S.port, queue, extra_json, id, len);
}

/* Opens GET /v1/events?queue=<queue><more query> on c and returns once an event
 * came through it. The subscription starts with the first listener and pub/sub is
 * best effort at its start, so jobs are enqueued until one's event arrives. */
static void sse_open_live_query(conn_t *c, int port, const char *queue, const char *more)
{
    conn_open(c, port);
    char req[256];
    snprintf(req, sizeof(req), "GET /v1/events?queue=%s%s HTTP/1.1\r\nHost: t\r\n\r\n", queue,
             more);
    assert_true(conn_sends(c, req));
    if (!read_until(c, ": connected", IO_WAIT_MS))
        fail_msg("no SSE stream opened: %s", c->buf ? c->buf : "(nothing)");
    assert_true(contains(c->buf, "text/event-stream"));
    char id[128] = "";
    bool got = false;
    for (int i = 0; i < 10 && !got; i++) {
        enqueue_with(port, queue, NULL, id, sizeof(id));
        got = read_until(c, id, 1000);
    }
    if (!got)
        fail_msg("no event for job %s on the SSE stream: %s", id, c->buf ? c->buf : "");
}

static void sse_open_live(conn_t *c, int port, const char *queue)
{
    sse_open_live_query(c, port, queue, "");
}

/* The sum over the "summary" events in text of queues.<queue>.events.<kind>.<state>;
 * -1 when a summary is not valid JSON. */
static long long summary_total(const char *text, const char *queue, const char *kind,
                               const char *state)
{
    static const char mark[] = "event: summary\ndata: ";
    long long total = 0;
    for (const char *p = strstr(text, mark); p; p = strstr(p, mark)) {
        p += sizeof(mark) - 1;
        const char *end = strchr(p, '\n');
        if (!end)
            break; /* not all here yet */
        json_t *doc = json_loadb(p, (size_t)(end - p), 0, NULL);
        if (!doc)
            return -1;
        json_t *q = json_object_get(json_object_get(doc, "queues"), queue);
        json_t *n = json_object_get(json_object_get(json_object_get(q, "events"), kind), state);
        total += json_is_integer(n) ? json_integer_value(n) : 0;
        json_decref(doc);
    }
    return total;
}

/* counts.<state> of GET /v1/queues/q. */
static long long queue_count(const char *queue, const char *state)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/queues/%s", queue);
    GET(path);
    expect_status(R, 200);
    json_t *doc = body_json(R);
    json_t *v = json_object_get(json_object_get(doc, "counts"), state);
    long long n = json_is_number(v) ? jnum(v) : -1;
    json_decref(doc);
    return n;
}

static char *job_path(const char *id, const char *suffix)
{
    static char path[256];
    snprintf(path, sizeof(path), "/v1/jobs/%s%s", id, suffix ? suffix : "");
    return path;
}

/* ---- Setup ---- */

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (test_redis_start(&RD, NULL))
        return -1;
    broker_config_t bc = {.url = RD.url};
    char *msg = NULL;
    if (broker_open(&bc, &B, &msg)) {
        fprintf(stderr, "broker_open %s: %s\n", RD.url, msg);
        hp_free(msg);
        return -1;
    }
    char body[32], blob[32];
    snprintf(body, sizeof(body), "%d", MAX_BODY);
    snprintf(blob, sizeof(blob), "%d", MAX_BLOB);
    const char *args[] = {"--max-body",     body,        "--max-blob", blob,
                          "--cors-origins", CORS_ORIGIN, NULL};
    server_spawn(&S, RD.url, "127.0.0.1:0", args, NULL);
    if (server_wait_serving(&S) != 0) {
        print_log(&S);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    server_cleanup(&S);
    resp_reset(R);
    broker_close(B);
    test_redis_stop(&RD);
    return 0;
}

/* ---- Jobs ---- */

static void test_enqueue_and_get_byte_exact(void **state)
{
    (void)state;
    const char *q = test_queue_name("enq");
    const char *payload = "{\"amount\":0.10,\"big\":123456789012345678901234567890,"
                          "\"s\":\"caf\\u00e9 \\\"q\\\"\",\"e\":1E+2}";
    char body[1024];
    snprintf(body, sizeof(body), "{\"queue\":\"%s\",\"type\":\"mail.send\",\"payload\":%s}", q,
             payload);
    POST("/v1/jobs", body);
    expect_status(R, 201);
    expect_header(R, "Content-Type", "application/json");
    char id[128], st[32], loc[256];
    body_string(R, "id", id, sizeof(id));
    body_string(R, "state", st, sizeof(st));
    assert_string_equal(st, "waiting");
    assert_true(find_header(R->head, "Location", loc, sizeof(loc)));
    assert_string_equal(loc, job_path(id, NULL));
    char tail[80];
    snprintf(tail, sizeof(tail), "-%s", q);
    assert_true(strlen(id) > strlen(tail) && strcmp(id + strlen(id) - strlen(tail), tail) == 0);

    GET(loc);
    expect_status(R, 200);
    expect_body_has(R, payload); /* the producer's own text, byte for byte */
    char got[128];
    body_string(R, "id", got, sizeof(got));
    assert_string_equal(got, id);
    body_string(R, "state", st, sizeof(st));
    assert_string_equal(st, "waiting");

    /* An unknown (well-formed) id and a malformed one: 404 problems. */
    char other[160];
    snprintf(other, sizeof(other), "/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV-%s", q);
    GET(other);
    expect_problem(R, 404, NULL);
    GET("/v1/jobs/not-a-job-id");
    expect_problem(R, 404, "not-a-job-id");
}

static void test_batch_of_1000(void **state)
{
    (void)state;
    const char *q = test_queue_name("batch");
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_appends(&sb, "{\"jobs\":[");
    for (int i = 0; i < 1000; i++) {
        if (i == 500) /* no type: refused alone */
            hp_strbuf_printf(&sb, ",{\"queue\":\"%s\",\"payload\":{\"i\":%d}}", q, i);
        else if (i == 700) /* a wrong type */
            hp_strbuf_printf(&sb, ",{\"queue\":\"%s\",\"type\":\"t\",\"priority\":\"high\"}", q);
        else
            hp_strbuf_printf(&sb, "%s{\"queue\":\"%s\",\"type\":\"t\",\"payload\":{\"i\":%d}}",
                             i ? "," : "", q, i);
    }
    hp_strbuf_appends(&sb, "]}");
    assert_true(sb.len < MAX_BODY);
    http_len(S.port, "POST", "/v1/jobs/batch", NULL, sb.data, sb.len);
    hp_strbuf_cleanup(&sb);
    expect_status(R, 200);
    json_t *doc = body_json(R);
    assert_int_equal(jnum(json_object_get(doc, "enqueued")), 998);
    assert_int_equal(jnum(json_object_get(doc, "failed")), 2);
    json_t *results = json_object_get(doc, "results");
    assert_int_equal(json_array_size(results), 1000);
    json_t *bad = json_array_get(results, 500);
    assert_int_equal(jnum(json_object_get(bad, "status")), 400);
    const char *err = json_string_value(json_object_get(bad, "error"));
    assert_non_null(err);
    if (!strstr(err, "jobs[500].type"))
        fail_msg("item 500's error should name jobs[500].type: %s", err);
    err = json_string_value(json_object_get(json_array_get(results, 700), "error"));
    if (!err || !strstr(err, "jobs[700].priority"))
        fail_msg("item 700's error should name jobs[700].priority: %s", err ? err : "(none)");
    json_t *ok = json_array_get(results, 999);
    assert_int_equal(jnum(json_object_get(ok, "status")), 201);
    assert_int_equal(jnum(json_object_get(ok, "index")), 999);
    char first[128];
    snprintf(first, sizeof(first), "%s",
             json_string_value(json_object_get(json_array_get(results, 0), "id")));
    json_decref(doc);
    assert_int_equal(queue_count(q, "waiting"), 998);
    GET(job_path(first, NULL));
    expect_status(R, 200);
    expect_body_has(R, "\"payload\":{\"i\":0}");

    /* Over the batch limit: refused whole, saying so. */
    hp_strbuf_init(&sb, 0);
    hp_strbuf_appends(&sb, "{\"jobs\":[");
    for (int i = 0; i < 1001; i++)
        hp_strbuf_printf(&sb, "%s{\"queue\":\"%s\",\"type\":\"t\"}", i ? "," : "", q);
    hp_strbuf_appends(&sb, "]}");
    http_len(S.port, "POST", "/v1/jobs/batch", NULL, sb.data, sb.len);
    hp_strbuf_cleanup(&sb);
    expect_problem(R, 400, "1000");
    assert_int_equal(queue_count(q, "waiting"), 998);
}

static void test_list_pagination(void **state)
{
    (void)state;
    const char *q = test_queue_name("list");
    char ids[25][128];
    for (int i = 0; i < 25; i++)
        enqueue(q, NULL, ids[i], sizeof(ids[i]));
    bool seen[25] = {false};
    int pages = 0, total = 0;
    char cursor[512] = "";
    for (;;) {
        char path[2048];
        if (cursor[0]) {
            /* the cursor is opaque: percent-encode all of it */
            char enc[512 * 3 + 1] = "";
            for (size_t i = 0; cursor[i]; i++)
                snprintf(enc + 3 * i, 4, "%%%02X", (unsigned char)cursor[i]);
            snprintf(path, sizeof(path), "/v1/jobs?queue=%s&state=waiting&limit=10&cursor=%s", q,
                     enc);
        } else {
            snprintf(path, sizeof(path), "/v1/jobs?queue=%s&state=waiting&limit=10", q);
        }
        GET(path);
        expect_status(R, 200);
        json_t *doc = body_json(R);
        json_t *jobs = json_object_get(doc, "jobs");
        assert_true(json_array_size(jobs) <= 10);
        for (size_t i = 0; i < json_array_size(jobs); i++) {
            const char *id = json_string_value(json_object_get(json_array_get(jobs, i), "id"));
            int found = -1;
            for (int k = 0; k < 25 && id; k++)
                if (strcmp(ids[k], id) == 0)
                    found = k;
            if (found < 0 || seen[found])
                fail_msg("listing gave an unknown or repeated id %s", id ? id : "(null)");
            seen[found] = true;
            total++;
        }
        json_t *next = json_object_get(doc, "next_cursor");
        pages++;
        if (!json_is_string(next)) {
            json_decref(doc);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        json_decref(doc);
        assert_true(pages < 10);
    }
    assert_int_equal(total, 25);
    assert_true(pages >= 3);

    char path[256];
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&limit=0", q);
    GET(path);
    expect_problem(R, 400, "limit");
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&state=nope", q);
    GET(path);
    expect_problem(R, 400, "state");
    GET("/v1/jobs?state=waiting");
    expect_problem(R, 400, "queue");
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&cursor=garbage", q);
    GET(path);
    expect_problem(R, 400, "cursor");
}

static void test_retry_cancel_delete(void **state)
{
    (void)state;
    const char *q = test_queue_name("act");
    char id[128], st[32];
    enqueue(q, NULL, id, sizeof(id));
    POST(job_path(id, "/cancel"), NULL);
    expect_status(R, 200);
    body_string(R, "state", st, sizeof(st));
    assert_string_equal(st, "canceled");
    GET(job_path(id, NULL));
    body_string(R, "state", st, sizeof(st));
    assert_string_equal(st, "canceled");
    POST(job_path(id, "/cancel"), NULL); /* finished: a conflict */
    expect_problem(R, 409, NULL);

    POST(job_path(id, "/retry"), NULL);
    expect_status(R, 200);
    GET(job_path(id, NULL));
    body_string(R, "state", st, sizeof(st));
    assert_string_equal(st, "waiting");

    DELETE(job_path(id, NULL));
    expect_status(R, 200);
    GET(job_path(id, NULL));
    expect_problem(R, 404, NULL);
    DELETE(job_path(id, NULL));
    expect_problem(R, 404, NULL);
    POST(job_path(id, "/retry"), NULL);
    expect_problem(R, 404, NULL);
}

static void test_queues_pause_resume(void **state)
{
    (void)state;
    const char *q = test_queue_name("qs");
    char id[128];
    enqueue(q, NULL, id, sizeof(id));
    enqueue(q, NULL, id, sizeof(id));
    GET("/v1/queues");
    expect_status(R, 200);
    json_t *doc = body_json(R);
    json_t *list = json_object_get(doc, "queues");
    bool found = false;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *o = json_array_get(list, i);
        if (strcmp(json_string_value(json_object_get(o, "name")), q) == 0) {
            found = true;
            assert_int_equal(jnum(json_object_get(json_object_get(o, "counts"), "waiting")), 2);
        }
    }
    json_decref(doc);
    assert_true(found);

    assert_int_equal(queue_count(q, "waiting"), 2);
    GET("/v1/queues/never-used-queue-xyz");
    expect_problem(R, 404, "never-used-queue-xyz");
    GET("/v1/queues/bad%21name");
    expect_problem(R, 404, NULL);

    char path[160];
    snprintf(path, sizeof(path), "/v1/queues/%s/pause", q);
    POST(path, NULL);
    expect_status(R, 200);
    snprintf(path, sizeof(path), "/v1/queues/%s", q);
    GET(path);
    doc = body_json(R);
    assert_true(json_is_true(json_object_get(doc, "paused")));
    json_decref(doc);
    /* paused: nothing is handed out */
    job_list_t got = {0};
    assert_int_equal(broker_reserve(B, q, 10, 30000, "test", &got), 0);
    assert_int_equal(got.n, 0);
    job_list_cleanup(&got);

    snprintf(path, sizeof(path), "/v1/queues/%s/resume", q);
    POST(path, NULL);
    expect_status(R, 200);
    snprintf(path, sizeof(path), "/v1/queues/%s", q);
    GET(path);
    doc = body_json(R);
    assert_true(json_is_false(json_object_get(doc, "paused")));
    json_decref(doc);
}

/* Makes `n` dead jobs on q: enqueued with one attempt, reserved, failed. */
static void make_dead(const char *q, int n)
{
    for (int i = 0; i < n; i++) {
        char id[128];
        enqueue(q, "\"max_attempts\":1", id, sizeof(id));
    }
    job_list_t got = {0};
    assert_int_equal(broker_reserve(B, q, (size_t)n, 30000, "test", &got), 0);
    assert_int_equal(got.n, (size_t)n);
    for (size_t i = 0; i < got.n; i++)
        assert_int_equal(
            broker_fail(B, got.jobs[i]->id, got.jobs[i]->lease_token, "boom", true, NULL, NULL), 0);
    job_list_cleanup(&got);
}

static void test_purge_dead(void **state)
{
    (void)state;
    const char *q = test_queue_name("purge");
    make_dead(q, 3);
    char id[128];
    enqueue(q, NULL, id, sizeof(id)); /* waiting: left alone */
    assert_int_equal(queue_count(q, "dead"), 3);
    char path[160];
    snprintf(path, sizeof(path), "/v1/queues/%s/jobs?state=dead", q);
    DELETE(path);
    expect_status(R, 200);
    json_t *doc = body_json(R);
    assert_int_equal(jnum(json_object_get(doc, "removed")), 3);
    json_decref(doc);
    assert_int_equal(queue_count(q, "dead"), 0);
    assert_int_equal(queue_count(q, "waiting"), 1);
    snprintf(path, sizeof(path), "/v1/queues/%s/jobs", q);
    DELETE(path);
    expect_problem(R, 400, "state");
}

/* GET /v1/jobs with order, type, error and worker; each bad one is a 400 naming it. */
static void test_list_filters_and_order(void **state)
{
    (void)state;
    const char *q = test_queue_name("lf");
    char ids[6][128], path[1024];
    for (int i = 0; i < 6; i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"queue\":\"%s\",\"type\":\"%s\",\"payload\":%d,\"max_attempts\":1}", q,
                 i % 2 ? "pdf.render" : "email.send", i);
        POST("/v1/jobs", body);
        expect_status(R, 201);
        body_string(R, "id", ids[i], sizeof(ids[i]));
    }
    /* newest first */
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&order=desc&limit=4", q);
    GET(path);
    expect_status(R, 200);
    json_t *doc = body_json(R);
    json_t *jobs = json_object_get(doc, "jobs");
    assert_int_equal(json_array_size(jobs), 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(jobs, i), "id")),
                            ids[5 - i]);
    assert_true(json_is_string(json_object_get(doc, "next_cursor")));
    json_decref(doc);
    /* a type */
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&type=pdf.render&order=asc", q);
    GET(path);
    doc = body_json(R);
    jobs = json_object_get(doc, "jobs");
    assert_int_equal(json_array_size(jobs), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(jobs, 0), "id")), ids[1]);
    assert_true(json_is_null(json_object_get(doc, "next_cursor")));
    json_decref(doc);
    /* errors: two jobs fail, one with a message in mixed case */
    job_list_t got = {0};
    assert_int_equal(broker_reserve(B, q, 2, 30000, "e2e-worker:7", &got), 0);
    assert_int_equal(broker_fail(B, got.jobs[0]->id, got.jobs[0]->lease_token,
                                 "SMTP 421: Try Again Later", true, NULL, NULL),
                     0);
    assert_int_equal(
        broker_fail(B, got.jobs[1]->id, got.jobs[1]->lease_token, "bad pdf", true, NULL, NULL), 0);
    job_list_cleanup(&got);
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&state=dead&error=try%%20again", q);
    GET(path);
    doc = body_json(R);
    jobs = json_object_get(doc, "jobs");
    assert_int_equal(json_array_size(jobs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(jobs, 0), "id")), ids[0]);
    json_decref(doc);
    /* a worker: with no state, active jobs are listed */
    assert_int_equal(broker_reserve(B, q, 1, 30000, "e2e-worker:7", &got), 0);
    job_list_cleanup(&got);
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&worker=e2e-worker:7", q);
    GET(path);
    expect_status(R, 200);
    doc = body_json(R);
    jobs = json_object_get(doc, "jobs");
    assert_int_equal(json_array_size(jobs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(jobs, 0), "id")), ids[2]);
    assert_string_equal(json_string_value(json_object_get(json_array_get(jobs, 0), "state")),
                        "active");
    json_decref(doc);

    /* bad input */
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&order=newest", q);
    GET(path);
    expect_problem(R, 400, "order");
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&order=", q);
    GET(path);
    expect_problem(R, 400, "order");
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&state=waiting&worker=w1", q);
    GET(path);
    expect_problem(R, 400, "worker");
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&state=active&worker=a%%7Cb", q);
    GET(path);
    expect_problem(R, 400, "worker");
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&type=has%%20space", q);
    GET(path);
    expect_problem(R, 400, "type");
    char long_text[400];
    memset(long_text, 'e', 300);
    long_text[300] = '\0';
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&error=%s", q, long_text);
    GET(path);
    expect_problem(R, 400, "error");
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&cursor=%s", q, long_text);
    GET(path);
    expect_problem(R, 400, "cursor");
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&state=dead&cursor=0:ABC", q);
    GET(path);
    expect_problem(R, 400, "cursor");
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&cursor=-1:ABC", q);
    GET(path);
    expect_problem(R, 400, "cursor");
}

/* POST /v1/queues/{queue}/bulk, and its refusals naming the field. */
static void test_bulk(void **state)
{
    (void)state;
    const char *q = test_queue_name("bulk");
    make_dead(q, 4);
    char path[160];
    snprintf(path, sizeof(path), "/v1/queues/%s/bulk", q);
    POST(path, "{\"action\":\"retry\",\"state\":\"dead\",\"error\":\"BOOM\"}");
    expect_status(R, 200);
    json_t *doc = body_json(R);
    assert_int_equal(jnum(json_object_get(doc, "matched")), 4);
    assert_int_equal(jnum(json_object_get(doc, "done")), 4);
    assert_string_equal(json_string_value(json_object_get(doc, "action")), "retry");
    json_decref(doc);
    assert_int_equal(queue_count(q, "dead"), 0);
    assert_int_equal(queue_count(q, "waiting"), 4);
    POST(path, "{\"action\":\"delete\",\"state\":\"waiting\",\"type\":\"other\"}");
    expect_status(R, 200);
    doc = body_json(R);
    assert_int_equal(jnum(json_object_get(doc, "matched")), 0);
    json_decref(doc);
    POST(path, "{\"action\":\"delete\",\"state\":\"waiting\",\"type\":\"t\"}");
    expect_status(R, 200);
    doc = body_json(R);
    assert_int_equal(jnum(json_object_get(doc, "done")), 4);
    json_decref(doc);
    assert_int_equal(queue_count(q, "waiting"), 0);

    POST(path, "{\"action\":\"explode\",\"state\":\"dead\"}");
    expect_problem(R, 400, "action");
    POST(path, "{\"state\":\"dead\"}");
    expect_problem(R, 400, "action");
    POST(path, "{\"action\":\"retry\",\"state\":\"dying\"}");
    expect_problem(R, 400, "state");
    POST(path, "{\"action\":\"retry\",\"state\":7}");
    expect_problem(R, 400, "state");
    POST(path, "{\"action\":\"retry\",\"state\":\"dead\",\"type\":1}");
    expect_problem(R, 400, "type");
    POST(path, "{\"action\":\"retry\",\"state\":\"dead\",\"everything\":true}");
    expect_problem(R, 400, "everything");
    POST(path, "[\"retry\"]");
    expect_problem(R, 400, "action");
    POST(path, NULL);
    expect_problem(R, 400, "action");
    POST(path, "{\"action\":\"retry\",\"state\":\"waiting\"}");
    expect_problem(R, 422, "state");
    POST(path, "{\"action\":\"delete\",\"state\":\"active\"}");
    expect_problem(R, 422, "state");
    http(S.port, "POST", path, "Content-Type: text/plain\r\n",
         "{\"action\":\"delete\",\"state\":\"dead\"}");
    expect_problem(R, 415, NULL);
    POST("/v1/queues/bad%21queue/bulk", "{\"action\":\"delete\",\"state\":\"dead\"}");
    expect_problem(R, 404, NULL);
}

/* POST /v1/jobs/{id}/retry with {"payload": ...}: stored byte for byte. */
static void test_retry_with_payload(void **state)
{
    (void)state;
    const char *q = test_queue_name("rp");
    make_dead(q, 1);
    char path[160], id[128];
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&state=dead", q);
    GET(path);
    json_t *doc = body_json(R);
    snprintf(
        id, sizeof(id), "%s",
        json_string_value(json_object_get(json_array_get(json_object_get(doc, "jobs"), 0), "id")));
    json_decref(doc);
    const char *payload = "{\"amount\": 0.10, \"big\": 123456789012345678901234567890,\n"
                          " \"s\": \"caf\xc3\xa9 \\u00e9\"}";
    char body[512];
    snprintf(body, sizeof(body), "{ \"payload\" : %s }", payload);
    POST(job_path(id, "/retry"), body);
    expect_status(R, 200);
    GET(job_path(id, NULL));
    expect_status(R, 200);
    expect_body_has(R, payload);
    expect_body_has(R, "\"state\":\"waiting\"");

    /* not retryable now; bodies that are not {"payload": ...} */
    POST(job_path(id, "/retry"), "{\"payload\":1}");
    expect_problem(R, 409, NULL);
    const char *bad[] = {"{\"payload\":1,\"queue\":\"x\"}", "[1]", "{}", "{\"payload\":", "7"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        POST(job_path(id, "/retry"), bad[i]);
        expect_problem(R, 400, NULL);
    }
    http(S.port, "POST", job_path(id, "/retry"), "Content-Type: text/plain\r\n", "{\"payload\":1}");
    expect_problem(R, 415, NULL);
    /* the body limit applies */
    size_t big = MAX_BODY + 1024;
    char *huge = malloc(big + 32);
    int n = snprintf(huge, big + 32, "{\"payload\":\"");
    memset(huge + n, 'x', big);
    strcpy(huge + n + big, "\"}");
    http(S.port, "POST", job_path(id, "/retry"), NULL, huge);
    expect_status(R, 413);
    free(huge);
    GET(job_path(id, NULL));
    expect_body_has(R, payload);
}

/* oldest_waiting_at/age_ms on the queues, GET /v1/broker, GET /v1/stats/throughput. */
static void test_queue_age_broker_throughput(void **state)
{
    (void)state;
    const char *q = test_queue_name("age");
    char id[128], path[256];
    enqueue(q, NULL, id, sizeof(id));
    snprintf(path, sizeof(path), "/v1/queues/%s", q);
    GET(path);
    expect_status(R, 200);
    json_t *doc = body_json(R);
    const char *at = json_string_value(json_object_get(doc, "oldest_waiting_at"));
    json_t *age = json_object_get(doc, "oldest_waiting_age_ms");
    assert_non_null(at);
    int64_t at_ms = 0;
    assert_int_equal(hp_parse_rfc3339_ms(at, &at_ms), 0);
    char ulid[HP_ULID_LEN + 1], qn[JOB_QUEUE_NAME_MAX + 1];
    assert_true(job_id_parse(id, ulid, qn));
    assert_int_equal(at_ms, hp_ulid_time_ms(ulid));
    assert_true(json_is_number(age) && jnum(age) >= 0);
    json_decref(doc);
    /* nothing waiting: null and null */
    job_list_t got = {0};
    assert_int_equal(broker_reserve(B, q, 1, 30000, "w", &got), 0);
    assert_int_equal(broker_ack(B, got.jobs[0]->id, got.jobs[0]->lease_token, NULL, 0), 0);
    job_list_cleanup(&got);
    GET(path);
    doc = body_json(R);
    assert_true(json_is_null(json_object_get(doc, "oldest_waiting_at")));
    assert_true(json_is_null(json_object_get(doc, "oldest_waiting_age_ms")));
    json_decref(doc);
    GET("/v1/queues");
    expect_body_has(R, "\"oldest_waiting_age_ms\"");

    GET("/v1/broker");
    expect_status(R, 200);
    doc = body_json(R);
    assert_string_equal(json_string_value(json_object_get(doc, "backend")), "redis");
    assert_true(json_is_true(json_object_get(doc, "ok")));
    assert_non_null(json_string_value(json_object_get(doc, "version")));
    assert_string_equal(json_string_value(json_object_get(doc, "maxmemory_policy")), "noeviction");
    assert_int_equal(json_array_size(json_object_get(doc, "warnings")), 0);
    assert_true(jnum(json_object_get(doc, "used_memory")) > 0);
    json_decref(doc);
    /* an evicting policy is a warning */
    test_redis_int(&RD, "CONFIG SET maxmemory-policy allkeys-lru");
    GET("/v1/broker");
    expect_status(R, 200);
    doc = body_json(R);
    const char *w = json_string_value(json_array_get(json_object_get(doc, "warnings"), 0));
    assert_non_null(w);
    assert_non_null(strstr(w, "allkeys-lru"));
    json_decref(doc);
    test_redis_int(&RD, "CONFIG SET maxmemory-policy noeviction");

    snprintf(path, sizeof(path), "/v1/stats/throughput?queue=%s", q);
    GET(path);
    expect_status(R, 200);
    doc = body_json(R);
    json_t *ps = json_object_get(doc, "per_second"), *pm = json_object_get(doc, "per_minute");
    assert_int_equal(json_array_size(json_object_get(ps, "processed")), 3600);
    assert_int_equal(json_array_size(json_object_get(ps, "failed")), 3600);
    assert_int_equal(json_array_size(json_object_get(pm, "processed")), 60);
    long long total = 0;
    for (size_t i = 0; i < 3600; i++)
        total += jnum(json_array_get(json_object_get(ps, "processed"), i));
    assert_int_equal(total, 1);
    total = 0;
    for (size_t i = 0; i < 60; i++)
        total += jnum(json_array_get(json_object_get(pm, "processed"), i));
    assert_int_equal(total, 1);
    int64_t now_ms = 0;
    assert_int_equal(hp_parse_rfc3339_ms(json_string_value(json_object_get(doc, "now")), &now_ms),
                     0);
    assert_int_equal(jnum(json_object_get(ps, "start")), now_ms / 1000 - 3599);
    assert_int_equal(jnum(json_object_get(pm, "start")) % 60, 0);
    assert_string_equal(json_string_value(json_object_get(doc, "queue")), q);
    json_decref(doc);
    GET("/v1/stats/throughput");
    expect_status(R, 200);
    doc = body_json(R);
    assert_true(json_is_null(json_object_get(doc, "queue")));
    json_decref(doc);
    GET("/v1/stats/throughput?queue=no%21such");
    expect_problem(R, 400, "queue");
}

static void test_workers(void **state)
{
    (void)state;
    const char *info = "{\"id\":\"apitest-worker-1\",\"queues\":[\"x\"]}";
    assert_int_equal(broker_worker_beat(B, "apitest-worker-1", info, 30000), 0);
    GET("/v1/workers");
    expect_status(R, 200);
    json_t *doc = body_json(R);
    assert_true(json_is_array(json_object_get(doc, "workers")));
    json_decref(doc);
    expect_body_has(R, "apitest-worker-1");
    assert_int_equal(broker_worker_gone(B, "apitest-worker-1"), 0);
    GET("/v1/workers");
    expect_status(R, 200);
    assert_false(contains(R->body, "apitest-worker-1"));

    /* An entry of 25 jobs as an older worker wrote it (no state, running, held):
     * the list shows 20 and fills those in; one worker pages through all 25. */
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_appends(&sb, "{\"id\":\"apitest-worker-2\",\"queues\":[\"x\"],\"jobs\":[");
    for (int i = 0; i < 25; i++)
        hp_strbuf_printf(&sb, "%s{\"id\":\"job-%02d\",\"type\":\"t\"}", i ? "," : "", i);
    hp_strbuf_appends(&sb, "]}");
    size_t len;
    char *big = hp_strbuf_steal(&sb, &len);
    assert_int_equal(broker_worker_beat(B, "apitest-worker-2", big, 30000), 0);
    hp_free(big);
    GET("/v1/workers");
    expect_status(R, 200);
    doc = body_json(R);
    json_t *w = json_array_get(json_object_get(doc, "workers"), 0);
    assert_string_equal(json_string_value(json_object_get(w, "id")), "apitest-worker-2");
    assert_string_equal(json_string_value(json_object_get(w, "state")), "running");
    assert_int_equal(jnum(json_object_get(w, "held")), 25);
    assert_int_equal(jnum(json_object_get(w, "running")), 25);
    json_t *jobs = json_object_get(w, "jobs");
    assert_int_equal(json_array_size(jobs), 20);
    assert_string_equal(json_string_value(json_object_get(json_array_get(jobs, 19), "id")),
                        "job-19");
    json_decref(doc);
    GET("/v1/workers/apitest-worker-2?offset=18&limit=5");
    expect_status(R, 200);
    doc = body_json(R);
    jobs = json_object_get(doc, "jobs");
    assert_int_equal(json_array_size(jobs), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(jobs, 0), "id")),
                        "job-18");
    assert_string_equal(json_string_value(json_object_get(json_array_get(jobs, 4), "id")),
                        "job-22");
    json_decref(doc);
    GET("/v1/workers/apitest-worker-2?offset=25");
    expect_status(R, 200);
    doc = body_json(R);
    assert_int_equal(json_array_size(json_object_get(doc, "jobs")), 0);
    assert_int_equal(jnum(json_object_get(doc, "held")), 25);
    json_decref(doc);
    GET("/v1/workers/apitest-worker-2?limit=501");
    expect_problem(R, 400, "limit");
    GET("/v1/workers/apitest-worker-2?offset=-3");
    expect_problem(R, 400, "offset");
    POST("/v1/workers/apitest-worker-2/quiet", NULL);
    expect_status(R, 202);
    worker_command_t cmd;
    assert_int_equal(broker_worker_poll(B, "apitest-worker-2", NULL, 0, &cmd), 0);
    assert_int_equal(cmd, WORKER_COMMAND_QUIET);
    assert_int_equal(broker_worker_gone(B, "apitest-worker-2"), 0);
    GET("/v1/workers/apitest-worker-2");
    expect_problem(R, 404, "not registered");
    POST("/v1/workers/apitest-worker-2/stop", NULL);
    expect_problem(R, 404, "not registered");
}

static void test_idempotency_key(void **state)
{
    (void)state;
    const char *q = test_queue_name("idem");
    char body[256], other[256];
    snprintf(body, sizeof(body), "{\"queue\":\"%s\",\"type\":\"t\",\"payload\":1}", q);
    snprintf(other, sizeof(other), "{\"queue\":\"%s\",\"type\":\"t\",\"payload\":2}", q);
    const char *h = "Idempotency-Key: order-42\r\n";
    http(S.port, "POST", "/v1/jobs", h, body);
    expect_status(R, 201);
    char id1[128], id2[128];
    body_string(R, "id", id1, sizeof(id1));
    http(S.port, "POST", "/v1/jobs", h, body);
    expect_status(R, 200);
    body_string(R, "id", id2, sizeof(id2));
    assert_string_equal(id1, id2);
    assert_int_equal(queue_count(q, "waiting"), 1);
    http(S.port, "POST", "/v1/jobs", h, other);
    expect_problem(R, 422, NULL);
    assert_int_equal(queue_count(q, "waiting"), 1);
    /* another key: a new job */
    http(S.port, "POST", "/v1/jobs", "Idempotency-Key: order-43\r\n", body);
    expect_status(R, 201);
    assert_int_equal(queue_count(q, "waiting"), 2);
}

/* ---- Bad input ---- */

static void test_bad_input(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *word; /* what the detail must name */
    } cases[] = {
        {"{\"queue\":\"a\",\"type\":", "JSON"},
        {"not json at all", "JSON"},
        {"", "JSON"},
        {"[1,2]", "object"},
        {"{\"queue\":5,\"type\":\"t\"}", "queue"},
        {"{\"queue\":\"a\",\"type\":[\"t\"]}", "type"},
        {"{\"type\":\"t\"}", "queue"},
        {"{\"queue\":\"a\"}", "type"},
        {"{\"queue\":\"a\",\"type\":\"t\",\"priority\":\"high\"}", "priority"},
        {"{\"queue\":\"a\",\"type\":\"t\",\"priority\":1.5}", "priority"},
        {"{\"queue\":\"a\",\"type\":\"t\",\"max_attempts\":0}", "max_attempts"},
        {"{\"queue\":\"a\",\"type\":\"t\",\"delay_ms\":-1}", "delay_ms"},
        {"{\"queue\":\"a\",\"type\":\"t\",\"run_at\":\"tomorrow\"}", "run_at"},
        {"{\"queue\":\"a\",\"type\":\"t\",\"tags\":[1]}", "tags"},
        {"{\"queue\":\"a\",\"type\":\"t\",\"colour\":\"red\"}", "colour"},
        {"{\"queue\":\"bad/queue!\",\"type\":\"t\"}", "queue"},
        {"{\"queue\":\"a b\",\"type\":\"t\"}", "queue"},
        {"{\"queue\":\"\",\"type\":\"t\"}", "queue"},
        {"{\"queue\":\"a\",\"type\":\"t\",\"queue\":\"b\"}", "queue"},
        /* \u0000 is valid JSON but refused: in a payload (the plugins read payloads
         * with jansson, which refuses it) and in the fields Hopper reads as names */
        {"{\"queue\":\"a\",\"type\":\"t\",\"payload\":{\"s\":\"a\\u0000b\"}}", "\\u0000"},
        {"{\"queue\":\"a\\u0000b\",\"type\":\"t\"}", "queue"},
        {"{\"queue\":\"a\",\"type\":\"t\\u0000x\"}", "type"},
        {"{\"queue\":\"a\",\"type\":\"t\",\"tags\":[\"x\\u0000\"]}", "tags"},
        {"{\"queue\":\"a\",\"type\":\"t\",\"backoff\":\"fixed\\u0000\"}", "backoff"},
        {"{\"queue\":\"a\",\"type\":\"t\",\"unique_key\":\"k\\u0000\"}", "unique_key"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("bad input %zu: %s\n", i, cases[i].body);
        POST("/v1/jobs", cases[i].body);
        if (R->status != 400)
            print_error("case %zu: %s\n", i, cases[i].body);
        expect_problem(R, 400, cases[i].word);
    }
    /* Invalid UTF-8 in a string and in the payload. */
    const char bad_utf8[] = "{\"queue\":\"a\",\"type\":\"t\xff\xfe\",\"payload\":1}";
    POST("/v1/jobs", bad_utf8);
    expect_problem(R, 400, NULL);
    const char bad_utf8_payload[] = "{\"queue\":\"a\",\"type\":\"t\",\"payload\":\"\xc3\x28\"}";
    POST("/v1/jobs", bad_utf8_payload);
    expect_problem(R, 400, NULL);
    /* A NUL byte inside the body. */
    const char nul[] = "{\"queue\":\"a\",\"type\":\"t\"}\0garbage";
    http_len(S.port, "POST", "/v1/jobs", NULL, nul, sizeof(nul) - 1);
    expect_problem(R, 400, NULL);
    /* Nothing of that was enqueued. */
    GET("/v1/queues/a");
    expect_status(R, 404);
}

static void test_routes_methods_types(void **state)
{
    (void)state;
    GET("/v1/nope");
    expect_problem(R, 404, "/v1/nope");
    GET("/");
    expect_problem(R, 404, NULL);
    http(S.port, "PUT", "/v1/jobs", NULL, "{}");
    expect_problem(R, 405, NULL);
    expect_header(R, "Allow", "POST");
    expect_header(R, "Allow", "GET");
    http(S.port, "PATCH", "/v1/queues", NULL, NULL);
    expect_problem(R, 405, NULL);
    expect_header(R, "Allow", "GET");
    DELETE("/healthz");
    expect_status(R, 405);
    expect_header(R, "Allow", "GET");

    http(S.port, "POST", "/v1/jobs", "Content-Type: text/plain\r\n",
         "{\"queue\":\"ct\",\"type\":\"t\"}");
    expect_problem(R, 415, "Content-Type");
    http(S.port, "POST", "/v1/jobs", "Content-Type: application/x-www-form-urlencoded\r\n",
         "queue=ct&type=t");
    expect_problem(R, 415, NULL);
    http(S.port, "POST", "/v1/jobs", "Content-Type: application/json; charset=utf-8\r\n",
         "{\"queue\":\"ct-ok\",\"type\":\"t\"}");
    expect_status(R, 201);

    GET("/healthz");
    expect_status(R, 200);
    GET("/openapi.json");
    expect_status(R, 200);
    json_decref(body_json(R));
}

/* ---- Limits ---- */

static void test_body_over_limit_closes(void **state)
{
    (void)state;
    conn_t c;
    conn_open(&c, S.port);
    int64_t t0 = hp_mono_ms();
    assert_true(conn_sends(&c, "POST /v1/jobs HTTP/1.1\r\nHost: t\r\n"
                               "Content-Type: application/json\r\n"
                               "Content-Length: 52428800\r\n\r\n{\"queue\":\"big\","));
    assert_int_equal(read_response(&c, R, 3000), 0);
    expect_problem(R, 413, NULL);
    expect_header(R, "Connection", "close");
    if (!wait_closed(&c, 3000))
        fail_msg("the server kept the connection open after a 413 (it would read 50 MB)");
    assert_true(hp_mono_ms() - t0 < 6000);
    conn_close(&c);

    /* A normal request still works. */
    GET("/healthz");
    expect_status(R, 200);
}

/* Sends `total` bytes of chunked body in 16 KiB chunks while watching for an early
 * answer; stops sending once the server answers or goes. */
static int send_chunked_until_answer(conn_t *c, size_t total)
{
    char chunk[16384];
    memset(chunk, ' ', sizeof(chunk));
    size_t sent = 0;
    while (sent < total) {
        char head[32];
        snprintf(head, sizeof(head), "%zx\r\n", sizeof(chunk));
        if (!conn_sends(c, head) || !conn_send(c, chunk, sizeof(chunk)) || !conn_sends(c, "\r\n"))
            break;
        sent += sizeof(chunk);
        struct pollfd p = {c->fd, POLLIN, 0};
        if (poll(&p, 1, 0) > 0)
            break;
    }
    if (sent >= total)
        conn_sends(c, "0\r\n\r\n");
    return read_response(c, R, 5000);
}

static void test_chunked_over_limit(void **state)
{
    (void)state;
    conn_t c;
    conn_open(&c, S.port);
    assert_true(conn_sends(&c, "POST /v1/jobs HTTP/1.1\r\nHost: t\r\n"
                               "Content-Type: application/json\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n"
                               "10\r\n{\"queue\":\"big\",\"\r\n"));
    int rc = send_chunked_until_answer(&c, 2 * MAX_BODY);
    if (rc != 0)
        fail_msg("no answer to a chunked body over the limit (or it was lost in a reset)");
    expect_problem(R, 413, NULL);
    assert_true(wait_closed(&c, 3000));
    conn_close(&c);
}

static void test_header_section_too_large(void **state)
{
    (void)state;
    char *big = malloc(40000);
    memset(big, 'a', 39999);
    big[39999] = '\0';
    hp_strbuf_t h;
    hp_strbuf_init(&h, 0);
    hp_strbuf_printf(&h, "X-Big: %s\r\n", big);
    http(S.port, "GET", "/healthz", h.data, NULL);
    expect_status(R, 431);
    hp_strbuf_cleanup(&h);
    /* many small headers past the limit */
    hp_strbuf_init(&h, 0);
    for (int i = 0; i < 90; i++)
        hp_strbuf_printf(&h, "X-H%d: %.300s\r\n", i, big);
    http(S.port, "GET", "/healthz", h.data, NULL);
    expect_status(R, 431);
    hp_strbuf_cleanup(&h);
    /* a long request target */
    char path[20000];
    memcpy(path, "/v1/jobs/", 9);
    memset(path + 9, 'x', sizeof(path) - 10);
    path[sizeof(path) - 1] = '\0';
    GET(path);
    assert_true(R->status == 431 || R->status == 414);
    free(big);
}

static void test_slow_headers_408(void **state)
{
    (void)state;
    server_t s;
    const char *args[] = {"--header-timeout", "500ms", NULL};
    server_start(&s, RD.url, args, NULL);
    conn_t c;
    conn_open(&c, s.port);
    int64_t t0 = hp_mono_ms();
    assert_true(conn_sends(&c, "GET /healthz HTTP/1.1\r\nHost: t\r\n"));
    hp_sleep_ms(100);
    assert_true(conn_sends(&c, "X-A: 1\r\n")); /* trickling does not reset the clock */
    int rc = read_response(&c, R, 5000);
    int64_t took = hp_mono_ms() - t0;
    if (rc != 0)
        fail_msg("no 408 within 5 s of a 500 ms header timeout");
    expect_status(R, 408);
    assert_true(took >= 400);
    assert_true(wait_closed(&c, 3000));
    conn_close(&c);

    /* Nothing sent at all: closed (with or without a 408), not held forever. */
    conn_open(&c, s.port);
    assert_true(wait_closed(&c, 5000));
    conn_close(&c);

    /* A normal request on that server is unaffected. */
    http(s.port, "GET", "/healthz", NULL, NULL);
    expect_status(R, 200);
    server_stop_clean(&s);
    server_cleanup(&s);
}

static void test_slow_clients_do_not_starve_others(void **state)
{
    (void)state;
    enum { N = 200 };
    static conn_t slow[N];
    for (int i = 0; i < N; i++) {
        conn_open(&slow[i], S.port);
        conn_sends(&slow[i], "GET /v1/que");
    }
    for (int i = 0; i < 5; i++) {
        int64_t t0 = hp_mono_ms();
        conn_t c;
        conn_open(&c, S.port);
        assert_true(conn_sends(&c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"));
        int rc = read_response(&c, R, 3000);
        conn_close(&c);
        if (rc != 0)
            fail_msg("with %d slow clients, a normal request got no answer within 3 s", N);
        expect_status(R, 200);
        assert_true(hp_mono_ms() - t0 < 3000);
    }
    /* and one that needs the broker */
    POST("/v1/jobs", "{\"queue\":\"slowtest\",\"type\":\"t\"}");
    expect_status(R, 201);
    for (int i = 0; i < N; i++)
        conn_close(&slow[i]);
}

static void test_max_connections(void **state)
{
    (void)state;
    server_t s;
    const char *args[] = {"--max-connections", "4", NULL};
    server_start(&s, RD.url, args, NULL);
    conn_t held[4];
    for (int i = 0; i < 4; i++) {
        conn_open(&held[i], s.port);
        /* a whole request each, so the connection is surely accepted and counted */
        assert_true(conn_sends(&held[i], "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_int_equal(read_response(&held[i], R, IO_WAIT_MS), 0);
        expect_status(R, 200);
    }
    conn_t extra;
    conn_open(&extra, s.port); /* the kernel accepts; the server must refuse */
    conn_sends(&extra, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    int rc = read_response(&extra, R, 5000);
    if (rc == 0) {
        expect_status(R, 503);
    } else if (!extra.eof) {
        fail_msg("a connection past --max-connections neither got 503 nor was closed in 5 s");
    }
    conn_close(&extra);
    /* Room again once one goes. */
    conn_close(&held[0]);
    bool served = false;
    for (int i = 0; i < 50 && !served; i++) {
        conn_t c;
        conn_open(&c, s.port);
        conn_sends(&c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        served = read_response(&c, R, 3000) == 0 && R->status == 200;
        conn_close(&c);
        if (!served)
            hp_sleep_ms(100);
    }
    assert_true(served);
    for (int i = 1; i < 4; i++)
        conn_close(&held[i]);
    server_stop_clean(&s);
    server_cleanup(&s);
}

static void test_pipelined_in_order(void **state)
{
    (void)state;
    const char *q = test_queue_name("pipe");
    char id[128];
    enqueue(q, NULL, id, sizeof(id));
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    char body[128];
    snprintf(body, sizeof(body), "{\"queue\":\"%s\",\"type\":\"t\"}", q);
    hp_strbuf_printf(&sb,
                     "POST /v1/jobs HTTP/1.1\r\nHost: t\r\nX-Request-Id: p1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    hp_strbuf_printf(&sb, "GET /v1/jobs/%s HTTP/1.1\r\nHost: t\r\nX-Request-Id: p2\r\n\r\n", id);
    hp_strbuf_appends(&sb, "GET /nope HTTP/1.1\r\nHost: t\r\nX-Request-Id: p3\r\n\r\n");
    hp_strbuf_appends(&sb, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: p4\r\n\r\n");
    conn_t c;
    conn_open(&c, S.port);
    assert_true(conn_send(&c, sb.data, sb.len)); /* one write */
    hp_strbuf_cleanup(&sb);
    static const int want[] = {201, 200, 404, 200};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
        expect_status(R, want[i]);
        char rid[16];
        snprintf(rid, sizeof(rid), "p%d", i + 1);
        expect_header(R, "X-Request-Id", rid);
        if (i == 1)
            expect_body_has(R, id);
    }
    conn_close(&c);
}

static void test_chunked_body_accepted(void **state)
{
    (void)state;
    const char *q = test_queue_name("chunk");
    char body[256];
    int n =
        snprintf(body, sizeof(body), "{\"queue\":\"%s\",\"type\":\"t\",\"payload\":[1,2,3]}", q);
    conn_t c;
    conn_open(&c, S.port);
    assert_true(conn_sends(&c, "POST /v1/jobs HTTP/1.1\r\nHost: t\r\n"
                               "Content-Type: application/json\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n"));
    for (int off = 0; off < n; off += 7) {
        int len = n - off < 7 ? n - off : 7;
        char head[16];
        snprintf(head, sizeof(head), "%x\r\n", len);
        conn_sends(&c, head);
        conn_send(&c, body + off, (size_t)len);
        conn_sends(&c, "\r\n");
        hp_sleep_ms(2);
    }
    conn_sends(&c, "0\r\n\r\n");
    assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
    expect_status(R, 201);
    char id[128];
    body_string(R, "id", id, sizeof(id));
    /* and the same connection goes on */
    char req[256];
    snprintf(req, sizeof(req), "GET /v1/jobs/%s HTTP/1.1\r\nHost: t\r\n\r\n", id);
    conn_sends(&c, req);
    assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
    expect_status(R, 200);
    expect_body_has(R, "\"payload\":[1,2,3]");
    conn_close(&c);
}

static void test_keep_alive(void **state)
{
    (void)state;
    conn_t c;
    conn_open(&c, S.port);
    for (int i = 0; i < 6; i++) {
        const char *req = i % 2 ? "GET /v1/queues HTTP/1.1\r\nHost: t\r\n\r\n"
                                : "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
        assert_true(conn_sends(&c, req));
        assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
        expect_status(R, 200);
        expect_header(R, "Connection", "keep-alive");
    }
    /* Connection: close is honoured */
    conn_sends(&c, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
    expect_status(R, 200);
    expect_header(R, "Connection", "close");
    assert_true(wait_closed(&c, 3000));
    conn_close(&c);
    /* HTTP/1.0 without keep-alive: closed after the answer */
    conn_open(&c, S.port);
    conn_sends(&c, "GET /healthz HTTP/1.0\r\n\r\n");
    assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
    expect_status(R, 200);
    assert_true(wait_closed(&c, 3000));
    conn_close(&c);
}

static void test_expect_100_continue(void **state)
{
    (void)state;
    const char *q = test_queue_name("expect");
    char body[128];
    snprintf(body, sizeof(body), "{\"queue\":\"%s\",\"type\":\"t\"}", q);
    char head[512];
    snprintf(head, sizeof(head),
             "POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nExpect: 100-continue\r\n\r\n",
             strlen(body));
    conn_t c;
    conn_open(&c, S.port);
    assert_true(conn_sends(&c, head));
    assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
    expect_status(R, 100);
    assert_true(conn_sends(&c, body));
    assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
    expect_status(R, 201);
    conn_close(&c);

    /* Expect with a body over the limit: the final 413 instead of 100. */
    conn_open(&c, S.port);
    assert_true(conn_sends(&c, "POST /v1/jobs HTTP/1.1\r\nHost: t\r\n"
                               "Content-Type: application/json\r\nContent-Length: 99999999\r\n"
                               "Expect: 100-continue\r\n\r\n"));
    assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
    expect_status(R, 413);
    conn_close(&c);
}

/* ---- Headers, metrics ---- */

static void expect_security_headers(const resp_t *r)
{
    expect_header(r, "X-Content-Type-Options", "nosniff");
    expect_header(r, "Content-Security-Policy", "default-src 'none'");
}

static void test_request_id_security_cors(void **state)
{
    (void)state;
    http(S.port, "GET", "/healthz", "X-Request-Id: my-trace-123\r\n", NULL);
    expect_status(R, 200);
    expect_header(R, "X-Request-Id", "my-trace-123");
    expect_security_headers(R);
    GET("/healthz");
    char rid[128] = "";
    assert_true(find_header(R->head, "X-Request-Id", rid, sizeof(rid)));
    assert_true(strlen(rid) >= 8);
    GET("/healthz");
    char rid2[128] = "";
    assert_true(find_header(R->head, "X-Request-Id", rid2, sizeof(rid2)));
    assert_string_not_equal(rid, rid2);
    /* a request id with a CR/LF attempt or junk is replaced, not echoed */
    http(S.port, "GET", "/healthz", "X-Request-Id: bad id with spaces\r\n", NULL);
    assert_false(has_header(R, "X-Request-Id", "bad id"));

    /* Security headers on every kind of answer. */
    GET("/nope");
    expect_security_headers(R);
    POST("/v1/jobs", "{");
    expect_security_headers(R);
    http(S.port, "PUT", "/v1/jobs", NULL, NULL);
    expect_security_headers(R);
    conn_t c;
    conn_open(&c, S.port);
    conn_sends(&c, "POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n");
    assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
    expect_status(R, 413);
    expect_security_headers(R);
    conn_close(&c);
    conn_open(&c, S.port);
    conn_sends(&c, "GARBAGE\r\n\r\n");
    assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
    expect_status(R, 400);
    expect_security_headers(R);
    conn_close(&c);

    /* CORS: nothing without an Origin or for another origin; the allowed one echoed. */
    GET("/v1/queues");
    assert_false(has_header(R, "Access-Control-Allow-Origin", NULL));
    http(S.port, "GET", "/v1/queues", "Origin: https://evil.example\r\n", NULL);
    expect_status(R, 200);
    assert_false(has_header(R, "Access-Control-Allow-Origin", NULL));
    http(S.port, "GET", "/v1/queues", "Origin: " CORS_ORIGIN "\r\n", NULL);
    expect_status(R, 200);
    expect_header(R, "Access-Control-Allow-Origin", CORS_ORIGIN);
    http(S.port, "OPTIONS", "/v1/jobs",
         "Origin: " CORS_ORIGIN "\r\nAccess-Control-Request-Method: POST\r\n", NULL);
    assert_true(R->status == 204 || R->status == 200);
    expect_header(R, "Access-Control-Allow-Origin", CORS_ORIGIN);
    expect_header(R, "Access-Control-Allow-Methods", "POST");
}

static void test_cors_off_by_default(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, RD.url, NULL, NULL);
    http(s.port, "GET", "/v1/queues", "Origin: " CORS_ORIGIN "\r\n", NULL);
    expect_status(R, 200);
    assert_false(has_header(R, "Access-Control-Allow-Origin", NULL));
    server_stop_clean(&s);
    server_cleanup(&s);
}

static void test_metrics(void **state)
{
    (void)state;
    const char *q = test_queue_name("metrics");
    char id[128];
    enqueue(q, NULL, id, sizeof(id));
    enqueue(q, NULL, id, sizeof(id));
    job_list_t got = {0};
    assert_int_equal(broker_reserve(B, q, 1, 30000, "test", &got), 0);
    assert_int_equal(got.n, 1);
    assert_int_equal(broker_ack(B, got.jobs[0]->id, got.jobs[0]->lease_token, NULL, 0), 0);
    job_list_cleanup(&got);
    hp_sleep_ms(20); /* so the waiting job has waited a measurable while */
    GET("/v1/nope");
    GET("/metrics");
    expect_status(R, 200);
    expect_header(R, "Content-Type", "text/plain");
    expect_body_has(R, "hopper_http_requests_total{");
    char line[256];
    snprintf(line, sizeof(line), "hopper_jobs{queue=\"%s\",state=\"waiting\"} 1", q);
    expect_body_has(R, line);
    snprintf(line, sizeof(line), "hopper_jobs{queue=\"%s\",state=\"succeeded\"} 1", q);
    expect_body_has(R, line);
    expect_body_has(R, "hopper_job_runtime_seconds_bucket{");
    snprintf(line, sizeof(line), "hopper_job_runtime_seconds_count{queue=\"%s\"} 1", q);
    expect_body_has(R, line);
    /* the one waiting job has waited a little (under a minute), and the queue runs */
    snprintf(line, sizeof(line), "hopper_queue_oldest_waiting_seconds{queue=\"%s\"} ", q);
    const char *age = strstr(R->body, line);
    if (!age)
        fail_msg("no %s in /metrics", line);
    double waited = strtod(age + strlen(line), NULL);
    assert_true(waited > 0.0 && waited < 60.0);
    snprintf(line, sizeof(line), "hopper_queue_paused{queue=\"%s\"} 0", q);
    expect_body_has(R, line);
    /* the request counter by route and status: a 201 on POST /v1/jobs, a 404 */
    bool post201 = false, unmatched404 = false;
    for (const char *p = strstr(R->body, "hopper_http_requests_total{"); p;
         p = strstr(p + 1, "hopper_http_requests_total{")) {
        size_t n = strcspn(p, "\n");
        char l[512];
        snprintf(l, sizeof(l), "%.*s", (int)n, p);
        if (strstr(l, "route=\"POST /v1/jobs\"") && strstr(l, "status=\"201\""))
            post201 = true;
        if (strstr(l, "status=\"404\""))
            unmatched404 = true;
    }
    if (!post201 || !unmatched404) {
        show("metrics", R);
        fail_msg("hopper_http_requests_total lacks route/status labels for POST /v1/jobs 201 or "
                 "a 404");
    }
    expect_body_has(R, "# TYPE hopper_jobs gauge");
}

/* ---- Events ---- */

static void test_sse_events(void **state)
{
    (void)state;
    const char *q = test_queue_name("sse");
    conn_t c;
    sse_open_live(&c, S.port, q);
    assert_true(contains(c.buf, "event: enqueued"));
    char id[128];
    /* Another queue's jobs are not sent. */
    char other[128];
    enqueue(test_queue_name("sse-other"), NULL, other, sizeof(other));
    enqueue(q, NULL, id, sizeof(id));
    assert_true(read_until(&c, id, 5000));
    assert_false(contains(c.buf, other));
    conn_close(&c);
    /* bad queue name: 400 */
    GET("/v1/events?queue=bad%2Fname");
    expect_problem(R, 400, "queue");
    /* a name too long is refused too, not taken for "every queue" */
    char path[256];
    snprintf(path, sizeof(path), "/v1/events?queue=%0100d", 0);
    GET(path);
    expect_problem(R, 400, "queue");
    GET("/v1/events?queue=%zz");
    expect_problem(R, 400, "queue");
}

/* ?coalesce=: one summary message per interval instead of a message per event. */
static void test_sse_coalesced(void **state)
{
    (void)state;
    const char *q = test_queue_name("coal");
    conn_t c;
    sse_open_live_query(&c, S.port, q, "&coalesce=200ms");
    assert_true(contains(c.buf, "event: summary"));
    assert_false(contains(c.buf, "event: enqueued"));
    size_t seen = c.len;
    char id[128];
    for (int i = 0; i < 20; i++)
        enqueue(q, NULL, id, sizeof(id));
    enqueue(q, "\"delay_ms\":60000", id, sizeof(id));
    POST(job_path(id, "/cancel"), "");
    expect_status(R, 200);
    /* All of it arrives, in a few summaries at most 200 ms apart, and none of it
     * as single events. */
    int64_t t0 = hp_mono_ms();
    long long waiting = 0, scheduled = 0, canceled = 0;
    while (hp_mono_ms() - t0 < 10000 && (waiting < 20 || scheduled < 1 || canceled < 1)) {
        conn_fill(&c, 200);
        waiting = summary_total(c.buf + seen, q, "enqueued", "waiting");
        scheduled = summary_total(c.buf + seen, q, "enqueued", "scheduled");
        canceled = summary_total(c.buf + seen, q, "canceled", "canceled");
        assert_true(waiting >= 0);
    }
    if (waiting != 20 || scheduled != 1 || canceled != 1)
        fail_msg("summaries said %lld waiting, %lld scheduled, %lld canceled: %s", waiting,
                 scheduled, canceled, c.buf + seen);
    assert_false(contains(c.buf, "event: enqueued"));
    assert_true(contains(c.buf + seen, id)); /* the job ids are listed */
    conn_close(&c);

    static const char *const bad[] = {"50ms", "11s", "abc", "", "-1s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/events?coalesce=%s", bad[i]);
        GET(path);
        expect_problem(R, 400, "coalesce");
    }
}

static void test_long_poll_wait(void **state)
{
    (void)state;
    const char *q = test_queue_name("wait");
    char id[128];
    enqueue(q, NULL, id, sizeof(id));
    conn_t c;
    conn_open(&c, S.port);
    char req[256];
    snprintf(req, sizeof(req), "GET /v1/jobs/%s?wait=5s HTTP/1.1\r\nHost: t\r\n\r\n", id);
    int64_t t0 = hp_mono_ms();
    assert_true(conn_sends(&c, req));
    hp_sleep_ms(300);
    job_list_t got = {0};
    assert_int_equal(broker_reserve(B, q, 1, 30000, "test", &got), 0);
    assert_int_equal(got.n, 1);
    assert_int_equal(broker_ack(B, got.jobs[0]->id, got.jobs[0]->lease_token, "{\"ok\":true}", 0),
                     0);
    job_list_cleanup(&got);
    assert_int_equal(read_response(&c, R, 8000), 0);
    int64_t took = hp_mono_ms() - t0;
    expect_status(R, 200);
    char st[32];
    body_string(R, "state", st, sizeof(st));
    assert_string_equal(st, "succeeded");
    if (took >= 4000)
        fail_msg("?wait=5s took %lld ms to see the job finish", (long long)took);
    conn_close(&c);

    /* A job that never finishes: the current state after the wait. */
    enqueue(q, NULL, id, sizeof(id));
    t0 = hp_mono_ms();
    http(S.port, "GET", job_path(id, "?wait=1s"), NULL, NULL);
    took = hp_mono_ms() - t0;
    expect_status(R, 200);
    body_string(R, "state", st, sizeof(st));
    assert_string_equal(st, "waiting");
    if (took < 800 || took > 4000)
        fail_msg("?wait=1s on an unfinished job answered after %lld ms", (long long)took);

    /* A bad wait */
    http(S.port, "GET", job_path(id, "?wait=forever"), NULL, NULL);
    expect_problem(R, 400, "wait");
}

/* ---- Blobs ---- */

static void test_blobs(void **state)
{
    (void)state;
    size_t len = 3 * 1000 * 1000 + 17;
    char *data = malloc(len);
    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (char)(x >> 16);
    }
    char want[65];
    sha256_hex(data, len, want);
    http_len(S.port, "POST", "/v1/blobs", "Content-Type: application/octet-stream\r\n", data, len);
    expect_status(R, 201);
    char id[80];
    body_string(R, "id", id, sizeof(id));
    assert_string_equal(id, want);
    json_t *doc = body_json(R);
    assert_int_equal(jnum(json_object_get(doc, "size")), len);
    json_decref(doc);

    char path[128];
    snprintf(path, sizeof(path), "/v1/blobs/%s", id);
    GET(path);
    expect_status(R, 200);
    assert_int_equal(R->body_len, len);
    assert_memory_equal(R->body, data, len);
    expect_header(R, "Content-Type", "application/octet-stream");

    /* multipart/form-data: the file part is the blob */
    const char *file = "hello, multipart\r\nsecond line\n";
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_appends(&sb, "--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n"
                           "a field\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
                           "filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n");
    hp_strbuf_appends(&sb, file);
    hp_strbuf_appends(&sb, "\r\n--XyZ--\r\n");
    http_len(S.port, "POST", "/v1/blobs", "Content-Type: multipart/form-data; boundary=XyZ\r\n",
             sb.data, sb.len);
    hp_strbuf_cleanup(&sb);
    expect_status(R, 201);
    body_string(R, "id", id, sizeof(id));
    sha256_hex(file, strlen(file), want);
    assert_string_equal(id, want);
    snprintf(path, sizeof(path), "/v1/blobs/%s", id);
    GET(path);
    expect_status(R, 200);
    assert_string_equal(R->body, file);
    expect_header(R, "Content-Type", "text/plain");

    /* over --max-blob: 413 (raw, by Content-Length) */
    size_t over = MAX_BLOB + 1000;
    data = realloc(data, over);
    memset(data, 'z', over);
    conn_t c;
    conn_open(&c, S.port);
    char head[256];
    snprintf(head, sizeof(head),
             "POST /v1/blobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
             "Content-Length: %zu\r\n\r\n",
             over);
    conn_sends(&c, head);
    conn_send(&c, data, 4096);
    assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
    expect_problem(R, 413, NULL);
    conn_close(&c);
    /* over --max-blob, chunked (no length to judge from) */
    conn_open(&c, S.port);
    conn_sends(&c, "POST /v1/blobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream"
                   "\r\nTransfer-Encoding: chunked\r\n\r\n");
    if (send_chunked_until_answer(&c, over) != 0)
        fail_msg("no answer to a chunked blob over --max-blob");
    expect_problem(R, 413, NULL);
    conn_close(&c);
    free(data);

    /* unknown and invalid ids */
    GET("/v1/blobs/0000000000000000000000000000000000000000000000000000000000000000");
    expect_problem(R, 404, NULL);
    GET("/v1/blobs/nothex");
    expect_problem(R, 404, NULL);
    GET("/v1/blobs/..%2F..%2Fetc%2Fpasswd");
    expect_status(R, 404);
}

/* Files in <blob dir>/tmp: uploads in progress (or leaked). */
static int blob_tmp_files(const server_t *s)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "ls -1 '%s/tmp' 2>/dev/null | wc -l", s->blobs);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        pclose(f);
    }
    return n;
}

/* Clients that leave mid-way (a long poll, an event stream, an upload, a
 * download): the server frees what they held and goes on. Under the sanitizer
 * build, a use after free here shows in the server's log. */
static void test_clients_going_away(void **state)
{
    (void)state;
    const char *q = test_queue_name("away");
    char id[128];
    enqueue(q, NULL, id, sizeof(id));
    for (int round = 0; round < 3; round++) {
        conn_t lp, sse, up;
        conn_open(&lp, S.port);
        char req[256];
        snprintf(req, sizeof(req), "GET /v1/jobs/%s?wait=20s HTTP/1.1\r\nHost: t\r\n\r\n", id);
        conn_sends(&lp, req);
        conn_open(&sse, S.port);
        conn_sends(&sse, "GET /v1/events HTTP/1.1\r\nHost: t\r\n\r\n");
        conn_open(&up, S.port);
        conn_sends(&up, "POST /v1/blobs HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n");
        static char chunk[100000];
        memset(chunk, 'u', sizeof(chunk));
        for (int i = 0; i < 10; i++)
            conn_send(&up, chunk, sizeof(chunk));
        hp_sleep_ms(300);
        conn_close(&lp);
        conn_close(&sse);
        conn_close(&up);
    }
    /* a download cut short */
    size_t len = 2 * 1000 * 1000;
    char *data = malloc(len);
    memset(data, 'd', len);
    http_len(S.port, "POST", "/v1/blobs", "Content-Type: application/octet-stream\r\n", data, len);
    expect_status(R, 201);
    char blob[80], path[128];
    body_string(R, "id", blob, sizeof(blob));
    free(data);
    snprintf(path, sizeof(path), "GET /v1/blobs/%s HTTP/1.1\r\nHost: t\r\n\r\n", blob);
    for (int i = 0; i < 6; i++) {
        conn_t c;
        conn_open(&c, S.port);
        conn_sends(&c, path);
        assert_true(read_until(&c, "\r\n\r\n", IO_WAIT_MS));
        if (i % 2) /* a reset makes the server's next write fail where it stands */
            conn_reset(&c);
        else
            conn_close(&c);
    }
    /* the job finishes: nobody is left waiting for it, and nothing breaks */
    job_list_t got = {0};
    assert_int_equal(broker_reserve(B, q, 1, 30000, "test", &got), 0);
    assert_int_equal(got.n, 1);
    assert_int_equal(broker_ack(B, got.jobs[0]->id, got.jobs[0]->lease_token, NULL, 0), 0);
    job_list_cleanup(&got);
    hp_sleep_ms(300);
    GET("/healthz");
    expect_status(R, 200);
    GET(job_path(id, "?wait=1s"));
    expect_status(R, 200);
    /* the abandoned uploads left no temp file behind */
    int left = -1;
    for (int i = 0; i < 50 && left != 0; i++) {
        left = blob_tmp_files(&S);
        if (left != 0)
            hp_sleep_ms(100);
    }
    if (left != 0)
        fail_msg("%d temp files left in %s/tmp by abandoned uploads", left, S.blobs);
    assert_log_clean(&S);
}

/* A server started with no tokens requires them once the first is created
 * (it looks every 5 s), without a restart. */
static void test_auth_turns_on_with_first_token(void **state)
{
    (void)state;
    test_redis_t rd;
    assert_int_equal(test_redis_start(&rd, NULL), 0);
    server_t s;
    server_start(&s, rd.url, NULL, NULL);
    http(s.port, "GET", "/v1/queues", NULL, NULL);
    expect_status(R, 200);
    static cli_result_t res;
    test_cli_run(&res, rd.url, (const char *const[]){"token", "create", "--scope", "read", NULL});
    assert_int_equal(res.status, 0);
    int64_t t0 = hp_mono_ms();
    bool on = false;
    while (!on && hp_mono_ms() - t0 < 12000) {
        http(s.port, "GET", "/v1/queues", NULL, NULL);
        on = R->status == 401;
        if (!on)
            hp_sleep_ms(200);
    }
    if (!on)
        fail_msg("12 s after the first token was created, requests without one still pass");
    char h[160];
    snprintf(h, sizeof(h), "Authorization: Bearer %.100s\r\n", res.out);
    http(s.port, "GET", "/v1/queues", h, NULL);
    expect_status(R, 200);
    char *log = slurp(s.log);
    bool leaked = contains(log, res.out);
    free(log);
    assert_false(leaked);
    server_stop_clean(&s);
    server_cleanup(&s);
    test_redis_stop(&rd);
}

/* ---- Health, auth mode, start-up ---- */

static void test_health_and_no_auth_warning(void **state)
{
    (void)state;
    GET("/healthz");
    expect_status(R, 200);
    GET("/readyz");
    expect_status(R, 200);
    char *log = slurp(S.log);
    bool warned = contains(log, "NO AUTHENTICATION");
    free(log);
    if (!warned) {
        print_log(&S);
        fail_msg("a server with no tokens must warn NO AUTHENTICATION at start");
    }
}

static void test_non_loopback_without_tokens_refuses(void **state)
{
    (void)state;
    server_t s;
    server_spawn(&s, RD.url, "0.0.0.0:0", NULL, NULL);
    int st = server_wait_exit(&s, START_WAIT_MS);
    char *log = slurp(s.log);
    bool said = contains(log, "refusing") && contains(log, "0.0.0.0");
    bool served = contains(log, "serving");
    free(log);
    if (st <= 0 || !said || served) {
        print_log(&s);
        fail_msg("--listen 0.0.0.0:0 without tokens: exit %d, expected non-zero with a message",
                 st);
    }
    server_cleanup(&s);
}

/* ---- Redis down ---- */

static void test_redis_down_and_back(void **state)
{
    (void)state;
    test_redis_t rd;
    assert_int_equal(test_redis_start(&rd, NULL), 0);
    server_t s;
    server_start(&s, rd.url, NULL, NULL);
    const char *job = "{\"queue\":\"down\",\"type\":\"t\"}";
    http(s.port, "POST", "/v1/jobs", NULL, job);
    expect_status(R, 201);
    /* An event stream, subscribed (an event came through). */
    conn_t sse;
    sse_open_live(&sse, s.port, "down");

    test_redis_stop(&rd);
    /* The stream says its events are interrupted; one opened now hears it first. */
    if (!read_until(&sse, "\"state\":\"interrupted\"", 10000))
        fail_msg("no interrupted event on the stream: %s", sse.buf ? sse.buf : "");
    assert_true(contains(sse.buf, "event: stream"));
    conn_t late;
    conn_open(&late, s.port);
    assert_true(conn_sends(&late, "GET /v1/events HTTP/1.1\r\nHost: t\r\n\r\n"));
    if (!read_until(&late, "\"state\":\"interrupted\"", IO_WAIT_MS))
        fail_msg("a stream opened during the outage: %s", late.buf ? late.buf : "");
    conn_close(&late);
    int64_t t0 = hp_mono_ms();
    http(s.port, "POST", "/v1/jobs", NULL, job);
    if (hp_mono_ms() - t0 > 8000)
        fail_msg("POST /v1/jobs with Redis down took %lld ms", (long long)(hp_mono_ms() - t0));
    expect_problem(R, 503, NULL);
    expect_header(R, "Retry-After", NULL);
    http(s.port, "GET", "/readyz", NULL, NULL);
    expect_status(R, 503);
    http(s.port, "GET", "/healthz", NULL, NULL);
    expect_status(R, 200);
    http(s.port, "GET", "/v1/queues", NULL, NULL);
    expect_problem(R, 503, NULL);

    assert_int_equal(test_redis_restart(&rd), 0);
    /* Back on its own within 10 s, with no restart of the server: then every
     * request succeeds, on every broker thread. */
    bool back = false;
    int failed_after_first = 0;
    int64_t t_back = hp_mono_ms();
    for (int i = 0; i < 100 && !back; i++) {
        http(s.port, "POST", "/v1/jobs", NULL, job);
        bool posted = R->status == 201;
        http(s.port, "GET", "/readyz", NULL, NULL);
        back = posted && R->status == 200;
        if (!back)
            hp_sleep_ms(100);
    }
    if (!back) {
        show("after Redis came back", R);
        fail_msg("the server did not recover within 10 s of Redis coming back");
    }
    for (int i = 0; i < 10; i++) {
        http(s.port, "POST", "/v1/jobs", NULL, job);
        failed_after_first += R->status != 201;
        http(s.port, "GET", "/readyz", NULL, NULL);
        failed_after_first += R->status != 200;
        http(s.port, "GET", "/v1/queues", NULL, NULL);
        failed_after_first += R->status != 200;
    }
    if (failed_after_first) {
        show("last answer", R);
        fail_msg("%d of 30 requests failed after the server had recovered", failed_after_first);
    }
    print_message("recovered %lld ms after Redis came back\n", (long long)(hp_mono_ms() - t_back));
    /* The stream resumed, and events flow on it again. */
    if (!read_until(&sse, "\"state\":\"resumed\"", 10000))
        fail_msg("no resumed event on the stream: %s", sse.buf ? sse.buf : "");
    char id[128];
    bool got = false;
    for (int i = 0; i < 10 && !got; i++) {
        enqueue_with(s.port, "down", NULL, id, sizeof(id));
        got = read_until(&sse, id, 1000);
    }
    if (!got)
        fail_msg("no event after the stream resumed: %s", sse.buf ? sse.buf : "");
    conn_close(&sse);
    server_stop_clean(&s);
    server_cleanup(&s);
    test_redis_stop(&rd);
}

/* ---- Stop ---- */

static void test_sigterm_with_clients_connected(void **state)
{
    (void)state;
    /* the main server: an idle keep-alive client, an SSE client, a long poll */
    conn_t idle, sse, poll_c;
    conn_open(&idle, S.port);
    conn_sends(&idle, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_response(&idle, R, IO_WAIT_MS), 0);
    conn_open(&sse, S.port);
    conn_sends(&sse, "GET /v1/events HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(read_until(&sse, ": connected", IO_WAIT_MS));
    char id[128];
    enqueue(test_queue_name("term"), NULL, id, sizeof(id));
    conn_open(&poll_c, S.port);
    char req[256];
    snprintf(req, sizeof(req), "GET /v1/jobs/%s?wait=30s HTTP/1.1\r\nHost: t\r\n\r\n", id);
    conn_sends(&poll_c, req);
    hp_sleep_ms(300);
    int64_t t0 = hp_mono_ms();
    server_stop_clean(&S);
    if (hp_mono_ms() - t0 > 10000)
        fail_msg("SIGTERM took %lld ms with clients connected", (long long)(hp_mono_ms() - t0));
    assert_true(wait_closed(&idle, 3000));
    assert_true(wait_closed(&sse, 3000));
    assert_true(wait_closed(&poll_c, 3000));
    conn_close(&idle);
    conn_close(&sse);
    conn_close(&poll_c);
}

/* ---- The dashboard's files, and cross-site requests ---- */

static void test_dashboard_files(void **state)
{
    (void)state;
    GET("/dashboard");
    expect_status(R, 302);
    expect_header(R, "Location", "/dashboard/");
    GET("/dashboard/");
    expect_status(R, 200);
    expect_header(R, "Content-Type", "text/html");
    expect_header(R, "Content-Security-Policy", "script-src 'self'");
    expect_header(R, "Cache-Control", "no-cache");
    /* one policy only: the API's default-src 'none' would block the page's script */
    const char *csp = strcasestr(R->head, "content-security-policy:");
    assert_null(strcasestr(csp + 1, "content-security-policy:"));
    assert_null(strcasestr(R->head, "no-store"));
    assert_non_null(strstr(R->body, "<html"));
    char etag[128], h[200];
    assert_true(find_header(R->head, "ETag", etag, sizeof(etag)));
    snprintf(h, sizeof(h), "If-None-Match: %s\r\n", etag);
    http(S.port, "GET", "/dashboard/", h, NULL);
    expect_status(R, 304);
    /* a page of the front-end's own (no dot): the page; a missing file: 404 */
    GET("/dashboard/queues/email");
    expect_status(R, 200);
    expect_header(R, "Content-Type", "text/html");
    GET("/dashboard/missing.js");
    expect_problem(R, 404, "missing.js");
    GET("/dashboard/%2e%2e/etc/passwd.txt");
    expect_status(R, 404);
    /* the API keeps its own strict policy */
    GET("/v1/queues");
    expect_header(R, "Content-Security-Policy", "default-src 'none'");
    expect_header(R, "Cache-Control", "no-store");
    /* without auth there is nothing to log in to */
    GET("/v1/session");
    expect_status(R, 200);
    expect_body_has(R, "\"auth\":false");
}

static void test_cross_site_refused(void **state)
{
    (void)state;
    http(S.port, "POST", "/v1/queues/xsite/pause", "Origin: http://evil.example\r\n", NULL);
    expect_problem(R, 403, "cross-site");
    http(S.port, "POST", "/v1/queues/xsite/pause", "Origin: null\r\n", NULL);
    expect_problem(R, 403, "cross-site");
    http(S.port, "POST", "/v1/queues/xsite/pause", "Sec-Fetch-Site: cross-site\r\n", NULL);
    expect_problem(R, 403, "cross-site");
    http(S.port, "DELETE", "/v1/queues/xsite/jobs?state=dead", "Origin: https://test.evil\r\n",
         NULL);
    expect_problem(R, 403, "cross-site");
    /* reading is not an action; the same origin and plain clients act */
    http(S.port, "GET", "/v1/queues", "Origin: http://evil.example\r\n", NULL);
    expect_status(R, 200);
    http(S.port, "POST", "/v1/queues/xsite/pause", "Origin: http://test\r\n", NULL);
    expect_status(R, 200);
    http(S.port, "POST", "/v1/queues/xsite/resume", "Sec-Fetch-Site: same-origin\r\n", NULL);
    expect_status(R, 200);
    POST("/v1/queues/xsite/resume", NULL);
    expect_status(R, 200);
}

/* ---- Auth: a server of its own, on a Redis of its own that has tokens ---- */

static test_redis_t ARD;
static server_t AS;
#define ADMIN_ENV_TOKEN "env-admin-token-0123456789abcdef"
static char tok_submit[TOKEN_MAX], tok_read[TOKEN_MAX], tok_admin[TOKEN_MAX], tok_rate[TOKEN_MAX],
    tok_rate2[TOKEN_MAX], tok_lim_read[TOKEN_MAX], tok_lim_admin[TOKEN_MAX];

/* `hopper token create ARGS...` against ARD; the token into out, its id into id. */
static void token_create(char *out, char *id, const char *const *args)
{
    static cli_result_t res;
    const char *argv[16] = {"token", "create"};
    int n = 2;
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    test_cli_run(&res, ARD.url, argv);
    if (res.status != 0 || strncmp(res.out, "hop_", 4) != 0) {
        fprintf(stderr, "token create: status %d\nstdout: %s\nstderr: %s\n", res.status, res.out,
                res.err);
        fail_msg("hopper token create failed");
    }
    size_t tl = strcspn(res.out, "\n");
    assert_true(tl < TOKEN_MAX);
    memcpy(out, res.out, tl);
    out[tl] = '\0';
    if (id) {
        const char *at = strstr(res.err, "token ");
        assert_non_null(at);
        sscanf(at + 6, "%15s", id);
    }
}

static int auth_setup(void **state)
{
    (void)state;
    if (test_redis_start(&ARD, NULL))
        return -1;
    token_create(tok_submit, NULL,
                 (const char *const[]){"--scope", "submit", "--queues", "email*", NULL});
    token_create(tok_read, NULL, (const char *const[]){"--scope", "read", NULL});
    token_create(tok_admin, NULL, (const char *const[]){"--scope", "admin", NULL});
    token_create(tok_rate, NULL,
                 (const char *const[]){"--scope", "admin", "--rate", "5", "--burst", "5", NULL});
    token_create(tok_rate2, NULL,
                 (const char *const[]){"--scope", "read", "--rate", "5", "--burst", "5", NULL});
    token_create(tok_lim_read, NULL,
                 (const char *const[]){"--scope", "read", "--queues", "lim-a*", NULL});
    token_create(tok_lim_admin, NULL,
                 (const char *const[]){"--scope", "admin", "--queues", "lim-a*", NULL});
    server_spawn(&AS, ARD.url, "127.0.0.1:0", NULL,
                 (const char *const[]){"HOPPER_ADMIN_TOKEN=" ADMIN_ENV_TOKEN, NULL});
    if (server_wait_serving(&AS) != 0) {
        print_log(&AS);
        return -1;
    }
    return 0;
}

static int auth_teardown(void **state)
{
    (void)state;
    server_cleanup(&AS);
    test_redis_stop(&ARD);
    resp_reset(R);
    return 0;
}

static int as(const char *token, const char *method, const char *path, const char *body)
{
    char h[256] = "";
    if (token)
        snprintf(h, sizeof(h), "Authorization: Bearer %s\r\n", token);
    return http(AS.port, method, path, h, body);
}

static void test_auth_scopes(void **state)
{
    (void)state;
    const char *email = "{\"queue\":\"email.x\",\"type\":\"t\"}";
    const char *pdf = "{\"queue\":\"pdf\",\"type\":\"t\"}";
    as(NULL, "POST", "/v1/jobs", email);
    expect_problem(R, 401, NULL);
    expect_header(R, "WWW-Authenticate", "Bearer");
    as(NULL, "GET", "/v1/queues", NULL);
    expect_status(R, 401);
    as("hop_aaaaaaaaaaaa_wrongwrongwrongwrong", "GET", "/v1/queues", NULL);
    expect_problem(R, 401, NULL);
    expect_header(R, "WWW-Authenticate", "Bearer");
    as("garbage", "GET", "/v1/queues", NULL);
    expect_status(R, 401);
    http(AS.port, "GET", "/v1/queues", "Authorization: Basic dXNlcjpwYXNz\r\n", NULL);
    expect_status(R, 401);
    /* public routes need none */
    as(NULL, "GET", "/healthz", NULL);
    expect_status(R, 200);

    /* submit, on email*: */
    as(tok_submit, "POST", "/v1/jobs", email);
    expect_status(R, 201);
    char id[128];
    body_string(R, "id", id, sizeof(id));
    as(tok_submit, "GET", job_path(id, NULL), NULL); /* its own queue's jobs */
    expect_status(R, 200);
    as(tok_submit, "POST", "/v1/jobs", pdf);
    expect_problem(R, 403, NULL);
    as(tok_submit, "POST", job_path(id, "/cancel"), NULL);
    expect_problem(R, 403, NULL);
    as(tok_submit, "POST", "/v1/queues/email.x/pause", NULL);
    expect_problem(R, 403, NULL);
    as(tok_submit, "GET", "/v1/queues", NULL); /* everything: not its to read */
    expect_status(R, 403);
    /* batch: the pdf item refused alone */
    as(tok_submit, "POST", "/v1/jobs/batch",
       "{\"jobs\":[{\"queue\":\"email.y\",\"type\":\"t\"},{\"queue\":\"pdf\",\"type\":\"t\"}]}");
    expect_status(R, 200);
    json_t *doc = body_json(R);
    json_t *res = json_object_get(doc, "results");
    assert_int_equal(jnum(json_object_get(json_array_get(res, 0), "status")), 201);
    assert_int_equal(jnum(json_object_get(json_array_get(res, 1), "status")) / 100, 4);
    json_decref(doc);

    char path[160];
    as(tok_admin, "POST", "/v1/jobs", pdf);
    expect_status(R, 201);
    char pdf_id[128];
    body_string(R, "id", pdf_id, sizeof(pdf_id));
    as(tok_submit, "GET", job_path(pdf_id, NULL), NULL); /* another queue's job */
    expect_problem(R, 403, NULL);
    as(tok_submit, "GET", "/v1/jobs?queue=pdf", NULL);
    expect_problem(R, 403, NULL);
    as(tok_submit, "GET", "/v1/jobs?queue=email.x", NULL);
    expect_status(R, 200);
    as(tok_submit, "GET", "/v1/events", NULL); /* every queue: not its to see */
    expect_problem(R, 403, NULL);
    as(tok_submit, "GET", "/v1/events?queue=pdf", NULL);
    expect_problem(R, 403, NULL);
    snprintf(path, sizeof(path), "/v1/queues/%s/jobs?state=dead", "email.x");
    as(tok_submit, "DELETE", path, NULL);
    expect_problem(R, 403, NULL);
    as(tok_submit, "DELETE", job_path(id, NULL), NULL);
    expect_problem(R, 403, NULL);

    /* read: */
    as(tok_read, "GET", "/v1/queues", NULL);
    expect_status(R, 200);
    as(tok_read, "GET", job_path(id, NULL), NULL);
    expect_status(R, 200);
    as(tok_read, "POST", "/v1/jobs", email);
    expect_problem(R, 403, NULL);
    as(tok_read, "POST", "/v1/queues/email.x/pause", NULL);
    expect_problem(R, 403, NULL);
    as(tok_read, "POST", "/v1/queues/email.x/bulk", "{\"action\":\"delete\",\"state\":\"dead\"}");
    expect_problem(R, 403, NULL);
    as(tok_read, "GET", "/v1/broker", NULL);
    expect_status(R, 200);
    as(tok_read, "GET", "/v1/stats/throughput", NULL);
    expect_status(R, 200);
    as(tok_submit, "GET", "/v1/stats/throughput?queue=email.x", NULL); /* its own queue */
    expect_status(R, 200);
    as(tok_submit, "GET", "/v1/stats/throughput", NULL); /* every queue: not its to read */
    expect_problem(R, 403, NULL);
    as(tok_submit, "GET", "/v1/broker", NULL);
    expect_problem(R, 403, NULL);
    as(tok_admin, "POST", "/v1/queues/pdf/bulk", "{\"action\":\"delete\",\"state\":\"dead\"}");
    expect_status(R, 200);

    /* admin (a token, and HOPPER_ADMIN_TOKEN): */
    as(tok_admin, "POST", "/v1/jobs", pdf);
    expect_status(R, 201);
    as(tok_admin, "POST", "/v1/queues/pdf/pause", NULL);
    expect_status(R, 200);
    as(ADMIN_ENV_TOKEN, "POST", "/v1/queues/pdf/resume", NULL);
    expect_status(R, 200);
    as(ADMIN_ENV_TOKEN, "POST", job_path(id, "/cancel"), NULL);
    expect_status(R, 200);
    as(tok_admin, "GET", "/metrics", NULL);
    expect_status(R, 200);
    as(NULL, "GET", "/metrics", NULL);
    expect_status(R, 401);

    /* twice more with the submit token: the cached answer is the same */
    for (int i = 0; i < 2; i++) {
        as(tok_submit, "POST", "/v1/jobs", pdf);
        expect_status(R, 403);
        as(tok_submit, "POST", "/v1/jobs", email);
        expect_status(R, 201);
    }
}

/* ---- Dashboard sessions and the audit log ---- */

typedef struct session_cookie_s {
    char cookie[160]; /* "Cookie: hopper_session=...\r\n" */
    char csrf[80];
} session_cookie_t;

/* Logs in with `token`; the cookie and CSRF token into *sc. */
static void login(const char *token, session_cookie_t *sc)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"token\":\"%s\"}", token);
    as(NULL, "POST", "/v1/session", body);
    expect_status(R, 200);
    char set[512];
    assert_true(find_header(R->head, "Set-Cookie", set, sizeof(set)));
    assert_non_null(strstr(set, "HttpOnly"));
    assert_non_null(strstr(set, "SameSite=Strict"));
    assert_non_null(strstr(set, "Max-Age="));
    assert_null(strstr(set, "Secure")); /* plain HTTP here */
    size_t n = strcspn(set, ";");
    snprintf(sc->cookie, sizeof(sc->cookie), "Cookie: theme=dark; %.*s\r\n", (int)n, set);
    body_string(R, "csrf", sc->csrf, sizeof(sc->csrf));
    assert_int_equal(strlen(sc->csrf), 64);
}

/* A request with the session's cookie, and its CSRF token when `csrf`. */
static int with_session(const session_cookie_t *sc, bool csrf, const char *method, const char *path,
                        const char *body)
{
    char h[400];
    snprintf(h, sizeof(h), "%s%s%s%s", sc->cookie, csrf ? "X-CSRF-Token: " : "",
             csrf ? sc->csrf : "", csrf ? "\r\n" : "");
    return http(AS.port, method, path, h, body);
}

/* The newest audit entries (read with the admin token), parsed. */
static json_t *audit_newest(int limit)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/audit?limit=%d", limit);
    as(tok_admin, "GET", path, NULL);
    expect_status(R, 200);
    return body_json(R);
}

static void test_session_login_csrf_audit(void **state)
{
    (void)state;
    as(NULL, "POST", "/v1/session", "{\"token\":\"hop_aaaaaaaaaaaa_wrong\"}");
    expect_problem(R, 401, "not recognized");
    as(NULL, "POST", "/v1/session", "{\"tok\":1}");
    expect_problem(R, 400, "token");
    as(NULL, "POST", "/v1/session", "not json");
    expect_status(R, 400);
    as(NULL, "GET", "/v1/session", NULL);
    expect_status(R, 401);
    http(AS.port, "GET", "/v1/queues", "Cookie: hopper_session=deadbeef\r\n", NULL);
    expect_status(R, 401); /* malformed: no session, and no token either */
    char forged[200];
    snprintf(forged, sizeof(forged), "Cookie: hopper_session=%064d\r\n", 7);
    http(AS.port, "GET", "/v1/queues", forged, NULL);
    expect_problem(R, 401, "log in again");

    /* behind a TLS proxy the cookie is Secure */
    char body[256];
    snprintf(body, sizeof(body), "{\"token\":\"%s\"}", tok_read);
    http(AS.port, "POST", "/v1/session", "X-Forwarded-Proto: https\r\n", body);
    expect_status(R, 200);
    expect_header(R, "Set-Cookie", "; Secure");

    /* read scope: sees everything, acts on nothing */
    session_cookie_t rs, ad;
    login(tok_read, &rs);
    with_session(&rs, false, "GET", "/v1/queues", NULL);
    expect_status(R, 200);
    with_session(&rs, false, "GET", "/v1/session", NULL);
    expect_status(R, 200);
    expect_body_has(R, "\"scope\":\"read\"");
    expect_body_has(R, rs.csrf);
    with_session(&rs, true, "POST", "/v1/queues/dash/pause", NULL);
    expect_problem(R, 403, "admin");

    /* admin: acts only with the CSRF token */
    login(tok_admin, &ad);
    with_session(&ad, false, "POST", "/v1/queues/dash/pause", NULL);
    expect_problem(R, 403, "X-CSRF-Token");
    session_cookie_t wrong = ad;
    wrong.csrf[0] = wrong.csrf[0] == 'a' ? 'b' : 'a';
    with_session(&wrong, true, "POST", "/v1/queues/dash/pause", NULL);
    expect_problem(R, 403, "X-CSRF-Token");
    with_session(&ad, true, "POST", "/v1/queues/dash/pause", NULL);
    expect_status(R, 200);
    as(tok_admin, "GET", "/v1/queues/dash", NULL);
    expect_body_has(R, "\"paused\":true");
    /* a cookie and a cross-site origin: refused before anything else */
    char h[400];
    snprintf(h, sizeof(h), "%sX-CSRF-Token: %s\r\nOrigin: http://evil.example\r\n", ad.cookie,
             ad.csrf);
    http(AS.port, "POST", "/v1/queues/dash/resume", h, NULL);
    expect_problem(R, 403, "cross-site");
    /* a bearer token needs no CSRF token: scripts are not browsers */
    as(tok_admin, "POST", "/v1/queues/dash/resume", NULL);
    expect_status(R, 200);

    /* the audit log: who, what, from where, newest first */
    json_t *doc = audit_newest(10);
    json_t *entries = json_object_get(doc, "entries");
    json_t *first = json_array_get(entries, 0), *second = json_array_get(entries, 1);
    assert_string_equal(json_string_value(json_object_get(first, "action")),
                        "POST /v1/queues/{queue}/resume");
    assert_string_equal(json_string_value(json_object_get(first, "via")), "token");
    assert_string_equal(json_string_value(json_object_get(second, "action")),
                        "POST /v1/queues/{queue}/pause");
    assert_string_equal(json_string_value(json_object_get(second, "via")), "session");
    assert_string_equal(json_string_value(json_object_get(second, "path")),
                        "/v1/queues/dash/pause");
    assert_string_equal(json_string_value(json_object_get(second, "ip")), "127.0.0.1");
    assert_int_equal(jnum(json_object_get(second, "status")), 200);
    assert_non_null(json_string_value(json_object_get(second, "at")));
    char admin_id[32];
    snprintf(admin_id, sizeof(admin_id), "%.12s", tok_admin + 4);
    assert_string_equal(json_string_value(json_object_get(second, "actor")), admin_id);
    /* refused attempts (403) are not actions; the failed login is recorded */
    bool failed_login = false;
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        const char *action = json_string_value(json_object_get(e, "action"));
        assert_true(jnum(json_object_get(e, "status")) != 403);
        if (strcmp(action, "POST /v1/session") == 0 && jnum(json_object_get(e, "status")) == 401)
            failed_login = strcmp(json_string_value(json_object_get(e, "actor")), "anonymous") == 0;
    }
    assert_true(failed_login);
    json_decref(doc);
    /* pages by cursor, and a cursor no listing gave out is refused */
    as(tok_read, "GET", "/v1/audit?limit=1", NULL);
    expect_status(R, 200);
    char cursor[64], path[128], id2[64];
    body_string(R, "next_cursor", cursor, sizeof(cursor));
    snprintf(path, sizeof(path), "/v1/audit?limit=1&cursor=%s", cursor);
    as(tok_read, "GET", path, NULL);
    expect_status(R, 200);
    doc = body_json(R);
    snprintf(id2, sizeof(id2), "%s",
             json_string_value(
                 json_object_get(json_array_get(json_object_get(doc, "entries"), 0), "id")));
    json_decref(doc);
    assert_true(strcmp(id2, cursor) < 0 || strlen(id2) < strlen(cursor));
    as(tok_read, "GET", "/v1/audit?cursor=abc", NULL);
    expect_problem(R, 400, "cursor");
    as(tok_read, "GET", "/v1/audit?limit=0", NULL);
    expect_problem(R, 400, "limit");
    as(tok_submit, "GET", "/v1/audit", NULL);
    expect_status(R, 403);

    /* logout: needs the CSRF token, then the cookie is worthless */
    with_session(&ad, false, "DELETE", "/v1/session", NULL);
    expect_problem(R, 403, "X-CSRF-Token");
    with_session(&ad, true, "DELETE", "/v1/session", NULL);
    expect_status(R, 204);
    expect_header(R, "Set-Cookie", "Max-Age=0");
    with_session(&ad, true, "POST", "/v1/queues/dash/pause", NULL);
    expect_problem(R, 401, "log in again");
    with_session(&ad, false, "GET", "/v1/session", NULL);
    expect_status(R, 401);
    doc = audit_newest(1);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(doc, "entries"), 0), "action")),
                        "DELETE /v1/session");
    json_decref(doc);

    /* HOPPER_ADMIN_TOKEN logs in too */
    session_cookie_t env;
    login(ADMIN_ENV_TOKEN, &env);
    with_session(&env, false, "GET", "/v1/session", NULL);
    expect_body_has(R, "\"token_id\":\"env-admin\"");
    with_session(&env, true, "POST", "/v1/queues/dash/pause", NULL);
    expect_status(R, 200);
}

static void test_session_ends_with_its_token(void **state)
{
    (void)state;
    char tok[TOKEN_MAX], id[32];
    token_create(tok, id, (const char *const[]){"--scope", "admin", "--name", "shortlived", NULL});
    session_cookie_t sc;
    login(tok, &sc);
    with_session(&sc, false, "GET", "/v1/queues", NULL);
    expect_status(R, 200);
    static cli_result_t res;
    test_cli_run(&res, ARD.url, (const char *const[]){"token", "revoke", id, NULL});
    assert_int_equal(res.status, 0);
    /* at once: sessions are looked up on every request, not cached */
    with_session(&sc, false, "GET", "/v1/queues", NULL);
    expect_problem(R, 401, "log in again");
    with_session(&sc, false, "GET", "/v1/session", NULL);
    expect_status(R, 401);
    /* the command line's admin actions are in the audit log too */
    json_t *doc = audit_newest(1);
    json_t *e = json_array_get(json_object_get(doc, "entries"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "action")), "hopper token revoke");
    assert_string_equal(json_string_value(json_object_get(e, "via")), "cli");
    assert_string_equal(json_string_value(json_object_get(e, "path")), id);
    assert_int_equal(jnum(json_object_get(e, "status")), 200);
    assert_true(strncmp(json_string_value(json_object_get(e, "actor")), "cli:", 4) == 0);
    json_decref(doc);
}

/* Reading workers takes read scope; quiet and stop take admin, and a refused one
 * leaves no command behind. */
/* A token limited to some queues sees and acts on those queues only, also in what
 * lists every queue: queues, throughput, schedules, workers; what covers every
 * queue by nature (the audit log, /metrics) is refused. */
static void test_auth_limited_token(void **state)
{
    (void)state;
    as(tok_admin, "POST", "/v1/jobs", "{\"queue\":\"lim-a1\",\"type\":\"t\"}");
    expect_status(R, 201);
    as(tok_admin, "POST", "/v1/jobs", "{\"queue\":\"lim-b1\",\"type\":\"t\"}");
    expect_status(R, 201);
    as(tok_lim_read, "GET", "/v1/queues", NULL);
    expect_status(R, 200);
    expect_body_has(R, "\"lim-a1\"");
    assert_false(contains(R->body, "lim-b1"));
    as(tok_read, "GET", "/v1/queues", NULL); /* a token for every queue sees both */
    expect_body_has(R, "\"lim-b1\"");
    as(tok_lim_read, "GET", "/v1/stats/throughput", NULL); /* the sum of its queues */
    expect_status(R, 200);
    expect_body_has(R, "per_minute");
    as(tok_lim_read, "GET", "/v1/stats/throughput?queue=lim-b1", NULL);
    expect_problem(R, 403, NULL);

    /* Schedules: another queue's does not exist for it. */
    const char *def_a = "{\"cron\":\"0 3 * * *\",\"job\":{\"queue\":\"lim-a1\",\"type\":\"t\"}}";
    const char *def_b = "{\"cron\":\"0 3 * * *\",\"job\":{\"queue\":\"lim-b1\",\"type\":\"t\"}}";
    as(tok_admin, "PUT", "/v1/schedules/lim-sched-a", def_a);
    expect_status(R, 201);
    as(tok_admin, "PUT", "/v1/schedules/lim-sched-b", def_b);
    expect_status(R, 201);
    as(tok_lim_read, "GET", "/v1/schedules", NULL);
    expect_status(R, 200);
    expect_body_has(R, "lim-sched-a");
    assert_false(contains(R->body, "lim-sched-b"));
    as(tok_lim_read, "GET", "/v1/schedules/lim-sched-b", NULL);
    expect_problem(R, 404, NULL);
    as(tok_lim_admin, "POST", "/v1/schedules/lim-sched-b/trigger", NULL);
    expect_problem(R, 404, NULL);
    as(tok_lim_admin, "POST", "/v1/schedules/lim-sched-b/pause", NULL);
    expect_problem(R, 404, NULL);
    as(tok_lim_admin, "DELETE", "/v1/schedules/lim-sched-b", NULL);
    expect_problem(R, 404, NULL);
    as(tok_lim_admin, "PUT", "/v1/schedules/lim-sched-b", def_a); /* take it over */
    expect_problem(R, 403, "lim-b1");
    as(tok_lim_admin, "PUT", "/v1/schedules/lim-sched-c", def_b); /* aim one at lim-b1 */
    expect_problem(R, 403, NULL);
    as(tok_admin, "GET", "/v1/schedules/lim-sched-b", NULL); /* untouched */
    expect_status(R, 200);
    expect_body_has(R, "\"paused\":false");
    as(tok_lim_admin, "POST", "/v1/schedules/lim-sched-a/trigger", NULL);
    expect_status(R, 201);

    /* Workers: one serving lim-a1 and lim-b1 shows only its lim-a1 side, and cannot
     * be stopped by this token; one serving lim-b1 alone is not there. */
    broker_t *b = test_redis_broker(&ARD, 0);
    const char *both = "{\"id\":\"lim-w-both\",\"queues\":[\"lim-a1\",\"lim-b1\"],\"running\":2,"
                       "\"held\":2,\"state\":\"running\",\"jobs\":["
                       "{\"id\":\"01KB0000000000000000000000-lim-a1\",\"running\":true},"
                       "{\"id\":\"01KB0000000000000000000001-lim-b1\",\"running\":true}]}";
    assert_int_equal(broker_worker_beat(b, "lim-w-both", both, 30000), 0);
    assert_int_equal(
        broker_worker_beat(b, "lim-w-b", "{\"id\":\"lim-w-b\",\"queues\":[\"lim-b1\"]}", 30000), 0);
    as(tok_lim_read, "GET", "/v1/workers", NULL);
    expect_status(R, 200);
    expect_body_has(R, "lim-w-both");
    expect_body_has(R, "01KB0000000000000000000000-lim-a1");
    assert_false(contains(R->body, "lim-b1"));
    assert_false(contains(R->body, "lim-w-b\""));
    expect_body_has(R, "\"running\":1");
    as(tok_lim_read, "GET", "/v1/workers/lim-w-b", NULL);
    expect_problem(R, 404, NULL);
    as(tok_lim_admin, "POST", "/v1/workers/lim-w-both/stop", NULL);
    expect_problem(R, 403, NULL);
    as(tok_lim_admin, "POST", "/v1/workers/lim-w-b/quiet", NULL);
    expect_problem(R, 404, NULL);
    as(tok_read, "GET", "/v1/workers", NULL);
    expect_body_has(R, "lim-w-b\"");
    assert_int_equal(broker_worker_gone(b, "lim-w-both"), 0);
    assert_int_equal(broker_worker_gone(b, "lim-w-b"), 0);
    broker_close(b);

    as(tok_lim_read, "GET", "/v1/audit", NULL);
    expect_problem(R, 403, "every queue");
    as(tok_lim_read, "GET", "/metrics", NULL);
    expect_problem(R, 403, "every queue");
    as(tok_read, "GET", "/v1/audit", NULL);
    expect_status(R, 200);
}

static void test_auth_workers(void **state)
{
    (void)state;
    broker_config_t bc = {.url = ARD.url};
    broker_t *ab = NULL;
    char *msg = NULL;
    assert_int_equal(broker_open(&bc, &ab, &msg), 0);
    assert_int_equal(broker_worker_beat(ab, "auth-host:7", "{\"id\":\"auth-host:7\"}", 30000), 0);
    as(tok_read, "GET", "/v1/workers", NULL);
    expect_status(R, 200);
    as(tok_read, "GET", "/v1/workers/auth-host:7", NULL);
    expect_status(R, 200);
    as(tok_submit, "GET", "/v1/workers/auth-host:7", NULL);
    expect_problem(R, 403, NULL);
    as(NULL, "POST", "/v1/workers/auth-host:7/quiet", NULL);
    expect_problem(R, 401, NULL);
    static const char *const refused[] = {"quiet", "stop"};
    for (int i = 0; i < 2; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/v1/workers/auth-host:7/%s", refused[i]);
        as(tok_read, "POST", path, NULL);
        expect_problem(R, 403, NULL);
        as(tok_submit, "POST", path, NULL);
        expect_problem(R, 403, NULL);
    }
    worker_command_t cmd;
    assert_int_equal(broker_worker_poll(ab, "auth-host:7", NULL, 0, &cmd), 0);
    assert_int_equal(cmd, WORKER_COMMAND_NONE);
    as(tok_admin, "POST", "/v1/workers/auth-host:7/stop", NULL);
    expect_status(R, 202);
    assert_int_equal(broker_worker_poll(ab, "auth-host:7", NULL, 0, &cmd), 0);
    assert_int_equal(cmd, WORKER_COMMAND_STOP);
    assert_int_equal(broker_worker_gone(ab, "auth-host:7"), 0);
    broker_close(ab);
}

static void test_auth_revoke(void **state)
{
    (void)state;
    char tok[TOKEN_MAX], id[32];
    token_create(tok, id, (const char *const[]){"--scope", "read", "--name", "revokeme", NULL});
    as(tok, "GET", "/v1/queues", NULL);
    expect_status(R, 200);
    as(tok, "GET", "/v1/queues", NULL); /* now cached */
    expect_status(R, 200);
    static cli_result_t res;
    test_cli_run(&res, ARD.url, (const char *const[]){"token", "revoke", id, NULL});
    if (res.status != 0)
        fail_msg("token revoke %s: %d %s", id, res.status, res.err);
    int64_t t0 = hp_mono_ms();
    bool refused = false;
    while (!refused && hp_mono_ms() - t0 < 8000) {
        as(tok, "GET", "/v1/queues", NULL);
        refused = R->status == 401;
        if (!refused)
            hp_sleep_ms(200);
    }
    if (!refused)
        fail_msg("a revoked token still worked 8 s later (the cache is 5 s)");
    assert_true(hp_mono_ms() - t0 < 7000);
}

static void test_auth_rate_limit(void **state)
{
    (void)state;
    int ok = 0, limited = 0;
    char retry[32] = "";
    conn_t c;
    conn_open(&c, AS.port);
    char req[256];
    snprintf(req, sizeof(req),
             "GET /v1/queues HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n", tok_rate);
    for (int i = 0; i < 20; i++) {
        assert_true(conn_sends(&c, req));
        assert_int_equal(read_response(&c, R, IO_WAIT_MS), 0);
        if (R->status == 200) {
            ok++;
        } else if (R->status == 429) {
            limited++;
            expect_problem(R, 429, NULL);
            assert_true(find_header(R->head, "Retry-After", retry, sizeof(retry)));
        } else {
            expect_status(R, 200);
        }
    }
    conn_close(&c);
    if (ok < 5 || limited < 5)
        fail_msg("rate 5/s burst 5: %d allowed and %d limited out of 20 quick requests", ok,
                 limited);
    assert_true(atoi(retry) >= 1);

    /* The same on routes with no broker work of their own (a blob, the event
     * stream), once the token is cached. */
    ok = limited = 0;
    for (int i = 0; i < 20; i++) {
        as(tok_rate2, "GET", "/v1/blobs/" BLOB_ZERO, NULL);
        if (R->status == 404)
            ok++;
        else if (R->status == 429)
            limited++;
        else
            expect_status(R, 404);
    }
    if (ok < 5 || limited < 5)
        fail_msg("rate 5/s burst 5 on GET /v1/blobs/{id}: %d allowed and %d limited out of 20", ok,
                 limited);
}

static void test_auth_tokens_never_logged(void **state)
{
    (void)state;
    char *log = slurp(AS.log);
    const char *tokens[] = {tok_submit, tok_read, tok_admin, tok_rate, tok_rate2, ADMIN_ENV_TOKEN};
    for (size_t i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++) {
        const char *secret = strrchr(tokens[i], '_'); /* the secret part alone */
        if (contains(log, tokens[i]) || (secret && strlen(secret) > 8 && contains(log, secret))) {
            print_log(&AS);
            free(log);
            fail_msg("token %zu appears in the server's log", i);
        }
    }
    bool requests_logged = contains(log, "\"msg\":\"request\"");
    free(log);
    assert_true(requests_logged); /* the log was written at all */
    server_stop_clean(&AS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_no_auth_warning),
        cmocka_unit_test(test_enqueue_and_get_byte_exact),
        cmocka_unit_test(test_batch_of_1000),
        cmocka_unit_test(test_list_pagination),
        cmocka_unit_test(test_retry_cancel_delete),
        cmocka_unit_test(test_queues_pause_resume),
        cmocka_unit_test(test_purge_dead),
        cmocka_unit_test(test_list_filters_and_order),
        cmocka_unit_test(test_bulk),
        cmocka_unit_test(test_retry_with_payload),
        cmocka_unit_test(test_queue_age_broker_throughput),
        cmocka_unit_test(test_workers),
        cmocka_unit_test(test_idempotency_key),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_routes_methods_types),
        cmocka_unit_test(test_body_over_limit_closes),
        cmocka_unit_test(test_chunked_over_limit),
        cmocka_unit_test(test_header_section_too_large),
        cmocka_unit_test(test_slow_headers_408),
        cmocka_unit_test(test_slow_clients_do_not_starve_others),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_pipelined_in_order),
        cmocka_unit_test(test_chunked_body_accepted),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_expect_100_continue),
        cmocka_unit_test(test_request_id_security_cors),
        cmocka_unit_test(test_cors_off_by_default),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_sse_events),
        cmocka_unit_test(test_sse_coalesced),
        cmocka_unit_test(test_long_poll_wait),
        cmocka_unit_test(test_blobs),
        cmocka_unit_test(test_clients_going_away),
        cmocka_unit_test(test_dashboard_files),
        cmocka_unit_test(test_cross_site_refused),
        cmocka_unit_test(test_auth_turns_on_with_first_token),
        cmocka_unit_test(test_non_loopback_without_tokens_refuses),
        cmocka_unit_test(test_redis_down_and_back),
        cmocka_unit_test(test_sigterm_with_clients_connected), /* last: stops S */
    };
    const struct CMUnitTest auth_tests[] = {
        cmocka_unit_test(test_auth_scopes),
        cmocka_unit_test(test_auth_limited_token),
        cmocka_unit_test(test_auth_revoke),
        cmocka_unit_test(test_session_login_csrf_audit),
        cmocka_unit_test(test_session_ends_with_its_token),
        cmocka_unit_test(test_auth_workers),
        cmocka_unit_test(test_auth_revoke),
        cmocka_unit_test(test_auth_rate_limit),
        cmocka_unit_test(test_auth_tokens_never_logged), /* last: stops AS */
    };
    /* TEST_API_FILTER=pattern runs only matching tests (while debugging). */
    if (getenv("TEST_API_FILTER"))
        cmocka_set_test_filter(getenv("TEST_API_FILTER"));
    int failed = cmocka_run_group_tests_name("api", tests, group_setup, group_teardown);
    failed += cmocka_run_group_tests_name("api_auth", auth_tests, auth_setup, auth_teardown);
    return failed;
}
