/*
 * Dashboard sessions and the audit log, as the API serves them.
 *
 *   POST   /v1/session  {"token": "..."}  log in: a session cookie (HttpOnly,
 *                                         SameSite=Strict, Secure behind HTTPS)
 *   GET    /v1/session                    who is logged in, and the CSRF token
 *   DELETE /v1/session                    log out
 *   GET    /v1/audit                      the audit log, newest first
 *
 * A request authenticated by the cookie (app.c) must, unless it is a GET, carry
 * the session's CSRF token in X-CSRF-Token; the token is handed to the page's
 * script by GET /v1/session, never written into a page. The cookie alone proves
 * nothing a cross-site page could not make the browser send.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "api/internal.h"

#define COOKIE_NAME "hopper_session"

typedef struct login_s {
    char token[TOKEN_MAX];
} login_t;

static void login_free(void *p)
{
    if (p)
        OPENSSL_cleanse(p, sizeof(login_t));
    hp_free(p);
}

/* ---- Cookies ---- */

/* The session cookie's value, when the request carries a well-formed one. */
static bool session_cookie(const http_req_t *req, char id[SESSION_ID_LEN + 1])
{
    const char *h = http_header(req, "cookie");
    size_t nlen = strlen(COOKIE_NAME);
    for (const char *p = h; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == nlen + 1 + SESSION_ID_LEN && strncmp(p, COOKIE_NAME "=", nlen + 1) == 0) {
            memcpy(id, p + nlen + 1, SESSION_ID_LEN);
            id[SESSION_ID_LEN] = '\0';
            return true;
        }
        p = end;
    }
    return false;
}

/* Secure when the client reached us over HTTPS (a TLS-terminating proxy says so). */
static bool over_https(const http_req_t *req)
{
    const char *proto = http_header(req, "x-forwarded-proto");
    return proto && strncasecmp(proto, "https", 5) == 0;
}

static void set_cookie(api_req_t *ar, const char *value, int64_t max_age_s, bool secure)
{
    size_t used = strlen(ar->headers);
    snprintf(ar->headers + used, sizeof(ar->headers) - used,
             "Set-Cookie: " COOKIE_NAME
             "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%lld%s\r\n",
             value, (long long)max_age_s, secure ? "; Secure" : "");
}

/* ---- The session object ---- */

static void set_session_json(api_req_t *ar, int status, const session_t *s)
{
    char expires[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(s->expires_ms, expires);
    json_t *o = json_pack(
        "{s:b, s:s, s:s, s:s, s:s, s:s, s:s}", "auth", true, "token_id", s->token.id, "name",
        s->token.name, "scope", token_scope_name(s->token.scope), "queues",
        s->token.queues[0] ? s->token.queues : "*", "csrf", s->csrf, "expires_at", expires);
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    api_set_json(ar, status, hp_strdup(text), strlen(text));
    free(text);
}

/* Without auth (loopback, no tokens) there is nothing to log in to. */
static void set_no_auth_json(api_req_t *ar)
{
    static const char body[] = "{\"auth\":false,\"scope\":\"admin\",\"csrf\":\"\"}";
    api_set_json(ar, 200, hp_strdup(body), sizeof(body) - 1);
}

int api_session_check(api_req_t *ar, broker_t *b, session_t *s)
{
    int err = broker_session_get(b, ar->session_id, s);
    if (err)
        return err;
    const char *admin_hash = ar->loop->server->admin_token_hash;
    if (s->env_admin && (!admin_hash[0] || CRYPTO_memcmp(s->admin_hash, admin_hash, 64) != 0))
        return HP_ENOTFOUND; /* the server's admin token changed since */
    return 0;
}

/* ---- POST /v1/session ---- */

bool api_session_prepare_login(api_req_t *ar)
{
    ar->secure = over_https(ar->http);
    login_t *l = hp_calloc(1, sizeof(*l));
    ar->state = l;
    ar->state_free = login_free;
    json_error_t jerr;
    json_t *o = json_loadb(ar->http->body ? ar->http->body : "", ar->http->body_len, 0, &jerr);
    const char *token = json_string_value(json_object_get(o, "token"));
    bool ok = json_is_object(o) && token && token[0] && strlen(token) < TOKEN_MAX;
    if (ok)
        snprintf(l->token, sizeof(l->token), "%s", token);
    json_decref(o);
    if (!ok) {
        api_problem(ar, 400, "body: expected {\"token\": \"hop_...\"}");
        return false;
    }
    return true;
}

void api_session_run_login(api_req_t *ar, broker_t *b)
{
    api_server_t *srv = ar->loop->server;
    login_t *l = ar->state;
    if (!srv->auth_required) {
        set_no_auth_json(ar);
        return;
    }
    session_t s;
    memset(&s, 0, sizeof(s));
    if (api_admin_token(srv, l->token, &s.token)) {
        s.env_admin = true;
        memcpy(s.admin_hash, srv->admin_token_hash, sizeof(s.admin_hash));
    } else {
        int err = broker_token_verify(b, l->token, &s.token);
        if (err == HP_ENOTFOUND) {
            api_set_problem(ar, 401, "token not recognized (malformed, unknown or revoked)");
            return;
        }
        if (err) {
            api_set_broker_error(ar, b, err);
            return;
        }
    }
    snprintf(s.ip, sizeof(s.ip), "%s", ar->ip);
    char id[SESSION_ID_LEN + 1];
    int err = broker_session_create(b, &s, srv->cfg.session_ttl_ms, id);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    ar->token = s.token; /* the audit log's actor */
    ar->authorized = true;
    ar->via_session = true;
    set_cookie(ar, id, srv->cfg.session_ttl_ms / 1000, ar->secure);
    OPENSSL_cleanse(id, sizeof(id));
    set_session_json(ar, 200, &s);
}

/* ---- GET and DELETE /v1/session ---- */

bool api_session_read(api_req_t *ar)
{
    ar->has_session = session_cookie(ar->http, ar->session_id);
    const char *csrf = http_header(ar->http, "x-csrf-token");
    if (ar->has_session && csrf && strlen(csrf) == SESSION_CSRF_LEN)
        memcpy(ar->csrf, csrf, SESSION_CSRF_LEN + 1);
    return ar->has_session;
}

bool api_session_prepare(api_req_t *ar)
{
    api_session_read(ar);
    ar->secure = over_https(ar->http);
    return true;
}

void api_session_run_get(api_req_t *ar, broker_t *b)
{
    if (!ar->loop->server->auth_required) {
        set_no_auth_json(ar);
        return;
    }
    session_t s;
    int err = ar->has_session ? api_session_check(ar, b, &s) : HP_ENOTFOUND;
    if (err == HP_ENOTFOUND) {
        api_set_problem(ar, 401, "not logged in (no session, or it expired or was ended)");
        return;
    }
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    set_session_json(ar, 200, &s);
}

void api_session_run_logout(api_req_t *ar, broker_t *b)
{
    session_t s;
    int err = ar->has_session ? api_session_check(ar, b, &s) : HP_ENOTFOUND;
    if (err && err != HP_ENOTFOUND) {
        api_set_broker_error(ar, b, err);
        return;
    }
    if (err == 0) {
        if (CRYPTO_memcmp(ar->csrf, s.csrf, SESSION_CSRF_LEN) != 0) {
            api_set_problem(ar, 403, "X-CSRF-Token: missing or wrong for this session");
            return;
        }
        ar->token = s.token;
        ar->authorized = true;
        ar->via_session = true;
        err = broker_session_delete(b, ar->session_id);
        if (err) {
            api_set_broker_error(ar, b, err);
            return;
        }
    }
    set_cookie(ar, "", 0, ar->secure); /* gone either way: the browser forgets it */
    api_set_json(ar, 204, NULL, 0);
}

/* ---- The audit log ---- */

void api_audit_capture(api_req_t *ar)
{
    char peer[SESSION_IP_MAX + 8];
    http_peer(ar->http, peer, sizeof(peer));
    char *colon = strrchr(peer, ':'); /* the port says nothing about who */
    if (colon && (peer[0] != '[' || colon[-1] == ']'))
        *colon = '\0';
    snprintf(ar->ip, sizeof(ar->ip), "%.63s", peer[0] == '[' ? peer + 1 : peer);
    char *bracket = strchr(ar->ip, ']');
    if (bracket)
        *bracket = '\0';
    const char *fwd = http_header(ar->http, "x-forwarded-for");
    snprintf(ar->forwarded_for, sizeof(ar->forwarded_for), "%.127s", fwd ? fwd : "");
    const char *ua = http_header(ar->http, "user-agent");
    snprintf(ar->user_agent, sizeof(ar->user_agent), "%.159s", ua ? ua : "");
    snprintf(ar->request_path, sizeof(ar->request_path), "%.200s%s%.100s", ar->http->path,
             ar->http->query[0] ? "?" : "", ar->http->query);
    snprintf(ar->request_id, sizeof(ar->request_id), "%s", ar->http->request_id);
    snprintf(ar->method, sizeof(ar->method), "%s", ar->http->method);
}

void api_audit_record(api_req_t *ar, broker_t *b)
{
    char at[HP_RFC3339_MAX], action[160];
    hp_format_rfc3339_ms(hp_now_ms(), at);
    snprintf(action, sizeof(action), "%s %s", ar->method, ar->route->pattern);
    const char *via = ar->via_session ? "session" : ar->token.id[0] ? "token" : "none";
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s}", "at", at, "actor",
                          ar->token.id[0] ? ar->token.id : "anonymous", "actor_name",
                          ar->token.name, "via", via, "action", action, "path", ar->request_path,
                          "status", ar->status ? ar->status : 200, "ip", ar->ip, "user_agent",
                          ar->user_agent, "request_id", ar->request_id);
    if (ar->forwarded_for[0]) /* behind a proxy: where it says the request came from */
        json_object_set_new(o, "forwarded_for", json_string(ar->forwarded_for));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (broker_audit_append(b, text) != 0)
        hp_warn("audit: could not record %s by %s: %s", action, ar->token.id, broker_errmsg(b));
    free(text);
}

typedef struct audit_query_s {
    char cursor[AUDIT_CURSOR_MAX];
    bool has_cursor;
    size_t limit;
} audit_query_t;

bool api_audit_prepare_list(api_req_t *ar)
{
    audit_query_t *q = hp_calloc(1, sizeof(*q));
    ar->state = q;
    ar->state_free = hp_free;
    q->limit = 50;
    char text[64];
    if (api_query(ar, "limit", text, sizeof(text))) {
        char *end;
        long n = strtol(text, &end, 10);
        if (*end || end == text || n < 1 || n > 1000) {
            api_problem(ar, 400, "limit: an integer from 1 to 1000, got \"%s\"", text);
            return false;
        }
        q->limit = (size_t)n;
    }
    if (api_query(ar, "cursor", text, sizeof(text)) && text[0]) {
        if (strlen(text) >= sizeof(q->cursor)) {
            api_problem(ar, 400, "cursor: not one a listing gave out");
            return false;
        }
        snprintf(q->cursor, sizeof(q->cursor), "%.47s", text);
        q->has_cursor = true;
    }
    return true;
}

void api_audit_run_list(api_req_t *ar, broker_t *b)
{
    if (api_refuse_limited(ar, "the audit log"))
        return;
    audit_query_t *q = ar->state;
    audit_page_t page;
    int err = broker_audit_list(b, q->has_cursor ? q->cursor : NULL, q->limit, &page);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_appends(&sb, "{\"entries\":[");
    for (size_t i = 0; i < page.n; i++) {
        if (i)
            hp_strbuf_appends(&sb, ",");
        hp_strbuf_appends(&sb, page.entries[i]);
    }
    api_set_json_page(ar, &sb, page.next_cursor);
    audit_page_cleanup(&page);
}
