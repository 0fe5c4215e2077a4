/*
 * api/internal.h -- what the HTTP API's own files share: the server and its loops, a
 * request as the application sees it, and the route table. cli/ starts a server
 * through api/api.h (the door); nothing outside api/ includes this file.
 *
 * A request's way through (all on its loop's thread except `run`):
 *   http.c on_headers -> route match (404, 405 + Allow), auth header present (401),
 *     token known from this loop's cache (403 at once)
 *   http.c on_request -> route->prepare parses and checks the input (400/422)
 *   -> exec: [verify token] [scope check] [rate limit] route->run(broker)   (thread)
 *   -> route->finish or the generic answer: JSON or problem+json.
 * Routes without broker work (healthz, openapi.json, events) answer in prepare.
 */
#ifndef HP_API_INTERNAL_H
#define HP_API_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "api/exec.h"
#include "api/http.h"
#include "api/api.h"
#include "broker/broker.h"
#include "common/common.h"

typedef struct api_server_s api_server_t;
typedef struct api_loop_s api_loop_t;
typedef struct api_req_s api_req_t;
typedef struct route_s route_t;

typedef enum {
    ACCESS_PUBLIC, /* no token needed */
    ACCESS_READ,   /* read or admin; submit too when the route's queue is allowed */
    ACCESS_SUBMIT, /* submit or admin, on an allowed queue */
    ACCESS_ADMIN,
} access_t;

struct route_s {
    const char *method;
    const char *pattern; /* "/v1/jobs/{id}": {x} matches one path segment */
    access_t access;
    bool stream_body; /* the body goes to route->on_body, not to memory */
    bool audit;       /* an admin action: recorded in the audit log (session.c) */
    /* On the loop: check input; answer (and return false) or return true to go on. */
    bool (*prepare)(api_req_t *ar);
    /* On an executor thread: the broker work; sets ar->status and ar->body. */
    void (*run)(api_req_t *ar, broker_t *b);
    /* On the loop, after run: answer (NULL: the generic JSON answer). */
    void (*finish)(api_req_t *ar);
    int (*on_body)(http_req_t *req, const char *data, size_t len);
    /* Optional, on an executor thread: run for many requests of this route at once
     * (each as run would), so they share one round trip. */
    void (*batch)(api_req_t **reqs, size_t n, broker_t *b);
};

#define API_MAX_PARAMS 2
#define API_PARAM_MAX  256 /* the longest: a worker id or schedule name, 128 */

struct api_req_s {
    exec_task_t task; /* first: the executor hands it back */
    http_req_t *http;
    api_loop_t *loop;
    const route_t *route;
    char params[API_MAX_PARAMS][API_PARAM_MAX]; /* path parameters, decoded */
    /* auth */
    char bearer[TOKEN_MAX];
    bool has_bearer, verify_bearer, authorized;
    token_info_t token;
    /* or a dashboard session (cookie), with the CSRF token the request sent */
    char session_id[SESSION_ID_LEN + 1];
    char csrf[SESSION_CSRF_LEN + 1];
    bool has_session, verify_session, via_session, secure;
    char queue[JOB_QUEUE_NAME_MAX + 1]; /* the queue the request is about, or "" */
    /* for the audit log, copied on the loop (audited routes only) */
    char ip[SESSION_IP_MAX];
    char forwarded_for[128];
    char user_agent[160];
    char request_path[304];
    char request_id[64];
    char method[16];
    /* the answer, made on the executor */
    int status;
    char *body; /* hp_malloc'd */
    size_t body_len;
    char headers[640];
    /* route-specific state */
    job_spec_t spec;
    enqueue_result_t result;
    void *state;
    void (*state_free)(void *state);
    /* Set with http->app: the client went away or the body broke a limit
     * (see http.h on_abandon); it must answer, which frees. NULL: a problem
     * answer with the layer's status. */
    void (*abandon)(api_req_t *ar);
};

/* ---- Per loop ---- */

typedef struct token_cache_entry_s {
    char token[TOKEN_MAX];
    token_info_t info;
    int64_t until_ms;
} token_cache_entry_t;
#define TOKEN_CACHE_SIZE 64
#define TOKEN_CACHE_MS   5000 /* a revoked token may still pass for this long */

typedef struct sse_client_s sse_client_t;
typedef struct job_waiter_s job_waiter_t;

struct api_loop_s {
    api_server_t *server;
    uv_loop_t loop;
    uv_thread_t thread;
    http_server_t *http;
    exec_home_t *home;
    uv_async_t wake; /* stop, and events from the subscriber */
    token_cache_entry_t tokens[TOKEN_CACHE_SIZE];
    sse_client_t *sse;
    job_waiter_t *waiters;
    int index;
    int listen_fd;
    int64_t drain_until; /* stopping: the monotonic ms when open connections are cut */
    /* events handed over by the subscriber thread */
    pthread_mutex_t events_lock;
    char **events;
    size_t nevents, events_cap;
};

/* ---- The server process ---- */

struct api_server_s {
    api_config_t cfg;
    exec_t *exec;
    api_loop_t *loops;
    int nloops;
    int active_conns;
    _Atomic bool auth_required;
    char admin_token_hash[65]; /* SHA-256 hex of HOPPER_ADMIN_TOKEN, or "" */
    char common_headers[1024];
    char policy_headers[256];
    _Atomic bool stopping;
    /* event subscriber */
    uv_thread_t events_thread;
    _Atomic int listeners;           /* SSE clients and long polls, across loops */
    _Atomic bool events_interrupted; /* the event subscription failed and is not back yet */
    pthread_mutex_t listeners_lock;
    pthread_cond_t listeners_cond;
    struct blobstore_s *blobs;
    struct sched_s *sched; /* the firing loop, or NULL */
};

/* ---- routes.c ---- */
extern const route_t api_routes[];
extern const size_t api_nroutes;
/* Finds the route; *allowed gets the methods the path does allow (for 405). */
const route_t *api_route_match(const char *method, const char *path, api_req_t *ar, char *allowed,
                               size_t allowed_len);

/* ---- app.c: answering ---- */
/* Answers with this body (copied) and ar->headers; frees ar. */
void api_answer(api_req_t *ar, int status, const char *type, const char *body, size_t len);
void api_json(api_req_t *ar, int status, const char *json, size_t len);
void api_problem(api_req_t *ar, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* On the executor: set the answer to a problem / to a JSON body (taken). */
void api_set_problem(api_req_t *ar, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void api_set_json(api_req_t *ar, int status, char *json, size_t len);
/* A page of a listing: sb holds `{"<items>":[...` with its items; this closes the
 * array, adds "next_cursor" (null for the last page) and answers 200 with it. */
void api_set_json_page(api_req_t *ar, hp_strbuf_t *sb, const char *next_cursor);
/* An HP_E* code from the broker as an HTTP status and problem. */
void api_set_broker_error(api_req_t *ar, broker_t *b, int err);
int api_status_for(int err);
/* The SHA-256 of a string, as hex. */
void api_sha256_hex(const char *text, char out[65]);
/* Whether `token` is the server's HOPPER_ADMIN_TOKEN; then *info names it. */
bool api_admin_token(const api_server_t *s, const char *token, token_info_t *info);
/* Whether the request's token may use `queue` (every queue when auth is off). */
bool api_queue_allowed(const api_req_t *ar, const char *queue);
/* Whether the request's token is limited to some queues (its --queues patterns):
 * listings then show only those queues, and what covers every queue is refused. */
bool api_token_limited(const api_req_t *ar);
/* For a limited token: answers 403 (what covers every queue needs a token for every
 * queue) and returns true. */
bool api_refuse_limited(api_req_t *ar, const char *what);
/* Sends the request to the executor (run, then finish or the generic answer). */
void api_submit(api_req_t *ar);
/* A query parameter, decoded into out; false when absent. */
bool api_query(const api_req_t *ar, const char *name, char *out, size_t len);
void api_req_free(api_req_t *ar);
bool api_decode(const char *src, size_t n, char *out, size_t len, bool plus_is_space);
http_app_t api_http_app(api_loop_t *l);

/* ---- events.c ---- */
void api_events_start(api_server_t *s);
void api_events_stop(api_server_t *s);
void api_events_deliver(api_loop_t *l); /* on the loop: hand out what arrived */
void api_events_close_loop(api_loop_t *l);
bool api_events_prepare(api_req_t *ar);
void api_events_finish(api_req_t *ar);

/* ---- schedules.c ---- */
bool api_schedule_prepare_name(api_req_t *ar);
bool api_schedule_prepare_put(api_req_t *ar);
void api_schedule_run_list(api_req_t *ar, broker_t *b);
void api_schedule_run_get(api_req_t *ar, broker_t *b);
void api_schedule_run_put(api_req_t *ar, broker_t *b);
void api_schedule_run_delete(api_req_t *ar, broker_t *b);
void api_schedule_run_pause(api_req_t *ar, broker_t *b);
void api_schedule_run_trigger(api_req_t *ar, broker_t *b);

/* ---- session.c ---- */
/* Reads the session cookie and the X-CSRF-Token sent with it into ar; whether
 * there is a cookie. */
bool api_session_read(api_req_t *ar);
/* On the executor: the live session of ar->session_id (HP_ENOTFOUND: none). */
int api_session_check(api_req_t *ar, broker_t *b, session_t *s);
bool api_session_prepare(api_req_t *ar);
bool api_session_prepare_login(api_req_t *ar);
void api_session_run_login(api_req_t *ar, broker_t *b);
void api_session_run_get(api_req_t *ar, broker_t *b);
void api_session_run_logout(api_req_t *ar, broker_t *b);
/* On the loop: who and where, for the audit entry; on the executor: write it. */
void api_audit_capture(api_req_t *ar);
void api_audit_record(api_req_t *ar, broker_t *b);
bool api_audit_prepare_list(api_req_t *ar);
void api_audit_run_list(api_req_t *ar, broker_t *b);

/* ---- dashboard.c ---- */
bool api_dashboard_prepare_root(api_req_t *ar);
bool api_dashboard_prepare_file(api_req_t *ar);
/* ---- workers.c ---- */
bool api_workers_prepare_id(api_req_t *ar);
bool api_workers_prepare_get(api_req_t *ar);
void api_workers_run_list(api_req_t *ar, broker_t *b);
void api_workers_run_get(api_req_t *ar, broker_t *b);
void api_workers_run_command(api_req_t *ar, broker_t *b);

/* ---- blobs.c ---- */
bool api_blob_prepare(api_req_t *ar);
int api_blob_on_body(http_req_t *req, const char *data, size_t len);
void api_blob_run_upload(api_req_t *ar, broker_t *b);
void api_blob_finish_upload(api_req_t *ar);
bool api_blob_prepare_get(api_req_t *ar);
void api_blob_finish_get(api_req_t *ar);
/* Parks a GET /v1/jobs/{id}?wait= until the job changes or the wait ends. */
void api_wait_for_job(api_req_t *ar, int64_t wait_ms);
/* routes.c: how long the next look at a waited-for job may wait again. */
void api_wait_again(api_req_t *ar, int64_t wait_ms);

#endif
