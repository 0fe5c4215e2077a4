/* Unit tests for broker/job.c: the rules a job must pass, ids, and the record codec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "broker/internal.h"

static int check(const job_spec_t *s, char *msg)
{
    return broker__validate_spec(s, JOB_PAYLOAD_DEFAULT_MAX, msg, 256);
}

static void minimal_spec_is_valid(void **state)
{
    (void)state;
    char msg[256];
    job_spec_t s = {.queue = "email", .type = "email.send"};
    assert_int_equal(check(&s, msg), 0);
    s.payload = "{\"n\": 123456789012345678901234567890}"; /* past 64 bits: still JSON */
    assert_int_equal(check(&s, msg), 0);
}

/* Each bad field is refused with a message that names it. */
static void bad_fields_are_named(void **state)
{
    (void)state;
    char msg[256];
    char long_queue[JOB_QUEUE_NAME_MAX + 2];
    memset(long_queue, 'q', sizeof(long_queue) - 1);
    long_queue[sizeof(long_queue) - 1] = '\0';
    const char *tags[] = {"ok", ""};
    struct {
        job_spec_t spec;
        int err;
        const char *field;
    } cases[] = {
        {{.queue = "", .type = "t"}, HP_EINVAL, "queue"},
        {{.queue = NULL, .type = "t"}, HP_EINVAL, "queue"},
        {{.queue = "a b", .type = "t"}, HP_EINVAL, "queue"},
        {{.queue = "a{b}", .type = "t"}, HP_EINVAL, "queue"},
        {{.queue = "a:b", .type = "t"}, HP_EINVAL, "queue"},
        {{.queue = long_queue, .type = "t"}, HP_EINVAL, "queue"},
        {{.queue = "q", .type = ""}, HP_EINVAL, "type"},
        {{.queue = "q", .type = "has space"}, HP_EINVAL, "type"},
        {{.queue = "q", .type = "t", .payload = "{bad"}, HP_EINVAL, "payload"},
        {{.queue = "q", .type = "t", .payload = "{} {}"}, HP_EINVAL, "payload"},
        {{.queue = "q", .type = "t", .priority = 1001}, HP_EINVAL, "priority"},
        {{.queue = "q", .type = "t", .delay_ms = -1}, HP_EINVAL, "delay"},
        {{.queue = "q", .type = "t", .delay_ms = JOB_DELAY_MAX_MS + 1}, HP_EINVAL, "delay"},
        {{.queue = "q", .type = "t", .delay_ms = 5, .run_at_ms = hp_now_ms() + 1000},
         HP_EINVAL,
         "delay and run_at"},
        {{.queue = "q", .type = "t", .max_attempts = -1}, HP_EINVAL, "max_attempts"},
        {{.queue = "q", .type = "t", .max_attempts = JOB_ATTEMPTS_MAX + 1},
         HP_EINVAL,
         "max_attempts"},
        {{.queue = "q", .type = "t", .backoff = {.base_ms = 5000, .cap_ms = 10}},
         HP_EINVAL,
         "backoff"},
        {{.queue = "q", .type = "t", .backoff = {.kind = 7}}, HP_EINVAL, "backoff.kind"},
        {{.queue = "q", .type = "t", .timeout_ms = -5}, HP_EINVAL, "timeout"},
        {{.queue = "q", .type = "t", .expires_at_ms = 1000}, HP_EINVAL, "expires_at"},
        {{.queue = "q", .type = "t", .unique_key = ""}, HP_EINVAL, "unique_key"},
        {{.queue = "q", .type = "t", .tags = tags, .ntags = 2}, HP_EINVAL, "tags[1]"},
        {{.queue = "q", .type = "t", .ntags = JOB_TAGS_MAX + 1}, HP_EINVAL, "tags"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        msg[0] = '\0';
        int err = check(&cases[i].spec, msg);
        if (err != cases[i].err || strncmp(msg, cases[i].field, strlen(cases[i].field)) != 0)
            fail_msg("case %zu: got %d \"%s\", expected %d for %s", i, err, msg, cases[i].err,
                     cases[i].field);
    }
}

static void payload_size_limit_is_enforced(void **state)
{
    (void)state;
    char msg[256];
    size_t n = 64;
    char *big = hp_malloc(n + 1);
    big[0] = '"';
    memset(big + 1, 'x', n - 2);
    big[n - 1] = '"';
    big[n] = '\0';
    job_spec_t s = {.queue = "q", .type = "t", .payload = big};
    assert_int_equal(broker__validate_spec(&s, n, msg, sizeof(msg)), 0);
    assert_int_equal(broker__validate_spec(&s, n - 1, msg, sizeof(msg)), HP_ETOOBIG);
    assert_non_null(strstr(msg, "over the limit"));
    hp_free(big);
}

static void job_ids_parse(void **state)
{
    (void)state;
    char ulid[HP_ULID_LEN + 1], queue[JOB_QUEUE_NAME_MAX + 1];
    assert_true(job_id_parse("01ARZ3NDEKTSV4RRFFQ69G5FAV-email.high", ulid, queue));
    assert_string_equal(ulid, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    assert_string_equal(queue, "email.high");
    assert_true(job_id_parse("01ARZ3NDEKTSV4RRFFQ69G5FAV-a-b", ulid, queue));
    assert_string_equal(queue, "a-b");
    const char *bad[] = {"",
                         "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                         "01ARZ3NDEKTSV4RRFFQ69G5FAV-",
                         "01ARZ3NDEKTSV4RRFFQ69G5FAVxemail",
                         "not-an-id",
                         "01ARZ3NDEKTSV4RRFFQ69G5FAV-a b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(job_id_parse(bad[i], ulid, queue));
    assert_false(job_id_parse(NULL, ulid, queue));
}

static void states_round_trip(void **state)
{
    (void)state;
    for (int s = 0; s < JOB_STATE_COUNT; s++)
        assert_int_equal(job_state_parse(job_state_name((job_state_t)s)), s);
    assert_int_equal(job_state_parse("finished"), -1);
}

/* What prepare writes, decode reads back (the enqueue script adds the state). */
static void record_round_trips(void **state)
{
    (void)state;
    const char *tags[] = {"welcome", "ünïcode"};
    job_spec_t s = {.queue = "email",
                    .type = "email.send",
                    .payload = "{\"big\": 123456789012345678901234567890, \"s\": \"a\\nb\"}",
                    .priority = 7,
                    .max_attempts = 3,
                    .backoff = {.kind = BACKOFF_LINEAR, .base_ms = 500},
                    .timeout_ms = 30000,
                    .unique_key = "user-42",
                    .tags = tags,
                    .ntags = 2};
    broker__prepared_t p;
    broker__prepare(&s, &p);
    char *rec = hp_sprintf("{\"s\":\"waiting\",\"a\":0,%s", p.body);
    job_t *job;
    assert_int_equal(broker__job_decode(p.ulid, "email", rec, strlen(rec), &job), 0);
    assert_string_equal(job->type, "email.send");
    assert_string_equal(job->payload, s.payload); /* byte for byte */
    assert_int_equal(job->state, JOB_STATE_WAITING);
    assert_int_equal(job->priority, 7);
    assert_int_equal(job->max_attempts, 3);
    assert_int_equal(job->backoff.kind, BACKOFF_LINEAR);
    assert_int_equal(job->backoff.base_ms, 500);
    assert_int_equal(job->backoff.cap_ms, BACKOFF_CAP_DEFAULT_MS);
    assert_int_equal(job->timeout_ms, 30000);
    assert_string_equal(job->unique_key, "user-42");
    assert_int_equal(job->ntags, 2);
    assert_string_equal(job->tags[1], "ünïcode");
    assert_true(job->created_ms > 0);
    char *text = job_to_json(job, 0);
    json_error_t jerr;
    json_t *doc = json_loads(text, JSON_DECODE_INT_AS_REAL, &jerr);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "waiting");
    assert_non_null(strstr(text, "\"payload\":{\"big\": 123456789012345678901234567890"));
    json_decref(doc);
    hp_free(text);
    job_free(job);
    hp_free(rec);
    broker__prepared_cleanup(&p);
}

static void damaged_records_are_refused(void **state)
{
    (void)state;
    job_t *job;
    const char *bad[] = {"", "no newline", "{\"s\":\"nope\",\"t\":\"x\"}\nnull",
                         "{\"t\":\"x\"}\nnull", "[1]\nnull"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(
            broker__job_decode("01ARZ3NDEKTSV4RRFFQ69G5FAV", "q", bad[i], strlen(bad[i]), &job),
            HP_EPROTO);
        assert_null(job);
    }
}

/* A retry's body: the payload's own bytes, and nothing but {"payload": ...}. */
static void retry_payload_body(void **state)
{
    (void)state;
    char err[256], *payload;
    const char *body = "{ \"payload\" : {\"n\": 0.10, \"big\": 123456789012345678901234567890} }";
    assert_int_equal(job_payload_from_json(body, strlen(body), &payload, err, sizeof(err)), 0);
    assert_string_equal(payload, "{\"n\": 0.10, \"big\": 123456789012345678901234567890}");
    hp_free(payload);
    body = "{\"payload\":\"a \\\"quoted\\\" string\"}";
    assert_int_equal(job_payload_from_json(body, strlen(body), &payload, err, sizeof(err)), 0);
    assert_string_equal(payload, "\"a \\\"quoted\\\" string\"");
    hp_free(payload);
    body = "{\"payload\":null}";
    assert_int_equal(job_payload_from_json(body, strlen(body), &payload, err, sizeof(err)), 0);
    assert_string_equal(payload, "null");
    hp_free(payload);
    const char *bad[] = {"",
                         "[1]",
                         "{}",
                         "{\"payload\":1,\"queue\":\"q\"}",
                         "{\"Payload\":1}",
                         "{\"payload\":",
                         "\"payload\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(job_payload_from_json(bad[i], strlen(bad[i]), &payload, err, sizeof(err)),
                         HP_EINVAL);
        assert_null(payload);
        assert_true(strlen(err) > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(minimal_spec_is_valid),
        cmocka_unit_test(bad_fields_are_named),
        cmocka_unit_test(payload_size_limit_is_enforced),
        cmocka_unit_test(job_ids_parse),
        cmocka_unit_test(states_round_trip),
        cmocka_unit_test(record_round_trips),
        cmocka_unit_test(damaged_records_are_refused),
        cmocka_unit_test(retry_payload_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
