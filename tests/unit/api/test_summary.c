/* Unit tests for api/summary.c: what a summary says, its limits, and that taking it
 * starts the next interval empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "api/summary.h"

static json_t *take(api_summary_t *s)
{
    char *text = api_summary_take(s);
    json_error_t err;
    json_t *doc = json_loads(text, 0, &err);
    if (!doc)
        fail_msg("not JSON (%s): %s", err.text, text);
    hp_free(text);
    return doc;
}

static long long num(json_t *doc, const char *path)
{
    /* "a.b.c": nested members */
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *v = doc;
    for (char *save = NULL, *part = strtok_r(buf, ".", &save); part;
         part = strtok_r(NULL, ".", &save))
        v = json_object_get(v, part);
    if (!json_is_integer(v))
        fail_msg("%s: not an integer", path);
    return (long long)json_integer_value(v);
}

static void test_counts_by_kind_and_state(void **state)
{
    (void)state;
    api_summary_t *s = api_summary_new();
    assert_true(api_summary_empty(s));
    api_summary_add(s, "enqueued", "mail", "01A-mail", "waiting", 1000);
    api_summary_add(s, "enqueued", "mail", "01B-mail", "scheduled", 1005);
    api_summary_add(s, "started", "mail", "01A-mail", "active", 990); /* out of order */
    api_summary_add(s, "succeeded", "mail", "01A-mail", "succeeded", 1010);
    api_summary_add(s, "deleted", "pdf", "01C-pdf", NULL, 1020);
    api_summary_add(s, "progress", "pdf", "01D-pdf", "bogus", 1030);
    api_summary_add(s, "teleported", "pdf", "01E-pdf", "waiting", 1040); /* unknown kind */
    assert_false(api_summary_empty(s));
    json_t *d = take(s);
    assert_string_equal(json_string_value(json_object_get(d, "event")), "summary");
    assert_int_equal(num(d, "count"), 7);
    assert_int_equal(num(d, "from"), 990);
    assert_int_equal(num(d, "to"), 1040);
    assert_int_equal(num(d, "queues.mail.count"), 4);
    assert_int_equal(num(d, "queues.mail.from"), 990);
    assert_int_equal(num(d, "queues.mail.to"), 1010);
    assert_int_equal(num(d, "queues.mail.events.enqueued.waiting"), 1);
    assert_int_equal(num(d, "queues.mail.events.enqueued.scheduled"), 1);
    assert_int_equal(num(d, "queues.mail.events.started.active"), 1);
    assert_int_equal(num(d, "queues.mail.events.succeeded.succeeded"), 1);
    assert_int_equal(num(d, "queues.pdf.count"), 3); /* the unknown kind counted... */
    assert_int_equal(num(d, "queues.pdf.events.deleted.none"), 1);
    assert_int_equal(num(d, "queues.pdf.events.progress.none"), 1); /* unknown state */
    assert_null(
        json_object_get(json_object_get(json_object_get(d, "queues"), "pdf"), "teleported"));
    assert_int_equal(json_object_size(json_object_get(
                         json_object_get(json_object_get(d, "queues"), "pdf"), "events")),
                     2); /* ...not sorted */
    /* Each job once, in order of first appearance. */
    json_t *jobs = json_object_get(d, "jobs");
    assert_int_equal(json_array_size(jobs), 5);
    assert_string_equal(json_string_value(json_array_get(jobs, 0)), "01A-mail");
    assert_string_equal(json_string_value(json_array_get(jobs, 1)), "01B-mail");
    assert_int_equal(num(d, "jobs_omitted"), 0);
    assert_int_equal(num(d, "queues_omitted"), 0);
    json_decref(d);

    /* Taken: the next interval starts empty and says only what came since. */
    assert_true(api_summary_empty(s));
    api_summary_add(s, "failed", "pdf", "01F-pdf", "failed", 2000);
    d = take(s);
    assert_int_equal(num(d, "count"), 1);
    assert_int_equal(num(d, "from"), 2000);
    assert_null(json_object_get(json_object_get(d, "queues"), "mail"));
    assert_int_equal(num(d, "queues.pdf.events.failed.failed"), 1);
    assert_int_equal(json_array_size(json_object_get(d, "jobs")), 1);
    json_decref(d);
    api_summary_free(s);
}

static void test_limits(void **state)
{
    (void)state;
    api_summary_t *s = api_summary_new();
    char queue[32], id[64];
    /* 100 queues x 3 jobs: 64 queues fit, the events of the rest are counted apart;
     * 100 job ids fit, the events after that are counted apart. */
    for (int q = 0; q < 100; q++) {
        for (int j = 0; j < 3; j++) {
            snprintf(queue, sizeof(queue), "q%d", q);
            snprintf(id, sizeof(id), "01J%03d%d-q%d", q, j, q);
            api_summary_add(s, "enqueued", queue, id, "waiting", 5000 + q);
        }
    }
    json_t *d = take(s);
    assert_int_equal(num(d, "count"), 300);
    assert_int_equal(json_object_size(json_object_get(d, "queues")), 64);
    assert_int_equal(num(d, "queues_omitted"), 36 * 3);
    assert_int_equal(num(d, "queues.q63.events.enqueued.waiting"), 3);
    assert_int_equal(json_array_size(json_object_get(d, "jobs")), 100);
    assert_int_equal(num(d, "jobs_omitted"), 200);
    json_decref(d);
    /* A queue name too long for a slot (none such pass the API) is counted apart. */
    char longname[100];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    api_summary_add(s, "enqueued", longname, NULL, "waiting", 1);
    d = take(s);
    assert_int_equal(num(d, "queues_omitted"), 1);
    assert_int_equal(json_array_size(json_object_get(d, "jobs")), 0);
    json_decref(d);
    api_summary_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_by_kind_and_state),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
