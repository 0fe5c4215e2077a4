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
} redis_broker_t;

#define KNOWN_QUEUES_MAX 1024

static rconn_t *conn_of(broker_t *b)
{
    return &((redis_broker_t *)b)->conn;
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
    reval_t call = {queue, nargs, args, lens};
    int err = broker__redis_eval(conn_of(b), b, script, &call, 1, reply);
    if (!err)
        err = broker__redis_reply_err(b, *reply);
    if (err && *reply) {
        freeReplyObject(*reply);
        *reply = NULL;
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
static int register_queues(redis_broker_t *rb, broker__prepared_t *jobs, size_t n)
{
    const char **argv = hp_malloc((n + 2) * sizeof(*argv));
    int argc = 2;
    argv[0] = "SADD";
    argv[1] = "hopper:queues";
    for (size_t i = 0; i < n; i++) {
        bool dup = queue_known(rb, jobs[i].queue);
        for (int k = 2; k < argc && !dup; k++)
            dup = strcmp(argv[k], jobs[i].queue) == 0;
        if (!dup)
            argv[argc++] = jobs[i].queue;
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

#define ENQUEUE_ARGS_PER_JOB 7

typedef struct enqueue_group_s {
    const char *queue;
    size_t *members; /* indexes into the prepared array */
    size_t n;
} enqueue_group_t;

static size_t group_by_queue(broker__prepared_t *jobs, size_t n, enqueue_group_t *groups)
{
    size_t ngroups = 0;
    for (size_t i = 0; i < n; i++) {
        size_t g = 0;
        while (g < ngroups && strcmp(groups[g].queue, jobs[i].queue) != 0)
            g++;
        if (g == ngroups) {
            groups[ngroups].queue = jobs[i].queue;
            groups[ngroups].members = hp_malloc(n * sizeof(size_t));
            groups[ngroups++].n = 0;
        }
        groups[g].members[groups[g].n++] = i;
    }
    return ngroups;
}

static void fill_results(broker_t *b, const enqueue_group_t *g, broker__prepared_t *jobs,
                         const redisReply *r, enqueue_result_t *results)
{
    int err = broker__redis_reply_err(b, r);
    if (!err && !reply_is(r, REDIS_REPLY_ARRAY, g->n))
        err = unexpected(b, "enqueue");
    for (size_t k = 0; k < g->n; k++) {
        enqueue_result_t *res = &results[jobs[g->members[k]].index];
        if (err) {
            res->err = err;
            snprintf(res->errmsg, sizeof(res->errmsg), "%s", b->errmsg);
            continue;
        }
        const redisReply *item = r->element[k];
        if (!reply_is(item, REDIS_REPLY_ARRAY, 2)) {
            res->err = unexpected(b, "enqueue");
            continue;
        }
        snprintf(res->id, sizeof(res->id), "%s", item->element[0]->str);
        const char *state = item->element[1]->str;
        res->duplicate = strcmp(state, "duplicate") == 0;
        res->state = strcmp(state, "scheduled") == 0 ? JOB_STATE_SCHEDULED : JOB_STATE_WAITING;
    }
}

static int redis_enqueue(broker_t *b, broker__prepared_t *jobs, size_t n, enqueue_result_t *results)
{
    redis_broker_t *rb = (redis_broker_t *)b;
    int err = register_queues(rb, jobs, n);
    if (err) {
        for (size_t i = 0; i < n; i++) {
            results[jobs[i].index].err = err;
            snprintf(results[jobs[i].index].errmsg, sizeof(results[0].errmsg), "%s", b->errmsg);
        }
        return err;
    }
    enqueue_group_t *groups = hp_calloc(n, sizeof(*groups));
    size_t ngroups = group_by_queue(jobs, n, groups);
    size_t nargs_total = n * ENQUEUE_ARGS_PER_JOB + ngroups;
    const char **args = hp_malloc(nargs_total * sizeof(*args));
    size_t *lens = hp_malloc(nargs_total * sizeof(*lens));
    char(*nums)[5][24] = hp_malloc((n + ngroups) * sizeof(*nums));
    reval_t *calls = hp_calloc(ngroups, sizeof(*calls));
    size_t at = 0;
    for (size_t g = 0; g < ngroups; g++) {
        calls[g] = (reval_t){groups[g].queue, 1 + (int)groups[g].n * ENQUEUE_ARGS_PER_JOB,
                             args + at, lens + at};
        char *count = nums[n + g][0];
        snprintf(count, 24, "%zu", groups[g].n);
        args[at] = count, lens[at++] = strlen(count);
        for (size_t k = 0; k < groups[g].n; k++) {
            broker__prepared_t *p = &jobs[groups[g].members[k]];
            char(*num)[24] = nums[groups[g].members[k]];
            snprintf(num[0], 24, "%d", p->priority);
            snprintf(num[1], 24, "%lld", (long long)p->delay_ms);
            snprintf(num[2], 24, "%lld", (long long)p->run_at_ms);
            snprintf(num[3], 24, "%lld", (long long)p->unique_ttl_ms);
            const char *v[ENQUEUE_ARGS_PER_JOB] = {p->ulid,       num[0], num[1], num[2],
                                                   p->unique_key, num[3], p->body};
            for (int j = 0; j < ENQUEUE_ARGS_PER_JOB; j++) {
                args[at] = v[j];
                lens[at++] = j == 6 ? p->body_len : strlen(v[j]);
            }
        }
    }
    redisReply **replies = hp_calloc(ngroups, sizeof(*replies));
    err = broker__redis_eval(&rb->conn, b, SCRIPT_ENQUEUE, calls, ngroups, replies);
    int first = err;
    for (size_t g = 0; g < ngroups; g++) {
        if (err) {
            for (size_t k = 0; k < groups[g].n; k++) {
                results[jobs[groups[g].members[k]].index].err = err;
                snprintf(results[jobs[groups[g].members[k]].index].errmsg,
                         sizeof(results[0].errmsg), "%s", b->errmsg);
            }
        } else {
            fill_results(b, &groups[g], jobs, replies[g], results);
            freeReplyObject(replies[g]);
        }
        hp_free(groups[g].members);
    }
    for (size_t i = 0; !first && i < n; i++)
        first = results[jobs[i].index].err;
    if (first)
        for (size_t i = 0; i < n; i++) /* b->errmsg names the first failure */
            if (results[jobs[i].index].err == first) {
                broker__error(b, first, "%s", results[jobs[i].index].errmsg);
                break;
            }
    hp_free(replies);
    hp_free(calls);
    hp_free(nums);
    hp_free(lens);
    hp_free(args);
    hp_free(groups);
    return first;
}

/* ---- Working ---- */

/* Decodes {ulid, record, score}* (stride 3) or {ulid, record}* (stride 2). */
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
        if (stride == 3 && job->state == JOB_STATE_ACTIVE)
            job->lease_deadline_ms = reply_i64(arr->element[i * stride + 2]);
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
    if (!reply_is(r, REDIS_REPLY_ARRAY, 3) || r->element[2]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return unexpected(b, "reserve");
    }
    out->next_due_ms = reply_i64(r->element[0]);
    int64_t deadline = reply_i64(r->element[1]);
    err = decode_jobs(b, queue, r->element[2], 2, out);
    for (size_t i = 0; !err && i < out->n; i++) {
        out->jobs[i]->lease_token = hp_strdup(token);
        out->jobs[i]->lease_deadline_ms = deadline;
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
    /* One call per queue, all in one round trip. */
    char(*ulids)[HP_ULID_LEN + 1] = hp_malloc(n * sizeof(*ulids));
    char(*queues)[JOB_QUEUE_NAME_MAX + 1] = hp_malloc(n * sizeof(*queues));
    size_t *group = hp_malloc(n * sizeof(size_t));
    reval_t *calls = hp_calloc(n, sizeof(*calls));
    const char **args = hp_malloc((3 * n) * sizeof(*args));
    char slease[24];
    snprintf(slease, sizeof(slease), "%lld", (long long)lease_ms);
    size_t ncalls = 0, at = 0;
    for (size_t i = 0; i < n; i++)
        job_id_parse(leases[i].id, ulids[i], queues[i]);
    for (size_t i = 0; i < n; i++) {
        size_t g = 0;
        while (g < ncalls && strcmp(calls[g].queue, queues[i]) != 0)
            g++;
        if (g < ncalls)
            continue; /* collected with its queue's first job */
        calls[ncalls] = (reval_t){queues[i], 1, args + at, NULL};
        args[at++] = slease;
        for (size_t j = i; j < n; j++) {
            if (strcmp(queues[j], queues[i]) != 0)
                continue;
            args[at++] = ulids[j];
            args[at++] = leases[j].token;
            calls[ncalls].nargs += 2;
            group[j] = ncalls;
        }
        ncalls++;
    }
    redisReply **replies = hp_calloc(ncalls, sizeof(*replies));
    int err = broker__redis_eval(conn_of(b), b, SCRIPT_HEARTBEAT, calls, ncalls, replies);
    size_t *seen = hp_calloc(ncalls, sizeof(size_t));
    for (size_t i = 0; !err && i < n; i++) {
        redisReply *r = replies[group[i]];
        err = broker__redis_reply_err(b, r);
        if (!err && (!reply_is(r, REDIS_REPLY_ARRAY, seen[group[i]] + 1)))
            err = unexpected(b, "heartbeat");
        if (!err)
            status[i] = (lease_status_t)reply_i64(r->element[seen[group[i]]++]);
    }
    for (size_t g = 0; g < ncalls; g++)
        if (replies[g])
            freeReplyObject(replies[g]);
    hp_free(seen);
    hp_free(replies);
    hp_free(args);
    hp_free(calls);
    hp_free(group);
    hp_free(queues);
    hp_free(ulids);
    return err;
}

static int redis_ack(broker_t *b, const char *ulid, const char *queue, const char *token,
                     const char *result, size_t result_len)
{
    redisReply *r = NULL;
    const char *args[] = {ulid, token, result ? result : ""};
    size_t lens[] = {strlen(ulid), strlen(token), result ? result_len : 0};
    int err = eval1(b, SCRIPT_ACK, queue, 3, args, lens, &r);
    if (r)
        freeReplyObject(r);
    return err;
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

static int redis_get(broker_t *b, const char *ulid, const char *queue, job_t **out)
{
    redisReply *r = NULL;
    int err = eval1(b, SCRIPT_GET, queue, 1, &ulid, NULL, &r);
    if (err)
        return err;
    if (r->type == REDIS_REPLY_NIL) {
        err = not_found(b, ulid, queue);
    } else if (!reply_is(r, REDIS_REPLY_ARRAY, 3)) {
        err = unexpected(b, "get");
    } else if (broker__job_decode(ulid, queue, r->element[0]->str, r->element[0]->len, out)) {
        err = broker__error(b, HP_EPROTO, "redis: job %s-%s has a damaged record", ulid, queue);
    } else {
        if (r->element[1]->len)
            (*out)->result = hp_strndup(r->element[1]->str, r->element[1]->len);
        (*out)->lease_deadline_ms = reply_i64(r->element[2]);
    }
    freeReplyObject(r);
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

static int redis_retry(broker_t *b, const char *ulid, const char *queue)
{
    return simple_job_call(b, SCRIPT_RETRY, ulid, queue, NULL);
}

static int redis_delete(broker_t *b, const char *ulid, const char *queue)
{
    return simple_job_call(b, SCRIPT_DELETE, ulid, queue, NULL);
}

static int redis_list(broker_t *b, const char *queue, job_state_t state, const char *cursor,
                      size_t limit, job_list_t *out)
{
    char slimit[24];
    snprintf(slimit, sizeof(slimit), "%zu", limit);
    redisReply *r = NULL;
    int err = eval1(b, SCRIPT_LIST, queue, 3,
                    (const char *[]){job_state_name(state), cursor, slimit}, NULL, &r);
    if (err)
        return err;
    if (!reply_is(r, REDIS_REPLY_ARRAY, 2) || r->element[1]->type != REDIS_REPLY_ARRAY)
        err = unexpected(b, "list");
    else
        err = decode_jobs(b, queue, r->element[1], 3, out);
    if (!err && r->element[0]->len)
        out->next_cursor = hp_strdup(r->element[0]->str);
    freeReplyObject(r);
    if (err)
        job_list_cleanup(out);
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
    rcmd_t cmds[2];
    size_t ncmds = 0;
    if (argc > 2)
        cmds[ncmds++] = (rcmd_t){argc, argv, NULL};
    if (conf->max_length == -1)
        cmds[ncmds++] = (rcmd_t){3, (const char *[]){"HDEL", key, "maxlen"}, NULL};
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
    redisReply *r = NULL;
    int err = eval1(b, SCRIPT_PAUSE, queue, 1, (const char *[]){paused ? "1" : "0"}, NULL, &r);
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
    if (!reply_is(r, REDIS_REPLY_ARRAY, 2)) {
        freeReplyObject(r);
        return unexpected(b, "stats");
    }
    const redisReply *counts = r->element[0], *conf = r->element[1];
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

static const broker_ops_t redis_ops = {
    .name = "redis",
    .close = redis_close,
    .ping = redis_ping,
    .enqueue = redis_enqueue,
    .reserve = redis_reserve,
    .wait = redis_wait,
    .heartbeat = redis_heartbeat,
    .ack = redis_ack,
    .fail = redis_fail,
    .get = redis_get,
    .cancel = redis_cancel,
    .retry = redis_retry,
    .delete = redis_delete,
    .list = redis_list,
    .queue_configure = redis_queue_configure,
    .queue_pause = redis_queue_pause,
    .queue_stats = redis_queue_stats,
    .queues = redis_queues,
    .maintain = redis_maintain,
};
