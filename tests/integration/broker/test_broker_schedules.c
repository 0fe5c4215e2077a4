/*
 * Schedules in the broker, against a real redis-server: storing definitions, the
 * directory and its version, and the fire's compare-and-set (once per tick however
 * many connections race, missed ticks, overlap, triggers, a full queue, a schedule
 * that moves to another queue). One private server for the whole file; each test
 * uses schedule and queue names of its own.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "broker/broker.h"
#include "tests/support/test_redis.h"

static test_redis_t server;
static broker_t *b;

static int setup(void **state)
{
    (void)state;
    if (test_redis_start(&server, NULL))
        return -1;
    b = test_redis_broker(&server, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    broker_close(b);
    test_redis_stop(&server);
    return 0;
}

/* ---- Helpers ---- */

#define T0   1900000000000LL /* a tick in 2030 */
#define STEP 60000LL

static char *template_for(const char *queue)
{
    return hp_sprintf("{\"queue\":\"%s\",\"type\":\"report\",\"payload\":{\"n\":1}}", queue);
}

/* A definition the caller frees with schedule_free. */
static schedule_t *definition(const char *name, const char *queue, int64_t next)
{
    schedule_t *s = hp_calloc(1, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    snprintf(s->queue, sizeof(s->queue), "%s", queue);
    s->cron = hp_strdup("*/1 * * * *");
    s->tz = hp_strdup("Europe/Berlin");
    s->job = template_for(queue);
    s->next_fire_ms = next;
    return s;
}

/* Puts a fresh schedule on its own queue; the names are written to name/queue. */
static void put_new(const char *prefix, char name[SCHEDULE_NAME_MAX + 1],
                    char queue[JOB_QUEUE_NAME_MAX + 1], schedule_overlap_t overlap, int64_t next)
{
    snprintf(queue, JOB_QUEUE_NAME_MAX + 1, "%s", test_queue_name(prefix));
    snprintf(name, SCHEDULE_NAME_MAX + 1, "%s:sched", queue);
    schedule_t *s = definition(name, queue, next);
    s->overlap = overlap;
    bool created = false;
    assert_int_equal(broker_schedule_put(b, s, &created), 0);
    assert_true(created);
    schedule_free(s);
}

/* The schedule's template as a spec, the way the scheduler makes one. */
typedef struct fire_spec_s {
    char *text;
    job_spec_json_t js;
} fire_spec_t;

static void fire_spec_init(fire_spec_t *f, const char *queue)
{
    f->text = template_for(queue);
    char err[200];
    assert_int_equal(job_spec_from_json(f->text, strlen(f->text), &f->js, err, sizeof(err)), 0);
}

static void fire_spec_cleanup(fire_spec_t *f)
{
    job_spec_json_cleanup(&f->js);
    hp_free(f->text);
}

static schedule_fire_t fire(broker_t *on, const char *name, const char *queue, int64_t tick,
                            int64_t next, bool missed, char id[JOB_ID_MAX])
{
    fire_spec_t f;
    fire_spec_init(&f, queue);
    schedule_fire_t outcome = SCHEDULE_FIRED;
    int err = broker_schedule_fire(on, name, tick, next, missed, &f.js.spec, &outcome, id);
    if (err)
        fail_msg("fire: %s", broker_errmsg(on));
    fire_spec_cleanup(&f);
    return outcome;
}

static schedule_t *get(const char *name)
{
    schedule_t *s = NULL;
    if (broker_schedule_get(b, name, &s))
        fail_msg("get %s: %s", name, broker_errmsg(b));
    return s;
}

static int64_t pending(const char *queue)
{
    queue_stats_t st;
    assert_int_equal(broker_queue_stats(b, queue, &st), 0);
    return st.counts[JOB_STATE_WAITING] + st.counts[JOB_STATE_SCHEDULED];
}

/* The schedule's history, parsed; json_decref it. */
static json_t *history_of(const char *name)
{
    schedule_t *s = get(name);
    json_t *h = json_loads(s->history, 0, NULL);
    schedule_free(s);
    assert_true(json_is_array(h));
    return h;
}

static const char *entry_outcome(json_t *h, size_t i)
{
    return json_string_value(json_object_get(json_array_get(h, i), "outcome"));
}

static int64_t entry_tick(json_t *h, size_t i)
{
    return (int64_t)json_integer_value(json_object_get(json_array_get(h, i), "tick"));
}

/* ---- Definitions ---- */

static void put_get_list_delete_round_trip(void **state)
{
    (void)state;
    const char *queue = test_queue_name("rt");
    char name_a[64], name_b[64];
    snprintf(name_b, sizeof(name_b), "%s.b", queue);
    snprintf(name_a, sizeof(name_a), "%s.a", queue);
    schedule_t *s = definition(name_b, queue, T0);
    s->paused = true;
    s->misfire = SCHEDULE_MISFIRE_ONCE;
    s->overlap = SCHEDULE_OVERLAP_SKIP;
    s->jitter_ms = 1500;
    bool created = false;
    assert_int_equal(broker_schedule_put(b, s, &created), 0);
    assert_true(created);
    snprintf(s->name, sizeof(s->name), "%s", name_a);
    s->paused = false;
    assert_int_equal(broker_schedule_put(b, s, NULL), 0);

    int64_t before = hp_now_ms() - 5000;
    schedule_t *got = get(name_b);
    assert_string_equal(got->name, name_b);
    assert_string_equal(got->queue, queue);
    assert_string_equal(got->cron, "*/1 * * * *");
    assert_string_equal(got->tz, "Europe/Berlin");
    assert_string_equal(got->job, s->job);
    assert_true(got->paused);
    assert_int_equal(got->misfire, SCHEDULE_MISFIRE_ONCE);
    assert_int_equal(got->overlap, SCHEDULE_OVERLAP_SKIP);
    assert_int_equal(got->jitter_ms, 1500);
    assert_int_equal(got->next_fire_ms, T0);
    assert_int_equal(got->last_fire_ms, 0);
    assert_string_equal(got->last_job_id, "");
    assert_true(got->created_ms > before && got->created_ms <= hp_now_ms() + 5000);
    assert_int_equal(got->updated_ms, got->created_ms);
    assert_string_equal(got->history, "[]");
    assert_int_equal(got->version, 1);
    schedule_free(got);

    /* Listed sorted by name, with every field. */
    schedule_t **list = NULL;
    size_t n = 0;
    assert_int_equal(broker_schedules(b, &list, &n), 0);
    int at_a = -1, at_b = -1;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            assert_true(strcmp(list[i - 1]->name, list[i]->name) < 0);
        if (strcmp(list[i]->name, name_a) == 0)
            at_a = (int)i;
        if (strcmp(list[i]->name, name_b) == 0)
            at_b = (int)i;
    }
    assert_true(at_a >= 0 && at_b == at_a + 1);
    assert_false(list[at_a]->paused);
    assert_true(list[at_b]->paused);
    assert_int_equal(list[at_b]->jitter_ms, 1500);
    assert_string_equal(list[at_b]->tz, "Europe/Berlin");
    schedules_free(list, n);

    assert_int_equal(broker_schedule_delete(b, name_b), 0);
    schedule_t *gone = NULL;
    assert_int_equal(broker_schedule_get(b, name_b, &gone), HP_ENOTFOUND);
    assert_null(gone);
    assert_non_null(strstr(broker_errmsg(b), name_b));
    assert_int_equal(broker_schedule_delete(b, name_b), HP_ENOTFOUND);
    assert_non_null(strstr(broker_errmsg(b), name_b));
    assert_int_equal(broker_schedule_pause(b, name_b, true, 0), HP_ENOTFOUND);
    assert_int_equal(broker_schedule_delete(b, name_a), 0);
    schedule_free(s);
}

static void expect_refused(schedule_t *s, int code, const char *words)
{
    int err = broker_schedule_put(b, s, NULL);
    if (err != code || !strstr(broker_errmsg(b), words))
        fail_msg("expected %d \"%s\", got %d \"%s\"", code, words, err, broker_errmsg(b));
}

static void definitions_are_checked(void **state)
{
    (void)state;
    const char *queue = test_queue_name("val");
    schedule_t *s = definition("ok", queue, T0);

    snprintf(s->name, sizeof(s->name), "has space");
    expect_refused(s, HP_EINVAL, "schedule name");
    s->name[0] = '\0';
    expect_refused(s, HP_EINVAL, "schedule name");
    snprintf(s->name, sizeof(s->name), "val.%s", queue);

    char *keep = s->cron;
    s->cron = hp_strdup("");
    expect_refused(s, HP_EINVAL, "cron");
    hp_free(s->cron);
    s->cron = hp_calloc(1, 300);
    memset(s->cron, '*', 257);
    expect_refused(s, HP_EINVAL, "cron: must be 1-256");
    hp_free(s->cron);
    s->cron = keep;

    keep = s->tz;
    s->tz = hp_strdup("");
    expect_refused(s, HP_EINVAL, "tz");
    hp_free(s->tz);
    s->tz = keep;

    keep = s->job;
    s->job = hp_strdup("");
    expect_refused(s, HP_EINVAL, "job: the job template is required");
    hp_free(s->job);
    s->job = hp_strdup("{\"queue\":");
    expect_refused(s, HP_EINVAL, "job: not valid JSON");
    hp_free(s->job);
    s->job = hp_strdup("[1, 2]");
    expect_refused(s, HP_EINVAL, "job: ");
    hp_free(s->job);
    s->job = hp_sprintf("{\"queue\":\"%s\"}", queue);
    expect_refused(s, HP_EINVAL, "job: type");
    hp_free(s->job);
    s->job = hp_strdup("{\"queue\":\"other\",\"type\":\"x\"}");
    expect_refused(s, HP_EINVAL, "not the job template's queue");
    hp_free(s->job);
    s->job = hp_sprintf("{\"queue\":\"%s\",\"type\":\"x\",\"priority\":5000}", queue);
    expect_refused(s, HP_EINVAL, "job: priority");
    hp_free(s->job);
    s->job = keep;

    snprintf(s->queue, sizeof(s->queue), "bad{queue}");
    expect_refused(s, HP_EINVAL, "queue");
    snprintf(s->queue, sizeof(s->queue), "%s", queue);

    s->jitter_ms = 24LL * 3600 * 1000 + 1;
    expect_refused(s, HP_EINVAL, "jitter");
    s->jitter_ms = -1;
    expect_refused(s, HP_EINVAL, "jitter");
    s->jitter_ms = 0;
    s->next_fire_ms = -5;
    expect_refused(s, HP_EINVAL, "next_fire");
    s->next_fire_ms = T0;

    /* Nothing refused was stored; the valid one is. */
    assert_int_equal(broker_schedule_put(b, s, NULL), 0);
    assert_int_equal(broker_schedule_delete(b, s->name), 0);
    assert_false(schedule_name_valid("a/b"));
    assert_true(schedule_name_valid("nightly.report:eu-1_x"));
    schedule_free(s);
}

static void put_keeps_history_and_last_fire(void **state)
{
    (void)state;
    char name[SCHEDULE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1], id[JOB_ID_MAX];
    put_new("keep", name, queue, SCHEDULE_OVERLAP_ALLOW, T0);
    assert_int_equal(fire(b, name, queue, T0, T0 + STEP, false, id), SCHEDULE_FIRED);
    schedule_t *first = get(name);

    schedule_t *s = definition(name, queue, T0 + 7 * STEP);
    hp_free(s->cron);
    s->cron = hp_strdup("0 * * * *");
    bool created = true;
    assert_int_equal(broker_schedule_put(b, s, &created), 0);
    assert_false(created);
    schedule_t *now = get(name);
    assert_string_equal(now->cron, "0 * * * *");
    assert_int_equal(now->next_fire_ms, T0 + 7 * STEP);
    assert_int_equal(now->last_fire_ms, T0);
    assert_string_equal(now->last_job_id, id);
    assert_string_equal(now->history, first->history);
    assert_int_equal(now->created_ms, first->created_ms);
    assert_true(now->updated_ms >= first->updated_ms);
    assert_int_equal(now->version, first->version + 1);
    schedule_free(now);
    schedule_free(first);
    schedule_free(s);
}

static void version_moves_on_put_pause_delete(void **state)
{
    (void)state;
    char name[SCHEDULE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1];
    int64_t v0 = -1, v1 = -1, v2 = -1, v3 = -1, v4 = -1;
    assert_int_equal(broker_schedules_version(b, &v0), 0);
    assert_true(v0 >= 0);
    put_new("ver", name, queue, SCHEDULE_OVERLAP_ALLOW, T0);
    assert_int_equal(broker_schedules_version(b, &v1), 0);
    assert_true(v1 > v0);

    assert_int_equal(broker_schedule_pause(b, name, true, 0), 0);
    assert_int_equal(broker_schedules_version(b, &v2), 0);
    assert_true(v2 > v1);
    schedule_t *s = get(name);
    assert_true(s->paused);
    assert_int_equal(s->next_fire_ms, T0); /* pausing keeps it */
    assert_int_equal(s->version, 2);
    schedule_free(s);

    assert_int_equal(broker_schedule_pause(b, name, false, T0 + 9 * STEP), 0);
    assert_int_equal(broker_schedules_version(b, &v3), 0);
    assert_true(v3 > v2);
    s = get(name);
    assert_false(s->paused);
    assert_int_equal(s->next_fire_ms, T0 + 9 * STEP); /* resuming sets it */
    schedule_free(s);

    assert_int_equal(broker_schedule_delete(b, name), 0);
    assert_int_equal(broker_schedules_version(b, &v4), 0);
    assert_true(v4 > v3);
    /* A fire does not change the definition, so the version stays. */
}

/* ---- Firing ---- */

static void fire_at_the_tick_enqueues_once(void **state)
{
    (void)state;
    char name[SCHEDULE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1], id[JOB_ID_MAX];
    put_new("fire", name, queue, SCHEDULE_OVERLAP_ALLOW, T0);
    int64_t v0, v1;
    assert_int_equal(broker_schedules_version(b, &v0), 0);
    assert_int_equal(fire(b, name, queue, T0, T0 + STEP, false, id), SCHEDULE_FIRED);
    assert_int_equal(broker_schedules_version(b, &v1), 0);
    assert_int_equal(v1, v0);
    assert_true(strlen(id) > HP_ULID_LEN);

    job_t *job = NULL;
    assert_int_equal(broker_get(b, id, &job), 0);
    assert_string_equal(job->schedule, name);
    assert_int_equal(job->schedule_tick_ms, T0);
    assert_string_equal(job->type, "report");
    assert_int_equal(job->state, JOB_STATE_WAITING);
    char *text = job_to_json(job, 0);
    json_t *view = json_loads(text, 0, NULL);
    json_t *sched = json_object_get(view, "schedule");
    assert_string_equal(json_string_value(json_object_get(sched, "name")), name);
    char tick[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(T0, tick);
    assert_string_equal(json_string_value(json_object_get(sched, "tick")), tick);
    json_decref(view);
    hp_free(text);
    job_free(job);

    schedule_t *s = get(name);
    assert_int_equal(s->next_fire_ms, T0 + STEP);
    assert_int_equal(s->last_fire_ms, T0);
    assert_string_equal(s->last_job_id, id);
    schedule_free(s);
    json_t *h = history_of(name);
    assert_int_equal(json_array_size(h), 1);
    assert_string_equal(entry_outcome(h, 0), "enqueued");
    assert_int_equal(entry_tick(h, 0), T0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(h, 0), "job")), id);
    json_decref(h);

    /* The same tick again: lost, nothing enqueued, nothing moved. */
    char again[JOB_ID_MAX];
    assert_int_equal(fire(b, name, queue, T0, T0 + 2 * STEP, false, again), SCHEDULE_LOST);
    assert_string_equal(again, "");
    assert_int_equal(pending(queue), 1);
    s = get(name);
    assert_int_equal(s->next_fire_ms, T0 + STEP);
    schedule_free(s);

    /* A plain job carries no schedule. */
    job_spec_t plain = {.queue = queue, .type = "plain"};
    enqueue_result_t res;
    assert_int_equal(broker_enqueue(b, &plain, 1, &res), 0);
    assert_int_equal(broker_get(b, res.id, &job), 0);
    assert_null(job->schedule);
    text = job_to_json(job, 0);
    assert_null(strstr(text, "\"schedule\""));
    hp_free(text);
    job_free(job);
}

static void a_tick_set_back_does_not_fire_twice(void **state)
{
    (void)state;
    char name[SCHEDULE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1], id[JOB_ID_MAX];
    char again[JOB_ID_MAX];
    put_new("back", name, queue, SCHEDULE_OVERLAP_ALLOW, T0);
    assert_int_equal(fire(b, name, queue, T0, T0 + STEP, false, id), SCHEDULE_FIRED);
    /* A second server applying its config at start sets next back to T0. */
    schedule_t *s = definition(name, queue, T0);
    assert_int_equal(broker_schedule_put(b, s, NULL), 0);
    schedule_free(s);
    assert_int_equal(fire(b, name, queue, T0, T0 + STEP, false, again), SCHEDULE_LOST);
    assert_string_equal(again, id);
    assert_int_equal(pending(queue), 1);
    s = get(name);
    assert_int_equal(s->next_fire_ms, T0 + STEP); /* moved on all the same */
    schedule_free(s);
    assert_int_equal(fire(b, name, queue, T0 + STEP, T0 + 2 * STEP, false, id), SCHEDULE_FIRED);
    assert_int_equal(pending(queue), 2);
}

#define RACERS 4
#define TICKS  200

typedef struct racer_s {
    const char *name, *queue;
    int fired;
    int err;
} racer_t;

static void *race(void *arg)
{
    racer_t *r = arg;
    broker_t *own = test_redis_broker(&server, 0);
    fire_spec_t f;
    fire_spec_init(&f, r->queue);
    for (int i = 0; i < TICKS && !r->err; i++) {
        schedule_fire_t outcome;
        char id[JOB_ID_MAX];
        r->err = broker_schedule_fire(own, r->name, T0 + i * STEP, T0 + (i + 1) * STEP, false,
                                      &f.js.spec, &outcome, id);
        r->fired += !r->err && outcome == SCHEDULE_FIRED;
    }
    fire_spec_cleanup(&f);
    broker_close(own);
    return NULL;
}

static void racing_connections_fire_each_tick_once(void **state)
{
    (void)state;
    char name[SCHEDULE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1];
    put_new("race", name, queue, SCHEDULE_OVERLAP_ALLOW, T0);
    pthread_t threads[RACERS];
    racer_t racers[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (racer_t){name, queue, 0, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
    }
    int fired = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(racers[i].err, 0);
        fired += racers[i].fired;
    }
    assert_int_equal(fired, TICKS);
    assert_int_equal(pending(queue), TICKS);

    /* One job per tick: every tick appears once. */
    static bool seen[TICKS];
    memset(seen, 0, sizeof(seen));
    job_list_t list;
    assert_int_equal(broker_list(b, queue, JOB_STATE_WAITING, NULL, 1000, &list), 0);
    assert_int_equal(list.n, TICKS);
    for (size_t i = 0; i < list.n; i++) {
        int64_t k = (list.jobs[i]->schedule_tick_ms - T0) / STEP;
        assert_true(k >= 0 && k < TICKS);
        assert_false(seen[k]);
        seen[k] = true;
    }
    job_list_cleanup(&list);
    schedule_t *s = get(name);
    assert_int_equal(s->next_fire_ms, T0 + TICKS * STEP);
    schedule_free(s);
}

static void paused_schedule_loses_its_tick(void **state)
{
    (void)state;
    char name[SCHEDULE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1], id[JOB_ID_MAX];
    put_new("paused", name, queue, SCHEDULE_OVERLAP_ALLOW, T0);
    assert_int_equal(broker_schedule_pause(b, name, true, 0), 0);
    assert_int_equal(fire(b, name, queue, T0, T0 + STEP, false, id), SCHEDULE_LOST);
    assert_int_equal(pending(queue), 0);
    assert_int_equal(broker_schedule_pause(b, name, false, T0 + 3 * STEP), 0);
    assert_int_equal(fire(b, name, queue, T0 + 3 * STEP, T0 + 4 * STEP, false, id), SCHEDULE_FIRED);
    assert_int_equal(pending(queue), 1);
}

static void missed_tick_is_recorded_without_a_job(void **state)
{
    (void)state;
    char name[SCHEDULE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1], id[JOB_ID_MAX];
    put_new("missed", name, queue, SCHEDULE_OVERLAP_ALLOW, T0);
    assert_int_equal(fire(b, name, queue, T0, T0 + STEP, true, id), SCHEDULE_MISSED);
    assert_string_equal(id, "");
    /* Without a spec the broker finds the schedule's queue itself. */
    schedule_fire_t outcome;
    assert_int_equal(
        broker_schedule_fire(b, name, T0 + STEP, T0 + 2 * STEP, true, NULL, &outcome, id), 0);
    assert_int_equal(outcome, SCHEDULE_MISSED);
    assert_int_equal(pending(queue), 0);
    json_t *h = history_of(name);
    assert_int_equal(json_array_size(h), 2);
    assert_string_equal(entry_outcome(h, 0), "missed");
    assert_int_equal(entry_tick(h, 0), T0 + STEP);
    assert_true(json_is_null(json_object_get(json_array_get(h, 0), "job")));
    assert_true(json_integer_value(json_object_get(json_array_get(h, 0), "at")) > 0);
    json_decref(h);
    schedule_t *s = get(name);
    assert_int_equal(s->next_fire_ms, T0 + 2 * STEP);
    assert_int_equal(s->last_fire_ms, 0);
    schedule_free(s);
    /* A missed fire of a tick that is not next is lost too. */
    assert_int_equal(fire(b, name, queue, T0, T0 + STEP, true, id), SCHEDULE_LOST);
}

static void overlap_skip_waits_for_the_last_job(void **state)
{
    (void)state;
    char name[SCHEDULE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1], id[JOB_ID_MAX];
    char none[JOB_ID_MAX];
    put_new("overlap", name, queue, SCHEDULE_OVERLAP_SKIP, T0);
    assert_int_equal(fire(b, name, queue, T0, T0 + STEP, false, id), SCHEDULE_FIRED);
    assert_int_equal(fire(b, name, queue, T0 + STEP, T0 + 2 * STEP, false, none),
                     SCHEDULE_SKIPPED_OVERLAP);
    assert_string_equal(none, "");
    assert_int_equal(pending(queue), 1);
    json_t *h = history_of(name);
    assert_string_equal(entry_outcome(h, 0), "skipped_overlap");
    assert_int_equal(entry_tick(h, 0), T0 + STEP);
    json_decref(h);

    /* Still skipped while it runs; fired again once it is acked. */
    job_list_t got;
    assert_int_equal(broker_reserve(b, queue, 1, 30000, "w1", &got), 0);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.jobs[0]->id, id);
    assert_int_equal(fire(b, name, queue, T0 + 2 * STEP, T0 + 3 * STEP, false, none),
                     SCHEDULE_SKIPPED_OVERLAP);
    assert_int_equal(broker_ack(b, id, got.jobs[0]->lease_token, NULL, 0), 0);
    job_list_cleanup(&got);
    char next_id[JOB_ID_MAX];
    assert_int_equal(fire(b, name, queue, T0 + 3 * STEP, T0 + 4 * STEP, false, next_id),
                     SCHEDULE_FIRED);
    assert_string_not_equal(next_id, id);
    schedule_t *s = get(name);
    assert_string_equal(s->last_job_id, next_id);
    schedule_free(s);
}

static void trigger_fires_now_and_leaves_next(void **state)
{
    (void)state;
    char name[SCHEDULE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1], id[JOB_ID_MAX];
    put_new("trigger", name, queue, SCHEDULE_OVERLAP_SKIP, T0);
    int64_t before = hp_now_ms();
    assert_int_equal(fire(b, name, queue, 0, 0, false, id), SCHEDULE_FIRED);
    /* Overlap does not hold back a trigger: a person asked for it. */
    char second[JOB_ID_MAX];
    assert_int_equal(fire(b, name, queue, 0, 0, false, second), SCHEDULE_FIRED);
    assert_int_equal(pending(queue), 2);
    job_t *job = NULL;
    assert_int_equal(broker_get(b, id, &job), 0);
    assert_string_equal(job->schedule, name);
    assert_true(job->schedule_tick_ms >= before && job->schedule_tick_ms <= hp_now_ms());
    job_free(job);
    schedule_t *s = get(name);
    assert_int_equal(s->next_fire_ms, T0);
    assert_true(s->last_fire_ms >= before);
    assert_string_equal(s->last_job_id, second);
    schedule_free(s);
    json_t *h = history_of(name);
    assert_string_equal(entry_outcome(h, 0), "triggered");
    json_decref(h);

    schedule_fire_t outcome;
    fire_spec_t f;
    fire_spec_init(&f, queue);
    assert_int_equal(
        broker_schedule_fire(b, "no-such-schedule", 0, 0, false, &f.js.spec, &outcome, id),
        HP_ENOTFOUND);
    assert_non_null(strstr(broker_errmsg(b), "no-such-schedule"));
    assert_int_equal(broker_schedule_fire(b, name, 0, 0, true, &f.js.spec, &outcome, id),
                     HP_EINVAL);
    fire_spec_cleanup(&f);
}

static void history_keeps_the_newest(void **state)
{
    (void)state;
    char name[SCHEDULE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1], id[JOB_ID_MAX];
    put_new("hist", name, queue, SCHEDULE_OVERLAP_ALLOW, T0);
    int runs = SCHEDULE_HISTORY_MAX + 5;
    for (int i = 0; i < runs; i++)
        assert_int_equal(fire(b, name, queue, T0 + i * STEP, T0 + (i + 1) * STEP, i % 3 == 2, id),
                         i % 3 == 2 ? SCHEDULE_MISSED : SCHEDULE_FIRED);
    json_t *h = history_of(name);
    assert_int_equal(json_array_size(h), SCHEDULE_HISTORY_MAX);
    for (size_t i = 0; i < SCHEDULE_HISTORY_MAX; i++)
        assert_int_equal(entry_tick(h, i), T0 + (int64_t)(runs - 1 - (int)i) * STEP);
    json_decref(h);
}

static void full_queue_refuses_the_fire(void **state)
{
    (void)state;
    char name[SCHEDULE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1], id[JOB_ID_MAX] = "x";
    put_new("full", name, queue, SCHEDULE_OVERLAP_ALLOW, T0);
    queue_conf_t conf = {.max_length = 1};
    assert_int_equal(broker_queue_configure(b, queue, &conf), 0);
    job_spec_t plain = {.queue = queue, .type = "plain"};
    enqueue_result_t res;
    assert_int_equal(broker_enqueue(b, &plain, 1, &res), 0);

    fire_spec_t f;
    fire_spec_init(&f, queue);
    schedule_fire_t outcome;
    assert_int_equal(broker_schedule_fire(b, name, T0, T0 + STEP, false, &f.js.spec, &outcome, id),
                     HP_EFULL);
    assert_non_null(strstr(broker_errmsg(b), "full"));
    assert_string_equal(id, "");
    assert_int_equal(pending(queue), 1);
    schedule_t *s = get(name);
    assert_int_equal(s->next_fire_ms, T0);
    assert_int_equal(s->last_fire_ms, 0);
    assert_string_equal(s->history, "[]");
    schedule_free(s);

    /* With room again the same tick fires: the scheduler's retry works. */
    conf.max_length = -1;
    assert_int_equal(broker_queue_configure(b, queue, &conf), 0);
    assert_int_equal(broker_schedule_fire(b, name, T0, T0 + STEP, false, &f.js.spec, &outcome, id),
                     0);
    assert_int_equal(outcome, SCHEDULE_FIRED);
    fire_spec_cleanup(&f);
}

static void changing_the_queue_moves_the_schedule(void **state)
{
    (void)state;
    char name[SCHEDULE_NAME_MAX + 1], queue[JOB_QUEUE_NAME_MAX + 1], id[JOB_ID_MAX];
    char none[JOB_ID_MAX], moved_id[JOB_ID_MAX];
    put_new("from", name, queue, SCHEDULE_OVERLAP_ALLOW, T0);
    assert_int_equal(fire(b, name, queue, T0, T0 + STEP, false, id), SCHEDULE_FIRED);
    schedule_t *before = get(name);

    const char *other = test_queue_name("to");
    schedule_t *s = definition(name, other, T0 + STEP);
    bool created = true;
    assert_int_equal(broker_schedule_put(b, s, &created), 0);
    assert_false(created);
    schedule_free(s);
    schedule_t *after = get(name);
    assert_string_equal(after->queue, other);
    assert_string_equal(after->history, before->history);
    assert_string_equal(after->last_job_id, id);
    assert_int_equal(after->last_fire_ms, T0);
    assert_int_equal(after->created_ms, before->created_ms);
    assert_int_equal(after->version, before->version + 1);
    schedule_free(after);
    schedule_free(before);
    assert_int_equal(test_redis_int(&server, "EXISTS hopper:{%s}:schedule:%s", queue, name), 0);
    assert_int_equal(test_redis_int(&server, "EXISTS hopper:{%s}:schedule:%s", other, name), 1);

    /* A server still holding the old template loses; the new queue fires. */
    assert_int_equal(fire(b, name, queue, T0 + STEP, T0 + 2 * STEP, false, none), SCHEDULE_LOST);
    assert_int_equal(fire(b, name, other, T0 + STEP, T0 + 2 * STEP, false, moved_id),
                     SCHEDULE_FIRED);
    assert_non_null(strstr(moved_id, other));
    assert_int_equal(pending(queue), 1);
    assert_int_equal(pending(other), 1);
    schedule_t **list = NULL;
    size_t n = 0;
    assert_int_equal(broker_schedules(b, &list, &n), 0);
    int found = 0;
    for (size_t i = 0; i < n; i++)
        found += strcmp(list[i]->name, name) == 0 && strcmp(list[i]->queue, other) == 0;
    assert_int_equal(found, 1);
    schedules_free(list, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_get_list_delete_round_trip),
        cmocka_unit_test(definitions_are_checked),
        cmocka_unit_test(put_keeps_history_and_last_fire),
        cmocka_unit_test(version_moves_on_put_pause_delete),
        cmocka_unit_test(fire_at_the_tick_enqueues_once),
        cmocka_unit_test(a_tick_set_back_does_not_fire_twice),
        cmocka_unit_test(racing_connections_fire_each_tick_once),
        cmocka_unit_test(paused_schedule_loses_its_tick),
        cmocka_unit_test(missed_tick_is_recorded_without_a_job),
        cmocka_unit_test(overlap_skip_waits_for_the_last_job),
        cmocka_unit_test(trigger_fires_now_and_leaves_next),
        cmocka_unit_test(history_keeps_the_newest),
        cmocka_unit_test(full_queue_refuses_the_fire),
        cmocka_unit_test(changing_the_queue_moves_the_schedule),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
