/*
 * HTTP/1.1 connections on a libuv loop, parsed by llhttp.
 *
 * One request at a time per connection: llhttp is paused at the end of each
 * message (on_message_complete returns HPE_PAUSED) and reading stops until the
 * application has answered, so pipelined requests are answered in order and a
 * client cannot make the server buffer without bound. Bytes read ahead are kept
 * in conn->in and parsed once the answer is queued.
 */
#include <ctype.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "common/common.h"

#define MAX_HEADERS 100

typedef enum { TIMER_NONE, TIMER_HEADERS, TIMER_BODY, TIMER_IDLE, TIMER_BROKEN } timer_kind_t;

struct http_server_s {
    uv_loop_t *loop;
    uv_tcp_t listener;
    http_limits_t limits;
    http_app_t app;
    _Atomic int *active_conns;
    http_conn_t *conns; /* every open connection, for stop */
    llhttp_settings_t settings;
    hp_strbuf_t access_log; /* request lines, flushed once per loop iteration */
    uv_check_t log_flush;
    int open_handles; /* listener, log_flush and every connection not yet freed */
    bool stopping, draining, flush_started;
};

struct http_conn_s {
    uv_tcp_t tcp;
    uv_timer_t timer;
    http_server_t *server;
    http_conn_t *prev, *next;
    llhttp_t parser;
    char *in; /* bytes read and not yet parsed: in[off..len) */
    size_t in_len, in_off, in_cap;
    http_req_t *req; /* being parsed or answered */
    hp_strbuf_t url, field, value;
    size_t header_bytes;
    size_t write_queued; /* bytes handed to uv_write and not yet written */
    timer_kind_t timer_kind;
    int handles_open;
    bool counted;    /* in active_conns */
    bool busy;       /* a whole request is with the application */
    bool req_ready;  /* parser saw the end of a message */
    bool in_process; /* conn_process is on the stack */
    bool closing;    /* handles are being closed */
    bool close_after_write;
    bool broken; /* a write failed: closing on the next turn of the loop */
    bool reading;
};

typedef struct write_req_s {
    uv_write_t w;
    http_conn_t *conn;
    size_t len;
    char data[];
} write_req_t;

static void conn_process(http_conn_t *c);
static void conn_close(http_conn_t *c);
static void on_timer(uv_timer_t *t);

/* ---- Small helpers ---- */

static const char *status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 302:
        return "Found";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

/* An IMF-fixdate for the Date header, made once per second per thread. */
static const char *http_date(void)
{
    static _Thread_local char buf[40];
    static _Thread_local int64_t made_s = -1;
    int64_t now_s = hp_now_ms() / 1000;
    if (now_s != made_s) {
        time_t t = (time_t)now_s;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        made_s = now_s;
    }
    return buf;
}

const char *http_header(const http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (strcmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    }
    return NULL;
}

void http_peer(const http_req_t *req, char *out, size_t len)
{
    snprintf(out, len, "-");
    if (!req->conn)
        return;
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&req->conn->tcp, (struct sockaddr *)&ss, &sl) != 0)
        return;
    char ip[64] = "";
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
        snprintf(out, len, "[%s]:%d", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        snprintf(out, len, "%s:%d", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
}

static void req_free(http_req_t *req)
{
    if (!req)
        return;
    if (req->data && req->server && req->server->app.on_free)
        req->server->app.on_free(req, req->server->app.ctx); /* ended by this layer */
    for (size_t i = 0; i < req->nheaders; i++) {
        hp_free(req->headers[i].name);
        hp_free(req->headers[i].value);
    }
    hp_free(req->headers);
    hp_free(req->path);
    hp_free(req->query);
    hp_free(req->body);
    hp_free(req);
}

/* ---- Writing ---- */

static void on_written(uv_write_t *w, int status)
{
    write_req_t *wr = (write_req_t *)w;
    http_conn_t *c = wr->conn;
    c->write_queued -= wr->len;
    hp_free(wr);
    if (status < 0 && !c->closing) {
        conn_close(c);
        return;
    }
    if (c->close_after_write && c->write_queued == 0) {
        conn_close(c);
        return;
    }
    http_req_t *req = c->req;
    if (req && req->on_drain && c->write_queued <= req->drain_low) {
        void (*cb)(http_req_t *) = req->on_drain;
        req->on_drain = NULL;
        cb(req);
    }
}

/* A write failed (the peer reset the connection): it is closed on the next turn
 * of the loop, never from inside conn_write, whose callers still hold the request
 * (closing now would hand it to on_abandon under their feet). */
static void close_soon(http_conn_t *c)
{
    c->broken = true;
    c->timer_kind = TIMER_BROKEN;
    uv_timer_start(&c->timer, on_timer, 0, 0);
}

static bool conn_write(http_conn_t *c, const char *data, size_t len)
{
    if (c->closing || c->broken)
        return false;
    if (c->write_queued == 0) {
        /* Most answers fit the socket buffer: written at once, with no request
         * object and no EPOLLOUT dance in libuv (which costs an epoll_ctl). */
        uv_buf_t now = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &now, 1);
        if (n == (int)len)
            return true;
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n != UV_EAGAIN) {
            close_soon(c);
            return false;
        }
    }
    write_req_t *wr = hp_malloc(sizeof(*wr) + len);
    wr->conn = c;
    wr->len = len;
    memcpy(wr->data, data, len);
    uv_buf_t buf = uv_buf_init(wr->data, (unsigned)len);
    c->write_queued += len;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0) {
        c->write_queued -= len;
        hp_free(wr);
        close_soon(c);
        return false;
    }
    return true;
}

/* A request id: 16 hex digits from a per-thread generator (xorshift64*), seeded
 * once from the kernel. Ids need to be unique, not secret, and a getrandom call
 * per request was a tenth of the syscalls. */
static void new_request_id(char out[17])
{
    static _Thread_local uint64_t state;
    static const char hex[] = "0123456789abcdef";
    while (state == 0)
        hp_random_bytes(&state, sizeof(state));
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    uint64_t v = state * 0x2545F4914F6CDD1DULL;
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
    out[16] = '\0';
}

/* The request line for the access log: one JSON object per request. */
static void log_request(http_req_t *req, int status, size_t bytes)
{
    http_server_t *s = req->conn->server;
    if (!hp_log_enabled(HP_LOG_INFO))
        return;
    char ts[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(hp_now_ms(), ts);
    hp_strbuf_t *sb = &s->access_log;
    double ms = (double)(hp_mono_us() - req->start_us) / 1000.0;
    if (hp_log_is_json()) {
        hp_strbuf_printf(
            sb,
            "{\"time\":\"%s\",\"level\":\"info\",\"msg\":\"request\",\"method\":\"%s\","
            "\"route\":",
            ts, req->method);
        hp_strbuf_append_json_string(sb, req->route ? req->route : "-");
        hp_strbuf_appends(sb, ",\"path\":");
        hp_strbuf_append_json_string(sb, req->path ? req->path : "");
        hp_strbuf_printf(sb, ",\"status\":%d,\"bytes\":%zu,\"duration_ms\":%.3f,\"request_id\":",
                         status, bytes, ms);
        hp_strbuf_append_json_string(sb, req->request_id);
        hp_strbuf_appends(sb, "}\n");
    } else {
        hp_strbuf_printf(sb, "%s INFO  %s %s %d %zu %.3fms %s\n", ts, req->method,
                         req->path ? req->path : "", status, bytes, ms, req->request_id);
    }
}

static void flush_access_log(uv_check_t *h)
{
    http_server_t *s = h->data;
    if (s->access_log.len) {
        hp_log_write(s->access_log.data, s->access_log.len);
        hp_strbuf_reset(&s->access_log);
    }
}

/* After an answer: free the request and carry on with what is buffered. */
static void request_done(http_conn_t *c, http_req_t *req)
{
    bool keep = req->keep_alive && !c->close_after_write;
    if (c->req == req)
        c->req = NULL;
    req_free(req);
    c->busy = false;
    if (!keep) {
        c->close_after_write = true;
        if (c->write_queued == 0)
            conn_close(c);
        return;
    }
    if (!c->in_process)
        conn_process(c);
}

static void append_head(hp_strbuf_t *sb, http_req_t *req, int status, const char *content_type,
                        const char *headers, bool keep_alive)
{
    http_server_t *s = req->conn->server;
    hp_strbuf_printf(sb, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, status_text(status),
                     http_date());
    if (content_type)
        hp_strbuf_printf(sb, "Content-Type: %s\r\n", content_type);
    hp_strbuf_printf(sb, "X-Request-Id: %s\r\nConnection: %s\r\n", req->request_id,
                     keep_alive ? "keep-alive" : "close");
    if (s->app.common_headers)
        hp_strbuf_appends(sb, s->app.common_headers);
    if (s->app.policy_headers && !req->own_policy)
        hp_strbuf_appends(sb, s->app.policy_headers);
    if (headers)
        hp_strbuf_appends(sb, headers);
}

void http_respond(http_req_t *req, int status, const char *content_type, const char *headers,
                  const char *body, size_t len)
{
    http_conn_t *c = req->conn;
    if (!c || c->closing) { /* the client went away; the answer has nowhere to go */
        if (c && c->req == req)
            c->req = NULL;
        req_free(req);
        return;
    }
    req->answered = true;
    if (req->has_body && !req->complete)
        c->close_after_write = true; /* answered before the body was read */
    bool keep = req->keep_alive && !c->close_after_write;
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    append_head(&sb, req, status, content_type, headers, keep);
    hp_strbuf_printf(&sb, "Content-Length: %zu\r\n\r\n", len);
    if (len && strcmp(req->method, "HEAD") != 0)
        hp_strbuf_append(&sb, body, len);
    conn_write(c, sb.data, sb.len);
    log_request(req, status, len);
    hp_strbuf_cleanup(&sb);
    request_done(c, req);
}

char *http_problem_json(int status, const char *detail, size_t *len)
{
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_printf(&sb, "{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d,\"detail\":",
                     status_text(status), status);
    hp_strbuf_append_json_string(&sb, detail);
    hp_strbuf_appends(&sb, "}");
    return hp_strbuf_steal(&sb, len);
}

void http_problem(http_req_t *req, int status, const char *headers, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    size_t len;
    char *body = http_problem_json(status, detail, &len);
    http_respond(req, status, "application/problem+json", headers, body, len);
    hp_free(body);
}

void http_stream_begin(http_req_t *req, int status, const char *content_type, const char *headers)
{
    http_conn_t *c = req->conn;
    req->answered = true;
    req->streaming = true;
    req->keep_alive = false;
    if (!c || c->closing)
        return;
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    append_head(&sb, req, status, content_type, headers, false);
    hp_strbuf_appends(&sb, "\r\n");
    conn_write(c, sb.data, sb.len);
    hp_strbuf_cleanup(&sb);
    log_request(req, status, 0);
    /* Keep reading, only to see the client leave; anything it sends is dropped. */
    c->busy = true;
}

bool http_stream_write(http_req_t *req, const char *data, size_t len, size_t max_queued)
{
    http_conn_t *c = req->conn;
    if (!c || c->closing || c->write_queued > max_queued)
        return false;
    return conn_write(c, data, len);
}

void http_stream_on_drain(http_req_t *req, size_t low, void (*cb)(http_req_t *req))
{
    http_conn_t *c = req->conn;
    if (!c || c->write_queued <= low) {
        cb(req);
        return;
    }
    req->drain_low = low;
    req->on_drain = cb;
}

void http_stream_end(http_req_t *req)
{
    http_conn_t *c = req->conn;
    if (c && c->req == req)
        c->req = NULL;
    req_free(req);
    if (c && !c->closing) {
        c->close_after_write = true;
        if (c->write_queued == 0)
            conn_close(c);
    }
}

/* An answer the application never saw the request for (limits, bad syntax):
 * written directly, and the connection closes after it. */
static void conn_refuse(http_conn_t *c, int status, const char *detail)
{
    if (c->closing || c->close_after_write)
        return;
    http_req_t *req = c->req;
    if (req && (req->answered || req->dispatched))
        return;
    if (req && req->app) {
        /* the application holds state for this request: it answers (on_abandon) */
        req->error_status = status;
        snprintf(req->error_detail, sizeof(req->error_detail), "%s", detail);
        req->keep_alive = false;
        c->close_after_write = true;
        c->busy = true;
        c->server->app.on_abandon(req, c->server->app.ctx);
        return;
    }
    if (!req) {
        req = hp_calloc(1, sizeof(*req));
        req->conn = c;
        req->server = c->server;
        req->method = "-";
        req->start_us = hp_mono_us();
        new_request_id(req->request_id);
        c->req = req;
    }
    if (!req->method) /* refused before the headers were complete */
        req->method = "-";
    if (!req->request_id[0])
        hp_random_hex(req->request_id, 8);
    req->keep_alive = false;
    c->close_after_write = true;
    c->busy = true;
    http_problem(req, status, NULL, "%s", detail);
}

/* ---- Timers ---- */

static void update_reading(http_conn_t *c);

static void on_timer(uv_timer_t *t)
{
    http_conn_t *c = t->data;
    timer_kind_t kind = c->timer_kind;
    c->timer_kind = TIMER_NONE;
    if (kind == TIMER_IDLE || kind == TIMER_BROKEN) {
        conn_close(c);
        return;
    }
    const char *what = kind == TIMER_HEADERS ? "the request headers took too long to arrive"
                                             : "the request body stalled";
    conn_refuse(c, 408, what);
    update_reading(c);
}

static void timer_set(http_conn_t *c, timer_kind_t kind, int ms)
{
    if (c->broken)
        return; /* the close is already scheduled */
    c->timer_kind = kind;
    if (kind == TIMER_NONE || ms <= 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
}

/* ---- Parsing callbacks ---- */

static http_conn_t *conn_of(llhttp_t *p)
{
    return p->data;
}

static int limit_headers(http_conn_t *c, size_t len)
{
    c->header_bytes += len;
    if (c->header_bytes > c->server->limits.max_header_bytes) {
        conn_refuse(c, 431, "the request line and headers are larger than the limit");
        return HPE_USER;
    }
    return HPE_OK;
}

static int on_message_begin(llhttp_t *p)
{
    http_conn_t *c = conn_of(p);
    http_req_t *req = hp_calloc(1, sizeof(*req));
    req->conn = c;
    req->server = c->server;
    req->method = "-"; /* until the headers are in: a refusal before then logs "-" */
    req->content_length = -1;
    req->start_us = hp_mono_us();
    c->req = req;
    c->header_bytes = 0;
    hp_strbuf_reset(&c->url);
    hp_strbuf_reset(&c->field);
    hp_strbuf_reset(&c->value);
    timer_set(c, TIMER_HEADERS, c->server->limits.header_timeout_ms);
    return HPE_OK;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *c = conn_of(p);
    if (limit_headers(c, len))
        return HPE_USER;
    hp_strbuf_append(&c->url, at, len);
    return HPE_OK;
}

static int push_header(http_conn_t *c)
{
    http_req_t *req = c->req;
    if (c->field.len == 0)
        return HPE_OK;
    if (req->nheaders == MAX_HEADERS) {
        conn_refuse(c, 431, "more than 100 request headers");
        return HPE_USER;
    }
    if (req->nheaders % 16 == 0)
        req->headers = hp_realloc(req->headers, (req->nheaders + 16) * sizeof(*req->headers));
    size_t flen, vlen;
    char *name = hp_strbuf_steal(&c->field, &flen);
    for (size_t i = 0; i < flen; i++)
        name[i] = (char)tolower((unsigned char)name[i]);
    char *value = hp_strbuf_steal(&c->value, &vlen);
    if (!value)
        value = hp_strdup("");
    req->headers[req->nheaders++] = (http_header_t){name, value};
    return HPE_OK;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *c = conn_of(p);
    if (limit_headers(c, len))
        return HPE_USER;
    hp_strbuf_append(&c->field, at, len);
    return HPE_OK;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *c = conn_of(p);
    if (limit_headers(c, len))
        return HPE_USER;
    hp_strbuf_append(&c->value, at, len);
    return HPE_OK;
}

static int on_header_value_complete(llhttp_t *p)
{
    return push_header(conn_of(p));
}

static void split_target(http_req_t *req, const char *url, size_t len)
{
    const char *q = memchr(url, '?', len);
    size_t plen = q ? (size_t)(q - url) : len;
    req->path = hp_strndup(url, plen);
    req->query = q ? hp_strndup(q + 1, len - plen - 1) : hp_strdup("");
}

/* X-Request-Id from the client when it is short and printable, else a new one. */
static void pick_request_id(http_req_t *req)
{
    const char *given = http_header(req, "x-request-id");
    size_t n = given ? strlen(given) : 0;
    bool ok = n > 0 && n < sizeof(req->request_id);
    for (size_t i = 0; ok && i < n; i++)
        ok = given[i] > 0x20 && given[i] < 0x7f;
    if (ok)
        memcpy(req->request_id, given, n + 1);
    else
        new_request_id(req->request_id);
}

static int on_headers_complete(llhttp_t *p)
{
    http_conn_t *c = conn_of(p);
    http_server_t *s = c->server;
    http_req_t *req = c->req;
    if (push_header(c))
        return HPE_USER;
    req->method = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
    split_target(req, c->url.data ? c->url.data : "", c->url.len);
    req->keep_alive = llhttp_should_keep_alive(p);
    if (p->flags & F_CONTENT_LENGTH)
        req->content_length = (int64_t)p->content_length;
    const char *expect = http_header(req, "expect");
    req->expect_continue = expect && strcasecmp(expect, "100-continue") == 0;
    pick_request_id(req);
    req->mode = HTTP_BODY_BUFFER;
    req->max_body = s->limits.max_body;
    timer_set(c, TIMER_BODY, s->limits.body_timeout_ms);
    req->has_body = req->content_length > 0 || (p->flags & F_CHUNKED);
    s->app.on_headers(req, s->app.ctx);
    /* Answered from the headers alone (the body is not read). An answer frees
     * req, so look at the connection first, not at req. */
    if (c->req != req || req->answered)
        return HPE_PAUSED;
    if (req->content_length > req->max_body) {
        char detail[160];
        snprintf(detail, sizeof(detail), "the request body is %lld bytes; the limit is %lld",
                 (long long)req->content_length, (long long)req->max_body);
        conn_refuse(c, 413, detail);
        return HPE_PAUSED;
    }
    if (req->expect_continue && req->has_body) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write(c, cont, sizeof(cont) - 1);
    }
    return HPE_OK;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *c = conn_of(p);
    http_req_t *req = c->req;
    timer_set(c, TIMER_BODY, c->server->limits.body_timeout_ms);
    if ((int64_t)(req->body_len + len) > req->max_body) {
        char detail[160];
        snprintf(detail, sizeof(detail), "the request body is larger than the limit of %lld bytes",
                 (long long)req->max_body);
        conn_refuse(c, 413, detail);
        return HPE_PAUSED;
    }
    if (req->mode == HTTP_BODY_STREAM) {
        req->body_len += len; /* counted, not kept */
        if (req->on_body && req->on_body(req, at, len) != 0) {
            req->keep_alive = false;
            c->close_after_write = true; /* it answered: the rest is not read */
            return HPE_PAUSED;
        }
        return HPE_OK;
    }
    req->body = hp_realloc(req->body, req->body_len + len + 1);
    memcpy(req->body + req->body_len, at, len);
    req->body_len += len;
    req->body[req->body_len] = '\0';
    return HPE_OK;
}

static int on_message_complete(llhttp_t *p)
{
    http_conn_t *c = conn_of(p);
    timer_set(c, TIMER_NONE, 0);
    if (c->req)
        c->req->complete = true;
    c->req_ready = true;
    return HPE_PAUSED;
}

/* ---- The connection ---- */

static void dispatch(http_conn_t *c)
{
    http_server_t *s = c->server;
    http_req_t *req = c->req;
    c->busy = true;
    req->dispatched = true;
    if (!req->body)
        req->body = hp_strdup("");
    s->app.on_request(req, s->app.ctx);
}

static void parse_error(http_conn_t *c, llhttp_errno_t e)
{
    if (c->close_after_write || c->closing)
        return; /* already answered (a limit) */
    char detail[256];
    snprintf(detail, sizeof(detail), "malformed HTTP request: %s",
             llhttp_get_error_reason(&c->parser));
    conn_refuse(c, 400, detail);
}

static void conn_process(http_conn_t *c)
{
    c->in_process = true;
    while (!c->closing && !c->close_after_write && !c->busy && c->in_off < c->in_len) {
        const char *start = c->in + c->in_off;
        llhttp_errno_t e = llhttp_execute(&c->parser, start, c->in_len - c->in_off);
        if (e == HPE_OK) {
            c->in_off = c->in_len;
            break;
        }
        if (e != HPE_PAUSED) {
            parse_error(c, e);
            break;
        }
        c->in_off += (size_t)(llhttp_get_error_pos(&c->parser) - start);
        llhttp_resume(&c->parser);
        if (c->req_ready) {
            c->req_ready = false;
            if (c->req && !c->req->answered)
                dispatch(c);
        }
    }
    if (c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
    c->in_process = false;
    if (!c->closing && !c->busy && !c->close_after_write && c->in_len == 0 && !c->req)
        timer_set(c, TIMER_IDLE, c->server->limits.keepalive_timeout_ms);
    update_reading(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    http_conn_t *c = h->data;
    size_t want = 64 * 1024;
    if (c->in_off > 0 && c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
    if (c->in_cap - c->in_len < want) {
        if (c->in_off > 0) {
            memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
            c->in_len -= c->in_off;
            c->in_off = 0;
        }
        if (c->in_cap - c->in_len < want) {
            c->in_cap = c->in_len + want;
            c->in = hp_realloc(c->in, c->in_cap);
        }
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    http_conn_t *c = stream->data;
    if (nread < 0) {
        conn_close(c); /* EOF or error: the client is gone */
        return;
    }
    if (nread == 0)
        return;
    if (c->busy && c->req && c->req->streaming)
        return; /* a streaming answer: input is only watched for the close */
    c->in_len += (size_t)nread;
    if (!c->in_process)
        conn_process(c);
}

static void update_reading(http_conn_t *c)
{
    if (c->closing)
        return;
    bool streaming = c->req && c->req->streaming;
    bool want =
        streaming ||
        (!c->close_after_write &&
         (!c->busy || c->in_len - c->in_off < (size_t)c->server->limits.max_pipelined_bytes));
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* The server is freed once its own handles and every connection are gone: a
 * connection's close callback may run after http_server_stop's. */
static void server_release(http_server_t *s)
{
    if (--s->open_handles == 0) {
        hp_strbuf_cleanup(&s->access_log);
        hp_free(s);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    http_conn_t *c = h->data;
    if (--c->handles_open > 0)
        return;
    http_server_t *s = c->server;
    if (c->counted)
        atomic_fetch_sub(s->active_conns, 1);
    hp_strbuf_cleanup(&c->url);
    hp_strbuf_cleanup(&c->field);
    hp_strbuf_cleanup(&c->value);
    hp_free(c->in);
    hp_free(c);
    server_release(s);
}

static void conn_close(http_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    http_server_t *s = c->server;
    if (c->prev)
        c->prev->next = c->next;
    else if (s->conns == c)
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    http_req_t *req = c->req;
    c->req = NULL;
    if (req) {
        req->conn = NULL;
        if (req->app)
            s->app.on_abandon(req, s->app.ctx); /* it answers, which only frees */
        else if (!req->dispatched)
            req_free(req); /* else the answer, still to come, frees it */
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void refuse_connection(http_server_t *s)
{
    /* Past max_connections: a short 503 and close, so the client is told
     * rather than left hanging in the backlog. */
    static const char body[] = "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\","
                               "\"status\":503,\"detail\":\"too many connections\"}";
    http_conn_t *c = hp_calloc(1, sizeof(*c));
    c->server = s;
    s->open_handles++; /* released when the connection is freed */
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    char msg[512];
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                     "Content-Type: application/problem+json\r\nRetry-After: 1\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     sizeof(body) - 1, body);
    c->close_after_write = true;
    if (conn_write(c, msg, (size_t)n) && c->write_queued == 0)
        conn_close(c); /* written at once: no write callback will close it */
}

static void on_connection(uv_stream_t *listener, int status)
{
    http_server_t *s = listener->data;
    if (status < 0 || s->stopping || s->draining)
        return;
    if (atomic_fetch_add(s->active_conns, 1) >= s->limits.max_connections) {
        atomic_fetch_sub(s->active_conns, 1);
        refuse_connection(s);
        return;
    }
    http_conn_t *c = hp_calloc(1, sizeof(*c));
    c->server = s;
    s->open_handles++; /* released when the connection is freed */
    c->counted = true;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    hp_strbuf_init(&c->url, 0);
    hp_strbuf_init(&c->field, 0);
    hp_strbuf_init(&c->value, 0);
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    c->parser.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    timer_set(c, TIMER_HEADERS, s->limits.header_timeout_ms);
    update_reading(c);
}

/* ---- The server ---- */

http_server_t *http_server_start(uv_loop_t *loop, int fd, const http_limits_t *limits,
                                 const http_app_t *app, int *active_conns, char *err, size_t errlen)
{
    http_server_t *s = hp_calloc(1, sizeof(*s));
    s->loop = loop;
    s->limits = *limits;
    s->app = *app;
    s->active_conns = (_Atomic int *)active_conns;
    hp_strbuf_init(&s->access_log, 0);
    llhttp_settings_init(&s->settings);
    s->settings.on_message_begin = on_message_begin;
    s->settings.on_url = on_url;
    s->settings.on_header_field = on_header_field;
    s->settings.on_header_value = on_header_value;
    s->settings.on_header_value_complete = on_header_value_complete;
    s->settings.on_headers_complete = on_headers_complete;
    s->settings.on_body = on_body;
    s->settings.on_message_complete = on_message_complete;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    int rc = uv_tcp_open(&s->listener, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "listen: %s", uv_strerror(rc));
        s->open_handles = 1;
        http_server_stop(s);
        return NULL;
    }
    uv_check_init(loop, &s->log_flush);
    s->log_flush.data = s;
    uv_check_start(&s->log_flush, flush_access_log);
    uv_unref((uv_handle_t *)&s->log_flush);
    s->flush_started = true;
    s->open_handles = 2;
    return s;
}

static void on_server_handle_closed(uv_handle_t *h)
{
    server_release(h->data);
}

int http_server_drain(http_server_t *s)
{
    if (!s->draining) {
        s->draining = true;
        uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    }
    int open = 0;
    http_conn_t *c = s->conns;
    while (c) {
        http_conn_t *next = c->next;
        if (!c->busy && !c->req && c->write_queued == 0) {
            conn_close(c); /* idle between requests */
        } else {
            c->close_after_write = true; /* after the answer being made */
            if (c->req)
                c->req->keep_alive = false;
            open++;
        }
        c = next;
    }
    return open;
}

void http_server_stop(http_server_t *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    while (s->conns)
        conn_close(s->conns);
    if (s->access_log.len)
        hp_log_write(s->access_log.data, s->access_log.len);
    hp_strbuf_reset(&s->access_log);
    if (!s->draining)
        uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    if (s->flush_started)
        uv_close((uv_handle_t *)&s->log_flush, on_server_handle_closed);
}
