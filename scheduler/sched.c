/*
 * The firing loop: see scheduler.h. One thread per server; the broker's
 * compare-and-set (broker_schedule_fire) makes any number of them safe together,
 * so this file only has to be on time, never to be alone.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "scheduler/scheduler.h"

#define VERSION_CHECK_MS 1000 /* look for changes made elsewhere this often */
#define RETRY_MS         1000 /* after a failed fire (broker down, queue full) */

struct sched_s {
    broker_config_t cfg;
    char *url;
    char *config_schedules; /* to apply once connected, then NULL */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping, poked;
};

typedef struct loaded_s {
    schedule_t **list;
    size_t n;
    int64_t version;
    int64_t *retry_at; /* per schedule: no fire before this (after a failure) */
} loaded_t;

static void loaded_clear(loaded_t *l)
{
    schedules_free(l->list, l->n);
    hp_free(l->retry_at);
    memset(l, 0, sizeof(*l));
}

static int reload(broker_t *b, loaded_t *l)
{
    schedule_t **list;
    size_t n;
    int64_t version = 0;
    int err = broker_schedules_version(b, &version);
    if (!err)
        err = broker_schedules(b, &list, &n);
    if (err)
        return err;
    loaded_clear(l);
    l->list = list;
    l->n = n;
    l->version = version;
    l->retry_at = hp_calloc(n ? n : 1, sizeof(*l->retry_at));
    return 0;
}

static uint64_t random_below(uint64_t bound)
{
    uint64_t r;
    hp_random_bytes(&r, sizeof(r));
    return bound ? r % bound : 0;
}

/* Fires (or records as missed) schedule i's due tick. */
static void fire_due(broker_t *b, loaded_t *l, size_t i, int64_t now)
{
    schedule_t *s = l->list[i];
    int64_t tick = s->next_fire_ms;
    bool late = now - tick > SCHED_MISFIRE_GRACE_MS;
    /* On time: the next tick after this one. Late (we were down): the next one
     * after now, and the missed ones are skipped, or stand for one catch-up job. */
    int64_t next = sched_next_tick(s, late ? now : tick);
    bool missed = late && s->misfire == SCHEDULE_MISFIRE_SKIP;
    job_spec_json_t js;
    char why[400];
    if (job_spec_from_json(s->job, strlen(s->job), &js, why, sizeof(why)) != 0) {
        hp_warn("schedule %s: its job template does not read as a job: %s", s->name, why);
        l->retry_at[i] = now + 60000;
        job_spec_json_cleanup(&js);
        return;
    }
    if (s->jitter_ms > 0 && !missed && !js.spec.run_at_ms) /* on top of the template's delay */
        js.spec.delay_ms += (int64_t)random_below((uint64_t)s->jitter_ms + 1);
    schedule_fire_t outcome;
    char id[JOB_ID_MAX] = "";
    int err = broker_schedule_fire(b, s->name, tick, next, missed, &js.spec, &outcome, id);
    job_spec_json_cleanup(&js);
    if (err) {
        hp_warn("schedule %s: could not fire the tick of %lld: %s", s->name, (long long)tick,
                broker_errmsg(b));
        l->retry_at[i] = now + RETRY_MS;
        return;
    }
    if (outcome == SCHEDULE_LOST) {
        /* Another server fired it, or it changed: read it again. */
        schedule_t *fresh = NULL;
        if (broker_schedule_get(b, s->name, &fresh) == 0) {
            schedule_free(s);
            l->list[i] = fresh;
        } else {
            s->next_fire_ms = 0; /* gone: the next reload drops it */
        }
        return;
    }
    if (outcome == SCHEDULE_FIRED)
        hp_debug("schedule %s fired job %s for tick %lld", s->name, id, (long long)tick);
    else if (outcome == SCHEDULE_MISSED)
        hp_info("schedule %s: tick %lld missed while no server ran (misfire: skip)", s->name,
                (long long)tick);
    s->next_fire_ms = next;
}

/* Fires everything due; returns the earliest next fire (0: none). */
static int64_t fire_all(broker_t *b, loaded_t *l)
{
    int64_t earliest = 0;
    for (size_t i = 0; i < l->n; i++) {
        schedule_t *s = l->list[i];
        int64_t now = hp_now_ms();
        while (!s->paused && s->next_fire_ms > 0 && s->next_fire_ms <= now &&
               l->retry_at[i] <= now) {
            int64_t before = s->next_fire_ms;
            fire_due(b, l, i, now);
            s = l->list[i];
            if (s->next_fire_ms == before) /* failed: retry_at holds it back */
                break;
        }
        int64_t due = s->paused ? 0 : s->next_fire_ms;
        if (due > 0 && l->retry_at[i] > due)
            due = l->retry_at[i];
        if (due > 0 && (earliest == 0 || due < earliest))
            earliest = due;
    }
    return earliest;
}

/* Sleeps until `until_ms` (wall clock), a poke, or a stop. */
static void sleep_until(sched_t *s, int64_t until_ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(until_ms / 1000);
    ts.tv_nsec = (long)(until_ms % 1000) * 1000000L;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping && !s->poked) {
        if (pthread_cond_timedwait(&s->wake, &s->lock, &ts) != 0)
            break;
    }
    pthread_mutex_unlock(&s->lock);
}

/* The config file's schedules, applied once (checked already at start). */
static int apply_config(sched_t *s, broker_t *b)
{
    json_t *all = json_loads(s->config_schedules, 0, NULL);
    char err[600];
    int rc = sched_apply_config(b, all, err, sizeof(err));
    json_decref(all);
    if (rc == HP_EUNAVAIL)
        return rc; /* try again when the broker is back */
    if (rc)
        hp_error("config file: %s", err);
    else
        hp_info("schedules from the config file applied");
    hp_free(s->config_schedules);
    s->config_schedules = NULL;
    return 0;
}

static void *sched_main(void *arg)
{
    sched_t *s = arg;
    broker_t *b = NULL;
    loaded_t l = {0};
    bool need_reload = true;
    int64_t next_version_check = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        bool stop = s->stopping;
        if (s->poked)
            need_reload = true;
        s->poked = false;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            break;
        int64_t now = hp_now_ms();
        if (!b) {
            char *msg = NULL;
            if (broker_open(&s->cfg, &b, &msg) != 0) {
                hp_free(msg);
                sleep_until(s, now + RETRY_MS);
                continue;
            }
        }
        if (s->config_schedules && apply_config(s, b) != 0) {
            sleep_until(s, now + RETRY_MS);
            continue;
        }
        if (!need_reload && now >= next_version_check) {
            int64_t version = 0;
            need_reload = broker_schedules_version(b, &version) != 0 || version != l.version;
            next_version_check = now + VERSION_CHECK_MS;
        }
        if (need_reload) {
            if (reload(b, &l) != 0) {
                sleep_until(s, now + RETRY_MS);
                continue;
            }
            need_reload = false;
            next_version_check = now + VERSION_CHECK_MS;
        }
        int64_t earliest = fire_all(b, &l);
        int64_t until = next_version_check;
        if (earliest > 0 && earliest < until)
            until = earliest;
        sleep_until(s, until);
    }
    loaded_clear(&l);
    if (b)
        broker_close(b);
    return NULL;
}

sched_t *sched_start(const broker_config_t *cfg, const char *config_schedules)
{
    sched_t *s = hp_calloc(1, sizeof(*s));
    s->config_schedules = config_schedules ? hp_strdup(config_schedules) : NULL;
    s->cfg = *cfg;
    s->url = cfg->url ? hp_strdup(cfg->url) : NULL;
    s->cfg.url = s->url;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr); /* CLOCK_REALTIME: ticks are wall-clock times */
    pthread_cond_init(&s->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_create(&s->thread, NULL, sched_main, s);
    return s;
}

void sched_poke(sched_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->poked = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

void sched_stop(sched_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    hp_free(s->config_schedules);
    hp_free(s->url);
    hp_free(s);
}
