/*
 * /v1/schedules: define, list, pause, resume, trigger and delete schedules. The
 * definitions are checked by the scheduler module (cron, zone, job template); the
 * broker stores them; a change here pokes this server's firing loop, and the
 * others see the broker's schedule version move within a second.
 */
#include <string.h>

#include "api/internal.h"
#include "scheduler/scheduler.h"

static void poke(api_req_t *ar)
{
    if (ar->loop->server->sched)
        sched_poke(ar->loop->server->sched);
}

static void set_schedule(api_req_t *ar, int status, const schedule_t *s)
{
    char *text = sched_schedule_to_json(s);
    api_set_json(ar, status, text, strlen(text));
}

bool api_schedule_prepare_name(api_req_t *ar)
{
    if (!schedule_name_valid(ar->params[0])) {
        api_problem(ar, 404, "no schedule %s: a name is 1-%d characters of A-Z a-z 0-9 . _ : -",
                    ar->params[0], SCHEDULE_NAME_MAX);
        return false;
    }
    return true;
}

void api_schedule_run_list(api_req_t *ar, broker_t *b)
{
    schedule_t **list;
    size_t n;
    int err = broker_schedules(b, &list, &n);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_appends(&sb, "{\"schedules\":[");
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (!api_queue_allowed(ar, list[i]->queue))
            continue; /* a token limited to some queues sees their schedules only */
        char *text = sched_schedule_to_json(list[i]);
        hp_strbuf_printf(&sb, "%s%s", first ? "" : ",", text);
        hp_free(text);
        first = false;
    }
    hp_strbuf_appends(&sb, "]}");
    schedules_free(list, n);
    size_t len;
    char *text = hp_strbuf_steal(&sb, &len);
    api_set_json(ar, 200, text, len);
}

/* The schedule in the path; 404 when there is none, or when its job's queue is not
 * one the token may use (to such a token it does not exist). */
static int get_or_404(api_req_t *ar, broker_t *b, schedule_t **out)
{
    int err = broker_schedule_get(b, ar->params[0], out);
    if (err == 0 && !api_queue_allowed(ar, (*out)->queue)) {
        schedule_free(*out);
        *out = NULL;
        err = HP_ENOTFOUND;
    }
    if (err == HP_ENOTFOUND)
        api_set_problem(ar, 404, "no schedule %s", ar->params[0]);
    else if (err)
        api_set_broker_error(ar, b, err);
    return err;
}

void api_schedule_run_get(api_req_t *ar, broker_t *b)
{
    schedule_t *s;
    if (get_or_404(ar, b, &s) == 0) {
        set_schedule(ar, 200, s);
        schedule_free(s);
    }
}

bool api_schedule_prepare_put(api_req_t *ar)
{
    if (!api_schedule_prepare_name(ar))
        return false;
    char err[600];
    schedule_t *s = NULL;
    http_req_t *h = ar->http;
    if (sched_schedule_from_json(ar->params[0], h->body, h->body_len, hp_now_ms(), &s, err,
                                 sizeof(err)) != 0) {
        api_problem(ar, 400, "%s", err);
        return false;
    }
    ar->state = s;
    ar->state_free = (void (*)(void *))schedule_free;
    snprintf(ar->queue, sizeof(ar->queue), "%s", s->queue);
    return true;
}

void api_schedule_run_put(api_req_t *ar, broker_t *b)
{
    schedule_t *want = ar->state, *have = NULL;
    bool created = false;
    /* The same definition again changes nothing: its next fire stays, so a client
     * that PUTs on every deploy neither skips nor repeats a tick. */
    int err = broker_schedule_get(b, want->name, &have);
    if (err == 0 && !api_queue_allowed(ar, have->queue)) {
        api_set_problem(ar, 403,
                        "token %s may not replace schedule %s: its job goes to queue %s, "
                        "not one of %s",
                        ar->token.id, want->name, have->queue, ar->token.queues);
        schedule_free(have);
        return;
    }
    if (err == 0 && sched_same_definition(have, want)) {
        set_schedule(ar, 200, have);
        schedule_free(have);
        return;
    }
    schedule_free(have);
    have = NULL;
    err = err == HP_ENOTFOUND || err == 0 ? broker_schedule_put(b, want, &created) : err;
    if (!err)
        err = broker_schedule_get(b, want->name, &have);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    set_schedule(ar, created ? 201 : 200, have);
    schedule_free(have);
    poke(ar);
}

void api_schedule_run_delete(api_req_t *ar, broker_t *b)
{
    schedule_t *s;
    if (api_token_limited(ar)) { /* only one of its own queues' */
        if (get_or_404(ar, b, &s) != 0)
            return;
        schedule_free(s);
    }
    int err = broker_schedule_delete(b, ar->params[0]);
    if (err == HP_ENOTFOUND) {
        api_set_problem(ar, 404, "no schedule %s", ar->params[0]);
        return;
    }
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    char *text = hp_sprintf("{\"name\":\"%s\",\"deleted\":true}", ar->params[0]);
    api_set_json(ar, 200, text, strlen(text));
    poke(ar);
}

void api_schedule_run_pause(api_req_t *ar, broker_t *b)
{
    bool pause = strstr(ar->http->path, "/pause") != NULL;
    schedule_t *s;
    if (get_or_404(ar, b, &s) != 0)
        return;
    int64_t next = pause ? s->next_fire_ms : sched_next_tick(s, hp_now_ms());
    int err = broker_schedule_pause(b, s->name, pause, next);
    schedule_free(s);
    s = NULL;
    if (!err)
        err = broker_schedule_get(b, ar->params[0], &s);
    if (err) {
        api_set_broker_error(ar, b, err);
        return;
    }
    set_schedule(ar, 200, s);
    schedule_free(s);
    poke(ar);
}

void api_schedule_run_trigger(api_req_t *ar, broker_t *b)
{
    schedule_t *s;
    if (get_or_404(ar, b, &s) != 0)
        return;
    job_spec_json_t js;
    char why[400];
    int err = job_spec_from_json(s->job, strlen(s->job), &js, why, sizeof(why));
    if (err) {
        api_set_problem(ar, 409, "schedule %s: its job template does not read as a job: %s",
                        s->name, why);
    } else {
        schedule_fire_t outcome;
        char id[JOB_ID_MAX] = "";
        err = broker_schedule_fire(b, s->name, 0, 0, false, &js.spec, &outcome, id);
        if (err) {
            api_set_broker_error(ar, b, err);
        } else {
            char *text = hp_sprintf("{\"schedule\":\"%s\",\"job_id\":\"%s\"}", s->name, id);
            api_set_json(ar, 201, text, strlen(text));
        }
    }
    job_spec_json_cleanup(&js);
    schedule_free(s);
}
