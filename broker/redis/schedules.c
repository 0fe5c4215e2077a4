/*
 * Schedules on Redis: where they are stored and how they fire. A schedule's record
 * is a hash in its job queue's slot, hopper:{q}:schedule:<name>, so the fire (the
 * compare of next_fire, the job's enqueue, the move of next_fire, the run history)
 * is one script there (scripts/schedule_fire.lua). Two keys outside any queue find
 * schedules: the directory hash hopper:schedules (name -> queue) and the counter
 * hopper:schedules:version that every put, pause and delete bumps.
 *
 * The directory and the counter are written after the record, by separate commands
 * (on Redis Cluster they live in other slots). So a crash in between leaves, at
 * worst: a record the directory does not name yet (the next put of that name
 * adopts it), a directory entry whose record is gone (listing skips it, get says
 * not found), or a version not yet bumped (servers reload on their next change).
 * A put that moves a schedule to another queue writes the new record, then the
 * directory, then deletes the old record: never a moment without one.
 *
 * What this file does not do: check input (broker.c did), read cron (scheduler/).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/redis/internal.h"

#define DIRECTORY_KEY "hopper:schedules"
#define VERSION_KEY   "hopper:schedules:version"

/* ---- Helpers ---- */

static int64_t reply_i64(const redisReply *r)
{
    if (r && r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS))
        return strtoll(r->str, NULL, 10);
    return 0;
}

static int unexpected(broker_t *b, const char *what)
{
    return broker__error(b, HP_EPROTO, "redis: unexpected reply to %s", what);
}

static int not_found(broker_t *b, const char *name)
{
    return broker__error(b, HP_ENOTFOUND, "schedule \"%s\" not found", name);
}

/* The record's key; hp_free it. */
static char *record_key(const char *queue, const char *name)
{
    return hp_sprintf("hopper:{%s}:schedule:%s", queue, name);
}

/* One command; on success *r is the caller's to free. */
static int command(broker_t *b, redisReply **r, int argc, const char **argv, const size_t *lens)
{
    *r = NULL;
    int err = broker__rconn_command(broker__redis_conn(b), b, r, argc, argv, lens);
    if (!err)
        err = broker__redis_reply_err(b, *r);
    if (err && *r) {
        freeReplyObject(*r);
        *r = NULL;
    }
    return err;
}

/* Runs n commands in one round trip and frees the replies; the first error. */
static int pipeline(broker_t *b, const rcmd_t *cmds, size_t n)
{
    redisReply *r[4] = {NULL};
    int err = broker__rconn_pipeline(broker__redis_conn(b), b, cmds, n, r);
    for (size_t i = 0; i < n; i++) {
        if (!err)
            err = broker__redis_reply_err(b, r[i]);
        if (r[i])
            freeReplyObject(r[i]);
    }
    return err;
}

/* One script call in `queue`'s slot; on success *r is the caller's to free. */
static int eval1(broker_t *b, redis_script_id_t script, const char *queue, int nargs,
                 const char **args, const size_t *lens, redisReply **r)
{
    reval_t call = {.queue = queue, .nargs = nargs, .args = args, .lens = lens};
    *r = NULL;
    int err = broker__redis_eval(broker__redis_conn(b), b, script, &call, 1, r);
    if (!err)
        err = broker__redis_reply_err(b, *r);
    if (err && *r) {
        freeReplyObject(*r);
        *r = NULL;
    }
    return err;
}

/* The queue the directory names for `name`: 0 and queue[] filled, HP_ENOTFOUND, or
 * another error. */
static int directory_lookup(broker_t *b, const char *name, char queue[JOB_QUEUE_NAME_MAX + 1])
{
    redisReply *r;
    int err = command(b, &r, 3, (const char *[]){"HGET", DIRECTORY_KEY, name}, NULL);
    if (err)
        return err;
    if (r->type == REDIS_REPLY_STRING && r->len <= JOB_QUEUE_NAME_MAX)
        snprintf(queue, JOB_QUEUE_NAME_MAX + 1, "%s", r->str);
    else
        err =
            r->type == REDIS_REPLY_NIL ? not_found(b, name) : unexpected(b, "HGET " DIRECTORY_KEY);
    freeReplyObject(r);
    return err;
}

/* A record (a flat HGETALL reply) into a schedule the caller frees; NULL when the
 * reply holds no record. */
static schedule_t *decode(const char *name, const char *queue, const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return NULL;
    schedule_t *s = hp_calloc(1, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    snprintf(s->queue, sizeof(s->queue), "%s", queue);
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
        size_t vlen = r->element[i + 1]->len;
        if (strcmp(k, "cron") == 0)
            s->cron = hp_strndup(v, vlen);
        else if (strcmp(k, "tz") == 0)
            s->tz = hp_strndup(v, vlen);
        else if (strcmp(k, "job") == 0)
            s->job = hp_strndup(v, vlen);
        else if (strcmp(k, "history") == 0)
            s->history = hp_strndup(v, vlen);
        else if (strcmp(k, "paused") == 0)
            s->paused = strcmp(v, "1") == 0;
        else if (strcmp(k, "misfire") == 0)
            s->misfire = strcmp(v, "once") == 0 ? SCHEDULE_MISFIRE_ONCE : SCHEDULE_MISFIRE_SKIP;
        else if (strcmp(k, "overlap") == 0)
            s->overlap = strcmp(v, "skip") == 0 ? SCHEDULE_OVERLAP_SKIP : SCHEDULE_OVERLAP_ALLOW;
        else if (strcmp(k, "jitter_ms") == 0)
            s->jitter_ms = strtoll(v, NULL, 10);
        else if (strcmp(k, "next_fire_ms") == 0)
            s->next_fire_ms = strtoll(v, NULL, 10);
        else if (strcmp(k, "last_fire_ms") == 0)
            s->last_fire_ms = strtoll(v, NULL, 10);
        else if (strcmp(k, "last_job_id") == 0)
            snprintf(s->last_job_id, sizeof(s->last_job_id), "%s", v);
        else if (strcmp(k, "created_ms") == 0)
            s->created_ms = strtoll(v, NULL, 10);
        else if (strcmp(k, "updated_ms") == 0)
            s->updated_ms = strtoll(v, NULL, 10);
        else if (strcmp(k, "version") == 0)
            s->version = strtoll(v, NULL, 10);
    }
    /* Every record has them; a damaged one still frees and prints cleanly. */
    s->cron = s->cron ? s->cron : hp_strdup("");
    s->tz = s->tz ? s->tz : hp_strdup("UTC");
    s->job = s->job ? s->job : hp_strdup("{}");
    s->history = s->history ? s->history : hp_strdup("[]");
    return s;
}

/* ---- Definitions ---- */

int broker__redis_schedule_put(broker_t *b, const schedule_t *s, bool *created)
{
    char old_queue[JOB_QUEUE_NAME_MAX + 1] = "";
    int err = directory_lookup(b, s->name, old_queue);
    if (err == HP_ENOTFOUND)
        err = 0;
    if (err)
        return err;
    bool moving = old_queue[0] && strcmp(old_queue, s->queue) != 0;
    char *old_key = moving ? record_key(old_queue, s->name) : NULL;
    schedule_t *carry = NULL;
    redisReply *r = NULL;
    if (moving) {
        err = command(b, &r, 2, (const char *[]){"HGETALL", old_key}, NULL);
        if (err)
            goto done;
        carry = decode(s->name, old_queue, r);
        freeReplyObject(r);
        r = NULL;
    }
    char jitter[24], next[24], created_ms[24] = "", last_fire[24] = "", version[24] = "";
    snprintf(jitter, sizeof(jitter), "%lld", (long long)s->jitter_ms);
    snprintf(next, sizeof(next), "%lld", (long long)s->next_fire_ms);
    if (carry) {
        snprintf(created_ms, sizeof(created_ms), "%lld", (long long)carry->created_ms);
        snprintf(last_fire, sizeof(last_fire), "%lld", (long long)carry->last_fire_ms);
        snprintf(version, sizeof(version), "%lld", (long long)carry->version);
    }
    const char *args[] = {s->name,
                          s->cron,
                          s->tz,
                          s->job,
                          s->paused ? "1" : "0",
                          s->misfire == SCHEDULE_MISFIRE_ONCE ? "once" : "skip",
                          s->overlap == SCHEDULE_OVERLAP_SKIP ? "skip" : "allow",
                          jitter,
                          next,
                          carry ? "1" : "",
                          created_ms,
                          last_fire,
                          carry ? carry->last_job_id : "",
                          carry ? carry->history : "",
                          version};
    err = eval1(b, SCRIPT_SCHEDULE_PUT, s->queue, 15, args, NULL, &r);
    if (err)
        goto done;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
        err = unexpected(b, "schedule put");
        goto done;
    }
    *created = reply_i64(r->element[0]) == 1;
    /* Listed in hopper:queues before its first job lands, as an enqueue would. */
    rcmd_t cmds[4] = {
        {4, (const char *[]){"HSET", DIRECTORY_KEY, s->name, s->queue}, NULL},
        {3, (const char *[]){"SADD", "hopper:queues", s->queue}, NULL},
        {2, (const char *[]){"INCR", VERSION_KEY}, NULL},
        {2, (const char *[]){"DEL", old_key}, NULL},
    };
    err = pipeline(b, cmds, moving ? 4 : 3);
done:
    if (r)
        freeReplyObject(r);
    schedule_free(carry);
    hp_free(old_key);
    return err;
}

int broker__redis_schedule_get(broker_t *b, const char *name, schedule_t **out)
{
    char queue[JOB_QUEUE_NAME_MAX + 1];
    int err = directory_lookup(b, name, queue);
    if (err)
        return err;
    char *key = record_key(queue, name);
    redisReply *r;
    err = command(b, &r, 2, (const char *[]){"HGETALL", key}, NULL);
    hp_free(key);
    if (err)
        return err;
    *out = decode(name, queue, r);
    freeReplyObject(r);
    return *out ? 0 : not_found(b, name);
}

static int compare_by_name(const void *x, const void *y)
{
    return strcmp((*(schedule_t *const *)x)->name, (*(schedule_t *const *)y)->name);
}

int broker__redis_schedules(broker_t *b, schedule_t ***list, size_t *n)
{
    redisReply *dir;
    int err = command(b, &dir, 2, (const char *[]){"HGETALL", DIRECTORY_KEY}, NULL);
    if (err)
        return err;
    if (dir->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(dir);
        return unexpected(b, "HGETALL " DIRECTORY_KEY);
    }
    size_t m = dir->elements / 2;
    rcmd_t *cmds = hp_calloc(m ? m : 1, sizeof(*cmds));
    const char **argv = hp_calloc(m ? 2 * m : 1, sizeof(*argv));
    char **keys = hp_calloc(m ? m : 1, sizeof(*keys));
    redisReply **replies = hp_calloc(m ? m : 1, sizeof(*replies));
    for (size_t i = 0; i < m; i++) {
        keys[i] = record_key(dir->element[2 * i + 1]->str, dir->element[2 * i]->str);
        argv[2 * i] = "HGETALL";
        argv[2 * i + 1] = keys[i];
        cmds[i] = (rcmd_t){2, argv + 2 * i, NULL};
    }
    err = m ? broker__rconn_pipeline(broker__redis_conn(b), b, cmds, m, replies) : 0;
    *list = hp_calloc(m ? m : 1, sizeof(**list));
    for (size_t i = 0; i < m; i++) {
        if (!err)
            err = broker__redis_reply_err(b, replies[i]);
        /* A directory entry whose record is gone (a delete cut short) is skipped. */
        schedule_t *s =
            err ? NULL : decode(dir->element[2 * i]->str, dir->element[2 * i + 1]->str, replies[i]);
        if (s)
            (*list)[(*n)++] = s;
        if (replies[i])
            freeReplyObject(replies[i]);
        hp_free(keys[i]);
    }
    hp_free(replies);
    hp_free(keys);
    hp_free(argv);
    hp_free(cmds);
    freeReplyObject(dir);
    if (err) {
        schedules_free(*list, *n);
        *list = NULL;
        *n = 0;
        return err;
    }
    qsort(*list, *n, sizeof(**list), compare_by_name);
    return 0;
}

int broker__redis_schedule_delete(broker_t *b, const char *name)
{
    char queue[JOB_QUEUE_NAME_MAX + 1];
    int err = directory_lookup(b, name, queue);
    if (err)
        return err;
    char *key = record_key(queue, name);
    rcmd_t cmds[3] = {
        {2, (const char *[]){"DEL", key}, NULL},
        {3, (const char *[]){"HDEL", DIRECTORY_KEY, name}, NULL},
        {2, (const char *[]){"INCR", VERSION_KEY}, NULL},
    };
    err = pipeline(b, cmds, 3);
    hp_free(key);
    return err;
}

int broker__redis_schedule_pause(broker_t *b, const char *name, bool paused, int64_t next_fire_ms)
{
    char queue[JOB_QUEUE_NAME_MAX + 1];
    int err = directory_lookup(b, name, queue);
    if (err)
        return err;
    char next[24];
    snprintf(next, sizeof(next), "%lld", (long long)next_fire_ms);
    redisReply *r;
    err = eval1(b, SCRIPT_SCHEDULE_PAUSE, queue, 3,
                (const char *[]){name, paused ? "1" : "0", next}, NULL, &r);
    if (err)
        return err;
    freeReplyObject(r);
    err = command(b, &r, 2, (const char *[]){"INCR", VERSION_KEY}, NULL);
    if (r)
        freeReplyObject(r);
    return err;
}

int broker__redis_schedules_version(broker_t *b, int64_t *version)
{
    redisReply *r;
    int err = command(b, &r, 2, (const char *[]){"GET", VERSION_KEY}, NULL);
    if (err)
        return err;
    *version = reply_i64(r); /* nil: 0 */
    freeReplyObject(r);
    return 0;
}

/* ---- Firing ---- */

static const char *const mode_names[] = {
    [BROKER__FIRE_TICK] = "tick",
    [BROKER__FIRE_MISSED] = "missed",
    [BROKER__FIRE_TRIGGER] = "trigger",
};

int broker__redis_schedule_fire(broker_t *b, const char *name, const char *queue, int64_t tick_ms,
                                int64_t next_ms, broker__fire_mode_t mode, broker__prepared_t *job,
                                schedule_fire_t *outcome, char job_id[JOB_ID_MAX])
{
    char found[JOB_QUEUE_NAME_MAX + 1];
    if (!queue) {
        int err = directory_lookup(b, name, found);
        if (err == HP_ENOTFOUND) /* deleted: the tick is nobody's to record */
            return 0;
        if (err)
            return err;
        queue = found;
    }
    char tick[24], next[24], opts[ENQUEUE_OPTS_MAX] = "";
    snprintf(tick, sizeof(tick), "%lld", (long long)tick_ms);
    snprintf(next, sizeof(next), "%lld", (long long)next_ms);
    if (job)
        broker__redis_enqueue_opts(job, opts);
    const char *args[] = {
        name, tick, next, mode_names[mode], job ? job->ulid : "", opts, job ? job->body : ""};
    size_t lens[] = {
        strlen(name),    strlen(tick), strlen(next),           strlen(mode_names[mode]),
        strlen(args[4]), strlen(opts), job ? job->body_len : 0};
    redisReply *r;
    int err = eval1(b, SCRIPT_SCHEDULE_FIRE, queue, 7, args, lens, &r);
    if (err)
        return err;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return unexpected(b, "schedule fire");
    }
    const char *o = r->element[0]->str;
    *outcome = strcmp(o, "fired") == 0     ? SCHEDULE_FIRED
               : strcmp(o, "skipped") == 0 ? SCHEDULE_SKIPPED_OVERLAP
               : strcmp(o, "missed") == 0  ? SCHEDULE_MISSED
                                           : SCHEDULE_LOST;
    snprintf(job_id, JOB_ID_MAX, "%s", r->element[1]->str);
    freeReplyObject(r);
    return 0;
}
