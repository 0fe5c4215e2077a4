/*
 * The API's contract: api/openapi.json against the route table and the running
 * server.
 *
 *   - every route in api_routes[] is in the document's paths with its method, and
 *     every path + method in the document is routed (exactly: same templates);
 *   - the real `hopper server`, against a private redis-server, serves at
 *     GET /openapi.json the very bytes of the repo's file;
 *   - every request body example in the document is accepted (2xx; a batch
 *     example fails no job);
 *   - answers of the server carry the properties their documented schema
 *     requires (following $ref, into nested objects and array items), and errors
 *     are problem+json with the Problem schema's.
 *
 * HTTP is spoken over plain sockets, one request per connection.
 */
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
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "api/internal.h"
#include "tests/support/test_redis.h"
#include "tests/support/test_proc.h"

#ifndef HOPPER_OPENAPI_JSON
#error "HOPPER_OPENAPI_JSON must name api/openapi.json in the source tree"
#endif

#define START_WAIT_MS 20000

extern char **environ;

static test_redis_t redis;
static pid_t server_pid;
static int server_port;
static char server_log[64];
static char blob_dir[64];
static char *doc_text; /* the repo's file */
static json_t *doc;

/* ---- Small helpers ---- */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0, got;
    char *buf = malloc(cap);
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static void to_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static bool is_http_method(const char *key)
{
    static const char *const methods[] = {"get",  "put",   "post",  "delete", "options",
                                          "head", "patch", "trace", NULL};
    for (int i = 0; methods[i]; i++)
        if (strcmp(key, methods[i]) == 0)
            return true;
    return false;
}

/* ---- The server ---- */

static bool env_is_ours(const char *entry)
{
    return strncmp(entry, "HOPPER_", 7) == 0;
}

/* Starts HOPPER_BIN server on a port the kernel picks, with no HOPPER_* variable
 * from our environment (so no admin token: a fresh Redis has no tokens, so the
 * server needs none), and waits for the line that names its port. */
static void server_start(void)
{
    snprintf(server_log, sizeof(server_log), "/tmp/hopper-test-openapi-XXXXXX");
    int logfd = mkstemp(server_log);
    assert_true(logfd >= 0);
    snprintf(blob_dir, sizeof(blob_dir), "/tmp/hopper-test-blobs-XXXXXX");
    assert_non_null(mkdtemp(blob_dir));

    const char *argv[] = {HOPPER_BIN,         "server",    "--listen", "127.0.0.1:0", "--redis",
                          redis.url,          "--threads", "1",        "--blob-dir",  blob_dir,
                          "--broker-threads", "2",         NULL};
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    const char **envp = calloc(nenv + 2, sizeof(*envp));
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (!env_is_ours(environ[i]))
            envp[k++] = environ[i];
    envp[k++] = "HOPPER_LOG_LEVEL=info"; /* the "serving" line is info */
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
        dup2(logfd, 2);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(HOPPER_BIN, (char *const *)argv, (char *const *)envp);
        dprintf(2, "test_openapi: cannot run %s: %s\n", HOPPER_BIN, strerror(errno));
        _exit(127);
    }
    close(logfd);
    free(envp);
    server_pid = pid;

    int64_t end = hp_mono_ms() + START_WAIT_MS;
    while (server_port == 0) {
        char *log = slurp(server_log, NULL);
        const char *at = log ? strstr(log, "(port ") : NULL;
        if (at)
            server_port = atoi(at + strlen("(port "));
        free(log);
        int st;
        if (server_port == 0 && waitpid(pid, &st, WNOHANG) == pid) {
            server_pid = 0;
            fail_msg("hopper server exited before serving (status %d)", st);
        }
        if (server_port == 0 && hp_mono_ms() > end)
            fail_msg("hopper server did not say it was serving within %d ms", START_WAIT_MS);
        if (server_port == 0)
            hp_sleep_ms(20);
    }
}

static void server_stop(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        int64_t end = hp_mono_ms() + 10000;
        int st;
        while (waitpid(server_pid, &st, WNOHANG) != server_pid) {
            if (hp_mono_ms() > end) {
                kill(server_pid, SIGKILL);
                waitpid(server_pid, &st, 0);
                break;
            }
            hp_sleep_ms(10);
        }
        server_pid = 0;
    }
    if (server_log[0])
        unlink(server_log);
    if (blob_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", blob_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "test_openapi: could not remove %s\n", blob_dir);
    }
}

/* ---- HTTP over a plain socket ---- */

typedef struct response_s {
    int status;
    char content_type[128];
    char *body; /* NUL-terminated */
    size_t body_len;
} response_t;

static void response_free(response_t *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* One request on its own connection (Connection: close), read to EOF. */
static void http(const char *method, const char *path, const char *content_type, const char *body,
                 size_t body_len, response_t *out)
{
    memset(out, 0, sizeof(*out));
    int fd = test_connect_local(server_port, 10);
    assert_true(fd >= 0);

    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method, path);
    if (content_type)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Type: %s\r\n", content_type);
    if (body)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
    assert_true(n < (int)sizeof(head));
    assert_int_equal(send(fd, head, (size_t)n, MSG_NOSIGNAL), n);
    for (size_t sent = 0; body && sent < body_len;) {
        ssize_t w = send(fd, body + sent, body_len - sent, MSG_NOSIGNAL);
        assert_true(w > 0);
        sent += (size_t)w;
    }

    size_t len = 0;
    char *buf = test_read_to_close(fd, &len);
    close(fd);
    assert_non_null(buf); /* NULL: the server did not answer in time */

    char *end = strstr(buf, "\r\n\r\n");
    assert_non_null(end);
    *end = '\0';
    assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &out->status), 1);
    for (char *line = strstr(buf, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "Content-Type:", 13) == 0) {
            const char *v = line + 2 + 13;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r");
            snprintf(out->content_type, sizeof(out->content_type), "%.*s", (int)vl, v);
        }
    }
    out->body_len = len - (size_t)(end + 4 - buf);
    out->body = malloc(out->body_len + 1);
    memcpy(out->body, end + 4, out->body_len);
    out->body[out->body_len] = '\0';
    free(buf);
}

static json_t *body_json(const response_t *r)
{
    json_error_t err;
    json_t *v = json_loadb(r->body, r->body_len, 0, &err);
    if (!v)
        fail_msg("not JSON (%s): %s", err.text, r->body);
    return v;
}

/* ---- The document ---- */

/* Follows a local "$ref": "#/components/..." (a chain of them). */
static json_t *resolve(json_t *schema)
{
    for (int depth = 0; depth < 16; depth++) {
        const char *ref = json_string_value(json_object_get(schema, "$ref"));
        if (!ref)
            return schema;
        assert_true(strncmp(ref, "#/", 2) == 0);
        json_t *at = doc;
        char part[128];
        for (const char *p = ref + 2; *p;) {
            size_t n = strcspn(p, "/");
            snprintf(part, sizeof(part), "%.*s", (int)n, p);
            at = json_object_get(at, part);
            if (!at)
                fail_msg("dangling $ref %s", ref);
            p += n + (p[n] == '/');
        }
        schema = at;
    }
    fail_msg("$ref chain too deep");
    return NULL;
}

/* Checks that `v` has every property `schema` requires, recursively through the
 * properties it has and the items of arrays. `where` names the spot for messages. */
static void check_required(json_t *schema, json_t *v, const char *where)
{
    schema = resolve(schema);
    json_t *required = json_object_get(schema, "required");
    if (json_is_array(required)) {
        if (!json_is_object(v))
            fail_msg("%s: expected an object with required properties", where);
        size_t i;
        json_t *name;
        json_array_foreach(required, i, name)
        {
            if (!json_object_get(v, json_string_value(name)))
                fail_msg("%s: the required property \"%s\" is missing", where,
                         json_string_value(name));
        }
    }
    json_t *props = json_object_get(schema, "properties");
    if (json_is_object(v) && json_is_object(props)) {
        const char *key;
        json_t *sub;
        json_object_foreach(props, key, sub)
        {
            json_t *member = json_object_get(v, key);
            if (member && !json_is_null(member)) {
                char inner[256];
                snprintf(inner, sizeof(inner), "%s.%s", where, key);
                check_required(sub, member, inner);
            }
        }
    }
    json_t *items = json_object_get(schema, "items");
    if (json_is_array(v) && items) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            char inner[256];
            snprintf(inner, sizeof(inner), "%s[%zu]", where, i);
            check_required(items, item, inner);
        }
    }
}

/* The schema documented for `status` of method+path in `media`, or NULL. */
static json_t *response_schema(const char *path, const char *method, int status, const char *media)
{
    json_t *operation =
        json_object_get(json_object_get(json_object_get(doc, "paths"), path), method);
    assert_non_null(operation);
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    json_t *resp = json_object_get(json_object_get(operation, "responses"), code);
    if (!resp)
        return NULL;
    resp = resolve(resp);
    return json_object_get(json_object_get(json_object_get(resp, "content"), media), "schema");
}

/* Does `route_path` (what is sent) answer as documented for `doc_path`? */
static void check_answer(const char *method, const char *sent_path, const char *doc_path,
                         int expect_status)
{
    char upper[16];
    snprintf(upper, sizeof(upper), "%s", method);
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    response_t r;
    http(upper, sent_path, NULL, NULL, 0, &r);
    if (r.status != expect_status)
        fail_msg("%s %s: status %d, expected %d: %s", upper, sent_path, r.status, expect_status,
                 r.body);
    bool problem = r.status >= 400;
    const char *media = problem ? "application/problem+json" : "application/json";
    assert_string_equal(r.content_type, media);
    json_t *schema = response_schema(doc_path, method, r.status, media);
    if (!schema)
        fail_msg("%s %s: status %d is not documented", upper, doc_path, r.status);
    json_t *v = body_json(&r);
    char where[256];
    snprintf(where, sizeof(where), "%s %s", upper, sent_path);
    check_required(schema, v, where);
    json_decref(v);
    response_free(&r);
}

/* ---- Tests ---- */

/* (a) The table and the document name the same routes. */
static void test_routes_match_document(void **state)
{
    (void)state;
    json_t *paths = json_object_get(doc, "paths");
    assert_true(json_is_object(paths));
    for (size_t i = 0; i < api_nroutes; i++) {
        const route_t *r = &api_routes[i];
        char method[16];
        snprintf(method, sizeof(method), "%s", r->method);
        to_lower(method);
        json_t *item = json_object_get(paths, r->pattern);
        if (!item)
            fail_msg("route %s %s is not in openapi.json's paths", r->method, r->pattern);
        if (!json_object_get(item, method))
            fail_msg("route %s %s: openapi.json has the path but not the method", r->method,
                     r->pattern);
    }
    const char *path;
    json_t *item;
    size_t documented = 0;
    json_object_foreach(paths, path, item)
    {
        const char *key;
        json_t *operation;
        json_object_foreach(item, key, operation)
        {
            if (!is_http_method(key))
                continue;
            documented++;
            bool routed = false;
            for (size_t i = 0; i < api_nroutes && !routed; i++) {
                char method[16];
                snprintf(method, sizeof(method), "%s", api_routes[i].method);
                to_lower(method);
                routed = strcmp(api_routes[i].pattern, path) == 0 && strcmp(method, key) == 0;
            }
            if (!routed)
                fail_msg("openapi.json documents %s %s, which no route serves", key, path);
            /* Each operation says which scope it needs. */
            const char *scope = json_string_value(json_object_get(operation, "x-hopper-scope"));
            if (!scope)
                fail_msg("%s %s: no x-hopper-scope", key, path);
        }
    }
    assert_int_equal(documented, api_nroutes);
}

/* Path parameters are named as in the table, and declared. */
static void test_path_parameters(void **state)
{
    (void)state;
    json_t *paths = json_object_get(doc, "paths");
    for (size_t i = 0; i < api_nroutes; i++) {
        const char *pattern = api_routes[i].pattern;
        json_t *item = json_object_get(paths, pattern);
        for (const char *open = strchr(pattern, '{'); open; open = strchr(open + 1, '{')) {
            const char *close = strchr(open, '}');
            char name[32];
            snprintf(name, sizeof(name), "%.*s", (int)(close - open - 1), open + 1);
            bool declared = false;
            size_t k;
            json_t *p;
            json_array_foreach(json_object_get(item, "parameters"), k, p)
            {
                p = resolve(p);
                const char *in = json_string_value(json_object_get(p, "in"));
                const char *pn = json_string_value(json_object_get(p, "name"));
                declared |= in && pn && strcmp(in, "path") == 0 && strcmp(pn, name) == 0;
            }
            if (!declared)
                fail_msg("%s: path parameter {%s} is not declared", pattern, name);
        }
    }
}

/* (b) The server serves the repo's file, byte for byte. */
static void test_served_document(void **state)
{
    (void)state;
    response_t r;
    http("GET", "/openapi.json", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/json");
    assert_int_equal(r.body_len, strlen(doc_text));
    assert_memory_equal(r.body, doc_text, r.body_len);
    response_free(&r);
}

/* Posts one example; expects 2xx, and no failed job in a batch answer. */
/* Sends an example to `path` (the template with its parameters filled in). */
static void post_example(const char *method, const char *template, const char *path,
                         const char *media, json_t *value, const char *name)
{
    char *body;
    if (json_is_string(value))
        body = strdup(json_string_value(value));
    else
        body = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    char upper[16];
    snprintf(upper, sizeof(upper), "%s", method);
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    response_t r;
    http(upper, path, media, body, strlen(body), &r);
    if (r.status < 200 || r.status > 299)
        fail_msg("example \"%s\" of %s %s (%s) was refused: %d %s", name, upper, path, media,
                 r.status, r.body);
    json_t *answer = json_loadb(r.body, r.body_len, 0, NULL);
    json_t *failed = json_object_get(answer, "failed");
    if (failed && json_integer_value(failed) != 0)
        fail_msg("example \"%s\" of %s %s: %lld jobs failed: %s", name, upper, path,
                 (long long)json_integer_value(failed), r.body);
    json_t *schema = response_schema(template, method, r.status, "application/json");
    if (answer && schema)
        check_required(schema, answer, name);
    json_decref(answer);
    response_free(&r);
    free(body);
}

/* The path with each {param} replaced by its parameter's "example" (declared on
 * the path item); false when one has none. */
static bool fill_path(const char *path, json_t *item, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = path; *p && o + 1 < len;) {
        if (*p != '{') {
            out[o++] = *p++;
            continue;
        }
        const char *close = strchr(p, '}');
        size_t n = (size_t)(close - p - 1);
        const char *value = NULL;
        size_t i;
        json_t *param;
        json_array_foreach(json_object_get(item, "parameters"), i, param)
        {
            param = resolve(param);
            const char *pname = json_string_value(json_object_get(param, "name"));
            if (pname && strlen(pname) == n && strncmp(pname, p + 1, n) == 0)
                value = json_string_value(json_object_get(param, "example"));
        }
        if (!value)
            return false;
        o += (size_t)snprintf(out + o, len - o, "%s", value);
        p = close + 1;
    }
    out[o < len ? o : len - 1] = '\0';
    return true;
}

/* (c) Every request body example is accepted. */
static void test_examples_accepted(void **state)
{
    (void)state;
    size_t posted = 0;
    const char *path;
    json_t *item;
    json_object_foreach(json_object_get(doc, "paths"), path, item)
    {
        const char *method;
        json_t *operation;
        json_object_foreach(item, method, operation)
        {
            if (!is_http_method(method))
                continue;
            json_t *content = json_object_get(json_object_get(operation, "requestBody"), "content");
            const char *media;
            json_t *mt;
            json_object_foreach(content, media, mt)
            {
                char filled[512];
                if (!fill_path(path, item, filled, sizeof(filled)))
                    fail_msg("%s %s: an example on a templated path needs an \"example\" on "
                             "each path parameter",
                             method, path);
                json_t *one = json_object_get(mt, "example");
                if (one) {
                    post_example(method, path, filled, media, one, "example");
                    posted++;
                }
                const char *name;
                json_t *ex;
                json_object_foreach(json_object_get(mt, "examples"), name, ex)
                {
                    ex = resolve(ex);
                    json_t *value = json_object_get(ex, "value");
                    assert_non_null(value);
                    post_example(method, path, filled, media, value, name);
                    posted++;
                }
            }
        }
    }
    /* At least the job, the batch and the blob examples. */
    assert_true(posted >= 3);
}

/* The worker routes, on a registry entry written here as an older worker wrote it
 * (no state, running or held: the API fills them in). */
static void check_workers(void)
{
    broker_config_t bc = {.url = redis.url};
    broker_t *b = NULL;
    char *msg = NULL;
    if (broker_open(&bc, &b, &msg))
        fail_msg("broker_open: %s", msg);
    const char *info = "{\"id\":\"oa-host:1\",\"host\":\"oa-host\",\"pid\":1,\"queues\":[\"oa\"],"
                       "\"started_at\":\"2026-01-01T00:00:00.000Z\",\"threads\":2,\"jobs\":["
                       "{\"id\":\"01KB0000000000000000000000-oa\",\"type\":\"t\","
                       "\"started_at\":\"2026-01-01T00:00:01.000Z\"}]}";
    assert_int_equal(broker_worker_beat(b, "oa-host:1", info, 60000), 0);
    check_answer("get", "/v1/workers", "/v1/workers", 200);
    check_answer("get", "/v1/workers/oa-host:1", "/v1/workers/{id}", 200);
    check_answer("get", "/v1/workers/oa-host:1?offset=1&limit=500", "/v1/workers/{id}", 200);
    check_answer("get", "/v1/workers/oa-host:1?limit=0", "/v1/workers/{id}", 400);
    check_answer("get", "/v1/workers/oa-host:1?offset=-1", "/v1/workers/{id}", 400);
    check_answer("post", "/v1/workers/oa-host:1/quiet", "/v1/workers/{id}/quiet", 202);
    check_answer("post", "/v1/workers/oa-host:1/stop", "/v1/workers/{id}/stop", 202);
    assert_int_equal(broker_worker_gone(b, "oa-host:1"), 0);
    check_answer("get", "/v1/workers/oa-host:1", "/v1/workers/{id}", 404);
    check_answer("get", "/v1/workers/bad%7Cid", "/v1/workers/{id}", 404);
    check_answer("post", "/v1/workers/oa-host:1/quiet", "/v1/workers/{id}/quiet", 404);
    check_answer("post", "/v1/workers/oa-host:1/stop", "/v1/workers/{id}/stop", 404);
    broker_close(b);
}

/* (d) Answers carry what their schemas require. */
static void test_responses_match_schemas(void **state)
{
    (void)state;
    const char *queue = test_queue_name("oa");
    char body[256], path[256];
    snprintf(body, sizeof(body), "{\"queue\":\"%s\",\"type\":\"t\",\"payload\":{\"n\":1}}", queue);
    response_t r;
    http("POST", "/v1/jobs", "application/json", body, strlen(body), &r);
    assert_int_equal(r.status, 201);
    json_t *created = body_json(&r);
    char id[JOB_ID_MAX];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(created, "id")));
    check_required(response_schema("/v1/jobs", "post", 201, "application/json"), created,
                   "POST /v1/jobs");
    json_decref(created);
    response_free(&r);

    check_answer("get", "/healthz", "/healthz", 200);
    check_answer("get", "/readyz", "/readyz", 200);
    check_answer("get", "/v1/queues", "/v1/queues", 200);
    snprintf(path, sizeof(path), "/v1/queues/%s", queue);
    check_answer("get", path, "/v1/queues/{queue}", 200);
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&limit=10", queue);
    check_answer("get", path, "/v1/jobs", 200);
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    check_answer("get", path, "/v1/jobs/{id}", 200);
    snprintf(path, sizeof(path), "/v1/jobs/%s?wait=10ms", id);
    check_answer("get", path, "/v1/jobs/{id}", 200);
    check_answer("get", "/v1/workers", "/v1/workers", 200);
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&order=desc&type=t&error=x", queue);
    check_answer("get", path, "/v1/jobs", 200);
    check_answer("get", "/v1/broker", "/v1/broker", 200);
    check_answer("get", "/v1/stats/throughput", "/v1/stats/throughput", 200);
    snprintf(path, sizeof(path), "/v1/stats/throughput?queue=%s", queue);
    check_answer("get", path, "/v1/stats/throughput", 200);
    check_workers();

    /* Errors: problem+json, as documented for the route. */
    check_answer("get", "/v1/jobs/not-a-job", "/v1/jobs/{id}", 404);
    snprintf(path, sizeof(path), "/v1/jobs/%s?wait=forever", id);
    check_answer("get", path, "/v1/jobs/{id}", 400);
    check_answer("get", "/v1/jobs?state=waiting", "/v1/jobs", 400);
    check_answer("get", "/v1/queues/never-used-queue", "/v1/queues/{queue}", 404);
    snprintf(path, sizeof(path), "/v1/jobs?queue=%s&order=up", queue);
    check_answer("get", path, "/v1/jobs", 400);
    check_answer("get", "/v1/stats/throughput?queue=no%20such", "/v1/stats/throughput", 400);

    /* The actions, and the queue's state after them. */
    snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", id);
    check_answer("post", path, "/v1/jobs/{id}/cancel", 200);
    check_answer("post", path, "/v1/jobs/{id}/cancel", 409);
    snprintf(path, sizeof(path), "/v1/jobs/%s/retry", id);
    check_answer("post", path, "/v1/jobs/{id}/retry", 200);
    /* A retry with a new payload, and a bulk action that does not apply. */
    snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", id);
    check_answer("post", path, "/v1/jobs/{id}/cancel", 200);
    snprintf(path, sizeof(path), "/v1/jobs/%s/retry", id);
    static const char edited[] = "{\"payload\":[1,2]}";
    http("POST", path, "application/json", edited, sizeof(edited) - 1, &r);
    assert_int_equal(r.status, 200);
    json_t *retried = body_json(&r);
    check_required(response_schema("/v1/jobs/{id}/retry", "post", 200, "application/json"), retried,
                   "POST /v1/jobs/{id}/retry with a payload");
    json_decref(retried);
    response_free(&r);
    static const char not_here[] = "{\"action\":\"retry\",\"state\":\"waiting\"}";
    snprintf(path, sizeof(path), "/v1/queues/%s/bulk", queue);
    http("POST", path, "application/json", not_here, sizeof(not_here) - 1, &r);
    assert_int_equal(r.status, 422);
    assert_string_equal(r.content_type, "application/problem+json");
    json_t *problem = body_json(&r);
    check_required(
        response_schema("/v1/queues/{queue}/bulk", "post", 422, "application/problem+json"),
        problem, "POST /v1/queues/{queue}/bulk 422");
    json_decref(problem);
    response_free(&r);
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    check_answer("delete", path, "/v1/jobs/{id}", 200);
    check_answer("delete", path, "/v1/jobs/{id}", 404);
    snprintf(path, sizeof(path), "/v1/queues/%s/pause", queue);
    check_answer("post", path, "/v1/queues/{queue}/pause", 200);
    snprintf(path, sizeof(path), "/v1/queues/%s/resume", queue);
    check_answer("post", path, "/v1/queues/{queue}/resume", 200);
    snprintf(path, sizeof(path), "/v1/queues/%s/jobs?state=dead", queue);
    check_answer("delete", path, "/v1/queues/{queue}/jobs", 200);
    snprintf(path, sizeof(path), "/v1/queues/%s/jobs?state=active", queue);
    check_answer("delete", path, "/v1/queues/{queue}/jobs", 409);

    /* A blob goes in raw and comes back as it went. */
    static const char file[] = "contract test\n";
    http("POST", "/v1/blobs", "text/plain", file, sizeof(file) - 1, &r);
    assert_int_equal(r.status, 201);
    json_t *blob = body_json(&r);
    check_required(response_schema("/v1/blobs", "post", 201, "application/json"), blob,
                   "POST /v1/blobs");
    snprintf(path, sizeof(path), "/v1/blobs/%s", json_string_value(json_object_get(blob, "id")));
    json_decref(blob);
    response_free(&r);
    http("GET", path, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/plain");
    assert_int_equal(r.body_len, sizeof(file) - 1);
    assert_memory_equal(r.body, file, r.body_len);
    response_free(&r);
}

/* ---- Setup ---- */

static int group_setup(void **state)
{
    (void)state;
    size_t len;
    doc_text = slurp(HOPPER_OPENAPI_JSON, &len);
    if (!doc_text) {
        fprintf(stderr, "cannot read %s\n", HOPPER_OPENAPI_JSON);
        return -1;
    }
    json_error_t err;
    doc = json_loadb(doc_text, len, JSON_REJECT_DUPLICATES, &err);
    if (!doc) {
        fprintf(stderr, "%s is not valid JSON: %s at line %d\n", HOPPER_OPENAPI_JSON, err.text,
                err.line);
        return -1;
    }
    if (test_redis_start(&redis, NULL) != 0)
        return -1;
    server_start();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    server_stop();
    test_redis_stop(&redis);
    json_decref(doc);
    free(doc_text);
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_match_document),   cmocka_unit_test(test_path_parameters),
        cmocka_unit_test(test_served_document),         cmocka_unit_test(test_examples_accepted),
        cmocka_unit_test(test_responses_match_schemas),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
