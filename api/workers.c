/*
 * /v1/workers: the live worker processes as their registry entries describe them,
 * one of them with a page of its jobs, and the commands an operator sends one
 * (quiet, stop). A worker id names one process ("host:pid"); what the commands do
 * is the worker's business (worker/process.c): quiet stops that process taking
 * jobs, stop stops its whole `hopper worker` gracefully.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

#define WORKER_LIST_JOBS  20 /* jobs shown per worker in the list */
#define WORKER_PAGE_LIMIT 50
#define WORKER_PAGE_MAX   500
#define WORKER_OFFSET_MAX 1000000000L

typedef struct worker_page_s {
    size_t offset, limit;
} worker_page_t;

/* The number of the worker's queues the token may use, and of all its queues. */
static size_t allowed_queues(const api_req_t *ar, json_t *w, size_t *all)
{
    json_t *queues = json_object_get(w, "queues");
    size_t n = 0;
    *all = json_array_size(queues);
    for (size_t i = 0; i < *all; i++) {
        const char *q = json_string_value(json_array_get(queues, i));
        n += q && api_queue_allowed(ar, q);
    }
    return n;
}

/* For a token limited to some queues: the worker's queues and jobs cut to those,
 * and its counts to match, so the entry tells nothing of the other queues. */
static void limit_to_token(const api_req_t *ar, json_t *w)
{
    json_t *queues = json_array(), *jobs = json_array();
    json_t *had = json_object_get(w, "queues");
    for (size_t i = 0; i < json_array_size(had); i++) {
        const char *q = json_string_value(json_array_get(had, i));
        if (q && api_queue_allowed(ar, q))
            json_array_append_new(queues, json_string(q));
    }
    size_t running = 0;
    had = json_object_get(w, "jobs");
    for (size_t i = 0; i < json_array_size(had); i++) {
        json_t *job = json_array_get(had, i);
        char ulid[HP_ULID_LEN + 1], queue[JOB_QUEUE_NAME_MAX + 1];
        const char *id = json_string_value(json_object_get(job, "id"));
        if (!id || !job_id_parse(id, ulid, queue) || !api_queue_allowed(ar, queue))
            continue;
        json_array_append(jobs, job);
        running += json_is_true(json_object_get(job, "running"));
    }
    json_object_set_new(w, "queues", queues);
    json_object_set_new(w, "held", json_integer((json_int_t)json_array_size(jobs)));
    json_object_set_new(w, "running", json_integer((json_int_t)running));
    json_object_set_new(w, "jobs", jobs);
}

/*
 * The entry as the API shows it: "jobs" cut to [offset, offset + limit), with
 * "running", "held" and "state" filled in for an entry from an older worker that
 * did not write them (it listed only the jobs it ran). NULL when the entry is not
 * a JSON object; *hidden (and NULL) when it serves no queue the token may use.
 */
static json_t *worker_view(const api_req_t *ar, const char *info, size_t offset, size_t limit,
                           bool *hidden)
{
    *hidden = false;
    json_t *w = json_loads(info, 0, NULL);
    if (!json_is_object(w)) {
        json_decref(w);
        return NULL;
    }
    if (api_token_limited(ar)) {
        size_t all;
        if (allowed_queues(ar, w, &all) == 0) {
            *hidden = true;
            json_decref(w);
            return NULL;
        }
        limit_to_token(ar, w);
    }
    json_t *jobs = json_object_get(w, "jobs");
    size_t held = json_is_array(jobs) ? json_array_size(jobs) : 0;
    if (!json_is_integer(json_object_get(w, "held")))
        json_object_set_new(w, "held", json_integer((json_int_t)held));
    if (!json_is_integer(json_object_get(w, "running")))
        json_object_set_new(w, "running", json_integer((json_int_t)held));
    if (!json_is_string(json_object_get(w, "state")))
        json_object_set_new(w, "state", json_string("running"));
    json_t *page = json_array();
    for (size_t i = offset; i < held && i - offset < limit; i++)
        json_array_append(page, json_array_get(jobs, i));
    json_object_set_new(w, "jobs", page);
    return w;
}

static void set_json_value(api_req_t *ar, int status, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(v);
    char *copy = hp_strdup(text);
    free(text);
    api_set_json(ar, status, copy, strlen(copy));
}

void api_workers_run_list(api_req_t *ar, broker_t *b)
{
    char **infos;
    size_t n;
    int err = broker_workers(b, &infos, &n);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        bool hidden;
        json_t *w = worker_view(ar, infos[i], 0, WORKER_LIST_JOBS, &hidden);
        if (w)
            json_array_append_new(list, w);
        else if (!hidden)
            hp_warn("api: a worker registry entry is not a JSON object; not listed");
    }
    broker_queues_free(infos, n);
    json_t *o = json_object();
    json_object_set_new(o, "workers", list);
    set_json_value(ar, 200, o);
}

/* The worker id in the path; 404 when it cannot be one. */
bool api_workers_prepare_id(api_req_t *ar)
{
    if (!broker_worker_id_valid(ar->params[0])) {
        api_problem(ar, 404,
                    "no worker %.128s: a worker id is 1-%d characters of A-Z a-z 0-9 . _ : @ / -",
                    ar->params[0], WORKER_ID_MAX);
        return false;
    }
    return true;
}

/* A query parameter that must be an integer from min to max, if present. */
static bool query_int(api_req_t *ar, const char *name, long min, long max, size_t *out)
{
    char text[32];
    if (!api_query(ar, name, text, sizeof(text)))
        return true;
    char *end;
    long n = strtol(text, &end, 10);
    if (*end || end == text || n < min || n > max) {
        api_problem(ar, 400, "%s: an integer from %ld to %ld, got \"%.31s\"", name, min, max, text);
        return false;
    }
    *out = (size_t)n;
    return true;
}

bool api_workers_prepare_get(api_req_t *ar)
{
    if (!api_workers_prepare_id(ar))
        return false;
    worker_page_t *page = hp_calloc(1, sizeof(*page));
    ar->state = page;
    ar->state_free = hp_free;
    page->limit = WORKER_PAGE_LIMIT;
    return query_int(ar, "offset", 0, WORKER_OFFSET_MAX, &page->offset) &&
           query_int(ar, "limit", 1, WORKER_PAGE_MAX, &page->limit);
}

void api_workers_run_get(api_req_t *ar, broker_t *b)
{
    const worker_page_t *page = ar->state;
    char *info = NULL;
    int err = broker_worker_get(b, ar->params[0], &info);
    if (err) { /* HP_ENOTFOUND: 404 "no worker ...: not registered" */
        api_set_broker_error(ar, b, err);
        return;
    }
    bool hidden;
    json_t *w = worker_view(ar, info, page->offset, page->limit, &hidden);
    hp_free(info);
    if (hidden) {
        api_set_problem(ar, 404, "no worker %.128s: not registered", ar->params[0]);
        return;
    }
    if (!w) {
        api_set_problem(ar, 500, "the registry entry of worker %.128s is not a JSON object",
                        ar->params[0]);
        return;
    }
    set_json_value(ar, 200, w);
}

/* A token limited to some queues commands only a worker all of whose queues it may
 * use (quieting or stopping it affects every queue it serves); else answers 404
 * (it sees no such worker) or 403 and returns false. */
static bool worker_all_allowed(api_req_t *ar, broker_t *b)
{
    char *info = NULL;
    int err = broker_worker_get(b, ar->params[0], &info);
    if (err) {
        api_set_broker_error(ar, b, err);
        return false;
    }
    json_t *w = json_loads(info, 0, NULL);
    hp_free(info);
    size_t all = 0, allowed = json_is_object(w) ? allowed_queues(ar, w, &all) : 0;
    json_decref(w);
    if (allowed == 0)
        api_set_problem(ar, 404, "no worker %.128s: not registered", ar->params[0]);
    else if (allowed < all)
        api_set_problem(ar, 403,
                        "token %s may not command worker %.128s: it also serves queues "
                        "other than %s",
                        ar->token.id, ar->params[0], ar->token.queues);
    return allowed > 0 && allowed == all;
}

/* POST /v1/workers/{id}/quiet and /stop: 202, the worker acts on it within a
 * second or two (it polls). */
void api_workers_run_command(api_req_t *ar, broker_t *b)
{
    worker_command_t cmd =
        strstr(ar->route->pattern, "/stop") ? WORKER_COMMAND_STOP : WORKER_COMMAND_QUIET;
    if (api_token_limited(ar) && !worker_all_allowed(ar, b))
        return;
    int err = broker_worker_command(b, ar->params[0], cmd);
    if (err) { /* HP_ENOTFOUND: 404 "no worker ...: not registered" */
        api_set_broker_error(ar, b, err);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(ar->params[0]));
    json_object_set_new(o, "command", json_string(worker_command_name(cmd)));
    set_json_value(ar, 202, o);
}
