/*
 * api/http.h -- HTTP/1.1 on one libuv loop, parsed by llhttp (Node's parser).
 *
 * The layer owns connections and the protocol: limits (header section, body,
 * connections), timeouts (headers, body, keep-alive idle), keep-alive, pipelined
 * requests answered in order (one request at a time per connection: parsing pauses
 * until the answer is written), chunked request bodies, Expect: 100-continue,
 * streamed responses (SSE) and the per-request log line. It knows nothing about
 * routes or jobs: the application sees whole requests through two callbacks and
 * answers each exactly once, at once or later (after a broker call).
 */
#ifndef HP_API_HTTP_H
#define HP_API_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct http_server_s http_server_t;
typedef struct http_conn_s http_conn_t;

typedef struct http_header_s {
    char *name; /* lower-cased */
    char *value;
} http_header_t;

typedef enum {
    HTTP_BODY_BUFFER, /* collect the body (up to the server's max_body) into req->body */
    HTTP_BODY_STREAM, /* hand each chunk to req->on_body as it arrives */
} http_body_mode_t;

typedef struct http_req_s http_req_t;
struct http_req_s {
    http_conn_t *conn;
    const char *method; /* "GET", ... */
    char *path;         /* the target up to '?', not decoded */
    char *query;        /* after '?', not decoded; "" when none */
    http_header_t *headers;
    size_t nheaders;
    char *body; /* buffered mode: NUL-terminated */
    size_t body_len;
    int64_t content_length; /* -1: none (chunked or no body) */
    char request_id[64];
    const char *route; /* set by the application, for the log line and metrics */
    int64_t start_us;
    /* Streaming mode: called per chunk; a non-zero return stops reading the body
     * (the application then answers, and the connection closes). */
    int (*on_body)(http_req_t *req, const char *data, size_t len);
    void *data; /* the application's, untouched by the layer */
    void *app;  /* set when the application holds state needing on_abandon, or NULL */
    void (*on_drain)(http_req_t *req);
    size_t drain_low;
    /* The answer brings its own Content-Security-Policy and Cache-Control: the
     * app's policy_headers are left out (the dashboard's pages). */
    bool own_policy;
    int error_status; /* see on_abandon */
    char error_detail[160];
    /* private to http.c */
    http_server_t *server;
    http_body_mode_t mode;
    int64_t max_body;
    bool answered, streaming, keep_alive, expect_continue, has_body, complete, dispatched;
};

typedef struct http_app_s {
    /* After the headers: pick the body mode (default: buffer up to max_body) and
     * optionally answer at once (e.g. 401, 404); the body is then not read. */
    void (*on_headers)(http_req_t *req, void *ctx);
    /* The whole request is in: answer it now or later, exactly once. */
    void (*on_request)(http_req_t *req, void *ctx);
    /* A request whose req->app the application set (its own state: an upload in
     * progress, an event stream, a long poll) ends early: the client went away
     * (req->conn is then NULL), or the body broke a limit or stalled
     * (req->error_status and req->error_detail say how). The application releases
     * its state and answers once as usual: an answer to a gone client only frees,
     * and one to a live client should pass on error_status/error_detail. */
    void (*on_abandon)(http_req_t *req, void *ctx);
    /* A request whose req->data is still set is being freed by this layer (it
     * answered it itself: a limit, a timeout, a malformed request, or the client
     * left before the application had it): release what req->data holds. */
    void (*on_free)(http_req_t *req, void *ctx);
    void *ctx;
    /* Security and other headers added to every response ("Name: value\r\n"...). */
    const char *common_headers;
    /* Added to every response whose request has no own_policy: the API's CSP and
     * caching rules. */
    const char *policy_headers;
} http_app_t;

typedef struct http_limits_s {
    size_t max_header_bytes;  /* request line and headers; 431 past it */
    int64_t max_body;         /* 413 past it (buffered mode) */
    int header_timeout_ms;    /* from the first byte (or accept) to the end of headers: 408 */
    int body_timeout_ms;      /* between body chunks: 408 */
    int keepalive_timeout_ms; /* idle between requests: closed quietly */
    int max_connections;      /* per server process, across loops: 503 and close */
    int max_pipelined_bytes;  /* read-ahead kept while a request is being answered */
} http_limits_t;

/* Starts listening on `fd` (a bound, listening socket) on `loop`.
 * `active_conns` is shared by every loop of the process (max_connections). */
http_server_t *http_server_start(uv_loop_t *loop, int fd, const http_limits_t *limits,
                                 const http_app_t *app, int *active_conns, char *err,
                                 size_t errlen);
/* Stops accepting; idle connections close now, busy ones after their answer
 * (streams are the application's to end). Returns the connections still open. */
int http_server_drain(http_server_t *s);
/* Closes every connection (unanswered requests are abandoned) and the server,
 * which frees itself once the loop has run its close callbacks. */
void http_server_stop(http_server_t *s);

/* The value of a header (name lower-case), or NULL. */
const char *http_header(const http_req_t *req, const char *name);

/*
 * Answers the request. `headers` are extra "Name: value\r\n" lines or NULL; the
 * layer adds Content-Length, Content-Type (when given), Connection, X-Request-Id
 * and the app's common headers. The body is copied. After this `req` is gone.
 */
void http_respond(http_req_t *req, int status, const char *content_type, const char *headers,
                  const char *body, size_t len);
/* An application/problem+json body, {"type","title","status","detail"}; hp_free it. */
char *http_problem_json(int status, const char *detail, size_t *len);
/* An application/problem+json answer with that body. */
void http_problem(http_req_t *req, int status, const char *headers, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Streamed answers (Server-Sent Events): begin sends the head with no length;
 * writes go out as they come; end finishes and closes. http_stream_write returns
 * false when the client is gone or too far behind (more than `max_queued` bytes
 * unsent): the caller should then end the stream. */
void http_stream_begin(http_req_t *req, int status, const char *content_type, const char *headers);
bool http_stream_write(http_req_t *req, const char *data, size_t len, size_t max_queued);
void http_stream_end(http_req_t *req);
/* Calls cb once the unsent bytes of a stream fall below `low` (now, if they are). */
void http_stream_on_drain(http_req_t *req, size_t low, void (*cb)(http_req_t *req));

/* The peer's address as text, for logs and the audit trail. */
void http_peer(const http_req_t *req, char *out, size_t len);

#endif
