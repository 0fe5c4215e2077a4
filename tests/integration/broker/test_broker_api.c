/*
 * What the HTTP API needs from the broker, against a real redis-server: idempotency
 * keys, events, the run-time histogram, purge, tokens and rate limits. One private
 * server for the whole file; each test uses queues of its own.
 */
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

/* A command on a connection of its own; the reply is the caller's to free. */
static redisReply *redis_cmd(const char *fmt, ...)
{
    redisContext *c = redisConnect("127.0.0.1", server.port);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    return r;
}

static long long commandstat_calls(const char *command)
{
    redisReply *r = redis_cmd("INFO commandstats");
    char field[64];
    snprintf(field, sizeof(field), "cmdstat_%s:calls=", command);
    const char *at = strstr(r->str, field);
    long long v = at ? atoll(at + strlen(field)) : 0;
    freeReplyObject(r);
    return v;
}

static void enqueue_ok(const job_spec_t *spec, char *id_out)
{
    enqueue_result_t res;
    if (broker_enqueue(b, spec, 1, &res))
        fail_msg("enqueue: %s", broker_errmsg(b));
    if (id_out)
        strcpy(id_out, res.id);
}

static job_t *reserve_one(const char *queue)
{
    job_list_t list;
    if (broker_reserve(b, queue, 1, 30000, "test-worker", &list))
        fail_msg("reserve: %s", broker_errmsg(b));
    assert_int_equal(list.n, 1);
    job_t *job = list.jobs[0];
    list.n = 0;
    job_list_cleanup(&list);
    return job;
}

static queue_stats_t stats_of(const char *queue)
{
    queue_stats_t s;
    assert_int_equal(broker_queue_stats(b, queue, &s), 0);
    return s;
}

/* ---- Idempotency ---- */

static void idempotency_key_same_request_gets_the_first_job(void **state)
{
    (void)state;
    const char *q = test_queue_name("idem");
    job_spec_t spec = {
        .queue = q, .type = "t", .idempotency_key = "tok1:abc", .request_hash = "hash-a"};
    enqueue_result_t first, again, other;
    assert_int_equal(broker_enqueue(b, &spec, 1, &first), 0);
    assert_false(first.duplicate);
    assert_int_equal(broker_enqueue(b, &spec, 1, &again), 0);
    assert_true(again.duplicate);
    assert_false(again.idempotency_mismatch);
    assert_string_equal(again.id, first.id);
    assert_int_equal(stats_of(q).counts[JOB_STATE_WAITING], 1);

    /* The same key with another request is refused, and nothing is enqueued. */
    spec.request_hash = "hash-b";
    assert_int_equal(broker_enqueue(b, &spec, 1, &other), HP_EINVAL);
    assert_int_equal(other.err, HP_EINVAL);
    assert_true(other.idempotency_mismatch);
    assert_false(other.duplicate);
    assert_non_null(strstr(other.errmsg, "Idempotency-Key"));
    assert_non_null(strstr(other.errmsg, "different request"));
    assert_non_null(strstr(broker_errmsg(b), "Idempotency-Key"));
    assert_int_equal(stats_of(q).counts[JOB_STATE_WAITING], 1);

    /* Kept for 24 hours. */
    long long ttl = test_redis_int(&server, "PTTL hopper:{%s}:i:tok1:abc", q);
    assert_true(ttl > 24LL * 3600 * 1000 - 60000 && ttl <= 24LL * 3600 * 1000);
    /* The key is per queue: the same key on another queue is another job. */
    spec.queue = test_queue_name("idem");
    spec.request_hash = "hash-a";
    enqueue_result_t elsewhere;
    assert_int_equal(broker_enqueue(b, &spec, 1, &elsewhere), 0);
    assert_false(elsewhere.duplicate);
}

static void idempotency_within_a_batch(void **state)
{
    (void)state;
    const char *q = test_queue_name("idemb");
    job_spec_t specs[4] = {
        {.queue = q, .type = "t", .idempotency_key = "k", .request_hash = "h1"},
        {.queue = q, .type = "t", .idempotency_key = "k", .request_hash = "h1"},
        {.queue = q, .type = "t", .idempotency_key = "k", .request_hash = "h2"},
        {.queue = q, .type = "t", .idempotency_key = "k2", .request_hash = "h1", .delay_ms = 60000},
    };
    enqueue_result_t res[4];
    assert_int_equal(broker_enqueue(b, specs, 4, res), HP_EINVAL);
    assert_int_equal(res[0].err, 0);
    assert_false(res[0].duplicate);
    assert_int_equal(res[1].err, 0);
    assert_true(res[1].duplicate);
    assert_string_equal(res[1].id, res[0].id);
    assert_true(res[2].idempotency_mismatch);
    assert_int_equal(res[2].err, HP_EINVAL);
    assert_int_equal(res[3].err, 0);
    assert_int_equal(res[3].state, JOB_STATE_SCHEDULED);
    queue_stats_t s = stats_of(q);
    assert_int_equal(s.counts[JOB_STATE_WAITING], 1);
    assert_int_equal(s.counts[JOB_STATE_SCHEDULED], 1);
}

static void idempotency_input_is_checked(void **state)
{
    (void)state;
    const char *q = test_queue_name("idemv");
    char long_key[JOB_UNIQUE_KEY_MAX + 2];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    enqueue_result_t res;
    job_spec_t spec = {.queue = q, .type = "t", .idempotency_key = long_key, .request_hash = "h"};
    assert_int_equal(broker_enqueue(b, &spec, 1, &res), HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "idempotency_key"));
    long_key[JOB_UNIQUE_KEY_MAX] = '\0'; /* exactly the limit is fine */
    assert_int_equal(broker_enqueue(b, &spec, 1, &res), 0);
    spec = (job_spec_t){.queue = q, .type = "t", .idempotency_key = "k"};
    assert_int_equal(broker_enqueue(b, &spec, 1, &res), HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "request_hash"));
    spec.request_hash = "a|b";
    assert_int_equal(broker_enqueue(b, &spec, 1, &res), HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "request_hash"));
}

/* ---- Events ---- */

/* Reads the next event within 2 s and checks its name and job; the caller
 * json_decref()s it. */
static json_t *expect_event(broker_t *ev, const char *name, const char *id)
{
    char *text = NULL;
    int rc = broker_events_next(ev, 2000, &text);
    if (rc != 1)
        fail_msg("expected a %s event, got %d: %s", name, rc, broker_errmsg(ev));
    json_error_t jerr;
    json_t *e = json_loads(text, 0, &jerr);
    if (!e)
        fail_msg("event is not JSON (%s): %s", jerr.text, text);
    const char *got = json_string_value(json_object_get(e, "event"));
    if (!got || strcmp(got, name) != 0)
        fail_msg("expected a %s event, got %s", name, text);
    if (id)
        assert_string_equal(json_string_value(json_object_get(e, "id")), id);
    hp_free(text);
    return e;
}

static void assert_event_common(json_t *e, const char *queue, const char *type)
{
    assert_string_equal(json_string_value(json_object_get(e, "queue")), queue);
    assert_string_equal(json_string_value(json_object_get(e, "type")), type);
    json_int_t at = json_integer_value(json_object_get(e, "at"));
    assert_true(at > hp_now_ms() - 60000 && at < hp_now_ms() + 60000);
}

static const char *str_of(json_t *e, const char *key)
{
    const char *v = json_string_value(json_object_get(e, key));
    if (!v)
        fail_msg("event has no string \"%s\"", key);
    return v;
}

static void events_follow_a_job_through_its_life(void **state)
{
    (void)state;
    const char *q = test_queue_name("ev");
    const char *type = "odd\"ty\\pe/x"; /* needs JSON escaping both ways */
    broker_t *ev = test_redis_broker(&server, 0);
    char *text = NULL;
    assert_int_equal(broker_events_next(ev, 100, &text), 0); /* subscribes, times out */
    assert_null(text);

    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = type, .max_attempts = 3}, id);
    json_t *e = expect_event(ev, "enqueued", id);
    assert_event_common(e, q, type);
    assert_string_equal(str_of(e, "state"), "waiting");
    json_decref(e);

    job_t *job = reserve_one(q);
    e = expect_event(ev, "started", id);
    assert_event_common(e, q, type);
    assert_int_equal(json_integer_value(json_object_get(e, "attempt")), 1);
    assert_string_equal(str_of(e, "state"), "active");
    json_decref(e);

    assert_int_equal(broker_progress(b, id, job->lease_token, 40, "half \"way\""), 0);
    e = expect_event(ev, "progress", id);
    assert_int_equal(json_integer_value(json_object_get(e, "progress")), 40);
    json_decref(e);

    const char *why = "boom: \"quoted\"\nand a second line\t\\";
    int64_t retry_at = 0;
    assert_int_equal(broker_fail(b, id, job->lease_token, why, false, NULL, &retry_at), 0);
    e = expect_event(ev, "failed", id);
    assert_event_common(e, q, type);
    assert_string_equal(str_of(e, "state"), "failed");
    assert_string_equal(str_of(e, "error"), why);
    assert_int_equal(json_integer_value(json_object_get(e, "attempt")), 1);
    assert_int_equal(json_integer_value(json_object_get(e, "retry_at")), retry_at);
    assert_true(json_is_integer(json_object_get(e, "runtime_ms")));
    json_decref(e);
    job_free(job);

    /* Retried by hand, run again, and acked. */
    assert_int_equal(broker_retry(b, id), 0);
    json_decref(expect_event(ev, "retried", id));
    job = reserve_one(q);
    json_decref(expect_event(ev, "started", id));
    assert_int_equal(broker_ack(b, id, job->lease_token, "{\"ok\":true}", 0), 0);
    e = expect_event(ev, "succeeded", id);
    assert_event_common(e, q, type);
    assert_string_equal(str_of(e, "state"), "succeeded");
    assert_int_equal(json_integer_value(json_object_get(e, "attempt")), 1);
    assert_true(json_integer_value(json_object_get(e, "runtime_ms")) >= 0);
    json_decref(e);
    job_free(job);

    /* A permanent failure is dead; a waiting job canceled; a finished one deleted. */
    char id2[JOB_ID_MAX], id3[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "plain"}, id2);
    json_decref(expect_event(ev, "enqueued", id2));
    job = reserve_one(q);
    json_decref(expect_event(ev, "started", id2));
    assert_int_equal(broker_fail(b, id2, job->lease_token, "bad input", true, NULL, NULL), 0);
    e = expect_event(ev, "dead", id2);
    assert_event_common(e, q, "plain");
    assert_string_equal(str_of(e, "state"), "dead");
    assert_string_equal(str_of(e, "error"), "bad input");
    json_decref(e);
    job_free(job);
    enqueue_ok(&(job_spec_t){.queue = q, .type = "plain", .delay_ms = 60000}, id3);
    e = expect_event(ev, "enqueued", id3);
    assert_string_equal(str_of(e, "state"), "scheduled");
    json_decref(e);
    assert_int_equal(broker_cancel(b, id3, NULL), 0);
    e = expect_event(ev, "canceled", id3);
    assert_string_equal(str_of(e, "state"), "canceled");
    json_decref(e);
    assert_int_equal(broker_delete(b, id3), 0);
    json_decref(expect_event(ev, "deleted", id3));
    broker_close(ev);
}

static void events_timeout_keeps_the_connection(void **state)
{
    (void)state;
    const char *q = test_queue_name("evt");
    broker_t *ev = test_redis_broker(&server, 0);
    char *text = NULL;
    /* Several timeouts in a row, each shorter than a read would block... */
    for (int i = 0; i < 3; i++)
        assert_int_equal(broker_events_next(ev, 30, &text), 0);
    redisReply *subs = redis_cmd("PUBSUB NUMSUB hopper:events");
    assert_int_equal(subs->type, REDIS_REPLY_ARRAY);
    assert_int_equal(subs->element[1]->integer, 1); /* subscribed once, still there */
    freeReplyObject(subs);
    /* ...and the connection still delivers. */
    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, id);
    json_decref(expect_event(ev, "enqueued", id));
    assert_int_equal(broker_events_next(ev, 0, &text), 0);

    /* A dropped connection is reported, and the next call subscribes again. */
    redisReply *r = redis_cmd("CLIENT KILL TYPE pubsub");
    freeReplyObject(r);
    int rc = broker_events_next(ev, 1000, &text);
    assert_int_equal(rc, HP_EUNAVAIL);
    assert_non_null(strstr(broker_errmsg(ev), "subscription"));
    assert_int_equal(broker_events_next(ev, 100, &text), 0);
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, id);
    json_decref(expect_event(ev, "enqueued", id));
    broker_close(ev);
}

/* ---- Run-time histogram ---- */

/* Moves the start of an active job's run back by `ms`, as if it had run that long. */
static void backdate_start(const char *queue, const char *id, int64_t ms)
{
    char ulid[HP_ULID_LEN + 1], q[JOB_QUEUE_NAME_MAX + 1];
    assert_true(job_id_parse(id, ulid, q));
    redisReply *r = redis_cmd("HGET hopper:{%s}:lease %s", queue, ulid);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    char token[64], worker[128];
    long long started;
    assert_int_equal(sscanf(r->str, "%63[^|]|%lld|%127s", token, &started, worker), 3);
    freeReplyObject(r);
    char value[256];
    snprintf(value, sizeof(value), "%s|%lld|%s", token, started - (long long)ms, worker);
    freeReplyObject(redis_cmd("HSET hopper:{%s}:lease %s %s", queue, ulid, value));
}

static void runtime_histogram_counts_acks_and_fails(void **state)
{
    (void)state;
    const char *q = test_queue_name("rt");
    enum { N = 50 };
    for (int i = 0; i < N + 2; i++)
        enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, NULL);
    job_list_t list;
    assert_int_equal(broker_reserve(b, q, N + 2, 30000, "w", &list), 0);
    assert_int_equal(list.n, N + 2);
    /* Two runs of known length: ~3 s (bucket <= 5000 ms) and ~100 s (past every bound). */
    backdate_start(q, list.jobs[N]->id, 3000);
    backdate_start(q, list.jobs[N + 1]->id, 100000);
    job_ack_t acks[N];
    for (int i = 0; i < N; i++)
        acks[i] = (job_ack_t){.id = list.jobs[i]->id, .token = list.jobs[i]->lease_token};
    redisReply *reset = redis_cmd("CONFIG RESETSTAT");
    freeReplyObject(reset);
    assert_int_equal(broker_ack_batch(b, acks, N), 0);
    /* One HINCRBY per bucket used and the sum, plus the counts: not one per job. */
    assert_true(commandstat_calls("hincrby") < 10);
    assert_int_equal(broker_ack(b, list.jobs[N]->id, list.jobs[N]->lease_token, NULL, 0), 0);
    assert_int_equal(broker_fail(b, list.jobs[N + 1]->id, list.jobs[N + 1]->lease_token, "slow",
                                 true, NULL, NULL),
                     0);
    queue_stats_t s = stats_of(q);
    int64_t total = 0;
    for (int i = 0; i <= QUEUE_RUNTIME_NBUCKETS; i++)
        total += s.runtime_count[i];
    assert_int_equal(total, N + 2);
    assert_int_equal(QUEUE_RUNTIME_BUCKETS_MS[9], 5000);
    assert_int_equal(s.runtime_count[9], 1);                      /* 2500 < 3000 <= 5000 */
    assert_int_equal(s.runtime_count[QUEUE_RUNTIME_NBUCKETS], 1); /* > 60000 */
    assert_true(s.runtime_sum_ms >= 103000 && s.runtime_sum_ms < 103000 + (N + 2) * 2000);
    /* The quick ones all ran under a second. */
    int64_t quick = 0;
    for (int i = 0; i <= 7; i++)
        quick += s.runtime_count[i];
    assert_int_equal(quick, N);
    job_list_cleanup(&list);
}

/* ---- Purge ---- */

static void purge_waiting_in_chunks(void **state)
{
    (void)state;
    const char *q = test_queue_name("purgew");
    enum { BATCH = 900, BATCHES = 5, TOTAL = BATCH * BATCHES };
    job_spec_t *specs = hp_calloc(BATCH, sizeof(*specs));
    enqueue_result_t *res = hp_calloc(BATCH, sizeof(*res));
    for (int k = 0; k < BATCHES; k++) {
        for (int i = 0; i < BATCH; i++)
            specs[i] = (job_spec_t){.queue = q, .type = "t", .priority = i % 3};
        assert_int_equal(broker_enqueue(b, specs, BATCH, res), 0);
    }
    /* Two canceled while waiting: their ids stay in the lists as tombstones. */
    assert_int_equal(broker_cancel(b, res[0].id, NULL), 0);
    assert_int_equal(broker_cancel(b, res[1].id, NULL), 0);
    char keep_id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .delay_ms = 60000}, keep_id);
    freeReplyObject(redis_cmd("CONFIG RESETSTAT"));
    int64_t removed = -1;
    assert_int_equal(broker_purge(b, q, JOB_STATE_WAITING, &removed), 0);
    assert_int_equal(removed, TOTAL - 2);
    assert_true(commandstat_calls("evalsha") >= 3); /* 2000 per call */
    queue_stats_t s = stats_of(q);
    assert_int_equal(s.counts[JOB_STATE_WAITING], 0);
    assert_int_equal(s.counts[JOB_STATE_CANCELED], 2);
    assert_int_equal(s.counts[JOB_STATE_SCHEDULED], 1);
    for (int prio = 0; prio < 3; prio++)
        assert_int_equal(test_redis_int(&server, "EXISTS hopper:{%s}:w:%d", q, prio), 0);
    assert_int_equal(test_redis_int(&server, "ZCARD hopper:{%s}:prios", q), 0);
    assert_int_equal(test_redis_int(&server, "HLEN hopper:{%s}:jobs", q),
                     3); /* 2 canceled, 1 scheduled */
    job_t *job = NULL;
    assert_int_equal(broker_get(b, res[5].id, &job), HP_ENOTFOUND);
    assert_int_equal(broker_get(b, keep_id, &job), 0);
    job_free(job);
    /* The queue works on afterwards. */
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, NULL);
    job_free(reserve_one(q));
    hp_free(res);
    hp_free(specs);
}

static void purge_dead_and_refuse_active(void **state)
{
    (void)state;
    const char *q = test_queue_name("purged");
    for (int i = 0; i < 5; i++) {
        enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, NULL);
        job_t *job = reserve_one(q);
        assert_int_equal(broker_log(b, job->id, job->lease_token, 1, "a line"), 0);
        assert_int_equal(broker_progress(b, job->id, job->lease_token, 50, NULL), 0);
        assert_int_equal(broker_fail(b, job->id, job->lease_token, "no", true, NULL, NULL), 0);
        job_free(job);
    }
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, NULL);
    job_t *active = reserve_one(q);
    int64_t removed = -1;
    assert_int_equal(broker_purge(b, q, JOB_STATE_ACTIVE, &removed), HP_ESTATE);
    assert_int_equal(removed, 0);
    assert_non_null(strstr(broker_errmsg(b), "active"));
    assert_int_equal(stats_of(q).counts[JOB_STATE_DEAD], 5);
    assert_int_equal(broker_purge(b, q, JOB_STATE_DEAD, &removed), 0);
    assert_int_equal(removed, 5);
    queue_stats_t s = stats_of(q);
    assert_int_equal(s.counts[JOB_STATE_DEAD], 0);
    assert_int_equal(s.counts[JOB_STATE_ACTIVE], 1);
    assert_int_equal(test_redis_int(&server, "HLEN hopper:{%s}:logs", q), 0);
    assert_int_equal(test_redis_int(&server, "HLEN hopper:{%s}:prog", q), 0);
    assert_int_equal(test_redis_int(&server, "HLEN hopper:{%s}:jobs", q), 1); /* the active one */
    assert_int_equal(test_redis_int(&server, "EXISTS hopper:{%s}:dead", q), 0);
    /* Nothing left: a second purge removes nothing. */
    assert_int_equal(broker_purge(b, q, JOB_STATE_DEAD, &removed), 0);
    assert_int_equal(removed, 0);
    assert_int_equal(broker_ack(b, active->id, active->lease_token, NULL, 0), 0);
    job_free(active);
}

/* ---- Tokens ---- */

static void tokens_create_verify_revoke(void **state)
{
    (void)state;
    token_info_t info = {.scope = TOKEN_SCOPE_SUBMIT, .rate = 5.5, .burst = 10};
    strcpy(info.name, "ci deploys");
    strcpy(info.queues, "email*,pdf");
    char token[TOKEN_MAX];
    int64_t before = hp_now_ms();
    assert_int_equal(broker_token_create(b, &info, token), 0);
    assert_int_equal(strncmp(token, "hop_", 4), 0);
    assert_int_equal(strlen(info.id), TOKEN_ID_LEN);
    assert_int_equal(strncmp(token + 4, info.id, TOKEN_ID_LEN), 0);
    assert_int_equal(token[4 + TOKEN_ID_LEN], '_');
    assert_true(strlen(token + 5 + TOKEN_ID_LEN) >= 52); /* 256 bits in base32 */
    assert_true(info.created_ms >= before);

    token_info_t got;
    assert_int_equal(broker_token_verify(b, token, &got), 0);
    assert_string_equal(got.id, info.id);
    assert_string_equal(got.name, "ci deploys");
    assert_string_equal(got.queues, "email*,pdf");
    assert_int_equal(got.scope, TOKEN_SCOPE_SUBMIT);
    assert_true(got.rate == 5.5);
    assert_int_equal(got.burst, 10);
    assert_int_equal(got.created_ms, info.created_ms);

    /* The broker keeps the hash, never the secret. */
    redisReply *r = redis_cmd("HGET hopper:tokens %s", info.id);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_null(strstr(r->str, token + 5 + TOKEN_ID_LEN));
    assert_non_null(strstr(r->str, "sha256"));
    freeReplyObject(r);

    /* A wrong secret, a malformed token, an unknown id: all simply not found. */
    char wrong[TOKEN_MAX];
    strcpy(wrong, token);
    char *last = wrong + strlen(wrong) - 1;
    *last = *last == 'a' ? 'b' : 'a';
    assert_int_equal(broker_token_verify(b, wrong, &got), HP_ENOTFOUND);
    const char *malformed[] = {"", "hop_", "Bearer x", "hop_ABCDEFGHIJKL_xyz", token + 1};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        assert_int_equal(broker_token_verify(b, malformed[i], &got), HP_ENOTFOUND);
    char unknown[TOKEN_MAX];
    strcpy(unknown, token);
    memcpy(unknown + 4, "zzzzzzzzzzzz", TOKEN_ID_LEN);
    assert_int_equal(broker_token_verify(b, unknown, &got), HP_ENOTFOUND);

    /* Listed in creation order. */
    token_info_t second = {.scope = TOKEN_SCOPE_ADMIN};
    char token2[TOKEN_MAX];
    hp_sleep_ms(2);
    assert_int_equal(broker_token_create(b, &second, token2), 0);
    assert_string_not_equal(second.id, info.id);
    token_info_t *all = NULL;
    size_t n = 0;
    assert_int_equal(broker_tokens(b, &all, &n), 0);
    size_t at_first = n, at_second = n;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(all[i].id, info.id) == 0)
            at_first = i;
        if (strcmp(all[i].id, second.id) == 0)
            at_second = i;
    }
    assert_true(at_first < at_second && at_second < n);
    assert_string_equal(all[at_second].queues, "");
    hp_free(all);

    /* Revoked: no longer verifies, no longer listed, a second revoke finds nothing. */
    assert_int_equal(broker_token_revoke(b, info.id), 0);
    assert_int_equal(broker_token_verify(b, token, &got), HP_ENOTFOUND);
    assert_int_equal(broker_token_revoke(b, info.id), HP_ENOTFOUND);
    assert_int_equal(broker_token_revoke(b, "not-an-id"), HP_EINVAL);
    assert_int_equal(broker_tokens(b, &all, &n), 0);
    for (size_t i = 0; i < n; i++)
        assert_string_not_equal(all[i].id, info.id);
    hp_free(all);
    assert_int_equal(broker_token_verify(b, token2, &got), 0);
    assert_int_equal(got.scope, TOKEN_SCOPE_ADMIN);
}

static void token_fields_are_checked(void **state)
{
    (void)state;
    static const struct {
        const char *queues;
        const char *name;
        double rate;
        int burst;
        int scope;
        const char *word;
    } bad[] = {
        {"email,,pdf", "", 0, 0, TOKEN_SCOPE_READ, "queues"},
        {",email", "", 0, 0, TOKEN_SCOPE_READ, "queues"},
        {"email,", "", 0, 0, TOKEN_SCOPE_READ, "queues"},
        {"em ail", "", 0, 0, TOKEN_SCOPE_READ, "queues"},
        {"{q}", "", 0, 0, TOKEN_SCOPE_READ, "queues"},
        {"", "tab\there", 0, 0, TOKEN_SCOPE_READ, "name"},
        {"", "", -1, 0, TOKEN_SCOPE_READ, "rate"},
        {"", "", 0, -1, TOKEN_SCOPE_READ, "burst"},
        {"", "", 0, 0, 7, "scope"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        token_info_t info = {
            .scope = (token_scope_t)bad[i].scope, .rate = bad[i].rate, .burst = bad[i].burst};
        strcpy(info.queues, bad[i].queues);
        strcpy(info.name, bad[i].name);
        char token[TOKEN_MAX] = "x";
        if (broker_token_create(b, &info, token) != HP_EINVAL)
            fail_msg("case %zu: expected HP_EINVAL", i);
        if (!strstr(broker_errmsg(b), bad[i].word))
            fail_msg("case %zu: message should name %s: %s", i, bad[i].word, broker_errmsg(b));
        assert_string_equal(token, "");
    }
}

/* ---- Rate limits ---- */

static void rate_limit_allows_a_burst_then_limits(void **state)
{
    (void)state;
    const char *key = test_queue_name("rl");
    int64_t retry = -1;
    /* 10 per second, bursts of 3: three pass at once, the fourth waits ~100 ms. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(broker_rate_take(b, key, 10, 3, &retry), 1);
    assert_int_equal(retry, 0);
    assert_int_equal(broker_rate_take(b, key, 10, 3, &retry), 0);
    assert_true(retry > 0 && retry <= 100);
    long long ttl = test_redis_int(&server, "PTTL hopper:rl:%s", key);
    assert_true(ttl > 0 && ttl <= 301);
    hp_sleep_ms(retry + 5);
    assert_int_equal(broker_rate_take(b, key, 10, 3, &retry), 1);
    assert_int_equal(broker_rate_take(b, key, 10, 3, &retry), 0);
    /* Idle keys vanish once the bucket is full again. */
    hp_sleep_ms(350);
    assert_int_equal(test_redis_int(&server, "EXISTS hopper:rl:%s", key), 0);
    /* Rate 0 is unlimited, and touches nothing. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(broker_rate_take(b, key, 0, 0, &retry), 1);
    assert_int_equal(test_redis_int(&server, "EXISTS hopper:rl:%s", key), 0);
    assert_int_equal(broker_rate_take(b, "has space", 1, 1, &retry), HP_EINVAL);
    assert_int_equal(broker_rate_take(b, key, -1, 1, &retry), HP_EINVAL);
    assert_int_equal(broker_rate_take(b, key, 1, -1, &retry), HP_EINVAL);
}

/* ---- Pausing an unused queue ---- */

static void pausing_a_new_queue_lists_it(void **state)
{
    (void)state;
    assert_int_equal(broker_queue_pause(b, "paused-before-jobs", true), 0);
    char **names;
    size_t n;
    assert_int_equal(broker_queues(b, &names, &n), 0);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found = found || strcmp(names[i], "paused-before-jobs") == 0;
    broker_queues_free(names, n);
    assert_true(found);
    queue_stats_t st;
    assert_int_equal(broker_queue_stats(b, "paused-before-jobs", &st), 0);
    assert_true(st.paused);
}

/* ---- Get many ---- */

static void get_many_finds_each_in_one_call(void **state)
{
    (void)state;
    job_spec_t specs[3] = {
        {.queue = "gm1", .type = "t", .payload = "{\"n\":1}"},
        {.queue = "gm2", .type = "t", .payload = "{\"n\":2}"},
        {.queue = "gm1", .type = "t", .payload = "{\"n\":3}"},
    };
    enqueue_result_t res[3];
    assert_int_equal(broker_enqueue(b, specs, 3, res), 0);
    const char *ids[5] = {res[0].id, res[1].id, "01M8884PFAA8FVMNPE9CNCG1X9-gm1", "not-an-id",
                          res[2].id};
    job_t *jobs[5];
    int errs[5];
    assert_int_equal(broker_get_many(b, ids, 5, jobs, errs), 0);
    assert_int_equal(errs[0], 0);
    assert_string_equal(jobs[0]->payload, "{\"n\":1}");
    assert_int_equal(errs[1], 0);
    assert_string_equal(jobs[1]->queue, "gm2");
    assert_int_equal(errs[2], HP_ENOTFOUND);
    assert_null(jobs[2]);
    assert_int_equal(errs[3], HP_EINVAL);
    assert_null(jobs[3]);
    assert_int_equal(errs[4], 0);
    assert_string_equal(jobs[4]->payload, "{\"n\":3}");
    for (int i = 0; i < 5; i++)
        job_free(jobs[i]);
}

static void sessions_open_expire_and_end(void **state)
{
    (void)state;
    token_info_t info = {.scope = TOKEN_SCOPE_READ};
    snprintf(info.name, sizeof(info.name), "dash");
    char token[TOKEN_MAX], id[SESSION_ID_LEN + 1], short_id[SESSION_ID_LEN + 1];
    assert_int_equal(broker_token_create(b, &info, token), 0);
    session_t s = {.token = info};
    snprintf(s.ip, sizeof(s.ip), "10.0.0.7");
    assert_int_equal(broker_session_create(b, &s, 60000, id), 0);
    assert_int_equal(strlen(id), SESSION_ID_LEN);
    assert_int_equal(strlen(s.csrf), SESSION_CSRF_LEN);
    assert_true(s.expires_ms - s.created_ms == 60000);
    /* stored under the id's hash: the cookie itself is nowhere in Redis */
    redisReply *keys = redis_cmd("KEYS hopper:session:*");
    assert_int_equal(keys->elements, 1);
    assert_null(strstr(keys->element[0]->str, id));
    freeReplyObject(keys);

    session_t got;
    assert_int_equal(broker_session_get(b, id, &got), 0);
    assert_string_equal(got.token.id, info.id);
    assert_string_equal(got.token.name, "dash");
    assert_int_equal(got.token.scope, TOKEN_SCOPE_READ);
    assert_string_equal(got.csrf, s.csrf);
    assert_string_equal(got.ip, "10.0.0.7");
    /* malformed and unknown ids */
    assert_int_equal(broker_session_get(b, "nothex", &got), HP_ENOTFOUND);
    char other[SESSION_ID_LEN + 1];
    memset(other, 'a', SESSION_ID_LEN);
    other[SESSION_ID_LEN] = '\0';
    assert_int_equal(broker_session_get(b, other, &got), HP_ENOTFOUND);
    assert_int_equal(broker_session_create(b, &s, 10, short_id), HP_EINVAL);

    /* expiry: gone after its time to live */
    session_t brief = {.token = info};
    assert_int_equal(broker_session_create(b, &brief, 1000, short_id), 0);
    assert_int_equal(broker_session_get(b, short_id, &got), 0);
    hp_sleep_ms(1100);
    assert_int_equal(broker_session_get(b, short_id, &got), HP_ENOTFOUND);

    /* logout, and a second logout is fine */
    assert_int_equal(broker_session_delete(b, id), 0);
    assert_int_equal(broker_session_get(b, id, &got), HP_ENOTFOUND);
    assert_int_equal(broker_session_delete(b, id), 0);

    /* revoking the token ends its sessions */
    assert_int_equal(broker_session_create(b, &s, 60000, id), 0);
    assert_int_equal(broker_token_revoke(b, info.id), 0);
    assert_int_equal(broker_session_get(b, id, &got), HP_ENOTFOUND);
    assert_non_null(strstr(broker_errmsg(b), "revoked"));
}

static void audit_log_pages_newest_first(void **state)
{
    (void)state;
    freeReplyObject(redis_cmd("DEL hopper:audit"));
    for (int i = 0; i < 25; i++) {
        char entry[64];
        snprintf(entry, sizeof(entry), "{\"n\":%d}", i);
        assert_int_equal(broker_audit_append(b, entry), 0);
    }
    assert_int_equal(broker_audit_append(b, "{}"), 0);
    assert_int_equal(broker_audit_append(b, "not json"), HP_EINVAL);
    assert_int_equal(broker_audit_append(b, "[1]"), HP_EINVAL);
    audit_page_t page;
    assert_int_equal(broker_audit_list(b, NULL, 10, &page), 0);
    assert_int_equal(page.n, 10);
    assert_true(strncmp(page.entries[0], "{\"id\":\"", 7) == 0);
    assert_non_null(strstr(page.entries[0], "\"}")); /* the empty object, newest */
    assert_non_null(strstr(page.entries[1], "\"n\":24"));
    assert_non_null(page.next_cursor);
    /* every entry parses, and the pages neither overlap nor skip */
    int seen = 0, expect = 24;
    char cursor[AUDIT_CURSOR_MAX];
    for (;;) {
        for (size_t i = 0; i < page.n; i++) {
            json_t *o = json_loads(page.entries[i], 0, NULL);
            assert_non_null(o);
            assert_non_null(json_string_value(json_object_get(o, "id")));
            json_t *n = json_object_get(o, "n");
            if (n)
                assert_int_equal(json_integer_value(n), expect--);
            seen++;
            json_decref(o);
        }
        if (!page.next_cursor)
            break;
        snprintf(cursor, sizeof(cursor), "%s", page.next_cursor);
        audit_page_cleanup(&page);
        assert_int_equal(broker_audit_list(b, cursor, 10, &page), 0);
    }
    audit_page_cleanup(&page);
    assert_int_equal(seen, 26);
    assert_int_equal(expect, -1);
    assert_int_equal(broker_audit_list(b, "12x-0", 10, &page), HP_EINVAL);
    assert_int_equal(broker_audit_list(b, NULL, 0, &page), HP_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idempotency_key_same_request_gets_the_first_job),
        cmocka_unit_test(idempotency_within_a_batch),
        cmocka_unit_test(idempotency_input_is_checked),
        cmocka_unit_test(events_follow_a_job_through_its_life),
        cmocka_unit_test(events_timeout_keeps_the_connection),
        cmocka_unit_test(runtime_histogram_counts_acks_and_fails),
        cmocka_unit_test(purge_waiting_in_chunks),
        cmocka_unit_test(purge_dead_and_refuse_active),
        cmocka_unit_test(tokens_create_verify_revoke),
        cmocka_unit_test(token_fields_are_checked),
        cmocka_unit_test(rate_limit_allows_a_burst_then_limits),
        cmocka_unit_test(get_many_finds_each_in_one_call),
        cmocka_unit_test(pausing_a_new_queue_lists_it),
        cmocka_unit_test(sessions_open_expire_and_end),
        cmocka_unit_test(audit_log_pages_newest_first),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
