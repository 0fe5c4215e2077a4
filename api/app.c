/*
 * The application side of a request: routing, authentication, authorization, rate
 * limits, the trip to the executor, and the answer (see the flow in api.h).
 */
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "api/metrics_http.h"

/* ---- Answering ---- */

void api_req_free(api_req_t *ar)
{
    if (!ar)
        return;
    if (ar->state_free)
        ar->state_free(ar->state);
    hp_free(ar->body);
    hp_free(ar);
}

/* CORS: the allowed origin echoed back, when the request's Origin is allowed. */
static void cors_headers(api_req_t *ar, char *out, size_t len)
{
    out[0] = '\0';
    const char *list = ar->loop->server->cfg.cors_origins;
    const char *origin = http_header(ar->http, "origin");
    if (!list || !origin || strlen(origin) > 200 || strpbrk(origin, "\r\n,"))
        return;
    size_t olen = strlen(origin);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n && *p == ' ')
            p++, n--;
        if ((n == 1 && *p == '*') || (n == olen && strncmp(p, origin, n) == 0)) {
            snprintf(out, len, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", origin);
            return;
        }
        if (!end)
            break;
        p = end + 1;
    }
}

void api_answer(api_req_t *ar, int status, const char *type, const char *body, size_t len)
{
    char headers[1024];
    cors_headers(ar, headers, sizeof(headers));
    size_t used = strlen(headers);
    snprintf(headers + used, sizeof(headers) - used, "%s", ar->headers);
    http_req_t *req = ar->http;
    api_metrics_request(ar->route ? ar->route->pattern : "unmatched", req->method, status,
                        hp_mono_us() - req->start_us);
    req->data = NULL;
    http_respond(req, status, type, headers, body, len);
    api_req_free(ar);
}

void api_json(api_req_t *ar, int status, const char *json, size_t len)
{
    api_answer(ar, status, "application/json", json, len);
}

void api_problem(api_req_t *ar, int status, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    size_t len;
    char *body = http_problem_json(status, detail, &len);
    api_answer(ar, status, "application/problem+json", body, len);
    hp_free(body);
}

void api_set_problem(api_req_t *ar, int status, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    hp_free(ar->body);
    ar->status = status;
    ar->body = http_problem_json(status, detail, &ar->body_len);
}

void api_set_json(api_req_t *ar, int status, char *json, size_t len)
{
    hp_free(ar->body);
    ar->status = status;
    ar->body = json;
    ar->body_len = len;
}

void api_set_json_page(api_req_t *ar, hp_strbuf_t *sb, const char *next_cursor)
{
    hp_strbuf_appends(sb, "],\"next_cursor\":");
    if (next_cursor)
        hp_strbuf_append_json_string(sb, next_cursor);
    else
        hp_strbuf_appends(sb, "null");
    hp_strbuf_appends(sb, "}");
    size_t len;
    char *text = hp_strbuf_steal(sb, &len);
    api_set_json(ar, 200, text, len);
}

int api_status_for(int err)
{
    switch (err) {
    case 0:
        return 200;
    case HP_EINVAL:
        return 400;
    case HP_ENOTFOUND:
        return 404;
    case HP_ESTATE:
        return 409;
    case HP_ELEASE:
        return 409;
    case HP_EFULL:
        return 429;
    case HP_EUNAVAIL:
        return 503;
    case HP_ETOOBIG:
        return 413;
    case HP_EUNSAFE:
        return 503;
    default:
        return 500;
    }
}

void api_set_broker_error(api_req_t *ar, broker_t *b, int err)
{
    api_set_problem(ar, api_status_for(err), "%s", broker_errmsg(b));
    if (err == HP_EUNAVAIL || err == HP_EFULL)
        snprintf(ar->headers, sizeof(ar->headers), "Retry-After: 1\r\n");
}

static void generic_done(exec_task_t *t)
{
    api_req_t *ar = (api_req_t *)t;
    if (t->unavailable) {
        snprintf(ar->headers, sizeof(ar->headers), "Retry-After: 1\r\n");
        api_problem(ar, 503, "broker unavailable: %s", t->errmsg);
        return;
    }
    if (ar->authorized && ar->verify_bearer) { /* remember a token verified just now */
        api_loop_t *l = ar->loop;
        token_cache_entry_t *slot = &l->tokens[0];
        for (size_t i = 1; i < TOKEN_CACHE_SIZE; i++) {
            if (l->tokens[i].until_ms < slot->until_ms)
                slot = &l->tokens[i];
        }
        memcpy(slot->token, ar->bearer, sizeof(slot->token));
        slot->info = ar->token;
        slot->until_ms = hp_mono_ms() + TOKEN_CACHE_MS;
    }
    if (ar->status < 400 && ar->route->finish) {
        ar->route->finish(ar);
        return;
    }
    const char *type = ar->status >= 400 ? "application/problem+json" : "application/json";
    api_answer(ar, ar->status ? ar->status : 500, type, ar->body, ar->body_len);
}

/* ---- Authentication and authorization ---- */

void api_sha256_hex(const char *text, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

bool api_admin_token(const api_server_t *s, const char *token, token_info_t *info)
{
    if (!s->admin_token_hash[0])
        return false;
    char hash[65];
    api_sha256_hex(token, hash);
    if (CRYPTO_memcmp(hash, s->admin_token_hash, 64) != 0)
        return false;
    memset(info, 0, sizeof(*info));
    snprintf(info->id, sizeof(info->id), "env-admin");
    snprintf(info->name, sizeof(info->name), "HOPPER_ADMIN_TOKEN");
    info->scope = TOKEN_SCOPE_ADMIN;
    return true;
}

bool api_queue_allowed(const api_req_t *ar, const char *queue)
{
    return token_queue_allowed(ar->token.queues, queue); /* "" (no token) allows all */
}

bool api_token_limited(const api_req_t *ar)
{
    return ar->token.queues[0] && strcmp(ar->token.queues, "*") != 0;
}

bool api_refuse_limited(api_req_t *ar, const char *what)
{
    if (!api_token_limited(ar))
        return false;
    api_set_problem(ar, 403,
                    "token %s may see only queues %s: %s covers every queue and needs a token "
                    "for every queue",
                    ar->token.id, ar->token.queues, what);
    return true;
}

/* Whether the (verified) token may use this route for ar->queue. */
static bool scope_allows(const api_req_t *ar)
{
    const token_info_t *t = &ar->token;
    bool queue_ok = !ar->queue[0] || token_queue_allowed(t->queues, ar->queue);
    switch (ar->route->access) {
    case ACCESS_PUBLIC:
        return true;
    case ACCESS_ADMIN:
        return t->scope == TOKEN_SCOPE_ADMIN && queue_ok;
    case ACCESS_SUBMIT:
        return t->scope != TOKEN_SCOPE_READ && queue_ok;
    case ACCESS_READ:
        if (t->scope == TOKEN_SCOPE_SUBMIT)
            return ar->queue[0] && queue_ok;
        return queue_ok;
    }
    return false;
}

static bool forbid(api_req_t *ar, bool on_loop)
{
    const char *need = ar->route->access == ACCESS_ADMIN    ? "admin"
                       : ar->route->access == ACCESS_SUBMIT ? "submit"
                                                            : "read";
    if (on_loop)
        api_problem(ar, 403, "token %s (scope %s) may not %s %s: this needs scope %s%s%s",
                    ar->token.id, token_scope_name(ar->token.scope), ar->http->method,
                    ar->http->path, need, ar->queue[0] ? " on queue " : "", ar->queue);
    else
        api_set_problem(ar, 403, "token %s (scope %s) may not %s %s: this needs scope %s%s%s",
                        ar->token.id, token_scope_name(ar->token.scope), ar->http->method,
                        ar->http->path, need, ar->queue[0] ? " on queue " : "", ar->queue);
    return false;
}

/* Reads the bearer token; a cache hit or the admin token authorizes at once. */
static bool authenticate(api_req_t *ar)
{
    api_server_t *s = ar->loop->server;
    if (ar->route->access == ACCESS_PUBLIC || !s->auth_required) {
        ar->authorized = true;
        ar->token.scope = TOKEN_SCOPE_ADMIN;
        return true;
    }
    const char *h = http_header(ar->http, "authorization");
    if (!h && api_session_read(ar)) {
        ar->verify_session = true; /* checked on the executor with the request's work */
        return true;
    }
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7]) {
        snprintf(ar->headers, sizeof(ar->headers), "WWW-Authenticate: Bearer\r\n");
        api_problem(ar, 401,
                    "missing token: send Authorization: Bearer <token>, or log in "
                    "to the dashboard");
        return false;
    }
    if (strlen(h + 7) >= TOKEN_MAX) {
        snprintf(ar->headers, sizeof(ar->headers), "WWW-Authenticate: Bearer\r\n");
        api_problem(ar, 401, "unknown or revoked token");
        return false;
    }
    snprintf(ar->bearer, sizeof(ar->bearer), "%s", h + 7);
    ar->has_bearer = true;
    if (api_admin_token(s, ar->bearer, &ar->token)) {
        ar->authorized = true;
        return true;
    }
    int64_t now = hp_mono_ms();
    for (size_t i = 0; i < TOKEN_CACHE_SIZE; i++) {
        token_cache_entry_t *e = &ar->loop->tokens[i];
        if (e->until_ms > now && CRYPTO_memcmp(e->token, ar->bearer, TOKEN_MAX) == 0) {
            ar->token = e->info;
            ar->authorized = true;
            return true;
        }
    }
    ar->verify_bearer = true; /* on the executor, with the request's broker work */
    return true;
}

/* ---- On the executor ---- */

static bool method_is_safe(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

/* A request with a session cookie: the session must be live, and anything but a
 * GET must carry its CSRF token. */
static bool verify_session(api_req_t *ar, broker_t *b)
{
    session_t s;
    int err = api_session_check(ar, b, &s);
    if (err == HP_ENOTFOUND) {
        api_set_problem(ar, 401, "session expired or ended: log in again");
        return false;
    }
    if (err) {
        api_set_broker_error(ar, b, err);
        return false;
    }
    if (!method_is_safe(ar->method) && CRYPTO_memcmp(ar->csrf, s.csrf, SESSION_CSRF_LEN) != 0) {
        api_set_problem(ar, 403, "X-CSRF-Token: missing or wrong for this session");
        return false;
    }
    ar->token = s.token;
    ar->authorized = true;
    ar->via_session = true;
    if (!scope_allows(ar))
        return forbid(ar, false);
    return true;
}

static void run_request(exec_task_t *t, broker_t *b)
{
    api_req_t *ar = (api_req_t *)t;
    if (ar->verify_session && !verify_session(ar, b))
        return;
    if (ar->verify_bearer) {
        if (broker_token_verify(b, ar->bearer, &ar->token) != 0) {
            snprintf(ar->headers, sizeof(ar->headers), "WWW-Authenticate: Bearer\r\n");
            api_set_problem(ar, 401, "unknown or revoked token");
            return;
        }
        ar->authorized = true;
        if (!scope_allows(ar)) {
            forbid(ar, false);
            return;
        }
    }
    if (ar->has_bearer && ar->token.rate > 0) {
        int64_t retry_ms = 0;
        char key[64];
        snprintf(key, sizeof(key), "token:%s", ar->token.id);
        int rc = broker_rate_take(b, key, ar->token.rate, ar->token.burst, &retry_ms);
        if (rc == 0) {
            snprintf(ar->headers, sizeof(ar->headers), "Retry-After: %lld\r\n",
                     (long long)((retry_ms + 999) / 1000));
            api_set_problem(ar, 429, "rate limit of token %s: %g requests/s, burst %d",
                            ar->token.id, ar->token.rate, ar->token.burst);
            return;
        }
        if (rc < 0) {
            api_set_broker_error(ar, b, rc);
            return;
        }
    }
    if (ar->route->run)
        ar->route->run(ar, b);
    if (ar->route->audit && ar->status != 403) /* refused (scope, queues): no action */
        api_audit_record(ar, b);
}

static void run_batch(exec_task_t **tasks, size_t n, broker_t *b)
{
    api_req_t *first = (api_req_t *)tasks[0];
    first->route->batch((api_req_t **)tasks, n, b);
}

void api_submit(api_req_t *ar)
{
    exec_task_t *t = &ar->task;
    t->done = generic_done;
    t->run = run_request;
    t->batch = NULL;
    /* With no token to check and no rate to take on the way, a route that can
     * batch joins the others waiting: one round trip for all of them. */
    if (ar->route->batch && !ar->verify_bearer && !ar->verify_session &&
        !(ar->has_bearer && ar->token.rate > 0))
        t->batch = run_batch;
    exec_submit(ar->loop->home, t);
}

/* ---- Query strings ---- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes src[0..n) into out; false when malformed or too long. */
bool api_decode(const char *src, size_t n, char *out, size_t len, bool plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return false;
            int hi = hexval((unsigned char)src[i + 1]);
            int lo = hexval((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            ch = ' ';
        }
        if (ch == '\0' || o + 1 >= len)
            return false;
        out[o++] = ch;
    }
    out[o] = '\0';
    return true;
}

bool api_query(const api_req_t *ar, const char *name, char *out, size_t len)
{
    const char *q = ar->http->query;
    size_t nlen = strlen(name);
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        if (n > nlen && strncmp(q, name, nlen) == 0 && q[nlen] == '=')
            return api_decode(q + nlen + 1, n - nlen - 1, out, len, true);
        if (n == nlen && strncmp(q, name, nlen) == 0) {
            out[0] = '\0';
            return true;
        }
        if (!amp)
            break;
        q = amp + 1;
    }
    return false;
}

/* ---- http.c's callbacks ---- */

static void preflight(api_req_t *ar)
{
    char cors[512];
    cors_headers(ar, cors, sizeof(cors));
    if (!cors[0]) {
        api_problem(ar, 403, "cross-origin requests from this origin are not allowed");
        return;
    }
    snprintf(ar->headers, sizeof(ar->headers),
             "Access-Control-Allow-Methods: GET, POST, PUT, DELETE\r\n"
             "Access-Control-Allow-Headers: Authorization, Content-Type, Idempotency-Key, "
             "X-Request-Id\r\nAccess-Control-Max-Age: 600\r\n");
    api_answer(ar, 204, NULL, NULL, 0);
}

/* A state-changing request a page of another site made the browser send: its
 * Origin is neither this server nor an allowed CORS origin, or the browser says
 * so outright. Clients other than browsers send neither header. */
static bool cross_site(api_req_t *ar)
{
    const char *site = http_header(ar->http, "sec-fetch-site");
    const char *origin = http_header(ar->http, "origin");
    if (!site && !origin)
        return false; /* not a browser: the common case, at no further cost */
    char cors[512];
    cors_headers(ar, cors, sizeof(cors));
    if (cors[0])
        return false; /* an origin the operator allowed */
    if (site && strcmp(site, "cross-site") == 0)
        return true;
    if (!origin)
        return false;
    const char *host = http_header(ar->http, "host");
    const char *rest = strncmp(origin, "http://", 7) == 0    ? origin + 7
                       : strncmp(origin, "https://", 8) == 0 ? origin + 8
                                                             : NULL;
    return !rest || !host || strcasecmp(rest, host) != 0;
}

static void on_headers(http_req_t *req, void *ctx)
{
    api_loop_t *l = ctx;
    api_req_t *ar = hp_calloc(1, sizeof(*ar));
    ar->http = req;
    ar->loop = l;
    req->data = ar;
    char allowed[128];
    if (strcmp(req->method, "OPTIONS") == 0 && l->server->cfg.cors_origins) {
        preflight(ar);
        return;
    }
    ar->route = api_route_match(req->method, req->path, ar, allowed, sizeof(allowed));
    if (!ar->route) {
        if (allowed[0]) {
            snprintf(ar->headers, sizeof(ar->headers), "Allow: %s\r\n", allowed);
            api_problem(ar, 405, "%s is not allowed on %s; allowed: %s", req->method, req->path,
                        allowed);
        } else {
            api_problem(ar, 404, "no such route: %s %s", req->method, req->path);
        }
        return;
    }
    req->route = ar->route->pattern;
    snprintf(ar->method, sizeof(ar->method), "%s", req->method);
    if (!method_is_safe(req->method) && cross_site(ar)) {
        api_problem(ar, 403,
                    "cross-site request refused (Origin or Sec-Fetch-Site says it "
                    "comes from another site)");
        return;
    }
    if (!authenticate(ar))
        return;
    if (ar->route->stream_body) {
        req->mode = HTTP_BODY_STREAM;
        req->max_body = l->server->cfg.max_blob;
        req->on_body = ar->route->on_body;
        req->app = ar; /* an upload in progress: told if the client goes */
        if (!ar->route->prepare(ar))
            return;
    }
}

static void on_request(http_req_t *req, void *ctx)
{
    api_req_t *ar = req->data;
    (void)ctx;
    if (!ar->route->stream_body && !ar->route->prepare(ar))
        return;
    if (ar->authorized && ar->route->access != ACCESS_PUBLIC && !scope_allows(ar)) {
        forbid(ar, true);
        return;
    }
    /* From here the executor or the route holds it: if the client goes now, the
     * answer (which then only frees) still comes, not on_abandon. */
    req->app = NULL;
    ar->abandon = NULL;
    if (ar->route->audit)
        api_audit_capture(ar);
    if (ar->route->run || ar->verify_bearer || ar->verify_session ||
        (ar->has_bearer && ar->token.rate > 0))
        api_submit(ar); /* broker work, or a token to check or rate-limit first */
    else
        ar->route->finish(ar);
}

static void on_free(http_req_t *req, void *ctx)
{
    (void)ctx;
    api_req_t *ar = req->data;
    req->data = NULL;
    api_req_free(ar);
}

static void on_abandon(http_req_t *req, void *ctx)
{
    api_req_t *ar = req->data;
    (void)ctx;
    if (!ar) {
        http_respond(req, 500, NULL, NULL, NULL, 0);
        return;
    }
    if (ar->abandon) {
        ar->abandon(ar);
        return;
    }
    api_problem(ar, req->error_status ? req->error_status : 400, "%s",
                req->error_detail[0] ? req->error_detail : "request abandoned");
}

http_app_t api_http_app(api_loop_t *l)
{
    http_app_t app = {
        .on_headers = on_headers,
        .on_request = on_request,
        .on_abandon = on_abandon,
        .on_free = on_free,
        .ctx = l,
        .common_headers = l->server->common_headers,
        .policy_headers = l->server->policy_headers,
    };
    return app;
}
