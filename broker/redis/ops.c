/*
 * The Redis backend's operations: each builds the arguments of one script call (or
 * a pipeline of them, for batches), and decodes the reply. The scripts in
 * Lua scripts in scripts/ do the state changes, each in one atomic step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/redis/internal.h"

typedef struct redis_broker_s {
    broker_t super; /* first: a broker_t* is a redis_broker_t* */
    rconn_t conn;
    char **known_queues; /* already in hopper:queues, so enqueue skips the SADD */
    size_t nknown;
    bool subscribed; /* to hopper:events: this connection now serves nothing else */
} redis_broker_t;

#define KNOWN_QUEUES_MAX 1024

static rconn_t *conn_of(broker_t *b)
{
    return &((redis_broker_t *)b)->conn;
}

rconn_t *broker__redis_conn(broker_t *b)
{
    return conn_of(b);
}

static int64_t reply_i64(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        return strtoll(r->str, NULL, 10);
    return 0;
}

static bool reply_is(const redisReply *r, int type, size_t min_elements)
{
    return r && r->type == type && (type != REDIS_REPLY_ARRAY || r->elements >= min_elements);
}

static int unexpected(broker_t *b, const char *what)
{
    return broker__error(b, HP_EPROTO, "redis: unexpected reply to %s", what);
}

/* For a reply of the wrong shape: the error it carries, or "unexpected". */
static int reply_err_or_unexpected(broker_t *b, const redisReply *r, const char *what)
{
    int err = broker__redis_reply_err(b, r);
    return err ? err : unexpected(b, what);
}

/* One script call on one queue; the reply is the caller's to free. */
static int eval1(broker_t *b, redis_script_id_t script, const char *queue, int nargs,
                 const char **args, const size_t *lens, redisReply **reply)
{
    reval_t call = {.queue = queue, .nargs = nargs, .args = args, .lens = lens};
    int err = broker__redis_eval(conn_of(b), b, script, &call, 1, reply);
    if (!err)
        err = broker__redis_reply_err(b, *reply);
    if (err && *reply) {
        freeReplyObject(*reply);
        *reply = NULL;
    }
    return err;
}

/* Runs one command whose reply the caller checks and frees. */
static int command(broker_t *b, redisReply **r, int argc, const char **argv)
{
    int err = broker__rconn_command(conn_of(b), b, r, argc, argv, NULL);
    if (!err)
        err = broker__redis_reply_err(b, *r);
    if (err && *r) {
        freeReplyObject(*r);
        *r = NULL;
    }
    return err;
}

/* ---- Opening ---- */

static int check_schema(broker_t *b)
{
    redisReply *r[2];
    rcmd_t cmds[2] = {
        {4, (const char *[]){"SET", "hopper:schema", REDIS_SCHEMA_VERSION, "NX"}, NULL},
        {2, (const char *[]){"GET", "hopper:schema"}, NULL},
    };
    int err = broker__rconn_pipeline(conn_of(b), b, cmds, 2, r);
    if (err)
        return err;
    if (!reply_is(r[1], REDIS_REPLY_STRING, 0))
        err = reply_err_or_unexpected(b, r[1], "GET hopper:schema");
    else if (strcmp(r[1]->str, REDIS_SCHEMA_VERSION) != 0)
        err = broker__error(b, HP_EUNSAFE,
                            "redis at %s holds Hopper data of layout version %s; this build "
                            "speaks version %s",
                            conn_of(b)->where, r[1]->str, REDIS_SCHEMA_VERSION);
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    return err;
}

/* Redis that may evict keys would silently lose jobs. */
static int check_eviction(broker_t *b, bool strict)
{
    redisReply *r = NULL;
    const char *argv[] = {"CONFIG", "GET", "maxmemory-policy"};
    int err = broker__rconn_command(conn_of(b), b, &r, 3, argv, NULL);
    if (err)
        return err;
    /* Managed Redis may refuse CONFIG; then there is nothing we can check. */
    if (reply_is(r, REDIS_REPLY_ARRAY, 2) && r->element[1]->type == REDIS_REPLY_STRING &&
        strcmp(r->element[1]->str, "noeviction") != 0) {
        broker__error(b, HP_EUNSAFE,
                      "redis at %s has maxmemory-policy %s: it may evict keys and lose jobs; "
                      "set it to noeviction",
                      conn_of(b)->where, r->element[1]->str);
        if (strict)
            err = HP_EUNSAFE;
        else
            hp_warn("%s", b->errmsg);
    }
    freeReplyObject(r);
    return err;
}

static const broker_ops_t redis_ops;

int broker__redis_open(const broker_config_t *cfg, broker_t **out, char **errmsg)
{
    redis_broker_t *rb = hp_calloc(1, sizeof(*rb));
    rb->super.ops = &redis_ops;
    int err = broker__rconn_init(&rb->conn, cfg->url, rb->super.errmsg, sizeof(rb->super.errmsg));
    if (!err) {
        if (cfg->connect_timeout_ms > 0)
            rb->conn.connect_timeout_ms = cfg->connect_timeout_ms;
        if (cfg->command_timeout_ms > 0)
            rb->conn.command_timeout_ms = cfg->command_timeout_ms;
        err = check_schema(&rb->super);
    }
    if (!err)
        err = check_eviction(&rb->super, cfg->strict);
    if (err) {
        if (errmsg)
            *errmsg = hp_strdup(rb->super.errmsg);
        broker_close(&rb->super);
        return err;
    }
    *out = &rb->super;
    return 0;
}

static void redis_close(broker_t *b)
{
    redis_broker_t *rb = (redis_broker_t *)b;
    broker__rconn_cleanup(&rb->conn);
    broker_queues_free(rb->known_queues, rb->nknown);
    hp_free(rb);
}

static int redis_ping(broker_t *b)
{
    redisReply *r = NULL;
    int err = broker__rconn_command(conn_of(b), b, &r, 1, (const char *[]){"PING"}, NULL);
    if (!err)
        err = broker__redis_reply_err(b, r);
    if (r)
        freeReplyObject(r);
    return err;
}

/* ---- Batches ---- */

/*
 * Batches may span queues; each queue is one script call (one slot), all sent in one
 * round trip. Groups items by queue, in first-seen order: group_of[i] is item i's
 * group, queues[g] group g's queue (borrowed). Returns the number of groups.
 */
static size_t group_by_queue(const char *const *item_queues, size_t n, size_t *group_of,
                             const char **queues)
{
    size_t ngroups = 0;
    for (size_t i = 0; i < n; i++) {
        size_t g = 0;
        while (g < ngroups && strcmp(queues[g], item_queues[i]) != 0)
            g++;
        if (g == ngroups)
            queues[ngroups++] = item_queues[i];
        group_of[i] = g;
    }
    return ngroups;
}

/* The items of a batch grouped by queue, in first-seen order: group_of[i] is item
 * i's group, queues[g] group g's queue (borrowed from the items). */
typedef struct queue_groups_s {
    size_t *group_of;
    const char **queues;
    size_t ngroups;
} queue_groups_t;

static void queue_groups_init(queue_groups_t *qg, const char *const *item_queues, size_t n)
{
    qg->group_of = hp_malloc((n ? n : 1) * sizeof(*qg->group_of));
    qg->queues = hp_malloc((n ? n : 1) * sizeof(*qg->queues));
    qg->ngroups = group_by_queue(item_queues, n, qg->group_of, qg->queues);
}

static void queue_groups_cleanup(queue_groups_t *qg)
{
    hp_free(qg->group_of);
    hp_free(qg->queues);
}

/* Parsed ids of a batch of job references, grouped by queue. */
typedef struct id_batch_s {
    char (*ulids)[HP_ULID_LEN + 1];
    char (*queue_names)[JOB_QUEUE_NAME_MAX + 1];
    const char **item_queues;
    queue_groups_t groups;
} id_batch_t;

/* ids were checked by broker.c; items marked in `skip` (may be NULL) take no part. */
static void id_batch_init(id_batch_t *ib, const char *const *ids, size_t n)
{
    ib->ulids = hp_malloc(n * sizeof(*ib->ulids));
    ib->queue_names = hp_malloc(n * sizeof(*ib->queue_names));
    ib->item_queues = hp_malloc(n * sizeof(*ib->item_queues));
    for (size_t i = 0; i < n; i++) {
        job_id_parse(ids[i], ib->ulids[i], ib->queue_names[i]);
        ib->item_queues[i] = ib->queue_names[i];
    }
    queue_groups_init(&ib->groups, ib->item_queues, n);
}

static void id_batch_cleanup(id_batch_t *ib)
{
    hp_free(ib->ulids);
    hp_free(ib->queue_names);
    hp_free(ib->item_queues);
    queue_groups_cleanup(&ib->groups);
}

/* Runs `script` once per queue of the batch. Each call's args are `lead` (may be
 * NULL) then, per item of the group not skipped, `per_item` args from fill(). The
 * k-th reply element of group g answers the k-th such item. */
typedef void (*item_args_cb)(void *ctx, size_t i, const char **args, size_t *lens);

static int eval_by_queue(broker_t *b, redis_script_id_t script, const queue_groups_t *qg, size_t n,
                         const bool *skip, const char *lead, int per_item, item_args_cb fill,
                         void *ctx, redisReply **replies)
{
    size_t per_call = 1 + n * (size_t)per_item;
    const char **args = hp_malloc(qg->ngroups * per_call * sizeof(*args));
    size_t *lens = hp_malloc(qg->ngroups * per_call * sizeof(*lens));
    char(*counts)[24] = hp_malloc(qg->ngroups * sizeof(*counts));
    reval_t *calls = hp_calloc(qg->ngroups, sizeof(*calls));
    size_t ncalls = 0;
    for (size_t g = 0; g < qg->ngroups; g++) {
        const char **a = args + g * per_call;
        size_t *l = lens + g * per_call;
        size_t at = 1, items = 0;
        for (size_t i = 0; i < n; i++) {
            if (qg->group_of[i] != g || (skip && skip[i]))
                continue;
            fill(ctx, i, a + at, l + at);
            at += (size_t)per_item;
            items++;
        }
        if (lead) {
            a[0] = lead;
        } else {
            snprintf(counts[g], sizeof(counts[g]), "%zu", items);
            a[0] = counts[g];
        }
        l[0] = strlen(a[0]);
        if (items)
            calls[ncalls++] =
                (reval_t){.queue = qg->queues[g], .nargs = (int)at, .args = a, .lens = l};
    }
    int err = broker__redis_eval(conn_of(b), b, script, calls, ncalls, replies);
    hp_free(calls);
    hp_free(counts);
    hp_free(lens);
    hp_free(args);
    return err;
}

typedef struct lease_args_s {
    const lease_ref_t *leases;
    const id_batch_t *ib;
} lease_args_t;

static void lease_item_args(void *ctx, size_t i, const char **args, size_t *lens)
{
    const lease_args_t *la = ctx;
    args[0] = la->ib->ulids[i];
    args[1] = la->leases[i].token;
    lens[0] = HP_ULID_LEN;
    lens[1] = strlen(args[1]);
}

/* Where each item's answer is: calls are made only for groups with items, in group
 * order, and within a call the k-th element answers the group's k-th item. */
typedef struct reply_map_s {
    size_t *call_of_group;
    size_t *slot_of_item;
} reply_map_t;

static void reply_map_init(reply_map_t *m, const queue_groups_t *qg, const bool *skip, size_t n)
{
    m->call_of_group = hp_calloc(qg->ngroups ? qg->ngroups : 1, sizeof(size_t));
    m->slot_of_item = hp_calloc(n, sizeof(size_t));
    size_t *used = hp_calloc(qg->ngroups ? qg->ngroups : 1, sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        if (!(skip && skip[i]))
            m->slot_of_item[i] = used[qg->group_of[i]]++;
    }
    for (size_t g = 0, call = 0; g < qg->ngroups; g++) {
        m->call_of_group[g] = call;
        call += used[g] > 0;
    }
    hp_free(used);
}

static void reply_map_cleanup(reply_map_t *m)
{
    hp_free(m->call_of_group);
    hp_free(m->slot_of_item);
}

/* The reply to the call that carried `item`. */
static const redisReply *call_reply(redisReply **replies, const reply_map_t *m,
                                    const queue_groups_t *qg, size_t item)
{
    return replies[m->call_of_group[qg->group_of[item]]];
}

/* The element of that reply that answers `item`, or NULL. */
static const redisReply *item_reply(redisReply **replies, const reply_map_t *m,
                                    const queue_groups_t *qg, size_t item)
{
    const redisReply *r = call_reply(replies, m, qg, item);
    size_t k = m->slot_of_item[item];
    return r && r->type == REDIS_REPLY_ARRAY && k < r->elements ? r->element[k] : NULL;
}

static void free_replies(redisReply **replies, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
}

/* ---- Producing ---- */

static bool queue_known(redis_broker_t *rb, const char *queue)
{
    for (size_t i = 0; i < rb->nknown; i++) {
        if (strcmp(rb->known_queues[i], queue) == 0)
            return true;
    }
    return false;
}

/* Adds new queues to the hopper:queues directory before their first job lands, so
 * a queue that holds jobs is always listed. */
static int register_queues(redis_broker_t *rb, const char **queues, size_t n)
{
    const char **argv = hp_malloc((n + 2) * sizeof(*argv));
    int argc = 2;
    argv[0] = "SADD";
    argv[1] = "hopper:queues";
    for (size_t i = 0; i < n; i++) {
        if (!queue_known(rb, queues[i]))
            argv[argc++] = queues[i];
    }
    int err = 0;
    if (argc > 2) {
        redisReply *r = NULL;
        err = broker__rconn_command(&rb->conn, &rb->super, &r, argc, argv, NULL);
        if (!err)
            err = broker__redis_reply_err(&rb->super, r);
        if (r)
            freeReplyObject(r);
        for (int k = 2; !err && k < argc && rb->nknown < KNOWN_QUEUES_MAX; k++) {
            rb->known_queues = hp_realloc(rb->known_queues, (rb->nknown + 1) * sizeof(char *));
            rb->known_queues[rb->nknown++] = hp_strdup(argv[k]);
        }
    }
    hp_free(argv);
    return err;
}

static void set_result_error(enqueue_result_t *res, int err, const char *msg)
{
    res->err = err;
    snprintf(res->errmsg, sizeof(res->errmsg), "%s", msg);
}

void broker__redis_enqueue_opts(const broker__prepared_t *p, char opts[ENQUEUE_OPTS_MAX])
{
    opts[0] = '\0';
    if (p->priority || p->delay_ms || p->run_at_ms || p->unique_key[0] || p->idempotency_key[0])
        snprintf(opts, ENQUEUE_OPTS_MAX, "%d,%lld,%lld,%lld,%zu,%zu,%zu,%s%s%s", p->priority,
                 (long long)p->delay_ms, (long long)p->run_at_ms, (long long)p->unique_ttl_ms,
                 strlen(p->unique_key), strlen(p->idempotency_key), strlen(p->request_hash),
                 p->unique_key, p->idempotency_key, p->request_hash);
}

typedef struct enqueue_args_s {
    broker__prepared_t *jobs;
    char (*opts)[ENQUEUE_OPTS_MAX];
} enqueue_args_t;

/* Three arguments per job (enqueue.lua): ulid, options ('' when all default), body.
 * Options carry the keys' lengths, since a key may hold any character. */
static void enqueue_item_args(void *ctx, size_t i, const char **args, size_t *lens)
{
    enqueue_args_t *ea = ctx;
    broker__prepared_t *p = &ea->jobs[i];
    char *opts = ea->opts[i];
    broker__redis_enqueue_opts(p, opts);
    args[0] = p->ulid;
    lens[0] = HP_ULID_LEN;
    args[1] = opts;
    lens[1] = strlen(opts);
    args[2] = p->body;
    lens[2] = p->body_len;
}

/* One job's answer: 'w', 's', 'm' (idempotency key used with another request), or
 * the id of the job that holds its unique or idempotency key. */
static void fill_result(broker_t *b, const redisReply *item, const broker__prepared_t *p,
                        enqueue_result_t *res)
{
    if (!item || item->type != REDIS_REPLY_STRING) {
        set_result_error(res, unexpected(b, "enqueue"), b->errmsg);
    } else if (item->len == 1 && item->str[0] == 'm') {
        res->idempotency_mismatch = true;
        snprintf(res->errmsg, sizeof(res->errmsg),
                 "idempotency_key: this Idempotency-Key was used with a different request "
                 "in the last 24 hours; nothing was enqueued");
        res->err = HP_EINVAL;
    } else if (item->len == 1) {
        snprintf(res->id, sizeof(res->id), "%s-%s", p->ulid, p->queue);
        res->state = item->str[0] == 's' ? JOB_STATE_SCHEDULED : JOB_STATE_WAITING;
    } else {
        snprintf(res->id, sizeof(res->id), "%s", item->str);
        res->duplicate = true;
        res->state = JOB_STATE_WAITING;
    }
}

static int redis_enqueue(broker_t *b, broker__prepared_t *jobs, size_t n, enqueue_result_t *results)
{
    redis_broker_t *rb = (redis_broker_t *)b;
    const char **item_queues = hp_malloc(n * sizeof(*item_queues));
    for (size_t i = 0; i < n; i++)
        item_queues[i] = jobs[i].queue;
    queue_groups_t qg;
    queue_groups_init(&qg, item_queues, n);
    enqueue_args_t ea = {jobs, hp_malloc(n * sizeof(*ea.opts))};
    redisReply **replies = hp_calloc(qg.ngroups, sizeof(*replies));
    int err = register_queues(rb, qg.queues, qg.ngroups);
    if (!err)
        err = eval_by_queue(b, SCRIPT_ENQUEUE, &qg, n, NULL, NULL, 3, enqueue_item_args, &ea,
                            replies);
    reply_map_t map;
    reply_map_init(&map, &qg, NULL, n);
    int first = err;
    for (size_t i = 0; i < n; i++) {
        enqueue_result_t *res = &results[jobs[i].index];
        /* A refused call (the queue is full) refuses all of its jobs. */
        int call_err = err ? err : broker__redis_reply_err(b, call_reply(replies, &map, &qg, i));
        if (call_err)
            set_result_error(res, call_err, b->errmsg);
        else
            fill_result(b, item_reply(replies, &map, &qg, i), &jobs[i], res);
        if (res->err && !first) {
            first = res->err;
            broker__error(b, first, "%s", res->errmsg); /* b->errmsg names the first */
        }
    }
    reply_map_cleanup(&map);
    free_replies(replies, qg.ngroups);
    hp_free(replies);
    hp_free(ea.opts);
    queue_groups_cleanup(&qg);
    hp_free(item_queues);
    return first;
}

/* ---- Working ---- */

/* Sets an active job's start and worker from its lease value
 * "<token>|<started>|<worker>[|c]"; the token itself is not copied out. */
static void apply_lease(job_t *job, const char *lease)
{
    const char *bar = strchr(lease, '|');
    if (!bar)
        return;
    char *end;
    job->started_ms = strtoll(bar + 1, &end, 10);
    if (*end != '|')
        return;
    const char *worker = end + 1;
    const char *stop = strchr(worker, '|');
    hp_free(job->worker);
    job->worker = stop ? hp_strndup(worker, (size_t)(stop - worker)) : hp_strdup(worker);
}

/* Sets progress from "<percent>|<message>" (or nothing when empty). */
static void apply_progress(job_t *job, const char *prog)
{
    char *bar;
    long pct = strtol(prog, &bar, 10);
    if (bar == prog || *bar != '|')
        return;
    job->progress = (int)pct;
    if (bar[1])
        job->progress_message = hp_strdup(bar + 1);
}

/* Decodes {ulid, record, score, lease}* (stride 4) or {ulid, record}* (stride 2). */
static int decode_jobs(broker_t *b, const char *queue, const redisReply *arr, size_t stride,
                       job_list_t *out)
{
    size_t n = arr->elements / stride;
    out->jobs = hp_calloc(n ? n : 1, sizeof(job_t *));
    for (size_t i = 0; i < n; i++) {
        const redisReply *u = arr->element[i * stride], *rec = arr->element[i * stride + 1];
        job_t *job = NULL;
        if (broker__job_decode(u->str, queue, rec->str, rec->len, &job))
            return broker__error(b, HP_EPROTO, "redis: job %s-%s has a damaged record", u->str,
                                 queue);
        if (stride == 4 && job->state == JOB_STATE_ACTIVE) {
            job->lease_deadline_ms = reply_i64(arr->element[i * stride + 2]);
            apply_lease(job, arr->element[i * stride + 3]->str);
        }
        out->jobs[out->n++] = job;
    }
    return 0;
}

static int redis_reserve(broker_t *b, const char *queue, size_t max, int64_t lease_ms,
                         const char *token, const char *worker, job_list_t *out)
{
    char smax[24], slease[24];
    snprintf(smax, sizeof(smax), "%zu", max);
    snprintf(slease, sizeof(slease), "%lld", (long long)lease_ms);
    redisReply *r = NULL;
    int err =
        eval1(b, SCRIPT_RESERVE, queue, 4, (const char *[]){smax, slease, token, worker}, NULL, &r);
    if (err)
        return err;
    if (!reply_is(r, REDIS_REPLY_ARRAY, 4) || r->element[3]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return unexpected(b, "reserve");
    }
    out->next_due_ms = reply_i64(r->element[0]);
    int64_t deadline = reply_i64(r->element[1]);
    int64_t started = reply_i64(r->element[2]);
    err = decode_jobs(b, queue, r->element[3], 2, out);
    for (size_t i = 0; !err && i < out->n; i++) {
        out->jobs[i]->lease_token = hp_strdup(token);
        out->jobs[i]->lease_deadline_ms = deadline;
        out->jobs[i]->started_ms = started;
        out->jobs[i]->worker = hp_strdup(worker);
    }
    freeReplyObject(r);
    if (err)
        job_list_cleanup(out);
    return err;
}

static int redis_wait(broker_t *b, const char *const *queues, size_t n, int64_t timeout_ms)
{
    char(*keys)[JOB_QUEUE_NAME_MAX + 24] = hp_malloc(n * sizeof(*keys));
    const char **ptrs = hp_malloc(n * sizeof(*ptrs));
    for (size_t i = 0; i < n; i++) {
        snprintf(keys[i], sizeof(keys[i]), "hopper:{%s}:notify", queues[i]);
        ptrs[i] = keys[i];
    }
    int rc = broker__rconn_blpop(conn_of(b), b, ptrs, n, timeout_ms);
    hp_free(ptrs);
    hp_free(keys);
    return rc;
}

static int redis_heartbeat(broker_t *b, const lease_ref_t *leases, size_t n, int64_t lease_ms,
                           lease_status_t *status)
{
    const char **ids = hp_malloc(n * sizeof(*ids));
    for (size_t i = 0; i < n; i++)
        ids[i] = leases[i].id;
    id_batch_t ib;
    id_batch_init(&ib, ids, n);
    char slease[24];
    snprintf(slease, sizeof(slease), "%lld", (long long)lease_ms);
    lease_args_t la = {leases, &ib};
    redisReply **replies = hp_calloc(ib.groups.ngroups, sizeof(*replies));
    int err = eval_by_queue(b, SCRIPT_HEARTBEAT, &ib.groups, n, NULL, slease, 2, lease_item_args,
                            &la, replies);
    for (size_t g = 0; !err && g < ib.groups.ngroups; g++)
        err = broker__redis_reply_err(b, replies[g]);
    reply_map_t map;
    reply_map_init(&map, &ib.groups, NULL, n);
    for (size_t i = 0; !err && i < n; i++) {
        const redisReply *r = item_reply(replies, &map, &ib.groups, i);
        if (!r)
            err = unexpected(b, "heartbeat");
        else
            status[i] = (lease_status_t)reply_i64(r);
    }
    reply_map_cleanup(&map);
    free_replies(replies, ib.groups.ngroups);
    hp_free(replies);
    id_batch_cleanup(&ib);
    hp_free(ids);
    return err;
}

typedef struct ack_args_s {
    const job_ack_t *acks;
    const id_batch_t *ib;
} ack_args_t;

static void ack_item_args(void *ctx, size_t i, const char **args, size_t *lens)
{
    const ack_args_t *aa = ctx;
    const job_ack_t *a = &aa->acks[i];
    args[0] = aa->ib->ulids[i];
    args[1] = a->token;
    args[2] = a->result ? a->result : "";
    lens[0] = HP_ULID_LEN;
    lens[1] = strlen(a->token);
    lens[2] = a->result ? a->result_len : 0;
}

static int redis_ack_batch(broker_t *b, job_ack_t *acks, size_t n)
{
    const char **ids = hp_malloc(n * sizeof(*ids));
    bool *skip = hp_malloc(n * sizeof(*skip));
    for (size_t i = 0; i < n; i++) {
        /* Refused items take no part; a well-formed stand-in keeps the parse simple. */
        ids[i] = acks[i].err ? "00000000000000000000000000-x" : acks[i].id;
        skip[i] = acks[i].err != 0;
    }
    id_batch_t ib;
    id_batch_init(&ib, ids, n);
    ack_args_t aa = {acks, &ib};
    redisReply **replies = hp_calloc(ib.groups.ngroups, sizeof(*replies));
    int err =
        eval_by_queue(b, SCRIPT_ACK, &ib.groups, n, skip, NULL, 3, ack_item_args, &aa, replies);
    for (size_t g = 0; !err && g < ib.groups.ngroups; g++)
        err = broker__redis_reply_err(b, replies[g]);
    reply_map_t map;
    reply_map_init(&map, &ib.groups, skip, n);
    int first = err;
    char first_msg[sizeof(b->errmsg)] = "";
    for (size_t i = 0; i < n; i++) {
        if (skip[i])
            continue;
        if (err) {
            acks[i].err = err;
            continue;
        }
        const redisReply *r = item_reply(replies, &map, &ib.groups, i);
        if (!r || r->type != REDIS_REPLY_STRING)
            acks[i].err = unexpected(b, "ack");
        else if (strcmp(r->str, "succeeded") != 0)
            acks[i].err = broker__redis_error_text(b, r->str);
        if (acks[i].err && !first) {
            first = acks[i].err;
            snprintf(first_msg, sizeof(first_msg), "%s", b->errmsg);
        }
    }
    if (first && !err)
        snprintf(b->errmsg, sizeof(b->errmsg), "%s", first_msg);
    reply_map_cleanup(&map);
    free_replies(replies, ib.groups.ngroups);
    hp_free(replies);
    id_batch_cleanup(&ib);
    hp_free(skip);
    hp_free(ids);
    return first;
}

static int redis_fail(broker_t *b, const char *ulid, const char *queue, const char *token,
                      const char *message, bool permanent, job_state_t *state, int64_t *retry_at)
{
    uint32_t rnd;
    hp_random_bytes(&rnd, sizeof(rnd));
    char srand[32];
    snprintf(srand, sizeof(srand), "%.6f", (double)rnd / 4294967296.0);
    redisReply *r = NULL;
    int err = eval1(b, SCRIPT_FAIL, queue, 5,
                    (const char *[]){ulid, token, message, permanent ? "1" : "0", srand}, NULL, &r);
    if (err)
        return err;
    if (!reply_is(r, REDIS_REPLY_ARRAY, 2) || job_state_parse(r->element[0]->str) < 0)
        err = unexpected(b, "fail");
    else {
        *state = (job_state_t)job_state_parse(r->element[0]->str);
        *retry_at = reply_i64(r->element[1]);
    }
    freeReplyObject(r);
    return err;
}

/* ---- Operating ---- */

static int not_found(broker_t *b, const char *ulid, const char *queue)
{
    return broker__error(b, HP_ENOTFOUND, "job %s-%s not found", ulid, queue);
}

/* One get script reply into a job. */
static int decode_get(broker_t *b, const char *ulid, const char *queue, const redisReply *r,
                      job_t **out)
{
    int err = broker__redis_reply_err(b, r);
    if (err)
        return err;
    if (r->type == REDIS_REPLY_NIL)
        return not_found(b, ulid, queue);
    if (!reply_is(r, REDIS_REPLY_ARRAY, 6))
        return unexpected(b, "get");
    if (broker__job_decode(ulid, queue, r->element[0]->str, r->element[0]->len, out))
        return broker__error(b, HP_EPROTO, "redis: job %s-%s has a damaged record", ulid, queue);
    if (r->element[1]->len)
        (*out)->result = hp_strndup(r->element[1]->str, r->element[1]->len);
    (*out)->lease_deadline_ms = reply_i64(r->element[2]);
    if ((*out)->state == JOB_STATE_ACTIVE)
        apply_lease(*out, r->element[3]->str);
    apply_progress(*out, r->element[4]->str);
    if (r->element[5]->len)
        (*out)->logs = hp_strndup(r->element[5]->str, r->element[5]->len);
    return 0;
}

static int redis_get(broker_t *b, const char *ulid, const char *queue, job_t **out)
{
    redisReply *r = NULL;
    int err = eval1(b, SCRIPT_GET, queue, 1, &ulid, NULL, &r);
    if (err)
        return err;
    err = decode_get(b, ulid, queue, r, out);
    freeReplyObject(r);
    return err;
}

/* n gets, one script call each, in one round trip. */
static int redis_get_many(broker_t *b, const char *const *ulids, const char *const *queues,
                          size_t n, job_t **jobs, int *errs)
{
    reval_t *calls = hp_calloc(n, sizeof(*calls));
    redisReply **replies = hp_calloc(n, sizeof(*replies));
    for (size_t i = 0; i < n; i++)
        calls[i] = (reval_t){queues[i], NULL, 1, (const char **)&ulids[i], NULL};
    int err = broker__redis_eval(conn_of(b), b, SCRIPT_GET, calls, n, replies);
    for (size_t i = 0; i < n && !err; i++)
        errs[i] = decode_get(b, ulids[i], queues[i], replies[i], &jobs[i]);
    free_replies(replies, n);
    hp_free(replies);
    hp_free(calls);
    return err;
}

/* Runs a script that takes the ulid and answers with a state name. */
static int simple_job_call(broker_t *b, redis_script_id_t script, const char *ulid,
                           const char *queue, job_state_t *state)
{
    redisReply *r = NULL;
    int err = eval1(b, script, queue, 1, &ulid, NULL, &r);
    if (err)
        return err;
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)
        err = unexpected(b, "a job command");
    else if (state)
        *state = (job_state_t)job_state_parse(r->str);
    freeReplyObject(r);
    return err;
}

static int redis_cancel(broker_t *b, const char *ulid, const char *queue, job_state_t *state)
{
    return simple_job_call(b, SCRIPT_CANCEL, ulid, queue, state);
}

static int redis_retry(broker_t *b, const char *ulid, const char *queue, const char *payload,
                       size_t payload_len)
{
    if (!payload)
        return simple_job_call(b, SCRIPT_RETRY, ulid, queue, NULL);
    const char *args[] = {ulid, "1", payload};
    size_t lens[] = {strlen(ulid), 1, payload_len};
    redisReply *r = NULL;
    int err = eval1(b, SCRIPT_RETRY, queue, 3, args, lens, &r);
    if (err)
        return err;
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)
        err = unexpected(b, "retry");
    freeReplyObject(r);
    return err;
}

static int redis_delete(broker_t *b, const char *ulid, const char *queue)
{
    return simple_job_call(b, SCRIPT_DELETE, ulid, queue, NULL);
}

/* One call of list.lua: a page (action "") or a bulk step. */
static int list_call(broker_t *b, const char *queue, job_state_t state, const list_filter_t *f,
                     const char *cursor, size_t limit, size_t scan, const char *action,
                     redisReply **r)
{
    char slimit[24], sscan[24];
    snprintf(slimit, sizeof(slimit), "%zu", limit);
    snprintf(sscan, sizeof(sscan), "%zu", scan);
    const char *args[] = {job_state_name(state),
                          cursor,
                          slimit,
                          f->desc ? "desc" : "asc",
                          f->type,
                          f->error,
                          f->worker,
                          sscan,
                          action};
    return eval1(b, SCRIPT_LIST, queue, 9, args, NULL, r);
}

static int redis_list(broker_t *b, const char *queue, job_state_t state,
                      const list_filter_t *filter, const char *cursor, size_t limit,
                      job_list_t *out)
{
    redisReply *r = NULL;
    int err = list_call(b, queue, state, filter, cursor, limit, LIST_SCAN_MAX, "", &r);
    if (err)
        return err;
    if (!reply_is(r, REDIS_REPLY_ARRAY, 2) || r->element[1]->type != REDIS_REPLY_ARRAY)
        err = unexpected(b, "list");
    else
        err = decode_jobs(b, queue, r->element[1], 4, out);
    if (!err && r->element[0]->len)
        out->next_cursor = hp_strdup(r->element[0]->str);
    freeReplyObject(r);
    if (err)
        job_list_cleanup(out);
    return err;
}

static int redis_bulk(broker_t *b, const char *queue, job_state_t state, bulk_action_t action,
                      const list_filter_t *filter, int64_t *matched, int64_t *done)
{
    char *cursor = hp_strdup("");
    int err = 0;
    do {
        redisReply *r = NULL;
        err = list_call(b, queue, state, filter, cursor, 1, BULK_SCAN_MAX,
                        action == BULK_RETRY ? "retry" : "delete", &r);
        if (err)
            break;
        if (!reply_is(r, REDIS_REPLY_ARRAY, 3) || r->element[0]->type != REDIS_REPLY_STRING) {
            freeReplyObject(r);
            err = unexpected(b, "bulk");
            break;
        }
        *matched += reply_i64(r->element[1]);
        *done += reply_i64(r->element[2]);
        hp_free(cursor);
        cursor = hp_strndup(r->element[0]->str, r->element[0]->len);
        freeReplyObject(r);
    } while (cursor[0]);
    hp_free(cursor);
    return err;
}

static int redis_release(broker_t *b, const char *ulid, const char *queue, const char *token)
{
    redisReply *r = NULL;
    int err = eval1(b, SCRIPT_RELEASE, queue, 2, (const char *[]){ulid, token}, NULL, &r);
    if (r)
        freeReplyObject(r);
    return err;
}

static int redis_report(broker_t *b, const char *ulid, const char *queue, const char *token,
                        int percent, const char *message, int level, const char *line)
{
    char spct[16] = "", slevel[16];
    if (!line)
        snprintf(spct, sizeof(spct), "%d", percent);
    snprintf(slevel, sizeof(slevel), "%d", level);
    const char *args[] = {ulid, token, spct, message ? message : "", slevel, line ? line : ""};
    redisReply *r = NULL;
    int err = eval1(b, SCRIPT_REPORT, queue, 6, args, NULL, &r);
    if (r)
        freeReplyObject(r);
    return err;
}

/* ---- Workers ---- */

static int run_pipeline(broker_t *b, rcmd_t *cmds, size_t n)
{
    redisReply *r[4] = {NULL};
    int err = broker__rconn_pipeline(conn_of(b), b, cmds, n, r);
    for (size_t i = 0; i < n; i++) {
        if (!err)
            err = broker__redis_reply_err(b, r[i]);
        if (r[i])
            freeReplyObject(r[i]);
    }
    return err;
}

#define WORKER_KEY_MAX (WORKER_ID_MAX + 32)

/* hopper:worker:<id> holds the description; hopper:wcmd:<id> a command for it. */
static void worker_keys(const char *id, char key[WORKER_KEY_MAX], char ckey[WORKER_KEY_MAX])
{
    snprintf(key, WORKER_KEY_MAX, "hopper:worker:%s", id);
    snprintf(ckey, WORKER_KEY_MAX, "hopper:wcmd:%s", id);
}

static int redis_worker_beat(broker_t *b, const char *id, const char *info, int64_t ttl_ms,
                             worker_command_t *cmd)
{
    char key[WORKER_KEY_MAX], ckey[WORKER_KEY_MAX], sttl[24], snow[24];
    worker_keys(id, key, ckey);
    snprintf(sttl, sizeof(sttl), "%lld", (long long)ttl_ms);
    snprintf(snow, sizeof(snow), "%lld", (long long)hp_now_ms());
    const char *set[] = {"SET", key, info, "PX", sttl};
    const char *add[] = {"ZADD", "hopper:workers", snow, id};
    const char *take[] = {"GETDEL", ckey};
    rcmd_t cmds[3];
    size_t n = 0;
    if (info) {
        cmds[n++] = (rcmd_t){5, set, NULL};
        cmds[n++] = (rcmd_t){4, add, NULL};
    }
    if (cmd)
        cmds[n++] = (rcmd_t){2, take, NULL};
    redisReply *r[3] = {NULL};
    int err = broker__rconn_pipeline(conn_of(b), b, cmds, n, r);
    for (size_t i = 0; i < n; i++)
        if (!err)
            err = broker__redis_reply_err(b, r[i]);
    /* Taken is taken: the command counts even when the beat failed (e.g. OOM). */
    if (cmd && r[n - 1] && r[n - 1]->type == REDIS_REPLY_STRING) {
        const char *text = r[n - 1]->str;
        *cmd = strcmp(text, "stop") == 0    ? WORKER_COMMAND_STOP
               : strcmp(text, "quiet") == 0 ? WORKER_COMMAND_QUIET
                                            : WORKER_COMMAND_NONE;
    }
    for (size_t i = 0; i < n; i++)
        if (r[i])
            freeReplyObject(r[i]);
    return err;
}

static int redis_worker_gone(broker_t *b, const char *id)
{
    char key[WORKER_KEY_MAX], ckey[WORKER_KEY_MAX];
    worker_keys(id, key, ckey);
    const char *del[] = {"DEL", key, ckey};
    const char *rem[] = {"ZREM", "hopper:workers", id};
    rcmd_t cmds[2] = {{3, del, NULL}, {3, rem, NULL}};
    return run_pipeline(b, cmds, 2);
}

static int worker_not_found(broker_t *b, const char *id)
{
    return broker__error(b, HP_ENOTFOUND,
                         "no worker %.128s: not registered (it stopped, or stopped beating)", id);
}

static int redis_worker_get(broker_t *b, const char *id, char **info)
{
    char key[WORKER_KEY_MAX], ckey[WORKER_KEY_MAX];
    worker_keys(id, key, ckey);
    redisReply *r = NULL;
    int err = broker__rconn_command(conn_of(b), b, &r, 2, (const char *[]){"GET", key}, NULL);
    if (err)
        return err;
    if (r->type == REDIS_REPLY_STRING)
        *info = hp_strndup(r->str, r->len);
    else if (r->type == REDIS_REPLY_NIL)
        err = worker_not_found(b, id);
    else
        err = reply_err_or_unexpected(b, r, "GET hopper:worker");
    freeReplyObject(r);
    return err;
}

/* Not atomic with the check: a worker that leaves in between leaves a command
 * nobody takes, which expires. A quiet never replaces a stop (NX). */
static int redis_worker_command(broker_t *b, const char *id, worker_command_t cmd)
{
    char key[WORKER_KEY_MAX], ckey[WORKER_KEY_MAX], sttl[24];
    worker_keys(id, key, ckey);
    redisReply *r = NULL;
    int err = broker__rconn_command(conn_of(b), b, &r, 2, (const char *[]){"EXISTS", key}, NULL);
    if (err)
        return err;
    bool exists = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    if (r->type != REDIS_REPLY_INTEGER)
        err = reply_err_or_unexpected(b, r, "EXISTS hopper:worker");
    freeReplyObject(r);
    if (err)
        return err;
    if (!exists)
        return worker_not_found(b, id);
    snprintf(sttl, sizeof(sttl), "%lld", (long long)WORKER_COMMAND_TTL_MS);
    const char *set[] = {"SET", ckey, worker_command_name(cmd), "PX", sttl, "NX"};
    rcmd_t one = {cmd == WORKER_COMMAND_QUIET ? 6 : 5, set, NULL};
    return run_pipeline(b, &one, 1);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Workers whose info key expired are dropped from the index as they are found. */
static int redis_workers(broker_t *b, char ***infos, size_t *n)
{
    redisReply *ids = NULL;
    int err = broker__rconn_command(conn_of(b), b, &ids, 4,
                                    (const char *[]){"ZRANGE", "hopper:workers", "0", "-1"}, NULL);
    if (err)
        return err;
    if (!reply_is(ids, REDIS_REPLY_ARRAY, 0)) {
        err = reply_err_or_unexpected(b, ids, "ZRANGE hopper:workers");
        freeReplyObject(ids);
        return err;
    }
    size_t count = ids->elements;
    *infos = hp_calloc(count ? count : 1, sizeof(char *));
    if (count == 0) {
        freeReplyObject(ids);
        return 0;
    }
    const char **sorted = hp_malloc(count * sizeof(*sorted));
    for (size_t i = 0; i < count; i++)
        sorted[i] = ids->element[i]->str;
    qsort(sorted, count, sizeof(*sorted), compare_strings);
    const char **argv = hp_malloc((count + 2) * sizeof(*argv));
    char(*keys)[WORKER_KEY_MAX] = hp_malloc(count * sizeof(*keys));
    argv[0] = "MGET";
    for (size_t i = 0; i < count; i++) {
        snprintf(keys[i], sizeof(keys[i]), "hopper:worker:%s", sorted[i]);
        argv[1 + i] = keys[i];
    }
    redisReply *vals = NULL;
    err = broker__rconn_command(conn_of(b), b, &vals, (int)count + 1, argv, NULL);
    int gone = 2;
    argv[0] = "ZREM";
    argv[1] = "hopper:workers";
    for (size_t i = 0; !err && i < count && i < vals->elements; i++) {
        if (vals->element[i]->type == REDIS_REPLY_STRING)
            (*infos)[(*n)++] = hp_strdup(vals->element[i]->str);
        else
            argv[gone++] = sorted[i];
    }
    if (!err && gone > 2) {
        redisReply *r = NULL;
        if (broker__rconn_command(conn_of(b), b, &r, gone, argv, NULL) == 0)
            freeReplyObject(r);
    }
    if (vals)
        freeReplyObject(vals);
    hp_free(keys);
    hp_free(argv);
    hp_free(sorted);
    freeReplyObject(ids);
    return err;
}

/* ---- Queues ---- */

static const job_state_t finished_states[] = {JOB_STATE_SUCCEEDED, JOB_STATE_DEAD,
                                              JOB_STATE_CANCELED};

static int redis_queue_configure(broker_t *b, const char *queue, const queue_conf_t *conf)
{
    char key[JOB_QUEUE_NAME_MAX + 24];
    snprintf(key, sizeof(key), "hopper:{%s}:conf", queue);
    const char *argv[2 + 2 * 7];
    char names[6][32], values[7][24];
    int argc = 2;
    argv[0] = "HSET";
    argv[1] = key;
    if (conf->max_length > 0) {
        snprintf(values[6], sizeof(values[6]), "%lld", (long long)conf->max_length);
        argv[argc++] = "maxlen";
        argv[argc++] = values[6];
    }
    for (int i = 0; i < 3; i++) {
        job_state_t s = finished_states[i];
        const char *sname = job_state_name(s);
        if (conf->keep_count[s]) {
            snprintf(names[2 * i], sizeof(names[0]), "keep:%s", sname);
            snprintf(values[2 * i], sizeof(values[0]), "%lld", (long long)conf->keep_count[s]);
            argv[argc++] = names[2 * i];
            argv[argc++] = values[2 * i];
        }
        if (conf->keep_age_ms[s]) {
            snprintf(names[2 * i + 1], sizeof(names[0]), "keepage:%s", sname);
            snprintf(values[2 * i + 1], sizeof(values[0]), "%lld", (long long)conf->keep_age_ms[s]);
            argv[argc++] = names[2 * i + 1];
            argv[argc++] = values[2 * i + 1];
        }
    }
    const char *unlimit[] = {"HDEL", key, "maxlen"}; /* must outlive the pipeline call */
    rcmd_t cmds[2];
    size_t ncmds = 0;
    if (argc > 2)
        cmds[ncmds++] = (rcmd_t){argc, argv, NULL};
    if (conf->max_length == -1)
        cmds[ncmds++] = (rcmd_t){3, unlimit, NULL};
    redisReply *r[2] = {NULL, NULL};
    int err = ncmds ? broker__rconn_pipeline(conn_of(b), b, cmds, ncmds, r) : 0;
    for (size_t i = 0; i < ncmds; i++) {
        if (!err)
            err = broker__redis_reply_err(b, r[i]);
        if (r[i])
            freeReplyObject(r[i]);
    }
    return err;
}

static int redis_queue_pause(broker_t *b, const char *queue, bool paused)
{
    /* A queue paused before its first job is a queue: listed, and found by stats. */
    int err = register_queues((redis_broker_t *)b, &queue, 1);
    if (err)
        return err;
    redisReply *r = NULL;
    err = eval1(b, SCRIPT_PAUSE, queue, 1, (const char *[]){paused ? "1" : "0"}, NULL, &r);
    if (r)
        freeReplyObject(r);
    return err;
}

static int redis_queue_stats(broker_t *b, const char *queue, queue_stats_t *out)
{
    redisReply *r = NULL;
    int err = eval1(b, SCRIPT_STATS, queue, 0, NULL, NULL, &r);
    if (err)
        return err;
    if (!reply_is(r, REDIS_REPLY_ARRAY, 4)) {
        freeReplyObject(r);
        return unexpected(b, "stats");
    }
    const redisReply *counts = r->element[0], *conf = r->element[1], *rt = r->element[2];
    const redisReply *heads = r->element[3];
    for (size_t i = 0; i + 1 < heads->elements; i += 2) {
        /* Waiting since the time the record says, else since the job was made. */
        int64_t since = heads->element[i + 1]->len ? reply_i64(heads->element[i + 1])
                                                   : hp_ulid_time_ms(heads->element[i]->str);
        if (since > 0 && (out->oldest_waiting_ms == 0 || since < out->oldest_waiting_ms))
            out->oldest_waiting_ms = since;
    }
    for (size_t i = 0; i + 1 < rt->elements; i += 2) {
        const char *k = rt->element[i]->str;
        char *end;
        long bucket = strtol(k, &end, 10);
        if (strcmp(k, "sum") == 0)
            out->runtime_sum_ms = reply_i64(rt->element[i + 1]);
        else if (end != k && !*end && bucket >= 0 && bucket <= QUEUE_RUNTIME_NBUCKETS)
            out->runtime_count[bucket] = reply_i64(rt->element[i + 1]);
    }
    for (size_t i = 0; i + 1 < counts->elements; i += 2) {
        const char *k = counts->element[i]->str;
        int64_t v = reply_i64(counts->element[i + 1]);
        int s = job_state_parse(k);
        if (s >= 0)
            out->counts[s] = v;
        else if (strcmp(k, "total:enqueued") == 0)
            out->enqueued_total = v;
        else if (strcmp(k, "total:succeeded") == 0)
            out->succeeded_total = v;
        else if (strcmp(k, "total:failed") == 0)
            out->failed_total = v;
        else if (strcmp(k, "total:dead") == 0)
            out->dead_total = v;
    }
    out->max_length = -1;
    for (size_t i = 0; i + 1 < conf->elements; i += 2) {
        if (strcmp(conf->element[i]->str, "paused") == 0)
            out->paused = true;
        else if (strcmp(conf->element[i]->str, "maxlen") == 0)
            out->max_length = reply_i64(conf->element[i + 1]);
    }
    freeReplyObject(r);
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int redis_queues(broker_t *b, char ***names, size_t *n)
{
    redisReply *r = NULL;
    int err = broker__rconn_command(conn_of(b), b, &r, 2,
                                    (const char *[]){"SMEMBERS", "hopper:queues"}, NULL);
    if (err)
        return err;
    if (!reply_is(r, REDIS_REPLY_ARRAY, 0)) {
        err = reply_err_or_unexpected(b, r, "SMEMBERS");
        freeReplyObject(r);
        return err;
    }
    *names = hp_calloc(r->elements ? r->elements : 1, sizeof(char *));
    for (size_t i = 0; i < r->elements; i++)
        (*names)[(*n)++] = hp_strdup(r->element[i]->str);
    qsort(*names, *n, sizeof(char *), compare_names);
    freeReplyObject(r);
    return 0;
}

static int redis_maintain(broker_t *b, const char *queue, int64_t *next_due_ms)
{
    redisReply *r = NULL;
    int err = eval1(b, SCRIPT_MAINTAIN, queue, 0, NULL, NULL, &r);
    if (err)
        return err;
    *next_due_ms = reply_i64(r);
    freeReplyObject(r);
    return 0;
}

/* Jobs removed per script call: a few milliseconds of Redis time at most, so other
 * clients wait no longer than that while a queue of millions is purged. */
#define PURGE_CHUNK 2000

static int redis_purge(broker_t *b, const char *queue, job_state_t state, int64_t *removed)
{
    char slimit[24], stotal[24];
    snprintf(slimit, sizeof(slimit), "%d", PURGE_CHUNK);
    *removed = 0;
    for (;;) {
        snprintf(stotal, sizeof(stotal), "%lld", (long long)*removed);
        redisReply *r = NULL;
        int err = eval1(b, SCRIPT_PURGE, queue, 3,
                        (const char *[]){job_state_name(state), slimit, stotal}, NULL, &r);
        if (err)
            return err;
        if (!reply_is(r, REDIS_REPLY_ARRAY, 2)) {
            freeReplyObject(r);
            return unexpected(b, "purge");
        }
        *removed += reply_i64(r->element[0]);
        bool done = reply_i64(r->element[1]) != 0;
        freeReplyObject(r);
        if (done)
            return 0;
    }
}

/* ---- Throughput ---- */

/* Adds one queue's minutes (throughput.lua's reply) into out, whose window is set. */
static void add_throughput(const redisReply *r, throughput_t *out)
{
    int64_t first_minute = reply_i64(r->element[1]);
    const redisReply *minutes = r->element[2];
    int64_t minute_start = out->minute_start / 60;
    for (size_t m = 0; m < minutes->elements; m++) {
        const redisReply *h = minutes->element[m];
        int64_t minute = first_minute + (int64_t)m;
        for (size_t i = 0; h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2) {
            const char *field = h->element[i]->str;
            bool failed = field[0] == 'f';
            if (field[0] != 's' && !failed)
                continue;
            int64_t n = reply_i64(h->element[i + 1]);
            int64_t sec = minute * 60 + strtoll(field + 1, NULL, 10);
            int64_t si = sec - out->second_start, mi = minute - minute_start;
            if (si >= 0 && si < THROUGHPUT_SECONDS) {
                out->processed_per_second[si] += n;
                if (failed)
                    out->failed_per_second[si] += n;
            }
            if (mi >= 0 && mi < THROUGHPUT_MINUTES) {
                out->processed_per_minute[mi] += n;
                if (failed)
                    out->failed_per_minute[mi] += n;
            }
        }
    }
}

/* Sets the window ending in the second of now_ms. */
static void throughput_window(throughput_t *out, int64_t now_ms)
{
    int64_t now_s = now_ms / 1000;
    out->now_ms = now_ms;
    out->second_start = now_s - (THROUGHPUT_SECONDS - 1);
    out->minute_start = (now_s / 60 - (THROUGHPUT_MINUTES - 1)) * 60;
}

static int redis_throughput(broker_t *b, const char *const *queues, size_t n, throughput_t *out)
{
    if (n == 0) { /* no queue: zeros, on the backend's clock */
        redisReply *r = NULL;
        int err = command(b, &r, 1, (const char *[]){"TIME"});
        if (err)
            return err;
        if (reply_is(r, REDIS_REPLY_ARRAY, 2))
            throughput_window(out,
                              reply_i64(r->element[0]) * 1000 + reply_i64(r->element[1]) / 1000);
        else
            err = unexpected(b, "TIME");
        freeReplyObject(r);
        return err;
    }
    /* The hour of seconds starts in the minute before the last 60. */
    char span[24];
    snprintf(span, sizeof(span), "%d", THROUGHPUT_MINUTES);
    const char *args[] = {span};
    reval_t *calls = hp_calloc(n, sizeof(*calls));
    redisReply **replies = hp_calloc(n, sizeof(*replies));
    for (size_t i = 0; i < n; i++)
        calls[i] = (reval_t){.queue = queues[i], .nargs = 1, .args = args};
    int err = broker__redis_eval(conn_of(b), b, SCRIPT_THROUGHPUT, calls, n, replies);
    for (size_t i = 0; !err && i < n; i++) {
        const redisReply *r = replies[i];
        err = broker__redis_reply_err(b, r);
        if (!err &&
            (!reply_is(r, REDIS_REPLY_ARRAY, 3) || r->element[2]->type != REDIS_REPLY_ARRAY))
            err = unexpected(b, "throughput");
        if (!err && i == 0)
            throughput_window(out, reply_i64(r->element[0]));
        if (!err)
            add_throughput(r, out);
    }
    free_replies(replies, n);
    hp_free(replies);
    hp_free(calls);
    return err;
}

/* ---- Health ---- */

/* The value of "name:" in INFO text, copied into out; false when absent. */
static bool info_field(const char *text, const char *name, char *out, size_t len)
{
    size_t nlen = strlen(name);
    const char *line = text;
    while (line) {
        if (strncmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            snprintf(out, len, "%.*s", (int)strcspn(v, "\r\n"), v);
            return true;
        }
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    return false;
}

static int64_t info_i64(const char *text, const char *name)
{
    char v[64];
    return info_field(text, name, v, sizeof(v)) ? strtoll(v, NULL, 10) : 0;
}

static int redis_info(broker_t *b, broker_info_t *out)
{
    redisReply *r = NULL;
    int err = command(b, &r, 1, (const char *[]){"INFO"});
    if (err)
        return err;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return unexpected(b, "INFO");
    }
    info_field(r->str, "redis_version", out->version, sizeof(out->version));
    info_field(r->str, "maxmemory_policy", out->maxmemory_policy, sizeof(out->maxmemory_policy));
    out->uptime_s = info_i64(r->str, "uptime_in_seconds");
    out->used_memory = info_i64(r->str, "used_memory");
    out->maxmemory = info_i64(r->str, "maxmemory");
    out->connected_clients = info_i64(r->str, "connected_clients");
    freeReplyObject(r);
    return 0;
}

/* ---- Events ---- */

#define EVENTS_CHANNEL "hopper:events"

static int redis_events_next(broker_t *b, int64_t timeout_ms, char **json)
{
    redis_broker_t *rb = (redis_broker_t *)b;
    return broker__rconn_next_message(&rb->conn, b, EVENTS_CHANNEL, &rb->subscribed, timeout_ms,
                                      json);
}

/* ---- Tokens ---- */

#define TOKENS_KEY "hopper:tokens"

static int redis_token_store(broker_t *b, const char *id, const char *record, bool *stored)
{
    redisReply *r = NULL;
    int err = command(b, &r, 4, (const char *[]){"HSETNX", TOKENS_KEY, id, record});
    if (err)
        return err;
    *stored = reply_i64(r) == 1;
    freeReplyObject(r);
    return 0;
}

static int redis_token_load(broker_t *b, const char *id, char **record)
{
    redisReply *r = NULL;
    int err = command(b, &r, 3, (const char *[]){"HGET", TOKENS_KEY, id});
    if (err)
        return err;
    if (r->type == REDIS_REPLY_STRING)
        *record = hp_strndup(r->str, r->len);
    else
        err = broker__error(b, HP_ENOTFOUND, "token %s not found", id);
    freeReplyObject(r);
    return err;
}

static int redis_token_records(broker_t *b, char ***records, size_t *n)
{
    redisReply *r = NULL;
    int err = command(b, &r, 2, (const char *[]){"HVALS", TOKENS_KEY});
    if (err)
        return err;
    if (!reply_is(r, REDIS_REPLY_ARRAY, 0)) {
        freeReplyObject(r);
        return unexpected(b, "HVALS " TOKENS_KEY);
    }
    *records = hp_calloc(r->elements ? r->elements : 1, sizeof(char *));
    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type == REDIS_REPLY_STRING)
            (*records)[(*n)++] = hp_strndup(r->element[i]->str, r->element[i]->len);
    }
    freeReplyObject(r);
    return 0;
}

static int redis_token_delete(broker_t *b, const char *id)
{
    redisReply *r = NULL;
    int err = command(b, &r, 3, (const char *[]){"HDEL", TOKENS_KEY, id});
    if (err)
        return err;
    if (reply_i64(r) != 1)
        err = broker__error(b, HP_ENOTFOUND, "token %s not found", id);
    freeReplyObject(r);
    return err;
}

/* ---- Rate limits ---- */

static int redis_rate_take(broker_t *b, const char *key, double rate, int burst,
                           int64_t *retry_after_ms)
{
    char *rkey = hp_sprintf("hopper:rl:%s", key);
    char srate[48], sburst[24];
    snprintf(srate, sizeof(srate), "%.17g", rate);
    snprintf(sburst, sizeof(sburst), "%d", burst);
    /* The queue names no key here; it only labels messages. */
    reval_t call = {"rate", rkey, 2, (const char *[]){srate, sburst}, NULL};
    redisReply *r = NULL;
    int err = broker__redis_eval(conn_of(b), b, SCRIPT_RATE, &call, 1, &r);
    hp_free(rkey);
    if (!err)
        err = broker__redis_reply_err(b, r);
    int allowed = 0;
    if (!err && !reply_is(r, REDIS_REPLY_ARRAY, 2))
        err = unexpected(b, "rate limit");
    if (!err) {
        allowed = reply_i64(r->element[0]) == 1;
        *retry_after_ms = allowed ? 0 : reply_i64(r->element[1]);
    }
    if (r)
        freeReplyObject(r);
    return err ? err : allowed;
}

static const broker_ops_t redis_ops = {
    .name = "redis",
    .close = redis_close,
    .ping = redis_ping,
    .enqueue = redis_enqueue,
    .reserve = redis_reserve,
    .wait = redis_wait,
    .heartbeat = redis_heartbeat,
    .ack_batch = redis_ack_batch,
    .fail = redis_fail,
    .release = redis_release,
    .report = redis_report,
    .worker_beat = redis_worker_beat,
    .worker_gone = redis_worker_gone,
    .workers = redis_workers,
    .worker_get = redis_worker_get,
    .worker_command = redis_worker_command,
    .get = redis_get,
    .get_many = redis_get_many,
    .cancel = redis_cancel,
    .retry = redis_retry,
    .delete = redis_delete,
    .list = redis_list,
    .queue_configure = redis_queue_configure,
    .queue_pause = redis_queue_pause,
    .queue_stats = redis_queue_stats,
    .queues = redis_queues,
    .maintain = redis_maintain,
    .purge = redis_purge,
    .bulk = redis_bulk,
    .throughput = redis_throughput,
    .info = redis_info,
    .events_next = redis_events_next,
    .token_store = redis_token_store,
    .token_load = redis_token_load,
    .token_records = redis_token_records,
    .token_delete = redis_token_delete,
    .rate_take = redis_rate_take,
    .schedule_put = broker__redis_schedule_put,
    .schedule_get = broker__redis_schedule_get,
    .schedules = broker__redis_schedules,
    .schedule_delete = broker__redis_schedule_delete,
    .schedule_pause = broker__redis_schedule_pause,
    .schedule_fire = broker__redis_schedule_fire,
    .schedules_version = broker__redis_schedules_version,
    .session_store = broker__redis_session_store,
    .session_load = broker__redis_session_load,
    .session_delete = broker__redis_session_delete,
    .audit_append = broker__redis_audit_append,
    .audit_list = broker__redis_audit_list,
};
