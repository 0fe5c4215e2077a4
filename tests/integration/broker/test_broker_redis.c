/*
 * The job lifecycle against a real redis-server: every behaviour broker.h promises.
 * One private server for the whole file; each test uses queues of its own.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "broker/broker.h"
#include "tests/support/test_redis.h"

static test_redis_t server;
static broker_t *b;

static int setup(void **state)
{
    (void)state;
    if (test_redis_start(&server, NULL))
        return -1;
    char *msg = NULL;
    broker_config_t cfg = {.url = server.url};
    if (broker_open(&cfg, &b, &msg)) {
        fprintf(stderr, "broker_open: %s\n", msg);
        return -1;
    }
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

static void enqueue_ok(const job_spec_t *spec, char *id_out)
{
    enqueue_result_t res;
    int err = broker_enqueue(b, spec, 1, &res);
    if (err)
        fail_msg("enqueue: %s", broker_errmsg(b));
    if (id_out)
        strcpy(id_out, res.id);
}

static job_t *get_ok(const char *id)
{
    job_t *job = NULL;
    if (broker_get(b, id, &job))
        fail_msg("get %s: %s", id, broker_errmsg(b));
    return job;
}

static job_state_t state_of(const char *id)
{
    job_t *job = get_ok(id);
    job_state_t s = job->state;
    job_free(job);
    return s;
}

/* Reserves exactly one job and returns it (caller frees). */
static job_t *reserve_one(const char *queue, int64_t lease_ms)
{
    job_list_t list;
    if (broker_reserve(b, queue, 1, lease_ms, "test-worker", &list))
        fail_msg("reserve: %s", broker_errmsg(b));
    assert_int_equal(list.n, 1);
    job_t *job = list.jobs[0];
    list.jobs[0] = NULL;
    list.n = 0;
    job_list_cleanup(&list);
    return job;
}

static size_t reserve_count(const char *queue)
{
    job_list_t list;
    assert_int_equal(broker_reserve(b, queue, 100, 30000, "w", &list), 0);
    size_t n = list.n;
    job_list_cleanup(&list);
    return n;
}

static queue_stats_t stats_of(const char *queue)
{
    queue_stats_t s;
    assert_int_equal(broker_queue_stats(b, queue, &s), 0);
    return s;
}

static long long redis_info_field(const char *section, const char *field)
{
    redisContext *c = redisConnect("127.0.0.1", server.port);
    redisReply *r = redisCommand(c, "INFO %s", section);
    const char *at = strstr(r->str, field);
    long long v = at ? atoll(at + strlen(field)) : -1;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

static void redis_run(const char *cmd)
{
    redisContext *c = redisConnect("127.0.0.1", server.port);
    freeReplyObject(redisCommand(c, cmd));
    redisFree(c);
}

/* ---- Enqueue and get ---- */

static void enqueue_then_get_by_id_alone(void **state)
{
    (void)state;
    const char *q = test_queue_name("get");
    const char *tags[] = {"signup", "eu"};
    int64_t before = hp_now_ms();
    job_spec_t spec = {.queue = q,
                       .type = "email.send",
                       .payload = "{\"to\":\"a@example.com\",\"n\":123456789012345678901234567890}",
                       .priority = 3,
                       .max_attempts = 7,
                       .backoff = {.kind = BACKOFF_FIXED, .base_ms = 2000},
                       .timeout_ms = 15000,
                       .tags = tags,
                       .ntags = 2};
    char id[JOB_ID_MAX];
    enqueue_ok(&spec, id);
    char ulid[HP_ULID_LEN + 1], queue[JOB_QUEUE_NAME_MAX + 1];
    assert_true(job_id_parse(id, ulid, queue));
    assert_string_equal(queue, q);
    job_t *job = get_ok(id);
    assert_string_equal(job->id, id);
    assert_string_equal(job->type, "email.send");
    assert_string_equal(job->payload, spec.payload);
    assert_int_equal(job->state, JOB_STATE_WAITING);
    assert_int_equal(job->priority, 3);
    assert_int_equal(job->max_attempts, 7);
    assert_int_equal(job->backoff.kind, BACKOFF_FIXED);
    assert_int_equal(job->backoff.base_ms, 2000);
    assert_int_equal(job->timeout_ms, 15000);
    assert_int_equal(job->ntags, 2);
    assert_string_equal(job->tags[0], "signup");
    assert_true(job->created_ms >= before - 5 && job->created_ms <= hp_now_ms());
    assert_int_equal(job->attempts, 0);
    job_free(job);
    /* A null payload is allowed and reads back as null. */
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, id);
    job = get_ok(id);
    assert_string_equal(job->payload, "null");
    job_free(job);
}

static void unknown_and_malformed_ids(void **state)
{
    (void)state;
    job_t *job;
    assert_int_equal(broker_get(b, "01ARZ3NDEKTSV4RRFFQ69G5FAV-nosuchqueue", &job), HP_ENOTFOUND);
    assert_non_null(strstr(broker_errmsg(b), "not found"));
    assert_int_equal(broker_get(b, "hello", &job), HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "job id"));
    assert_int_equal(broker_cancel(b, "01ARZ3NDEKTSV4RRFFQ69G5FAV-x", NULL), HP_ENOTFOUND);
    assert_int_equal(broker_retry(b, "01ARZ3NDEKTSV4RRFFQ69G5FAV-x"), HP_ENOTFOUND);
    assert_int_equal(broker_delete(b, "01ARZ3NDEKTSV4RRFFQ69G5FAV-x"), HP_ENOTFOUND);
    assert_int_equal(broker_ack(b, "01ARZ3NDEKTSV4RRFFQ69G5FAV-x", "tok", NULL, 0), HP_ENOTFOUND);
}

/* A batch of 1,000 over three queues: one script call per queue, one round trip. */
static void batch_of_1000_in_one_round_trip(void **state)
{
    (void)state;
    const char *qs[3] = {test_queue_name("batch"), test_queue_name("batch"),
                         test_queue_name("batch")};
    job_spec_t *specs = hp_calloc(JOB_BATCH_MAX, sizeof(job_spec_t));
    for (int i = 0; i < JOB_BATCH_MAX; i++)
        specs[i] = (job_spec_t){.queue = qs[i % 3], .type = "t", .payload = "{\"i\":1}"};
    enqueue_result_t *res = hp_calloc(JOB_BATCH_MAX, sizeof(*res));
    redis_run("CONFIG RESETSTAT");
    assert_int_equal(broker_enqueue(b, specs, JOB_BATCH_MAX, res), 0);
    assert_int_equal(redis_info_field("commandstats", "cmdstat_evalsha:calls="), 3);
    for (int i = 0; i < JOB_BATCH_MAX; i++) {
        assert_int_equal(res[i].err, 0);
        assert_int_equal(res[i].state, JOB_STATE_WAITING);
        assert_non_null(strstr(res[i].id, qs[i % 3]));
    }
    assert_int_equal(stats_of(qs[0]).counts[JOB_STATE_WAITING], 334);
    assert_int_equal(stats_of(qs[1]).counts[JOB_STATE_WAITING], 333);
    assert_int_equal(stats_of(qs[2]).counts[JOB_STATE_WAITING], 333);
    assert_int_equal(stats_of(qs[0]).enqueued_total, 334);
    /* Past the limit: refused whole. */
    enqueue_result_t *more = hp_calloc(JOB_BATCH_MAX + 1, sizeof(*more));
    job_spec_t *big = hp_calloc(JOB_BATCH_MAX + 1, sizeof(job_spec_t));
    assert_int_equal(broker_enqueue(b, big, JOB_BATCH_MAX + 1, more), HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "batch"));
    hp_free(big);
    hp_free(more);
    hp_free(res);
    hp_free(specs);
}

/* A bad job in a batch is refused alone; the rest go in. */
static void bad_job_in_batch_is_refused_alone(void **state)
{
    (void)state;
    const char *q = test_queue_name("mixed");
    job_spec_t specs[3] = {
        {.queue = q, .type = "t", .payload = "1"},
        {.queue = q, .type = "t", .payload = "{nope"},
        {.queue = q, .type = "t", .payload = "[2]"},
    };
    enqueue_result_t res[3];
    assert_int_equal(broker_enqueue(b, specs, 3, res), HP_EINVAL);
    assert_int_equal(res[0].err, 0);
    assert_int_equal(res[1].err, HP_EINVAL);
    assert_non_null(strstr(res[1].errmsg, "payload"));
    assert_non_null(strstr(broker_errmsg(b), "jobs[1].payload"));
    assert_int_equal(res[2].err, 0);
    assert_int_equal(stats_of(q).counts[JOB_STATE_WAITING], 2);
}

static void bad_input_writes_nothing(void **state)
{
    (void)state;
    const char *q = test_queue_name("bad");
    char *big = hp_malloc(JOB_PAYLOAD_DEFAULT_MAX + 3);
    memset(big, ' ', JOB_PAYLOAD_DEFAULT_MAX + 2);
    memcpy(big, "1", 1);
    big[JOB_PAYLOAD_DEFAULT_MAX + 2] = '\0';
    struct {
        job_spec_t spec;
        int err;
        const char *words;
    } cases[] = {
        {{.queue = q, .type = "t", .payload = "not json"}, HP_EINVAL, "payload: not valid JSON"},
        {{.queue = q, .type = "t", .payload = big}, HP_ETOOBIG, "payload"},
        {{.queue = "", .type = "t"}, HP_EINVAL, "queue"},
        {{.queue = "has}brace", .type = "t"}, HP_EINVAL, "queue"},
        {{.queue = q, .type = ""}, HP_EINVAL, "type"},
        {{.queue = q, .type = "t", .delay_ms = -10}, HP_EINVAL, "delay"},
        {{.queue = q, .type = "t", .delay_ms = 100LL * 365 * 86400 * 1000}, HP_EINVAL, "delay"},
        {{.queue = q, .type = "t", .max_attempts = 1000000}, HP_EINVAL, "max_attempts"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enqueue_result_t res;
        assert_int_equal(broker_enqueue(b, &cases[i].spec, 1, &res), cases[i].err);
        if (!strstr(broker_errmsg(b), cases[i].words))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, broker_errmsg(b), cases[i].words);
    }
    char **names;
    size_t n;
    assert_int_equal(broker_queues(b, &names, &n), 0);
    for (size_t i = 0; i < n; i++)
        assert_string_not_equal(names[i], q); /* not even registered */
    broker_queues_free(names, n);
    queue_stats_t s = stats_of(q);
    for (int i = 0; i < JOB_STATE_COUNT; i++)
        assert_int_equal(s.counts[i], 0);
    hp_free(big);
}

/* ---- Ordering and time ---- */

static void priorities_then_fifo(void **state)
{
    (void)state;
    const char *q = test_queue_name("prio");
    const struct {
        int prio;
        const char *name;
    } order_in[] = {{0, "\"A\""}, {0, "\"B\""}, {5, "\"C\""}, {-1, "\"D\""}, {5, "\"E\""}};
    for (int i = 0; i < 5; i++)
        enqueue_ok(
            &(job_spec_t){
                .queue = q, .type = "t", .payload = order_in[i].name, .priority = order_in[i].prio},
            NULL);
    const char *expect[] = {"\"C\"", "\"E\"", "\"A\"", "\"B\"", "\"D\""};
    for (int i = 0; i < 5; i++) {
        job_t *job = reserve_one(q, 30000);
        assert_string_equal(job->payload, expect[i]);
        job_free(job);
    }
    assert_int_equal(reserve_count(q), 0);
}

static void delayed_job_is_promoted_when_due(void **state)
{
    (void)state;
    const char *q = test_queue_name("delay");
    char id[JOB_ID_MAX];
    enqueue_result_t res;
    int64_t before = hp_now_ms();
    assert_int_equal(
        broker_enqueue(b, &(job_spec_t){.queue = q, .type = "t", .delay_ms = 300}, 1, &res), 0);
    strcpy(id, res.id);
    assert_int_equal(res.state, JOB_STATE_SCHEDULED);
    job_t *job = get_ok(id);
    assert_int_equal(job->state, JOB_STATE_SCHEDULED);
    assert_true(job->run_at_ms >= before + 300 - 50);
    job_free(job);
    job_list_t list;
    assert_int_equal(broker_reserve(b, q, 10, 30000, "w", &list), 0);
    assert_int_equal(list.n, 0);
    assert_true(list.next_due_ms > 0); /* tells the worker how long it may sleep */
    job_list_cleanup(&list);
    hp_sleep_ms(400);
    job = reserve_one(q, 30000);
    assert_string_equal(job->id, id);
    job_free(job);
    /* run_at in the past runs now; run_at in the future is scheduled. */
    assert_int_equal(
        broker_enqueue(b, &(job_spec_t){.queue = q, .type = "t", .run_at_ms = hp_now_ms() - 1000},
                       1, &res),
        0);
    assert_int_equal(res.state, JOB_STATE_WAITING);
    assert_int_equal(
        broker_enqueue(b, &(job_spec_t){.queue = q, .type = "t", .run_at_ms = hp_now_ms() + 60000},
                       1, &res),
        0);
    assert_int_equal(res.state, JOB_STATE_SCHEDULED);
    assert_int_equal(stats_of(q).counts[JOB_STATE_SCHEDULED], 1);
}

static void maintain_promotes_without_a_worker(void **state)
{
    (void)state;
    const char *q = test_queue_name("maint");
    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .delay_ms = 100}, id);
    hp_sleep_ms(200);
    int64_t next = -1;
    assert_int_equal(broker_maintain(b, q, &next), 0);
    assert_int_equal(state_of(id), JOB_STATE_WAITING);
    assert_int_equal(stats_of(q).counts[JOB_STATE_WAITING], 1);
    assert_int_equal(stats_of(q).counts[JOB_STATE_SCHEDULED], 0);
}

static void expired_job_goes_dead_unrun(void **state)
{
    (void)state;
    const char *q = test_queue_name("expire");
    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .expires_at_ms = hp_now_ms() + 100}, id);
    hp_sleep_ms(200);
    assert_int_equal(reserve_count(q), 0);
    job_t *job = get_ok(id);
    assert_int_equal(job->state, JOB_STATE_DEAD);
    assert_int_equal(job->attempts, 0);
    assert_int_equal(job->nerrors, 1);
    assert_non_null(strstr(job->errors[0].message, "expired"));
    job_free(job);
}

/* ---- Leases, acks and failures ---- */

static void ack_stores_the_result(void **state)
{
    (void)state;
    const char *q = test_queue_name("ack");
    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, id);
    job_t *job = reserve_one(q, 30000);
    assert_string_equal(job->id, id);
    assert_int_equal(job->state, JOB_STATE_ACTIVE);
    assert_int_equal(job->attempts, 1);
    assert_non_null(job->lease_token);
    assert_true(job->lease_deadline_ms > hp_now_ms());
    job_t *seen = get_ok(id); /* the running attempt: who and since when */
    assert_string_equal(seen->worker, "test-worker");
    assert_true(seen->started_ms > 0 && seen->started_ms <= hp_now_ms());
    assert_true(seen->lease_deadline_ms > seen->started_ms);
    assert_null(seen->lease_token); /* the fencing token is the worker's alone */
    int64_t started = seen->started_ms;
    job_free(seen);
    job_list_t none;
    assert_int_equal(broker_reserve(b, q, 1, 1000, "bad|name", &none), HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "worker"));
    assert_int_equal(broker_ack(b, id, job->lease_token, "{bad", 0), HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "result"));
    assert_int_equal(state_of(id), JOB_STATE_ACTIVE); /* a refused ack changes nothing */
    assert_int_equal(broker_ack(b, id, job->lease_token, "{\"pages\":3}", 0), 0);
    /* A second ack with the same token finds the lease gone. */
    assert_int_equal(broker_ack(b, id, job->lease_token, NULL, 0), HP_ELEASE);
    job_free(job);
    job = get_ok(id);
    assert_int_equal(job->state, JOB_STATE_SUCCEEDED);
    assert_string_equal(job->result, "{\"pages\":3}");
    assert_true(job->finished_ms > 0);
    assert_string_equal(job->worker, "test-worker"); /* who ran it stays on record */
    assert_int_equal(job->started_ms, started);
    assert_int_equal(job->attempts, 1);
    job_free(job);
    queue_stats_t s = stats_of(q);
    assert_int_equal(s.counts[JOB_STATE_SUCCEEDED], 1);
    assert_int_equal(s.counts[JOB_STATE_ACTIVE], 0);
    assert_int_equal(s.succeeded_total, 1);
}

/* Acks of several queues in one call: each item answered on its own. */
static void batch_ack_answers_each_item(void **state)
{
    (void)state;
    const char *q1 = test_queue_name("ackb"), *q2 = test_queue_name("ackb");
    for (int i = 0; i < 3; i++)
        enqueue_ok(&(job_spec_t){.queue = q1, .type = "t"}, NULL);
    enqueue_ok(&(job_spec_t){.queue = q2, .type = "t"}, NULL);
    job_list_t l1, l2;
    assert_int_equal(broker_reserve(b, q1, 3, 30000, "w", &l1), 0);
    assert_int_equal(broker_reserve(b, q2, 1, 30000, "w", &l2), 0);
    assert_int_equal(l1.n, 3);
    assert_int_equal(l2.n, 1);
    job_ack_t acks[6] = {
        {l1.jobs[0]->id, l1.jobs[0]->lease_token, "{\"a\":1}", 0, 0},
        {l2.jobs[0]->id, l2.jobs[0]->lease_token, NULL, 0, 0},
        {l1.jobs[1]->id, "wrong-token", NULL, 0, 0},
        {"not-an-id", "t", NULL, 0, 0},
        {l1.jobs[2]->id, l1.jobs[2]->lease_token, "[1,2]", 0, 0},
        {l1.jobs[0]->id, l1.jobs[0]->lease_token, NULL, 0, 0}, /* twice in one batch */
    };
    assert_int_not_equal(broker_ack_batch(b, acks, 6), 0);
    assert_int_equal(acks[0].err, 0);
    assert_int_equal(acks[1].err, 0);
    assert_int_equal(acks[2].err, HP_ELEASE);
    assert_int_equal(acks[3].err, HP_EINVAL);
    assert_int_equal(acks[4].err, 0);
    assert_int_equal(acks[5].err, HP_ELEASE);
    job_t *job = get_ok(l1.jobs[0]->id);
    assert_int_equal(job->state, JOB_STATE_SUCCEEDED);
    assert_string_equal(job->result, "{\"a\":1}");
    job_free(job);
    assert_int_equal(state_of(l1.jobs[1]->id), JOB_STATE_ACTIVE); /* refused: untouched */
    assert_int_equal(state_of(l2.jobs[0]->id), JOB_STATE_SUCCEEDED);
    queue_stats_t s = stats_of(q1);
    assert_int_equal(s.counts[JOB_STATE_SUCCEEDED], 2);
    assert_int_equal(s.counts[JOB_STATE_ACTIVE], 1);
    assert_int_equal(s.succeeded_total, 2);
    assert_int_equal(stats_of(q2).counts[JOB_STATE_SUCCEEDED], 1);
    job_list_cleanup(&l1);
    job_list_cleanup(&l2);
}

/* A stopping worker gives jobs back: waiting again, the attempt not counted. */
static void release_gives_the_job_back_uncounted(void **state)
{
    (void)state;
    const char *q = test_queue_name("release");
    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .max_attempts = 1}, id);
    job_t *job = reserve_one(q, 30000);
    assert_int_equal(broker_release(b, id, "wrong"), HP_ELEASE);
    assert_int_equal(broker_release(b, id, job->lease_token), 0);
    job_free(job);
    job = get_ok(id);
    assert_int_equal(job->state, JOB_STATE_WAITING);
    assert_int_equal(job->attempts, 0);
    assert_int_equal(job->nerrors, 0);
    assert_null(job->worker);
    job_free(job);
    job = reserve_one(q, 30000); /* its one attempt is still there */
    assert_int_equal(job->attempts, 1);
    assert_int_equal(broker_ack(b, id, job->lease_token, NULL, 0), 0);
    job_free(job);
    assert_int_equal(stats_of(q).counts[JOB_STATE_SUCCEEDED], 1);
}

static void progress_and_logs_are_kept_with_the_job(void **state)
{
    (void)state;
    const char *q = test_queue_name("progress");
    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, id);
    job_t *job = reserve_one(q, 30000);
    assert_int_equal(broker_progress(b, id, job->lease_token, 40, "resizing \"img\""), 0);
    assert_int_equal(broker_progress(b, id, job->lease_token, 101, NULL), HP_EINVAL);
    assert_int_equal(broker_log(b, id, job->lease_token, 1, "first line"), 0);
    assert_int_equal(broker_log(b, id, job->lease_token, 3, "second: ü"), 0);
    assert_int_equal(broker_log(b, id, "stale-token", 1, "late"), HP_ELEASE);
    job_t *seen = get_ok(id);
    assert_int_equal(seen->progress, 40);
    assert_string_equal(seen->progress_message, "resizing \"img\"");
    char *text = job_to_json(seen, 0);
    assert_non_null(strstr(text, "\"progress\":{\"percent\":40"));
    assert_non_null(strstr(text, "\"level\":\"info\",\"message\":\"first line\""));
    assert_non_null(strstr(text, "\"level\":\"error\",\"message\":\"second: ü\""));
    assert_null(strstr(text, "late"));
    hp_free(text);
    job_free(seen);
    /* Logs are capped: the oldest lines go. */
    char line[JOB_LOG_LINE_MAX];
    memset(line, 'x', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\0';
    for (int i = 0; i < 80; i++)
        assert_int_equal(broker_log(b, id, job->lease_token, 1, line), 0);
    seen = get_ok(id);
    assert_true(strlen(seen->logs) <= JOB_LOG_MAX_BYTES);
    assert_null(strstr(seen->logs, "first line"));
    job_free(seen);
    assert_int_equal(broker_ack(b, id, job->lease_token, NULL, 0), 0);
    job_free(job);
    assert_int_equal(broker_delete(b, id), 0); /* and go with the job */
    assert_int_equal(broker_progress(b, id, "x", 1, NULL), HP_ENOTFOUND);
}

static void workers_register_and_expire(void **state)
{
    (void)state;
    assert_int_equal(broker_worker_beat(b, "host-a:100", "{\"pid\":100}", 60000), 0);
    assert_int_equal(broker_worker_beat(b, "host-a:101", "{\"pid\":101}", 100), 0);
    assert_int_equal(broker_worker_beat(b, "bad|id", "{}", 1000), HP_EINVAL);
    assert_int_equal(broker_worker_beat(b, "host-a:102", "{not json", 1000), HP_EINVAL);
    hp_sleep_ms(200);
    char **infos;
    size_t n;
    assert_int_equal(broker_workers(b, &infos, &n), 0);
    assert_int_equal(n, 1); /* 101 stopped beating and dropped out */
    assert_string_equal(infos[0], "{\"pid\":100}");
    broker_queues_free(infos, n);
    assert_int_equal(broker_worker_gone(b, "host-a:100"), 0);
    assert_int_equal(broker_workers(b, &infos, &n), 0);
    assert_int_equal(n, 0);
    broker_queues_free(infos, n);
}

/* Listing is by id; one worker by id; commands are taken once, in the poll. */
static void workers_get_sorted_and_commands(void **state)
{
    (void)state;
    assert_int_equal(broker_worker_beat(b, "host-c:3", "{\"pid\":3}", 60000), 0);
    assert_int_equal(broker_worker_beat(b, "host-b:2", "{\"pid\":2}", 60000), 0);
    assert_int_equal(broker_worker_beat(b, "host-a:1", "{\"pid\":1}", 60000), 0);
    char **infos;
    size_t n;
    assert_int_equal(broker_workers(b, &infos, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(infos[0], "{\"pid\":1}");
    assert_string_equal(infos[1], "{\"pid\":2}");
    assert_string_equal(infos[2], "{\"pid\":3}");
    broker_queues_free(infos, n);

    char *info = NULL;
    assert_int_equal(broker_worker_get(b, "host-b:2", &info), 0);
    assert_string_equal(info, "{\"pid\":2}");
    hp_free(info);
    assert_int_equal(broker_worker_get(b, "host-z:9", &info), HP_ENOTFOUND);
    assert_null(info);
    assert_non_null(strstr(broker_errmsg(b), "host-z:9"));
    assert_int_equal(broker_worker_get(b, "bad|id", &info), HP_EINVAL);

    /* No command: NONE. A command for an unknown worker: refused. */
    worker_command_t cmd = WORKER_COMMAND_STOP;
    assert_int_equal(broker_worker_poll(b, "host-a:1", NULL, 0, &cmd), 0);
    assert_int_equal(cmd, WORKER_COMMAND_NONE);
    assert_int_equal(broker_worker_command(b, "host-z:9", WORKER_COMMAND_QUIET), HP_ENOTFOUND);
    assert_int_equal(broker_worker_command(b, "host-a:1", WORKER_COMMAND_NONE), HP_EINVAL);

    /* quiet, taken once; the beat in the same call rewrites the description */
    assert_int_equal(broker_worker_command(b, "host-a:1", WORKER_COMMAND_QUIET), 0);
    assert_int_equal(broker_worker_poll(b, "host-a:1", "{\"pid\":1,\"q\":1}", 60000, &cmd), 0);
    assert_int_equal(cmd, WORKER_COMMAND_QUIET);
    assert_int_equal(broker_worker_get(b, "host-a:1", &info), 0);
    assert_string_equal(info, "{\"pid\":1,\"q\":1}");
    hp_free(info);
    assert_int_equal(broker_worker_poll(b, "host-a:1", NULL, 0, &cmd), 0);
    assert_int_equal(cmd, WORKER_COMMAND_NONE);

    /* a later quiet does not replace a stop; a stop replaces a quiet */
    assert_int_equal(broker_worker_command(b, "host-b:2", WORKER_COMMAND_STOP), 0);
    assert_int_equal(broker_worker_command(b, "host-b:2", WORKER_COMMAND_QUIET), 0);
    assert_int_equal(broker_worker_poll(b, "host-b:2", NULL, 0, &cmd), 0);
    assert_int_equal(cmd, WORKER_COMMAND_STOP);
    assert_int_equal(broker_worker_command(b, "host-b:2", WORKER_COMMAND_QUIET), 0);
    assert_int_equal(broker_worker_command(b, "host-b:2", WORKER_COMMAND_STOP), 0);
    assert_int_equal(broker_worker_poll(b, "host-b:2", NULL, 0, &cmd), 0);
    assert_int_equal(cmd, WORKER_COMMAND_STOP);

    /* gone takes a command nobody took with it */
    assert_int_equal(broker_worker_command(b, "host-c:3", WORKER_COMMAND_STOP), 0);
    assert_int_equal(broker_worker_gone(b, "host-c:3"), 0);
    assert_int_equal(broker_worker_poll(b, "host-c:3", NULL, 0, &cmd), 0);
    assert_int_equal(cmd, WORKER_COMMAND_NONE);
    assert_string_equal(worker_command_name(WORKER_COMMAND_QUIET), "quiet");
    assert_string_equal(worker_command_name(WORKER_COMMAND_STOP), "stop");

    assert_int_equal(broker_worker_gone(b, "host-a:1"), 0);
    assert_int_equal(broker_worker_gone(b, "host-b:2"), 0);
    assert_int_equal(broker_workers(b, &infos, &n), 0);
    assert_int_equal(n, 0);
    broker_queues_free(infos, n);
}

static void three_failures_of_three_attempts_end_dead(void **state)
{
    (void)state;
    const char *q = test_queue_name("fail");
    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q,
                             .type = "t",
                             .max_attempts = 3,
                             .backoff = {.kind = BACKOFF_FIXED, .base_ms = 50}},
               id);
    for (int attempt = 1; attempt <= 3; attempt++) {
        if (attempt > 1)
            hp_sleep_ms(80);
        job_t *job = reserve_one(q, 30000);
        assert_int_equal(job->attempts, attempt);
        char msg[32];
        snprintf(msg, sizeof(msg), "boom %d", attempt);
        job_state_t after;
        int64_t retry_at = 0;
        int64_t before = hp_now_ms();
        assert_int_equal(broker_fail(b, id, job->lease_token, msg, false, &after, &retry_at), 0);
        if (attempt < 3) {
            assert_int_equal(after, JOB_STATE_FAILED);
            assert_true(retry_at >= before + 50 - 20 && retry_at <= hp_now_ms() + 50 + 20);
            assert_int_equal(reserve_count(q), 0); /* not before its backoff */
        } else {
            assert_int_equal(after, JOB_STATE_DEAD);
        }
        job_free(job);
    }
    job_t *job = get_ok(id);
    assert_int_equal(job->state, JOB_STATE_DEAD);
    assert_int_equal(job->nerrors, 3);
    for (int i = 0; i < 3; i++) {
        char msg[32];
        snprintf(msg, sizeof(msg), "boom %d", i + 1);
        assert_string_equal(job->errors[i].message, msg);
        assert_int_equal(job->errors[i].attempt, i + 1);
        assert_true(job->errors[i].at_ms > 0);
    }
    job_free(job);
    queue_stats_t s = stats_of(q);
    assert_int_equal(s.counts[JOB_STATE_DEAD], 1);
    assert_int_equal(s.failed_total, 3);
    assert_int_equal(s.dead_total, 1);
}

static void exponential_backoff_grows_with_jitter(void **state)
{
    (void)state;
    const char *q = test_queue_name("expo");
    char id[JOB_ID_MAX];
    enqueue_ok(
        &(job_spec_t){
            .queue = q, .type = "t", .max_attempts = 5, .backoff = {.base_ms = 40, .cap_ms = 100}},
        id);
    /* Attempt n fails: delay d = min(40 * 2^(n-1), 100), jittered into [d/2, d]. */
    const int64_t steps[] = {40, 80, 100};
    for (int i = 0; i < 3; i++) {
        job_t *job = NULL;
        for (int tries = 0; tries < 50 && !job; tries++) {
            job_list_t l;
            assert_int_equal(broker_reserve(b, q, 1, 30000, "w", &l), 0);
            if (l.n) {
                job = l.jobs[0];
                l.jobs[0] = NULL;
            }
            job_list_cleanup(&l);
            if (!job)
                hp_sleep_ms(10);
        }
        assert_non_null(job);
        int64_t t0 = hp_now_ms(), at;
        job_state_t s;
        assert_int_equal(broker_fail(b, id, job->lease_token, "x", false, &s, &at), 0);
        assert_int_equal(s, JOB_STATE_FAILED);
        int64_t d = at - t0;
        if (d < steps[i] / 2 - 15 || d > steps[i] + 15)
            fail_msg("attempt %d: delay %lld outside [%lld, %lld]", i + 1, (long long)d,
                     (long long)steps[i] / 2, (long long)steps[i]);
        job_free(job);
    }
}

static void permanent_failure_is_dead_at_once(void **state)
{
    (void)state;
    const char *q = test_queue_name("perm");
    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .max_attempts = 10}, id);
    job_t *job = reserve_one(q, 30000);
    job_state_t s;
    assert_int_equal(broker_fail(b, id, job->lease_token, "bad address", true, &s, NULL), 0);
    assert_int_equal(s, JOB_STATE_DEAD);
    job_free(job);
    job = get_ok(id);
    assert_int_equal(job->nerrors, 1);
    assert_string_equal(job->errors[0].message, "bad address");
    job_free(job);
}

/* A worker that lost its lease is fenced off: its late ack or fail changes nothing. */
static void expired_lease_is_recovered_and_late_answers_refused(void **state)
{
    (void)state;
    const char *q = test_queue_name("lease");
    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .max_attempts = 5}, id);
    job_t *first = reserve_one(q, 100);
    hp_sleep_ms(200);
    job_t *second = reserve_one(q, 30000); /* recovery happens in the same step */
    assert_string_equal(second->id, id);
    assert_int_equal(second->attempts, 2);
    assert_string_not_equal(first->lease_token, second->lease_token);
    assert_int_equal(broker_ack(b, id, first->lease_token, NULL, 0), HP_ELEASE);
    assert_non_null(strstr(broker_errmsg(b), "no longer leased"));
    assert_int_equal(broker_fail(b, id, first->lease_token, "late", false, NULL, NULL), HP_ELEASE);
    job_t *now = get_ok(id);
    assert_int_equal(now->state, JOB_STATE_ACTIVE);
    assert_int_equal(now->nerrors, 1);
    assert_non_null(strstr(now->errors[0].message, "lease expired"));
    job_free(now);
    assert_int_equal(broker_ack(b, id, second->lease_token, NULL, 0), 0);
    assert_int_equal(state_of(id), JOB_STATE_SUCCEEDED);
    job_free(first);
    job_free(second);
}

/* A job that kills every worker ends dead, not looping forever. */
static void lease_expiry_on_last_attempt_is_dead(void **state)
{
    (void)state;
    const char *q = test_queue_name("lease-dead");
    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .max_attempts = 1}, id);
    job_t *job = reserve_one(q, 50);
    hp_sleep_ms(120);
    assert_int_equal(broker_maintain(b, q, NULL), 0);
    assert_int_equal(state_of(id), JOB_STATE_DEAD);
    assert_int_equal(stats_of(q).counts[JOB_STATE_ACTIVE], 0);
    job_free(job);
}

static void heartbeat_extends_the_lease(void **state)
{
    (void)state;
    const char *q = test_queue_name("beat");
    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, id);
    job_t *job = reserve_one(q, 300);
    lease_ref_t refs[2] = {{id, job->lease_token}, {id, "not-the-token"}};
    for (int i = 0; i < 6; i++) { /* 6 x 100 ms: twice the original lease */
        hp_sleep_ms(100);
        lease_status_t st[2];
        assert_int_equal(broker_heartbeat(b, refs, 2, 300, st), 0);
        assert_int_equal(st[0], LEASE_HELD);
        assert_int_equal(st[1], LEASE_LOST);
        assert_int_equal(broker_maintain(b, q, NULL), 0);
    }
    assert_int_equal(state_of(id), JOB_STATE_ACTIVE);
    assert_int_equal(broker_ack(b, id, job->lease_token, NULL, 0), 0);
    job_free(job);
}

/* ---- Operator actions ---- */

static void cancel_in_every_state(void **state)
{
    (void)state;
    const char *q = test_queue_name("cancel");
    char waiting[JOB_ID_MAX], scheduled[JOB_ID_MAX], active[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .payload = "\"active\""}, active);
    job_t *job = reserve_one(q, 30000);
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, waiting);
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .delay_ms = 60000}, scheduled);
    job_state_t after;
    assert_int_equal(broker_cancel(b, waiting, &after), 0);
    assert_int_equal(after, JOB_STATE_CANCELED);
    assert_int_equal(broker_cancel(b, scheduled, &after), 0);
    assert_int_equal(after, JOB_STATE_CANCELED);
    assert_int_equal(reserve_count(q), 0); /* the canceled waiting job is never handed out */
    /* Active: flagged, and the worker hears it on its next heartbeat. */
    assert_int_equal(broker_cancel(b, active, &after), 0);
    assert_int_equal(after, JOB_STATE_ACTIVE);
    lease_ref_t ref = {active, job->lease_token};
    lease_status_t st;
    assert_int_equal(broker_heartbeat(b, &ref, 1, 30000, &st), 0);
    assert_int_equal(st, LEASE_CANCELED);
    assert_int_equal(broker_fail(b, active, job->lease_token, "stopped", false, &after, NULL), 0);
    assert_int_equal(after, JOB_STATE_CANCELED);
    job_free(job);
    assert_int_equal(broker_cancel(b, active, &after), HP_ESTATE);
    assert_non_null(strstr(broker_errmsg(b), "already canceled"));
    queue_stats_t s = stats_of(q);
    assert_int_equal(s.counts[JOB_STATE_CANCELED], 3);
    assert_int_equal(s.counts[JOB_STATE_WAITING], 0);
    assert_int_equal(s.counts[JOB_STATE_SCHEDULED], 0);
    assert_int_equal(s.counts[JOB_STATE_ACTIVE], 0);
}

static void retry_by_hand_gives_fresh_attempts(void **state)
{
    (void)state;
    const char *q = test_queue_name("retry");
    char id[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .max_attempts = 1}, id);
    assert_int_equal(broker_retry(b, id), HP_ESTATE); /* waiting: nothing to retry */
    job_t *job = reserve_one(q, 30000);
    assert_int_equal(broker_fail(b, id, job->lease_token, "first", false, NULL, NULL), 0);
    job_free(job);
    assert_int_equal(state_of(id), JOB_STATE_DEAD);
    assert_int_equal(broker_retry(b, id), 0);
    job = get_ok(id);
    assert_int_equal(job->state, JOB_STATE_WAITING);
    assert_int_equal(job->attempts, 0);
    assert_int_equal(job->nerrors, 1); /* history stays */
    job_free(job);
    job = reserve_one(q, 30000);
    assert_int_equal(job->attempts, 1);
    assert_int_equal(broker_ack(b, id, job->lease_token, NULL, 0), 0);
    job_free(job);
    assert_int_equal(broker_retry(b, id), HP_ESTATE);
    queue_stats_t s = stats_of(q);
    assert_int_equal(s.counts[JOB_STATE_DEAD], 0);
    assert_int_equal(s.counts[JOB_STATE_SUCCEEDED], 1);
}

static void delete_removes_the_job(void **state)
{
    (void)state;
    const char *q = test_queue_name("delete");
    char a[JOB_ID_MAX], c[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, a);
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, c);
    assert_int_equal(broker_delete(b, a), 0);
    job_t *job;
    assert_int_equal(broker_get(b, a, &job), HP_ENOTFOUND);
    job = reserve_one(q, 30000);
    assert_string_equal(job->id, c); /* the deleted one is skipped */
    assert_int_equal(broker_delete(b, c), HP_ESTATE);
    assert_non_null(strstr(broker_errmsg(b), "active"));
    job_free(job);
    assert_int_equal(stats_of(q).counts[JOB_STATE_WAITING], 0);
    assert_int_equal(stats_of(q).counts[JOB_STATE_ACTIVE], 1);
}

static void paused_queue_hands_out_nothing(void **state)
{
    (void)state;
    const char *q = test_queue_name("pause");
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, NULL);
    assert_int_equal(broker_queue_pause(b, q, true), 0);
    assert_true(stats_of(q).paused);
    assert_int_equal(reserve_count(q), 0);
    assert_int_equal(broker_queue_pause(b, q, false), 0);
    assert_false(stats_of(q).paused);
    assert_int_equal(reserve_count(q), 1);
}

static void unique_key_enqueues_once(void **state)
{
    (void)state;
    const char *q = test_queue_name("unique");
    job_spec_t spec = {.queue = q, .type = "t", .unique_key = "order-42"};
    enqueue_result_t r1, r2;
    assert_int_equal(broker_enqueue(b, &spec, 1, &r1), 0);
    assert_false(r1.duplicate);
    assert_int_equal(broker_enqueue(b, &spec, 1, &r2), 0);
    assert_true(r2.duplicate);
    assert_string_equal(r1.id, r2.id);
    /* Within one batch too. */
    job_spec_t pair[2] = {{.queue = q, .type = "t", .unique_key = "k2"},
                          {.queue = q, .type = "t", .unique_key = "k2"}};
    enqueue_result_t rp[2];
    assert_int_equal(broker_enqueue(b, pair, 2, rp), 0);
    assert_false(rp[0].duplicate);
    assert_true(rp[1].duplicate);
    assert_string_equal(rp[0].id, rp[1].id);
    assert_int_equal(stats_of(q).counts[JOB_STATE_WAITING], 2);
    /* The key lapses with its TTL. */
    spec.unique_key = "short";
    spec.unique_ttl_ms = 100;
    assert_int_equal(broker_enqueue(b, &spec, 1, &r1), 0);
    hp_sleep_ms(150);
    assert_int_equal(broker_enqueue(b, &spec, 1, &r2), 0);
    assert_false(r2.duplicate);
    assert_string_not_equal(r1.id, r2.id);
}

static void full_queue_pushes_back(void **state)
{
    (void)state;
    const char *q = test_queue_name("full");
    queue_conf_t conf = {.max_length = 3};
    assert_int_equal(broker_queue_configure(b, q, &conf), 0);
    for (int i = 0; i < 2; i++)
        enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, NULL);
    job_spec_t two[2] = {{.queue = q, .type = "t"}, {.queue = q, .type = "t"}};
    enqueue_result_t res[2];
    assert_int_equal(broker_enqueue(b, two, 2, res), HP_EFULL);
    assert_int_equal(res[0].err, HP_EFULL);
    assert_int_equal(res[1].err, HP_EFULL);
    assert_non_null(strstr(broker_errmsg(b), "full"));
    assert_int_equal(stats_of(q).counts[JOB_STATE_WAITING], 2); /* all or nothing */
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, NULL);
    assert_int_equal(broker_enqueue(b, two, 1, res), HP_EFULL);
    assert_int_equal(stats_of(q).max_length, 3);
    conf.max_length = -1;
    assert_int_equal(broker_queue_configure(b, q, &conf), 0);
    assert_int_equal(broker_enqueue(b, two, 1, res), 0);
    assert_int_equal(stats_of(q).max_length, -1);
}

static void retention_trims_finished_jobs(void **state)
{
    (void)state;
    const char *q = test_queue_name("retain");
    queue_conf_t conf = {0};
    conf.keep_count[JOB_STATE_SUCCEEDED] = 5;
    assert_int_equal(broker_queue_configure(b, q, &conf), 0);
    char ids[12][JOB_ID_MAX];
    for (int i = 0; i < 12; i++) {
        enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, ids[i]);
        job_t *job = reserve_one(q, 30000);
        assert_int_equal(broker_ack(b, job->id, job->lease_token, "1", 0), 0);
        job_free(job);
    }
    assert_int_equal(stats_of(q).counts[JOB_STATE_SUCCEEDED], 5);
    job_t *job;
    assert_int_equal(broker_get(b, ids[0], &job), HP_ENOTFOUND); /* oldest gone */
    job = get_ok(ids[11]);                                       /* newest kept */
    job_free(job);
    /* By age: everything older than 100 ms goes on the next maintenance. */
    conf.keep_count[JOB_STATE_SUCCEEDED] = 0;
    conf.keep_age_ms[JOB_STATE_SUCCEEDED] = 100;
    assert_int_equal(broker_queue_configure(b, q, &conf), 0);
    hp_sleep_ms(150);
    assert_int_equal(broker_maintain(b, q, NULL), 0);
    assert_int_equal(stats_of(q).counts[JOB_STATE_SUCCEEDED], 0);
    assert_int_equal(broker_get(b, ids[11], &job), HP_ENOTFOUND);
    assert_int_equal(stats_of(q).succeeded_total, 12);
}

/* ---- Listing ---- */

static void collect_ids(const char *q, job_state_t st, size_t limit, char ids[][JOB_ID_MAX],
                        size_t *n, char **cursor_io, size_t pages)
{
    for (size_t p = 0; p < pages; p++) {
        job_list_t page;
        if (broker_list(b, q, st, *cursor_io, limit, &page))
            fail_msg("list: %s", broker_errmsg(b));
        for (size_t i = 0; i < page.n; i++)
            strcpy(ids[(*n)++], page.jobs[i]->id);
        hp_free(*cursor_io);
        *cursor_io = page.next_cursor ? hp_strdup(page.next_cursor) : NULL;
        job_list_cleanup(&page);
        if (!*cursor_io)
            break;
    }
}

/* Pages stay right while jobs are reserved from the head and added at the tail. */
static void waiting_pages_are_stable_under_churn(void **state)
{
    (void)state;
    const char *q = test_queue_name("page");
    char ids[40][JOB_ID_MAX];
    for (int i = 0; i < 25; i++)
        enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, ids[i]);
    char seen[60][JOB_ID_MAX];
    size_t n = 0;
    char *cursor = NULL;
    collect_ids(q, JOB_STATE_WAITING, 10, seen, &n, &cursor, 1);
    assert_int_equal(n, 10);
    assert_non_null(cursor);
    /* Five shown jobs leave from the head; an offset cursor would now skip five. */
    job_list_t taken;
    assert_int_equal(broker_reserve(b, q, 5, 30000, "w", &taken), 0);
    assert_int_equal(taken.n, 5);
    job_list_cleanup(&taken);
    for (int i = 25; i < 40; i++) /* and 15 more arrive at the tail */
        enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, ids[i]);
    collect_ids(q, JOB_STATE_WAITING, 10, seen, &n, &cursor, 10);
    assert_null(cursor);
    assert_int_equal(n, 40);
    for (int i = 10; i < 40; i++) /* none skipped, none twice, in order */
        assert_string_equal(seen[i], ids[i]);
}

static void waiting_pages_walk_priorities_in_order(void **state)
{
    (void)state;
    const char *q = test_queue_name("page-prio");
    char ids[9][JOB_ID_MAX];
    int prios[9] = {0, 0, 0, 9, 9, -3, -3, 0, 9};
    for (int i = 0; i < 9; i++)
        enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .priority = prios[i]}, ids[i]);
    char seen[9][JOB_ID_MAX];
    size_t n = 0;
    char *cursor = NULL;
    collect_ids(q, JOB_STATE_WAITING, 2, seen, &n, &cursor, 20);
    assert_null(cursor);
    int expect[9] = {3, 4, 8, 0, 1, 2, 7, 5, 6};
    assert_int_equal(n, 9);
    for (int i = 0; i < 9; i++)
        assert_string_equal(seen[i], ids[expect[i]]);
}

static void finished_pages_newest_first(void **state)
{
    (void)state;
    const char *q = test_queue_name("page-done");
    char ids[7][JOB_ID_MAX];
    for (int i = 0; i < 7; i++)
        enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, ids[i]);
    for (int i = 0; i < 7; i++) {
        job_t *job = reserve_one(q, 30000);
        assert_int_equal(broker_ack(b, job->id, job->lease_token, NULL, 0), 0);
        job_free(job);
    }
    char seen[7][JOB_ID_MAX];
    size_t n = 0;
    char *cursor = NULL;
    collect_ids(q, JOB_STATE_SUCCEEDED, 3, seen, &n, &cursor, 10);
    assert_int_equal(n, 7);
    /* Newest first; several finish in one ms, so this checks the tie order too. */
    for (int i = 0; i < 7; i++)
        assert_string_equal(seen[i], ids[6 - i]);
    job_list_t page = {0};
    /* A cursor no listing gave out is refused, not read as "from the start". */
    assert_int_equal(broker_list(b, q, JOB_STATE_SUCCEEDED, "garbage", 10, &page), HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "cursor"));
    assert_int_equal(broker_list(b, q, JOB_STATE_SUCCEEDED, "12:", 10, &page), HP_EINVAL);
    assert_int_equal(broker_list(b, q, JOB_STATE_SUCCEEDED, NULL, 0, &page), HP_EINVAL);
}

static void queues_are_listed(void **state)
{
    (void)state;
    const char *q = test_queue_name("listed");
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, NULL);
    char **names;
    size_t n;
    assert_int_equal(broker_queues(b, &names, &n), 0);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        found |= strcmp(names[i], q) == 0;
        if (i)
            assert_true(strcmp(names[i - 1], names[i]) < 0);
    }
    assert_true(found);
    broker_queues_free(names, n);
}

/* ---- Idle waiting ---- */

typedef struct waiter_s {
    const char *queue;
    int result;
} waiter_t;

static void *wait_thread(void *arg)
{
    waiter_t *w = arg;
    broker_t *own;
    broker_config_t cfg = {.url = server.url};
    if (broker_open(&cfg, &own, NULL)) {
        w->result = -100;
        return NULL;
    }
    const char *qs[1] = {w->queue};
    w->result = broker_wait(own, qs, 1, 20000);
    broker_close(own);
    return NULL;
}

static void idle_wait_wakes_on_enqueue(void **state)
{
    (void)state;
    const char *q = test_queue_name("wake");
    const char *qs[1] = {q};
    assert_int_equal(broker_wait(b, qs, 1, 50), 0); /* nothing: times out */
    waiter_t w = {q, -1};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    /* Wait until the waiter is blocked in BLPOP, then enqueue. */
    for (int i = 0; i < 200 && redis_info_field("clients", "blocked_clients:") < 1; i++)
        hp_sleep_ms(5);
    assert_int_equal(redis_info_field("clients", "blocked_clients:"), 1);
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, NULL);
    pthread_join(t, NULL);
    assert_int_equal(w.result, 1); /* woken, not timed out */
    assert_int_equal(reserve_count(q), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(enqueue_then_get_by_id_alone),
        cmocka_unit_test(unknown_and_malformed_ids),
        cmocka_unit_test(batch_of_1000_in_one_round_trip),
        cmocka_unit_test(bad_job_in_batch_is_refused_alone),
        cmocka_unit_test(bad_input_writes_nothing),
        cmocka_unit_test(priorities_then_fifo),
        cmocka_unit_test(delayed_job_is_promoted_when_due),
        cmocka_unit_test(maintain_promotes_without_a_worker),
        cmocka_unit_test(expired_job_goes_dead_unrun),
        cmocka_unit_test(ack_stores_the_result),
        cmocka_unit_test(batch_ack_answers_each_item),
        cmocka_unit_test(release_gives_the_job_back_uncounted),
        cmocka_unit_test(progress_and_logs_are_kept_with_the_job),
        cmocka_unit_test(workers_register_and_expire),
        cmocka_unit_test(workers_get_sorted_and_commands),
        cmocka_unit_test(three_failures_of_three_attempts_end_dead),
        cmocka_unit_test(exponential_backoff_grows_with_jitter),
        cmocka_unit_test(permanent_failure_is_dead_at_once),
        cmocka_unit_test(expired_lease_is_recovered_and_late_answers_refused),
        cmocka_unit_test(lease_expiry_on_last_attempt_is_dead),
        cmocka_unit_test(heartbeat_extends_the_lease),
        cmocka_unit_test(cancel_in_every_state),
        cmocka_unit_test(retry_by_hand_gives_fresh_attempts),
        cmocka_unit_test(delete_removes_the_job),
        cmocka_unit_test(paused_queue_hands_out_nothing),
        cmocka_unit_test(unique_key_enqueues_once),
        cmocka_unit_test(full_queue_pushes_back),
        cmocka_unit_test(retention_trims_finished_jobs),
        cmocka_unit_test(waiting_pages_are_stable_under_churn),
        cmocka_unit_test(waiting_pages_walk_priorities_in_order),
        cmocka_unit_test(finished_pages_newest_first),
        cmocka_unit_test(queues_are_listed),
        cmocka_unit_test(idle_wait_wakes_on_enqueue),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
