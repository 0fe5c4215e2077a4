/*
 * Job events for clients: the SSE stream GET /v1/events and the long poll
 * GET /v1/jobs/{id}?wait=.
 *
 * One subscriber thread per server process holds a broker subscription, and only
 * while someone listens (a subscriber costs Redis a write per event). It hands
 * each event to every loop; a loop passes it to its SSE clients and wakes its
 * long polls. Pub/sub is best effort, so a long poll also looks again every
 * second: an event missed while subscribing delays the answer, never loses it.
 *
 * When the subscription fails (Redis unreachable) every SSE client is told with an
 * event of its own, "stream" {"state":"interrupted"}, and again with "resumed" once
 * it is back: events published in between are gone, so a client re-reads the
 * state it shows. A client connecting during the outage hears "interrupted" first.
 *
 * With ?coalesce=<duration> a client gets no message per job event but a
 * "summary" at most that often (see summary.c); stream events still go at once.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "api/summary.h"

#define SSE_MAX_QUEUED   (1 << 20) /* a client this far behind is dropped */
#define SSE_KEEPALIVE_MS 15000
#define WAIT_RECHECK_MS  1000
#define COALESCE_MIN_MS  100
#define COALESCE_MAX_MS  10000

struct sse_client_s {
    api_req_t *ar;
    char queue[JOB_QUEUE_NAME_MAX + 1]; /* "" : every queue the token may see */
    uint64_t seq;
    api_summary_t *summary; /* ?coalesce=: events fold in here... */
    int64_t coalesce_ms;
    int64_t next_summary_ms; /* ...and go out as one message from then on (monotonic) */
    sse_client_t *next;
};

/* What GET /v1/events asked for, from prepare to finish. */
typedef struct events_opts_s {
    int64_t coalesce_ms;
} events_opts_t;

/* A job event's fields, read once per loop. */
typedef struct event_fields_s {
    const char *event, *queue, *id, *state;
    int64_t at;
} event_fields_t;

struct job_waiter_s {
    api_req_t *ar;
    uv_timer_t timer;
    int64_t deadline_ms;
    job_waiter_t *next;
    bool closing;
};

static bool sse_send_one(sse_client_t *c, const char *json, const char *event);

/* ---- Listener count: the subscriber runs only while it is above zero ---- */

static void listeners_add(api_server_t *s, int delta)
{
    pthread_mutex_lock(&s->listeners_lock);
    atomic_fetch_add(&s->listeners, delta);
    pthread_cond_broadcast(&s->listeners_cond);
    pthread_mutex_unlock(&s->listeners_lock);
}

/* ---- The subscriber thread ---- */

static void hand_to_loops(api_server_t *s, const char *json)
{
    for (int i = 0; i < s->nloops; i++) {
        api_loop_t *l = &s->loops[i];
        pthread_mutex_lock(&l->events_lock);
        if (l->nevents < 100000) { /* a stalled loop must not grow without bound */
            if (l->nevents == l->events_cap) {
                l->events_cap = l->events_cap ? l->events_cap * 2 : 64;
                l->events = hp_realloc(l->events, l->events_cap * sizeof(*l->events));
            }
            l->events[l->nevents++] = hp_strdup(json);
        }
        pthread_mutex_unlock(&l->events_lock);
        uv_async_send(&l->wake);
    }
}

/* The subscription's health changed: tell every SSE client (a "stream" event). */
static void set_interrupted(api_server_t *s, bool interrupted)
{
    if (atomic_exchange(&s->events_interrupted, interrupted) == interrupted)
        return;
    char json[96];
    snprintf(json, sizeof(json), "{\"event\":\"stream\",\"state\":\"%s\",\"at\":%lld}",
             interrupted ? "interrupted" : "resumed", (long long)hp_now_ms());
    hand_to_loops(s, json);
}

static void events_main(void *arg)
{
    api_server_t *s = arg;
    broker_t *b = NULL;
    broker_config_t bc = {.url = s->cfg.redis_url};
    while (!atomic_load(&s->stopping)) {
        pthread_mutex_lock(&s->listeners_lock);
        while (atomic_load(&s->listeners) == 0 && !atomic_load(&s->stopping)) {
            if (b) { /* nobody listens: drop the subscription */
                broker_close(b);
                b = NULL;
            }
            pthread_cond_wait(&s->listeners_cond, &s->listeners_lock);
        }
        pthread_mutex_unlock(&s->listeners_lock);
        if (atomic_load(&s->stopping))
            break;
        if (!b) {
            char *msg = NULL;
            if (broker_open(&bc, &b, &msg) != 0) {
                hp_free(msg);
                set_interrupted(s, true);
                hp_sleep_ms(500);
                continue;
            }
        }
        char *json = NULL;
        int rc = broker_events_next(b, 250, &json);
        set_interrupted(s, rc < 0);
        if (rc == 1) {
            hand_to_loops(s, json);
            hp_free(json);
        } else if (rc < 0) {
            hp_sleep_ms(250);
        }
    }
    if (b)
        broker_close(b);
}

void api_events_start(api_server_t *s)
{
    pthread_mutex_init(&s->listeners_lock, NULL);
    pthread_cond_init(&s->listeners_cond, NULL);
    uv_thread_create(&s->events_thread, events_main, s);
}

void api_events_stop(api_server_t *s)
{
    pthread_mutex_lock(&s->listeners_lock);
    atomic_store(&s->stopping, true);
    pthread_cond_broadcast(&s->listeners_cond);
    pthread_mutex_unlock(&s->listeners_lock);
    uv_thread_join(&s->events_thread);
    pthread_mutex_destroy(&s->listeners_lock);
    pthread_cond_destroy(&s->listeners_cond);
}

/* ---- Long polls ---- */

static void waiter_closed(uv_handle_t *h)
{
    hp_free(h->data);
}

/* Takes the waiter out of its loop's list; it is freed once its timer closes. */
static void waiter_remove(job_waiter_t *w)
{
    api_loop_t *l = w->ar->loop;
    for (job_waiter_t **p = &l->waiters; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    listeners_add(l->server, -1);
    w->closing = true;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

/* Looks at the job again: answers if it finished or the wait is over, else
 * waits again (finish_get in routes.c). */
static void waiter_fire(job_waiter_t *w)
{
    api_req_t *ar = w->ar;
    int64_t left = w->deadline_ms - hp_mono_ms();
    waiter_remove(w);
    ar->http->app = NULL; /* with the executor now: the answer frees it */
    ar->abandon = NULL;
    hp_free(ar->body);
    ar->body = NULL;
    ar->status = 0;
    ar->verify_bearer = false; /* checked on the first look */
    api_wait_again(ar, left > 0 ? left : 0);
    api_submit(ar);
}

static void on_waiter_timer(uv_timer_t *t)
{
    waiter_fire(t->data);
}

static void waiter_abandon(api_req_t *ar)
{
    api_loop_t *l = ar->loop;
    for (job_waiter_t *w = l->waiters; w; w = w->next) {
        if (w->ar == ar) {
            waiter_remove(w);
            break;
        }
    }
    api_problem(ar, 499, "client went away");
}

void api_wait_for_job(api_req_t *ar, int64_t wait_ms)
{
    api_loop_t *l = ar->loop;
    if (!ar->http->conn) { /* gone while the job was looked at: nothing to wait for */
        api_problem(ar, 499, "client went away");
        return;
    }
    job_waiter_t *w = hp_calloc(1, sizeof(*w));
    w->ar = ar;
    w->deadline_ms = hp_mono_ms() + wait_ms;
    uv_timer_init(&l->loop, &w->timer);
    w->timer.data = w;
    uint64_t first = (uint64_t)(wait_ms < WAIT_RECHECK_MS ? wait_ms : WAIT_RECHECK_MS);
    uv_timer_start(&w->timer, on_waiter_timer, first, 0);
    w->next = l->waiters;
    l->waiters = w;
    ar->abandon = waiter_abandon;
    ar->http->app = ar;
    listeners_add(l->server, 1);
}

/* ---- SSE ---- */

static void sse_remove(api_loop_t *l, sse_client_t *c)
{
    for (sse_client_t **p = &l->sse; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    listeners_add(l->server, -1);
}

static void sse_end(api_loop_t *l, sse_client_t *c)
{
    sse_remove(l, c);
    api_req_t *ar = c->ar;
    http_req_t *req = ar->http;
    req->data = NULL;
    http_stream_end(req);
    api_req_free(ar);
    api_summary_free(c->summary);
    hp_free(c);
}

static void sse_abandon(api_req_t *ar)
{
    api_loop_t *l = ar->loop;
    for (sse_client_t *c = l->sse; c; c = c->next) {
        if (c->ar == ar) {
            sse_end(l, c);
            return;
        }
    }
}

/* Whether the query names parameter `name` at all, even with a value api_query
 * refuses (too long, malformed): such a value must get a 400, not be ignored. */
static bool query_names(const char *query, const char *name)
{
    size_t n = strlen(name);
    const char *p = query;
    while (p && *p) {
        if (strncmp(p, name, n) == 0 && p[n] == '=')
            return true;
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return false;
}

bool api_events_prepare(api_req_t *ar)
{
    const char *q = ar->http->query;
    char queue[JOB_QUEUE_NAME_MAX + 8] = "";
    bool given = api_query(ar, "queue", queue, sizeof(queue));
    if ((given && queue[0]) || (!given && query_names(q, "queue"))) {
        if (!given || !job_queue_name_valid(queue)) {
            api_problem(ar, 400, "queue: 1-64 characters of A-Z a-z 0-9 . _ -");
            return false;
        }
        memcpy(ar->queue, queue, strlen(queue) + 1); /* valid: at most 64 */
    }
    char coalesce[32];
    given = api_query(ar, "coalesce", coalesce, sizeof(coalesce));
    if (given || query_names(q, "coalesce")) {
        int64_t ms = -1;
        if (!given || hp_parse_duration_ms(coalesce, &ms) != 0 || ms < COALESCE_MIN_MS ||
            ms > COALESCE_MAX_MS) {
            api_problem(ar, 400, "coalesce: a duration from 100ms to 10s, like 250ms");
            return false;
        }
        events_opts_t *o = hp_calloc(1, sizeof(*o));
        o->coalesce_ms = ms;
        ar->state = o;
        ar->state_free = hp_free;
    }
    return true;
}

void api_events_finish(api_req_t *ar)
{
    api_loop_t *l = ar->loop;
    http_req_t *req = ar->http;
    if (!req->conn) { /* gone while the token was checked */
        req->data = NULL;
        http_respond(req, 499, NULL, NULL, NULL, 0);
        api_req_free(ar);
        return;
    }
    sse_client_t *c = hp_calloc(1, sizeof(*c));
    c->ar = ar;
    snprintf(c->queue, sizeof(c->queue), "%s", ar->queue);
    const events_opts_t *opts = ar->state;
    if (opts && opts->coalesce_ms > 0) {
        c->summary = api_summary_new();
        c->coalesce_ms = opts->coalesce_ms;
    }
    c->next = l->sse;
    l->sse = c;
    ar->abandon = sse_abandon;
    req->app = ar;
    listeners_add(l->server, 1);
    http_stream_begin(req, 200, "text/event-stream", "X-Accel-Buffering: no\r\n");
    static const char hello[] = "retry: 2000\n: connected\n\n";
    http_stream_write(req, hello, sizeof(hello) - 1, SSE_MAX_QUEUED);
    if (atomic_load(&l->server->events_interrupted)) {
        char json[96];
        snprintf(json, sizeof(json), "{\"event\":\"stream\",\"state\":\"interrupted\",\"at\":%lld}",
                 (long long)hp_now_ms());
        sse_send_one(c, json, "stream");
    }
}

/* Writes one event to one client; false when the client is too far behind. */
static bool sse_send_one(sse_client_t *c, const char *json, const char *event)
{
    char head[96];
    int n = snprintf(head, sizeof(head),
                     "id: %llu\nevent: %.32s\ndata: ", (unsigned long long)++c->seq, event);
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_append(&sb, head, (size_t)n);
    hp_strbuf_appends(&sb, json);
    hp_strbuf_appends(&sb, "\n\n");
    bool ok = http_stream_write(c->ar->http, sb.data, sb.len, SSE_MAX_QUEUED);
    hp_strbuf_cleanup(&sb);
    return ok;
}

/* A job event to the clients that may see its queue (folded into the summary of
 * those that coalesce); queue NULL: a stream event, to every client at once. */
static void sse_send(api_loop_t *l, const char *json, const event_fields_t *f)
{
    sse_client_t *c = l->sse;
    while (c) {
        sse_client_t *next = c->next;
        bool wanted = !f->queue || ((!c->queue[0] || strcmp(c->queue, f->queue) == 0) &&
                                    api_queue_allowed(c->ar, f->queue));
        if (wanted && f->queue && c->summary)
            api_summary_add(c->summary, f->event, f->queue, f->id, f->state, f->at);
        else if (wanted && !sse_send_one(c, json, f->event))
            sse_end(l, c);
        c = next;
    }
}

/* Each coalescing client's summary, when it has one and its interval is over. */
static void sse_send_summaries(api_loop_t *l, int64_t now)
{
    sse_client_t *c = l->sse;
    while (c) {
        sse_client_t *next = c->next;
        if (c->summary && !api_summary_empty(c->summary) && now >= c->next_summary_ms) {
            char *json = api_summary_take(c->summary);
            c->next_summary_ms = now + c->coalesce_ms;
            bool ok = sse_send_one(c, json, "summary");
            hp_free(json);
            if (!ok)
                sse_end(l, c);
        }
        c = next;
    }
}

static void sse_keepalive(api_loop_t *l)
{
    static const char ping[] = ": keep-alive\n\n";
    sse_client_t *c = l->sse;
    while (c) {
        sse_client_t *next = c->next;
        if (!http_stream_write(c->ar->http, ping, sizeof(ping) - 1, SSE_MAX_QUEUED))
            sse_end(l, c);
        c = next;
    }
}

/* ---- On a loop: what the subscriber handed over ---- */

static void wake_waiters(api_loop_t *l, const char *id)
{
    job_waiter_t *w = l->waiters;
    while (w) {
        job_waiter_t *next = w->next;
        if (strcmp(w->ar->params[0], id) == 0)
            waiter_fire(w);
        w = next;
    }
}

void api_events_deliver(api_loop_t *l)
{
    pthread_mutex_lock(&l->events_lock);
    char **events = l->events;
    size_t n = l->nevents;
    l->events = NULL;
    l->nevents = l->events_cap = 0;
    pthread_mutex_unlock(&l->events_lock);
    for (size_t i = 0; i < n; i++) {
        if (!l->sse && !l->waiters) { /* listeners are on another loop: nothing to parse */
            hp_free(events[i]);
            continue;
        }
        json_t *doc = json_loads(events[i], 0, NULL);
        event_fields_t f = {
            .event = json_string_value(json_object_get(doc, "event")),
            .queue = json_string_value(json_object_get(doc, "queue")),
            .id = json_string_value(json_object_get(doc, "id")),
            .state = json_string_value(json_object_get(doc, "state")),
            .at = (int64_t)json_number_value(json_object_get(doc, "at")),
        };
        bool stream = f.event && strcmp(f.event, "stream") == 0;
        if (f.event && (f.queue || stream) && l->sse)
            sse_send(l, events[i], &f);
        if (f.id && l->waiters)
            wake_waiters(l, f.id);
        json_decref(doc);
        hp_free(events[i]);
    }
    hp_free(events);
    int64_t now = hp_mono_ms();
    sse_send_summaries(l, now);
    static _Thread_local int64_t last_ping;
    if (now - last_ping >= SSE_KEEPALIVE_MS) {
        last_ping = now;
        sse_keepalive(l);
    }
}

void api_events_close_loop(api_loop_t *l)
{
    while (l->sse)
        sse_end(l, l->sse);
    while (l->waiters) {
        job_waiter_t *w = l->waiters;
        api_req_t *ar = w->ar;
        waiter_remove(w);
        api_problem(ar, 503, "the server is stopping");
    }
    pthread_mutex_lock(&l->events_lock);
    for (size_t i = 0; i < l->nevents; i++)
        hp_free(l->events[i]);
    hp_free(l->events);
    l->events = NULL;
    l->nevents = l->events_cap = 0;
    pthread_mutex_unlock(&l->events_lock);
}
