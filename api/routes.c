/*
 * The route table and the handlers of /v1: jobs, queues, health, metrics and the
 * OpenAPI document. Blobs live in blobs.c, events in events.c, workers in
 * workers.c, schedules in schedules.c.
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "api/metrics.h"
#include "api/metrics_http.h"

extern const char api_openapi[];

/* ---- Matching ---- */

/* Matches one pattern; path parameters are decoded into ar->params. */
static bool match(const char *pattern, const char *path, api_req_t *ar)
{
    int np = 0;
    while (*pattern && *path) {
        if (*pattern == '{') {
            const char *close = strchr(pattern, '}');
            const char *end = strchr(path, '/');
            size_t n = end ? (size_t)(end - path) : strlen(path);
            /* {path} at the end takes the rest, slashes and all (dashboard files) */
            if (strcmp(pattern, "{path}") == 0)
                n = strlen(path);
            if (n == 0 || np == API_MAX_PARAMS)
                return false;
            if (ar && !api_decode(path, n, ar->params[np], API_PARAM_MAX, false))
                return false;
            np++;
            pattern = close + 1;
            path += n;
            continue;
        }
        if (*pattern++ != *path++)
            return false;
    }
    return *pattern == '\0' && *path == '\0';
}

const route_t *api_route_match(const char *method, const char *path, api_req_t *ar, char *allowed,
                               size_t allowed_len)
{
    allowed[0] = '\0';
    bool head = strcmp(method, "HEAD") == 0;
    for (size_t i = 0; i < api_nroutes; i++) {
        const route_t *r = &api_routes[i];
        if (!match(r->pattern, path, NULL))
            continue;
        if (strcmp(r->method, method) == 0 || (head && strcmp(r->method, "GET") == 0)) {
            match(r->pattern, path, ar);
            return r;
        }
        size_t used = strlen(allowed);
        if (!strstr(allowed, r->method))
            snprintf(allowed + used, allowed_len - used, "%s%s%s", used ? ", " : "", r->method,
                     strcmp(r->method, "GET") == 0 ? ", HEAD" : "");
    }
    return NULL;
}

/* ---- Helpers ---- */

static char *json_text(json_t *v, size_t *len)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char *copy = hp_strdup(text);
    free(text);
    if (len)
        *len = strlen(copy);
    return copy;
}

static void set_json_value(api_req_t *ar, int status, json_t *v)
{
    size_t len;
    char *text = json_text(v, &len);
    json_decref(v);
    api_set_json(ar, status, text, len);
}

/* A job id in the path: its queue, for the scope check; 404 when malformed. */
static bool prepare_job_id(api_req_t *ar)
{
    char ulid[HP_ULID_LEN + 1];
    if (!job_id_parse(ar->params[0], ulid, ar->queue)) {
        api_problem(ar, 404, "no job %s: not a job id (expected <ULID>-<queue>)", ar->params[0]);
        return false;
    }
    return true;
}

static bool prepare_queue_param(api_req_t *ar)
{
    if (!job_queue_name_valid(ar->params[0])) {
        api_problem(ar, 404, "no queue %s: a queue name is 1-64 characters of A-Z a-z 0-9 . _ -",
                    ar->params[0]);
        return false;
    }
    memcpy(ar->queue, ar->params[0], strlen(ar->params[0]) + 1); /* valid: <= 64 */
    return true;
}

static bool prepare_nothing(api_req_t *ar)
{
    (void)ar;
    return true;
}

/* A query parameter: 1 with its decoded value in out, 0 when absent, -1 when it
 * is given but does not decode or needs more than len - 1 bytes. */
static int query_text(const api_req_t *ar, const char *name, char *out, size_t len)
{
    if (api_query(ar, name, out, len))
        return 1;
    out[0] = '\0';
    size_t nlen = strlen(name);
    for (const char *q = ar->http->query; *q;) {
        size_t n = strcspn(q, "&");
        if (n >= nlen && strncmp(q, name, nlen) == 0 && (n == nlen || q[nlen] == '='))
            return -1;
        q += n + (q[n] == '&');
    }
    return 0;
}

/* A body of only white space (or none) is no body. */
static bool body_empty(const http_req_t *h)
{
    for (size_t i = 0; i < h->body_len; i++)
        if (!strchr(" \t\r\n", h->body[i]))
            return false;
    return true;
}

/* ---- Jobs: enqueue ---- */

typedef struct enqueue_state_s {
    job_spec_json_t one;
    job_spec_json_t *many;
    size_t n;
    enqueue_result_t *results;
} enqueue_state_t;

static void enqueue_state_free(void *p)
{
    enqueue_state_t *st = p;
    if (!st)
        return;
    job_spec_json_cleanup(&st->one);
    for (size_t i = 0; i < st->n; i++)
        job_spec_json_cleanup(&st->many[i]);
    hp_free(st->many);
    hp_free(st->results);
    hp_free(st);
}

static bool json_body_ok(api_req_t *ar)
{
    const char *ct = http_header(ar->http, "content-type");
    if (ct && strncasecmp(ct, "application/json", 16) != 0 && !strstr(ct, "+json")) {
        api_problem(ar, 415,
                    "Content-Type must be application/json, got %s (with curl: -H "
                    "'Content-Type: application/json')",
                    ct);
        return false;
    }
    return true;
}

static bool prepare_enqueue(api_req_t *ar)
{
    if (!json_body_ok(ar))
        return false;
    enqueue_state_t *st = hp_calloc(1, sizeof(*st));
    ar->state = st;
    ar->state_free = enqueue_state_free;
    char err[512];
    http_req_t *h = ar->http;
    if (job_spec_from_json(h->body, h->body_len, &st->one, err, sizeof(err)) != 0) {
        api_problem(ar, 400, "%s", err);
        return false;
    }
    const char *key = http_header(h, "idempotency-key");
    if (key) {
        if (!key[0] || strlen(key) > 200) {
            api_problem(ar, 400, "Idempotency-Key: 1 to 200 characters");
            return false;
        }
        job_spec_set_idempotency(&st->one, ar->has_bearer ? ar->bearer : "", key, h->body,
                                 h->body_len);
    }
    ar->spec = st->one.spec;
    snprintf(ar->queue, sizeof(ar->queue), "%s", ar->spec.queue);
    return true;
}

static void run_enqueue(api_req_t *ar, broker_t *b)
{
    broker_enqueue(b, &ar->spec, 1, &ar->result);
}

/* Many single enqueues as one broker_enqueue: one round trip. */
static void batch_enqueue(api_req_t **reqs, size_t n, broker_t *b)
{
    job_spec_t *specs = hp_malloc(n * sizeof(*specs));
    enqueue_result_t *results = hp_calloc(n, sizeof(*results));
    for (size_t i = 0; i < n; i++)
        specs[i] = reqs[i]->spec;
    broker_enqueue(b, specs, n, results);
    for (size_t i = 0; i < n; i++)
        reqs[i]->result = results[i];
    hp_free(specs);
    hp_free(results);
}

static void result_json(json_t *o, const enqueue_result_t *r)
{
    json_object_set_new(o, "id", json_string(r->id));
    json_object_set_new(o, "state", json_string(job_state_name(r->state)));
    json_object_set_new(o, "duplicate", json_boolean(r->duplicate));
}

static void finish_enqueue(api_req_t *ar)
{
    enqueue_result_t *r = &ar->result;
    if (r->err) {
        if (r->err == HP_EUNAVAIL || r->err == HP_EFULL)
            snprintf(ar->headers, sizeof(ar->headers), "Retry-After: 1\r\n");
        api_problem(ar, r->idempotency_mismatch ? 422 : api_status_for(r->err), "%s", r->errmsg);
        return;
    }
    json_t *o = json_object();
    result_json(o, r);
    json_object_set_new(o, "queue", json_string(ar->spec.queue));
    json_object_set_new(o, "type", json_string(ar->spec.type));
    size_t len;
    char *text = json_text(o, &len);
    json_decref(o);
    snprintf(ar->headers, sizeof(ar->headers), "Location: /v1/jobs/%s\r\n", r->id);
    api_json(ar, r->duplicate ? 200 : 201, text, len);
    hp_free(text);
}

/* ---- Jobs: batch ---- */

/* An item's err when the token may not use its queue: 403, like a single enqueue. */
#define ITEM_FORBIDDEN 1

static bool prepare_batch(api_req_t *ar)
{
    if (!json_body_ok(ar))
        return false;
    char err[512];
    job_spec_json_t *specs = NULL;
    char **errors = NULL;
    size_t n = 0;
    http_req_t *h = ar->http;
    if (job_specs_from_json(h->body, h->body_len, &specs, &errors, &n, err, sizeof(err)) != 0) {
        api_problem(ar, 400, "%s", err);
        return false;
    }
    enqueue_state_t *st = hp_calloc(1, sizeof(*st));
    st->many = specs;
    st->n = n;
    st->results = hp_calloc(n ? n : 1, sizeof(*st->results));
    for (size_t i = 0; i < n; i++) {
        if (errors[i]) {
            st->results[i].err = HP_EINVAL;
            snprintf(st->results[i].errmsg, sizeof(st->results[i].errmsg), "%s", errors[i]);
            hp_free(errors[i]);
        }
    }
    hp_free(errors);
    ar->state = st;
    ar->state_free = enqueue_state_free;
    return true;
}

static void run_batch(api_req_t *ar, broker_t *b)
{
    enqueue_state_t *st = ar->state;
    job_spec_t *specs = hp_calloc(st->n ? st->n : 1, sizeof(*specs));
    size_t *index = hp_calloc(st->n ? st->n : 1, sizeof(*index));
    enqueue_result_t *res = hp_calloc(st->n ? st->n : 1, sizeof(*res));
    size_t m = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (st->results[i].err)
            continue;
        if (!api_queue_allowed(ar, st->many[i].spec.queue)) {
            st->results[i].err = ITEM_FORBIDDEN;
            snprintf(st->results[i].errmsg, sizeof(st->results[i].errmsg),
                     "token %s may not submit to queue %s", ar->token.id, st->many[i].spec.queue);
            continue;
        }
        specs[m] = st->many[i].spec;
        index[m++] = i;
    }
    int err = m ? broker_enqueue(b, specs, m, res) : 0;
    for (size_t k = 0; k < m; k++)
        st->results[index[k]] = res[k];
    hp_free(specs);
    hp_free(index);
    hp_free(res);
    if (err == HP_EUNAVAIL && m == st->n) {
        api_set_broker_error(ar, b, err);
        return;
    }
    json_t *list = json_array();
    size_t ok = 0;
    for (size_t i = 0; i < st->n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "index", json_integer((json_int_t)i));
        const enqueue_result_t *r = &st->results[i];
        if (r->err) {
            int status = r->err == ITEM_FORBIDDEN  ? 403
                         : r->idempotency_mismatch ? 422
                                                   : api_status_for(r->err);
            json_object_set_new(o, "status", json_integer(status));
            json_object_set_new(o, "error", json_string(r->errmsg));
        } else {
            ok++;
            json_object_set_new(o, "status", json_integer(r->duplicate ? 200 : 201));
            result_json(o, r);
        }
        json_array_append_new(list, o);
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "enqueued", json_integer((json_int_t)ok));
    json_object_set_new(doc, "failed", json_integer((json_int_t)(st->n - ok)));
    json_object_set_new(doc, "results", list);
    set_json_value(ar, 200, doc);
}

/* ---- Jobs: one job ---- */

typedef struct get_state_s {
    int64_t wait_ms;
    bool final;
} get_state_t;

static bool prepare_get(api_req_t *ar)
{
    if (!prepare_job_id(ar))
        return false;
    char wait[32];
    if (api_query(ar, "wait", wait, sizeof(wait))) {
        int64_t ms;
        if (hp_parse_duration_ms(wait, &ms) != 0 || ms < 0 || ms > 60000) {
            api_problem(ar, 400, "wait: a duration up to 60s, like 30s or 500ms, got \"%s\"", wait);
            return false;
        }
        get_state_t *st = hp_calloc(1, sizeof(*st));
        st->wait_ms = ms;
        ar->state = st;
        ar->state_free = hp_free;
    }
    return true;
}

static void answer_job(api_req_t *ar, broker_t *b, int err, job_t *job);

static void run_get(api_req_t *ar, broker_t *b)
{
    job_t *job = NULL;
    int err = broker_get(b, ar->params[0], &job);
    answer_job(ar, b, err, job);
    job_free(job);
}

void api_wait_again(api_req_t *ar, int64_t wait_ms)
{
    get_state_t *st = ar->state;
    st->wait_ms = wait_ms;
}

static void answer_job(api_req_t *ar, broker_t *b, int err, job_t *job)
{
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    char *text = job_to_json(job, 0);
    get_state_t *st = ar->state;
    if (st)
        st->final = job->state == JOB_STATE_SUCCEEDED || job->state == JOB_STATE_DEAD ||
                    job->state == JOB_STATE_CANCELED;
    api_set_json(ar, 200, text, strlen(text));
}

/* Many GETs of jobs as one broker_get_many: one round trip. */
static void batch_get(api_req_t **reqs, size_t n, broker_t *b)
{
    const char **ids = hp_malloc(n * sizeof(*ids));
    job_t **jobs = hp_calloc(n, sizeof(*jobs));
    int *errs = hp_calloc(n, sizeof(*errs));
    for (size_t i = 0; i < n; i++)
        ids[i] = reqs[i]->params[0];
    int err = broker_get_many(b, ids, n, jobs, errs);
    for (size_t i = 0; i < n; i++) {
        if (err || errs[i] != HP_ENOTFOUND || jobs[i])
            answer_job(reqs[i], b, err ? err : errs[i], jobs[i]);
        else
            api_set_problem(reqs[i], 404, "job %s not found", ids[i]);
        job_free(jobs[i]);
    }
    hp_free(errs);
    hp_free(jobs);
    hp_free(ids);
}

static void finish_get(api_req_t *ar)
{
    get_state_t *st = ar->state;
    if (st && !st->final && st->wait_ms > 0) {
        int64_t wait = st->wait_ms;
        st->wait_ms = 0; /* the next look answers, whatever it finds */
        api_wait_for_job(ar, wait);
        return;
    }
    api_json(ar, ar->status, ar->body, ar->body_len);
}

/* POST /v1/jobs/{id}/retry takes no body, or {"payload": <any JSON>} to store in
 * place of the job's payload (its bytes as sent). */
static bool prepare_retry(api_req_t *ar)
{
    if (!prepare_job_id(ar))
        return false;
    http_req_t *h = ar->http;
    if (body_empty(h))
        return true;
    if (!json_body_ok(ar))
        return false;
    char err[256], *payload = NULL;
    if (job_payload_from_json(h->body, h->body_len, &payload, err, sizeof(err)) != 0) {
        api_problem(ar, 400, "%s", err);
        return false;
    }
    ar->state = payload;
    ar->state_free = hp_free;
    return true;
}

static void run_job_action(api_req_t *ar, broker_t *b)
{
    const char *id = ar->params[0];
    const char *path = ar->http->path;
    const char *method = ar->http->method;
    job_state_t after = JOB_STATE_WAITING;
    int err;
    if (strcmp(method, "DELETE") == 0)
        err = broker_delete(b, id);
    else if (strstr(path, "/cancel"))
        err = broker_cancel(b, id, &after);
    else if (ar->state) /* a retry with a new payload */
        err = broker_retry_with_payload(b, id, ar->state, strlen(ar->state));
    else
        err = broker_retry(b, id);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    if (strcmp(method, "DELETE") == 0) {
        json_object_set_new(o, "deleted", json_true());
    } else {
        if (strstr(path, "/cancel") && after != JOB_STATE_ACTIVE)
            after = JOB_STATE_CANCELED;
        json_object_set_new(o, "state", json_string(job_state_name(after)));
        if (strstr(path, "/cancel"))
            json_object_set_new(o, "cancel_requested", json_boolean(after == JOB_STATE_ACTIVE));
    }
    set_json_value(ar, 200, o);
}

/* ---- Jobs: listing ---- */

typedef struct list_state_s {
    job_state_t state;
    size_t limit;
    char cursor[256];
    bool has_cursor;
    bool desc;
    char type[JOB_TYPE_NAME_MAX + 1];
    char error[LIST_FILTER_ERROR_MAX + 1];
    char worker[WORKER_ID_MAX + 1];
} list_state_t;

/* The filters of a listing or a bulk action, each "" when not given; false when
 * one was refused (answered). */
static bool filter_param(api_req_t *ar, const char *name, char *out, size_t len)
{
    if (query_text(ar, name, out, len) >= 0)
        return true;
    api_problem(ar, 400, "%s: at most %zu characters, percent-encoded", name, len - 1);
    return false;
}

static bool prepare_list(api_req_t *ar)
{
    char text[128];
    if (!api_query(ar, "queue", ar->queue, sizeof(ar->queue)) || !ar->queue[0]) {
        api_problem(ar, 400, "queue: required, e.g. /v1/jobs?queue=email&state=waiting");
        return false;
    }
    if (!job_queue_name_valid(ar->queue)) {
        api_problem(ar, 400, "queue: 1-64 characters of A-Z a-z 0-9 . _ -");
        return false;
    }
    list_state_t *st = hp_calloc(1, sizeof(*st));
    ar->state = st;
    ar->state_free = hp_free;
    st->state = JOB_STATE_WAITING;
    st->limit = 50;
    if (api_query(ar, "state", text, sizeof(text))) {
        int s = job_state_parse(text);
        if (s < 0) {
            api_problem(ar, 400,
                        "state: one of scheduled, waiting, active, failed, succeeded, "
                        "dead, canceled; got \"%s\"",
                        text);
            return false;
        }
        st->state = (job_state_t)s;
    }
    if (api_query(ar, "limit", text, sizeof(text))) {
        char *end;
        long n = strtol(text, &end, 10);
        if (*end || end == text || n < 1 || n > 1000) {
            api_problem(ar, 400, "limit: an integer from 1 to 1000, got \"%s\"", text);
            return false;
        }
        st->limit = (size_t)n;
    }
    int has = query_text(ar, "cursor", st->cursor, sizeof(st->cursor));
    if (has < 0) {
        api_problem(ar, 400, "cursor: not one this server gave out");
        return false;
    }
    st->has_cursor = has > 0 && st->cursor[0];
    if (query_text(ar, "order", text, sizeof(text)) != 0) {
        if (strcmp(text, "asc") != 0 && strcmp(text, "desc") != 0) {
            api_problem(ar, 400, "order: asc or desc, got \"%.40s\"", text);
            return false;
        }
        st->desc = strcmp(text, "desc") == 0;
    }
    if (!filter_param(ar, "type", st->type, sizeof(st->type)) ||
        !filter_param(ar, "error", st->error, sizeof(st->error)) ||
        !filter_param(ar, "worker", st->worker, sizeof(st->worker)))
        return false;
    /* Only active jobs have a worker: that is the state a worker filter lists. */
    if (st->worker[0] && query_text(ar, "state", text, sizeof(text)) == 0)
        st->state = JOB_STATE_ACTIVE;
    return true;
}

static void run_list(api_req_t *ar, broker_t *b)
{
    list_state_t *st = ar->state;
    job_list_t list = {0};
    list_filter_t f = {
        .desc = st->desc, .type = st->type, .error = st->error, .worker = st->worker};
    int err = broker_list_filtered(b, ar->queue, st->state, &f, st->has_cursor ? st->cursor : NULL,
                                   st->limit, &list);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_appends(&sb, "{\"jobs\":[");
    for (size_t i = 0; i < list.n; i++) {
        char *text = job_to_json(list.jobs[i], 0);
        hp_strbuf_printf(&sb, "%s%s", i ? "," : "", text);
        hp_free(text);
    }
    api_set_json_page(ar, &sb, list.next_cursor);
    job_list_cleanup(&list);
}

/* ---- Queues ---- */

/* An RFC 3339 time, or null for 0. */
static json_t *time_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char text[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(ms, text);
    return json_string(text);
}

static json_t *stats_json(const char *name, const queue_stats_t *s)
{
    json_t *counts = json_object();
    for (int i = 0; i < JOB_STATE_COUNT; i++)
        json_object_set_new(counts, job_state_name((job_state_t)i), json_integer(s->counts[i]));
    json_t *totals = json_object();
    json_object_set_new(totals, "enqueued", json_integer(s->enqueued_total));
    json_object_set_new(totals, "succeeded", json_integer(s->succeeded_total));
    json_object_set_new(totals, "failed", json_integer(s->failed_total));
    json_object_set_new(totals, "dead", json_integer(s->dead_total));
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "paused", json_boolean(s->paused));
    json_object_set_new(o, "max_length",
                        s->max_length < 0 ? json_null() : json_integer(s->max_length));
    json_object_set_new(o, "counts", counts);
    json_object_set_new(o, "totals", totals);
    int64_t oldest = s->oldest_waiting_ms, age = oldest ? hp_now_ms() - oldest : 0;
    json_object_set_new(o, "oldest_waiting_at", time_or_null(oldest));
    json_object_set_new(o, "oldest_waiting_age_ms",
                        oldest ? json_integer(age > 0 ? age : 0) : json_null());
    return o;
}

static void run_queues(api_req_t *ar, broker_t *b)
{
    char **names;
    size_t n;
    int err = broker_queues(b, &names, &n);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n && !err; i++) {
        if (!api_queue_allowed(ar, names[i]))
            continue; /* a token limited to some queues sees only those */
        queue_stats_t s;
        err = broker_queue_stats(b, names[i], &s);
        if (!err)
            json_array_append_new(list, stats_json(names[i], &s));
    }
    broker_queues_free(names, n);
    if (err) {
        json_decref(list);
        api_set_broker_error(ar, b, err);
        return;
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "queues", list);
    set_json_value(ar, 200, doc);
}

static int check_queue_exists(api_req_t *ar, broker_t *b)
{
    char **names;
    size_t n;
    int err = broker_queues(b, &names, &n);
    if (err)
        return err;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++)
        found = strcmp(names[i], ar->queue) == 0;
    broker_queues_free(names, n);
    return found ? 0 : HP_ENOTFOUND;
}

static void run_queue(api_req_t *ar, broker_t *b)
{
    int err = check_queue_exists(ar, b);
    queue_stats_t s;
    if (!err)
        err = broker_queue_stats(b, ar->queue, &s);
    if (err == HP_ENOTFOUND) {
        api_set_problem(ar, 404, "no queue %s: nothing was ever enqueued to it", ar->queue);
        return;
    }
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    set_json_value(ar, 200, stats_json(ar->queue, &s));
}

static void run_pause(api_req_t *ar, broker_t *b)
{
    bool pause = strstr(ar->http->path, "/pause") != NULL;
    int err = broker_queue_pause(b, ar->queue, pause);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(ar->queue));
    json_object_set_new(o, "paused", json_boolean(pause));
    set_json_value(ar, 200, o);
}

static bool prepare_purge(api_req_t *ar)
{
    if (!prepare_queue_param(ar))
        return false;
    char text[32];
    int s = api_query(ar, "state", text, sizeof(text)) ? job_state_parse(text) : -1;
    if (s < 0) {
        api_problem(ar, 400,
                    "state: required, one of scheduled, waiting, failed, succeeded, "
                    "dead, canceled (e.g. ?state=dead)");
        return false;
    }
    if (s == JOB_STATE_ACTIVE) {
        api_problem(ar, 409, "active jobs cannot be purged: they are running; cancel them");
        return false;
    }
    int *st = hp_malloc(sizeof(*st));
    *st = s;
    ar->state = st;
    ar->state_free = hp_free;
    return true;
}

static void run_purge(api_req_t *ar, broker_t *b)
{
    int64_t removed = 0;
    int err = broker_purge(b, ar->queue, (job_state_t) * (int *)ar->state, &removed);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "queue", json_string(ar->queue));
    json_object_set_new(o, "state", json_string(job_state_name((job_state_t) * (int *)ar->state)));
    json_object_set_new(o, "removed", json_integer(removed));
    set_json_value(ar, 200, o);
}

/* ---- Queues: bulk actions ---- */

typedef struct bulk_state_s {
    job_state_t state;
    bulk_action_t action;
    char type[JOB_TYPE_NAME_MAX + 1];
    char error[LIST_FILTER_ERROR_MAX + 1];
} bulk_state_t;

/* A member of the bulk body that must be a string (if present): its value, or
 * NULL and an answer. */
static bool bulk_string(api_req_t *ar, json_t *doc, const char *name, bool required,
                        const char *expect, const char **out)
{
    json_t *v = json_object_get(doc, name);
    *out = json_string_value(v);
    if ((v || required) && !*out) {
        api_problem(ar, 400, "%s: %s", name, expect);
        return false;
    }
    return true;
}

static bool prepare_bulk(api_req_t *ar)
{
    if (!prepare_queue_param(ar) || !json_body_ok(ar))
        return false;
    http_req_t *h = ar->http;
    json_error_t jerr;
    json_t *doc = json_loadb(h->body, h->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        api_problem(ar, 400,
                    "expected {\"action\": \"retry\" or \"delete\", \"state\": \"...\", "
                    "\"type\" and \"error\" optional}");
        json_decref(doc);
        return false;
    }
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v)
    {
        if (strcmp(key, "action") && strcmp(key, "state") && strcmp(key, "type") &&
            strcmp(key, "error")) {
            api_problem(ar, 400, "unknown field \"%.64s\" (fields: action, state, type, error)",
                        key);
            json_decref(doc);
            return false;
        }
    }
    bulk_state_t *st = hp_calloc(1, sizeof(*st));
    ar->state = st;
    ar->state_free = hp_free;
    const char *action, *state, *type, *error;
    bool ok =
        bulk_string(ar, doc, "action", true, "required, \"retry\" or \"delete\"", &action) &&
        bulk_string(ar, doc, "state", true,
                    "required, one of scheduled, waiting, failed, succeeded, dead, canceled",
                    &state) &&
        bulk_string(ar, doc, "type", false, "a job type (a string)", &type) &&
        bulk_string(ar, doc, "error", false, "text to look for in the errors (a string)", &error);
    int s = ok ? job_state_parse(state) : -1;
    if (ok && strcmp(action, "retry") && strcmp(action, "delete")) {
        api_problem(ar, 400, "action: \"retry\" or \"delete\", got \"%.40s\"", action);
        ok = false;
    } else if (ok && s < 0) {
        api_problem(ar, 400,
                    "state: one of scheduled, waiting, failed, succeeded, dead, canceled; got "
                    "\"%.40s\"",
                    state);
        ok = false;
    } else if (ok && type && strlen(type) >= sizeof(st->type)) {
        api_problem(ar, 400, "type: at most %d characters", JOB_TYPE_NAME_MAX);
        ok = false;
    } else if (ok && error && strlen(error) >= sizeof(st->error)) {
        api_problem(ar, 400, "error: at most %d characters", LIST_FILTER_ERROR_MAX);
        ok = false;
    }
    if (ok) {
        st->state = (job_state_t)s;
        st->action = strcmp(action, "retry") == 0 ? BULK_RETRY : BULK_DELETE;
        snprintf(st->type, sizeof(st->type), "%s", type ? type : "");
        snprintf(st->error, sizeof(st->error), "%s", error ? error : "");
    }
    json_decref(doc);
    if (!ok)
        return false;
    /* Well-formed, but not an action on this state. */
    if (st->action == BULK_RETRY && s != JOB_STATE_DEAD && s != JOB_STATE_FAILED &&
        s != JOB_STATE_CANCELED) {
        api_problem(ar, 422, "state: only dead, failed or canceled jobs can be retried, not %s",
                    job_state_name(st->state));
        return false;
    }
    if (st->action == BULK_DELETE && s == JOB_STATE_ACTIVE) {
        api_problem(ar, 422, "state: active jobs are running and cannot be deleted; cancel them");
        return false;
    }
    return true;
}

static void run_bulk(api_req_t *ar, broker_t *b)
{
    bulk_state_t *st = ar->state;
    int64_t matched = 0, done = 0;
    list_filter_t f = {.type = st->type, .error = st->error};
    int err = broker_bulk(b, ar->queue, st->state, st->action, &f, &matched, &done);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "queue", json_string(ar->queue));
    json_object_set_new(o, "action", json_string(st->action == BULK_RETRY ? "retry" : "delete"));
    json_object_set_new(o, "state", json_string(job_state_name(st->state)));
    json_object_set_new(o, "matched", json_integer(matched));
    json_object_set_new(o, "done", json_integer(done));
    set_json_value(ar, 200, o);
}

/* ---- Throughput ---- */

static bool prepare_throughput(api_req_t *ar)
{
    int has = query_text(ar, "queue", ar->queue, sizeof(ar->queue));
    if (has < 0 || (has > 0 && ar->queue[0] && !job_queue_name_valid(ar->queue))) {
        api_problem(ar, 400, "queue: 1-64 characters of A-Z a-z 0-9 . _ -");
        return false;
    }
    return true;
}

static void append_counts(hp_strbuf_t *sb, const char *name, const int64_t *v, size_t n)
{
    hp_strbuf_printf(sb, "\"%s\":[", name);
    for (size_t i = 0; i < n; i++)
        hp_strbuf_printf(sb, "%s%lld", i ? "," : "", (long long)v[i]);
    hp_strbuf_appends(sb, "]");
}

static void add_counts(int64_t *to, const int64_t *from, size_t n)
{
    for (size_t i = 0; i < n; i++)
        to[i] += from[i];
}

/* Every queue's throughput, as a token limited to some queues may see it: the sum
 * over those queues (the "every queue" figure would tell of the others). */
static int allowed_throughput(api_req_t *ar, broker_t *b, throughput_t *t)
{
    char **names;
    size_t n;
    int err = broker_queues(b, &names, &n);
    if (err)
        return err;
    throughput_t *one = hp_malloc(sizeof(*one));
    bool first = true;
    for (size_t i = 0; i < n && !err; i++) {
        if (!api_queue_allowed(ar, names[i]))
            continue;
        err = broker_throughput(b, names[i], first ? t : one);
        if (!err && !first) { /* counted against the first call's clock: a second off at most */
            add_counts(t->processed_per_second, one->processed_per_second, THROUGHPUT_SECONDS);
            add_counts(t->failed_per_second, one->failed_per_second, THROUGHPUT_SECONDS);
            add_counts(t->processed_per_minute, one->processed_per_minute, THROUGHPUT_MINUTES);
            add_counts(t->failed_per_minute, one->failed_per_minute, THROUGHPUT_MINUTES);
        }
        first = false;
    }
    hp_free(one);
    broker_queues_free(names, n);
    if (!err && first) { /* no queue of its own yet: the clock, and nothing counted */
        err = broker_throughput(b, NULL, t);
        memset(t->processed_per_second, 0, sizeof(t->processed_per_second));
        memset(t->failed_per_second, 0, sizeof(t->failed_per_second));
        memset(t->processed_per_minute, 0, sizeof(t->processed_per_minute));
        memset(t->failed_per_minute, 0, sizeof(t->failed_per_minute));
    }
    return err;
}

static void run_throughput(api_req_t *ar, broker_t *b)
{
    throughput_t *t = hp_malloc(sizeof(*t));
    int err = ar->queue[0]            ? broker_throughput(b, ar->queue, t)
              : api_token_limited(ar) ? allowed_throughput(ar, b, t)
                                      : broker_throughput(b, NULL, t);
    if (err) {
        hp_free(t);
        api_set_broker_error(ar, b, err);
        return;
    }
    char now[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(t->now_ms, now);
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_appends(&sb, "{\"queue\":");
    if (ar->queue[0])
        hp_strbuf_append_json_string(&sb, ar->queue);
    else
        hp_strbuf_appends(&sb, "null");
    hp_strbuf_printf(&sb, ",\"now\":\"%s\",\"per_second\":{\"start\":%lld,", now,
                     (long long)t->second_start);
    append_counts(&sb, "processed", t->processed_per_second, THROUGHPUT_SECONDS);
    hp_strbuf_appends(&sb, ",");
    append_counts(&sb, "failed", t->failed_per_second, THROUGHPUT_SECONDS);
    hp_strbuf_printf(&sb, "},\"per_minute\":{\"start\":%lld,", (long long)t->minute_start);
    append_counts(&sb, "processed", t->processed_per_minute, THROUGHPUT_MINUTES);
    hp_strbuf_appends(&sb, ",");
    append_counts(&sb, "failed", t->failed_per_minute, THROUGHPUT_MINUTES);
    hp_strbuf_appends(&sb, "}}");
    hp_free(t);
    size_t len;
    char *text = hp_strbuf_steal(&sb, &len);
    api_set_json(ar, 200, text, len);
}

/* ---- Broker health ---- */

static void run_broker(api_req_t *ar, broker_t *b)
{
    broker_info_t info;
    int err = broker_info(b, &info);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    json_t *warnings = json_array();
    if (info.maxmemory_policy[0] && strcmp(info.maxmemory_policy, "noeviction") != 0) {
        char *w = hp_sprintf("maxmemory-policy is %s: Redis may evict keys when memory runs "
                             "out and silently lose jobs; set it to noeviction",
                             info.maxmemory_policy);
        json_array_append_new(warnings, json_string(w));
        hp_free(w);
    }
    if (info.maxmemory > 0 && info.used_memory * 10 >= info.maxmemory * 9) {
        char *w = hp_sprintf("used_memory is %lld%% of maxmemory: enqueues will soon be refused",
                             (long long)(info.used_memory * 100 / info.maxmemory));
        json_array_append_new(warnings, json_string(w));
        hp_free(w);
    }
    json_t *o = json_object();
    json_object_set_new(o, "backend", json_string(info.backend));
    json_object_set_new(o, "ok", json_true());
    json_object_set_new(o, "version", json_string(info.version));
    json_object_set_new(o, "uptime_s", json_integer(info.uptime_s));
    json_object_set_new(o, "used_memory", json_integer(info.used_memory));
    json_object_set_new(o, "maxmemory", json_integer(info.maxmemory));
    json_object_set_new(o, "maxmemory_policy", json_string(info.maxmemory_policy));
    json_object_set_new(o, "connected_clients", json_integer(info.connected_clients));
    json_object_set_new(o, "warnings", warnings);
    set_json_value(ar, 200, o);
}

/* ---- Health, metrics, contract ---- */

static void finish_healthz(api_req_t *ar)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    api_json(ar, 200, ok, sizeof(ok) - 1);
}

static void run_readyz(api_req_t *ar, broker_t *b)
{
    int err = broker_ping(b);
    if (err) {
        api_set_problem(ar, 503, "broker unreachable: %s", broker_errmsg(b));
        return;
    }
    char *ok = hp_strdup("{\"status\":\"ready\"}");
    api_set_json(ar, 200, ok, strlen(ok));
}

static void metrics_queue(hp_strbuf_t *sb, char **names, queue_stats_t *stats, size_t n)
{
    metrics_write_header(sb, "hopper_jobs", "gauge", "Jobs by queue and state.");
    for (size_t i = 0; i < n; i++) {
        for (int s = 0; s < JOB_STATE_COUNT; s++)
            hp_strbuf_printf(sb, "hopper_jobs{queue=\"%s\",state=\"%s\"} %lld\n", names[i],
                             job_state_name((job_state_t)s), (long long)stats[i].counts[s]);
    }
    static const struct {
        const char *name, *help;
        size_t offset;
    } totals[] = {
        {"hopper_jobs_enqueued_total", "Jobs enqueued.", offsetof(queue_stats_t, enqueued_total)},
        {"hopper_jobs_succeeded_total", "Jobs succeeded.",
         offsetof(queue_stats_t, succeeded_total)},
        {"hopper_jobs_failed_total", "Failed attempts, retried or not.",
         offsetof(queue_stats_t, failed_total)},
        {"hopper_jobs_dead_total", "Jobs dead (attempts exhausted or permanent failure).",
         offsetof(queue_stats_t, dead_total)},
    };
    for (size_t t = 0; t < sizeof(totals) / sizeof(totals[0]); t++) {
        metrics_write_header(sb, totals[t].name, "counter", totals[t].help);
        for (size_t i = 0; i < n; i++)
            hp_strbuf_printf(
                sb, "%s{queue=\"%s\"} %lld\n", totals[t].name, names[i],
                (long long)*(const int64_t *)((const char *)&stats[i] + totals[t].offset));
    }
    /* For alerts: a queue nobody drains shows as a growing age, whatever its length. */
    metrics_write_header(sb, "hopper_queue_oldest_waiting_seconds", "gauge",
                         "How long the job waiting longest has waited (0: none waits).");
    int64_t now = hp_now_ms();
    for (size_t i = 0; i < n; i++) {
        int64_t since = stats[i].oldest_waiting_ms;
        double age = since > 0 && since < now ? (double)(now - since) / 1000.0 : 0.0;
        hp_strbuf_printf(sb, "hopper_queue_oldest_waiting_seconds{queue=\"%s\"} %.3f\n", names[i],
                         age);
    }
    metrics_write_header(sb, "hopper_queue_paused", "gauge", "1 while the queue is paused.");
    for (size_t i = 0; i < n; i++)
        hp_strbuf_printf(sb, "hopper_queue_paused{queue=\"%s\"} %d\n", names[i],
                         stats[i].paused ? 1 : 0);
    metrics_write_header(sb, "hopper_job_runtime_seconds", "histogram",
                         "Run time of finished attempts (acked or failed).");
    for (size_t i = 0; i < n; i++) {
        int64_t cum = 0;
        for (int k = 0; k <= QUEUE_RUNTIME_NBUCKETS; k++) {
            cum += stats[i].runtime_count[k];
            if (k < QUEUE_RUNTIME_NBUCKETS)
                hp_strbuf_printf(sb,
                                 "hopper_job_runtime_seconds_bucket{queue=\"%s\",le=\"%g\"} "
                                 "%lld\n",
                                 names[i], (double)QUEUE_RUNTIME_BUCKETS_MS[k] / 1000.0,
                                 (long long)cum);
            else
                hp_strbuf_printf(sb,
                                 "hopper_job_runtime_seconds_bucket{queue=\"%s\",le=\"+Inf\"} "
                                 "%lld\n",
                                 names[i], (long long)cum);
        }
        hp_strbuf_printf(sb, "hopper_job_runtime_seconds_sum{queue=\"%s\"} %.3f\n", names[i],
                         (double)stats[i].runtime_sum_ms / 1000.0);
        hp_strbuf_printf(sb, "hopper_job_runtime_seconds_count{queue=\"%s\"} %lld\n", names[i],
                         (long long)cum);
    }
}

static void run_metrics(api_req_t *ar, broker_t *b)
{
    if (api_refuse_limited(ar, "GET /metrics"))
        return;
    char **names;
    size_t n;
    int err = broker_queues(b, &names, &n);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    queue_stats_t *stats = hp_calloc(n ? n : 1, sizeof(*stats));
    for (size_t i = 0; i < n && !err; i++)
        err = broker_queue_stats(b, names[i], &stats[i]);
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    if (!err)
        metrics_queue(&sb, names, stats, n);
    broker_queues_free(names, n);
    hp_free(stats);
    if (err) {
        hp_strbuf_cleanup(&sb);
        api_set_broker_error(ar, b, err);
        return;
    }
    api_metrics_render(&sb);
    size_t len;
    char *text = hp_strbuf_steal(&sb, &len);
    api_set_json(ar, 200, text, len);
}

static void finish_metrics(api_req_t *ar)
{
    http_req_t *req = ar->http;
    req->data = NULL;
    api_metrics_request(ar->route->pattern, req->method, 200, hp_mono_us() - req->start_us);
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, ar->body,
                 ar->body_len);
    api_req_free(ar);
}

static void finish_openapi(api_req_t *ar)
{
    api_json(ar, 200, api_openapi, strlen(api_openapi));
}

/* ---- The table ---- */

const route_t api_routes[] = {
    {.method = "POST",
     .pattern = "/v1/jobs",
     .access = ACCESS_SUBMIT,
     .prepare = prepare_enqueue,
     .run = run_enqueue,
     .finish = finish_enqueue,
     .batch = batch_enqueue},
    {.method = "POST",
     .pattern = "/v1/jobs/batch",
     .access = ACCESS_SUBMIT,
     .prepare = prepare_batch,
     .run = run_batch},
    {.method = "GET",
     .pattern = "/v1/jobs",
     .access = ACCESS_READ,
     .prepare = prepare_list,
     .run = run_list},
    {.method = "GET",
     .pattern = "/v1/jobs/{id}",
     .access = ACCESS_READ,
     .prepare = prepare_get,
     .run = run_get,
     .finish = finish_get,
     .batch = batch_get},
    {.method = "DELETE",
     .pattern = "/v1/jobs/{id}",
     .audit = true,
     .access = ACCESS_ADMIN,
     .prepare = prepare_job_id,
     .run = run_job_action},
    {.method = "POST",
     .pattern = "/v1/jobs/{id}/retry",
     .audit = true,
     .access = ACCESS_ADMIN,
     .prepare = prepare_retry,
     .run = run_job_action},
    {.method = "POST",
     .pattern = "/v1/jobs/{id}/cancel",
     .audit = true,
     .access = ACCESS_ADMIN,
     .prepare = prepare_job_id,
     .run = run_job_action},
    {.method = "GET",
     .pattern = "/v1/queues",
     .access = ACCESS_READ,
     .prepare = prepare_nothing,
     .run = run_queues},
    {.method = "GET",
     .pattern = "/v1/queues/{queue}",
     .access = ACCESS_READ,
     .prepare = prepare_queue_param,
     .run = run_queue},
    {.method = "POST",
     .pattern = "/v1/queues/{queue}/pause",
     .audit = true,
     .access = ACCESS_ADMIN,
     .prepare = prepare_queue_param,
     .run = run_pause},
    {.method = "POST",
     .pattern = "/v1/queues/{queue}/resume",
     .audit = true,
     .access = ACCESS_ADMIN,
     .prepare = prepare_queue_param,
     .run = run_pause},
    {.method = "DELETE",
     .pattern = "/v1/queues/{queue}/jobs",
     .audit = true,
     .access = ACCESS_ADMIN,
     .prepare = prepare_purge,
     .run = run_purge},
    {.method = "POST",
     .pattern = "/v1/queues/{queue}/bulk",
     .access = ACCESS_ADMIN,
     .audit = true,
     .prepare = prepare_bulk,
     .run = run_bulk},
    {.method = "GET",
     .pattern = "/v1/stats/throughput",
     .access = ACCESS_READ,
     .prepare = prepare_throughput,
     .run = run_throughput},
    {.method = "GET",
     .pattern = "/v1/broker",
     .access = ACCESS_READ,
     .prepare = prepare_nothing,
     .run = run_broker},
    {.method = "GET",
     .pattern = "/v1/workers",
     .access = ACCESS_READ,
     .prepare = prepare_nothing,
     .run = api_workers_run_list},
    {.method = "GET",
     .pattern = "/v1/workers/{id}",
     .access = ACCESS_READ,
     .prepare = api_workers_prepare_get,
     .run = api_workers_run_get},
    {.method = "POST",
     .pattern = "/v1/workers/{id}/quiet",
     .access = ACCESS_ADMIN,
     .audit = true,
     .prepare = api_workers_prepare_id,
     .run = api_workers_run_command},
    {.method = "POST",
     .pattern = "/v1/workers/{id}/stop",
     .access = ACCESS_ADMIN,
     .audit = true,
     .prepare = api_workers_prepare_id,
     .run = api_workers_run_command},
    {.method = "POST",
     .pattern = "/v1/blobs",
     .access = ACCESS_SUBMIT,
     .prepare = api_blob_prepare,
     .run = api_blob_run_upload,
     .finish = api_blob_finish_upload,
     .stream_body = true,
     .on_body = api_blob_on_body},
    {.method = "GET",
     .pattern = "/v1/blobs/{id}",
     .access = ACCESS_READ,
     .prepare = api_blob_prepare_get,
     .finish = api_blob_finish_get},
    {.method = "GET",
     .pattern = "/v1/events",
     .access = ACCESS_READ,
     .prepare = api_events_prepare,
     .finish = api_events_finish},
    {.method = "GET",
     .pattern = "/v1/schedules",
     .access = ACCESS_READ,
     .prepare = prepare_nothing,
     .run = api_schedule_run_list},
    {.method = "GET",
     .pattern = "/v1/schedules/{name}",
     .access = ACCESS_READ,
     .prepare = api_schedule_prepare_name,
     .run = api_schedule_run_get},
    {.method = "PUT",
     .pattern = "/v1/schedules/{name}",
     .audit = true,
     .access = ACCESS_ADMIN,
     .prepare = api_schedule_prepare_put,
     .run = api_schedule_run_put},
    {.method = "DELETE",
     .pattern = "/v1/schedules/{name}",
     .audit = true,
     .access = ACCESS_ADMIN,
     .prepare = api_schedule_prepare_name,
     .run = api_schedule_run_delete},
    {.method = "POST",
     .pattern = "/v1/schedules/{name}/trigger",
     .audit = true,
     .access = ACCESS_ADMIN,
     .prepare = api_schedule_prepare_name,
     .run = api_schedule_run_trigger},
    {.method = "POST",
     .pattern = "/v1/schedules/{name}/pause",
     .audit = true,
     .access = ACCESS_ADMIN,
     .prepare = api_schedule_prepare_name,
     .run = api_schedule_run_pause},
    {.method = "POST",
     .pattern = "/v1/schedules/{name}/resume",
     .audit = true,
     .access = ACCESS_ADMIN,
     .prepare = api_schedule_prepare_name,
     .run = api_schedule_run_pause},
    {.method = "POST",
     .pattern = "/v1/session",
     .access = ACCESS_PUBLIC,
     .audit = true,
     .prepare = api_session_prepare_login,
     .run = api_session_run_login},
    {.method = "GET",
     .pattern = "/v1/session",
     .access = ACCESS_PUBLIC,
     .prepare = api_session_prepare,
     .run = api_session_run_get},
    {.method = "DELETE",
     .pattern = "/v1/session",
     .access = ACCESS_PUBLIC,
     .audit = true,
     .prepare = api_session_prepare,
     .run = api_session_run_logout},
    {.method = "GET",
     .pattern = "/v1/audit",
     .access = ACCESS_READ,
     .prepare = api_audit_prepare_list,
     .run = api_audit_run_list},
    {.method = "GET",
     .pattern = "/dashboard",
     .access = ACCESS_PUBLIC,
     .prepare = api_dashboard_prepare_root},
    {.method = "GET",
     .pattern = "/dashboard/",
     .access = ACCESS_PUBLIC,
     .prepare = api_dashboard_prepare_file},
    {.method = "GET",
     .pattern = "/dashboard/{path}",
     .access = ACCESS_PUBLIC,
     .prepare = api_dashboard_prepare_file},
    {.method = "GET",
     .pattern = "/healthz",
     .access = ACCESS_PUBLIC,
     .prepare = prepare_nothing,
     .finish = finish_healthz},
    {.method = "GET",
     .pattern = "/readyz",
     .access = ACCESS_PUBLIC,
     .prepare = prepare_nothing,
     .run = run_readyz},
    {.method = "GET",
     .pattern = "/metrics",
     .access = ACCESS_READ,
     .prepare = prepare_nothing,
     .run = run_metrics,
     .finish = finish_metrics},
    {.method = "GET",
     .pattern = "/openapi.json",
     .access = ACCESS_PUBLIC,
     .prepare = prepare_nothing,
     .finish = finish_openapi},
};
const size_t api_nroutes = sizeof(api_routes) / sizeof(api_routes[0]);
