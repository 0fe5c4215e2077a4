/*
 * What the operator dashboard needs from the broker, against a real redis-server:
 * filtered and reversed listings whose every call examines a bounded number of
 * entries (with a state of 1,000,000 jobs), bulk retry and delete, a retry with an
 * edited payload, the oldest waiting job, throughput per second and minute, and
 * the backend's health. One private server for the whole file; each test uses
 * queues of its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
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

static void enqueue_ok(const job_spec_t *spec, char *id_out)
{
    enqueue_result_t res;
    if (broker_enqueue(b, spec, 1, &res))
        fail_msg("enqueue: %s", broker_errmsg(b));
    if (id_out)
        strcpy(id_out, res.id);
}

/* n jobs of `type` (each of a type from types[i % ntypes] when types is given),
 * in batches of JOB_BATCH_MAX; ids (may be NULL) gets their ids in order. */
static void enqueue_many(const char *q, size_t n, const char *const *types, size_t ntypes,
                         char (*ids)[JOB_ID_MAX])
{
    job_spec_t *specs = calloc(JOB_BATCH_MAX, sizeof(*specs));
    enqueue_result_t *res = calloc(JOB_BATCH_MAX, sizeof(*res));
    for (size_t done = 0; done < n;) {
        size_t k = n - done < JOB_BATCH_MAX ? n - done : JOB_BATCH_MAX;
        for (size_t i = 0; i < k; i++)
            specs[i] = (job_spec_t){.queue = q, .type = types[(done + i) % ntypes]};
        if (broker_enqueue(b, specs, k, res))
            fail_msg("enqueue: %s", broker_errmsg(b));
        for (size_t i = 0; ids && i < k; i++)
            strcpy(ids[done + i], res[i].id);
        done += k;
    }
    free(specs);
    free(res);
}

static queue_stats_t stats_of(const char *queue)
{
    queue_stats_t s;
    if (broker_queue_stats(b, queue, &s))
        fail_msg("stats: %s", broker_errmsg(b));
    return s;
}

/* Reserves up to n jobs to `worker` and fails each with `message` (permanent:
 * dead). Returns how many. */
static size_t reserve_and_fail(const char *q, size_t n, const char *worker, const char *message,
                               bool permanent)
{
    job_list_t got;
    if (broker_reserve(b, q, n, 30000, worker, &got))
        fail_msg("reserve: %s", broker_errmsg(b));
    for (size_t i = 0; i < got.n; i++)
        if (broker_fail(b, got.jobs[i]->id, got.jobs[i]->lease_token, message, permanent, NULL,
                        NULL))
            fail_msg("fail: %s", broker_errmsg(b));
    size_t k = got.n;
    job_list_cleanup(&got);
    return k;
}

/* Every page of a listing from the start: the ids in order (up to max), how many
 * pages, and how many of them were empty while a cursor came with them. */
typedef struct walk_s {
    char (*ids)[JOB_ID_MAX];
    size_t n, max;
    size_t pages, empty_with_cursor;
    int64_t slowest_us, total_us;
} walk_t;

static void walk(const char *q, job_state_t st, const list_filter_t *f, size_t limit, walk_t *w)
{
    char *cursor = NULL;
    w->n = w->pages = w->empty_with_cursor = 0;
    w->slowest_us = w->total_us = 0;
    do {
        job_list_t page;
        int64_t t0 = hp_mono_us();
        if (broker_list_filtered(b, q, st, f, cursor, limit, &page))
            fail_msg("list (page %zu): %s", w->pages, broker_errmsg(b));
        int64_t took = hp_mono_us() - t0;
        if (took > w->slowest_us)
            w->slowest_us = took;
        w->total_us += took;
        assert_true(page.n <= limit);
        for (size_t i = 0; i < page.n; i++) {
            if (w->ids && w->n < w->max)
                strcpy(w->ids[w->n], page.jobs[i]->id);
            w->n++;
        }
        if (page.n == 0 && page.next_cursor)
            w->empty_with_cursor++;
        w->pages++;
        free(cursor);
        cursor = page.next_cursor ? strdup(page.next_cursor) : NULL;
        job_list_cleanup(&page);
    } while (cursor);
}

static walk_t walker(char (*ids)[JOB_ID_MAX], size_t max)
{
    return (walk_t){.ids = ids, .max = max};
}

/* ---- Listing: order ---- */

/* desc is reserve order reversed: priorities lowest first, each list tail first. */
static void waiting_desc_is_reserve_order_reversed(void **state)
{
    (void)state;
    const char *q = test_queue_name("desc-w");
    char ids[9][JOB_ID_MAX];
    int prios[9] = {0, 0, 0, 9, 9, -3, -3, 0, 9};
    for (int i = 0; i < 9; i++)
        enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .priority = prios[i]}, ids[i]);
    int reserve_order[9] = {3, 4, 8, 0, 1, 2, 7, 5, 6};
    char seen[9][JOB_ID_MAX];
    walk_t w = walker(seen, 9);
    walk(q, JOB_STATE_WAITING, &(list_filter_t){.desc = true}, 2, &w);
    assert_int_equal(w.n, 9);
    for (int i = 0; i < 9; i++)
        assert_string_equal(seen[i], ids[reserve_order[8 - i]]);
    assert_int_equal(w.pages, 5); /* the last page full or not, no empty page after it */

    /* Pages stay right while workers take jobs from the heads and more arrive. */
    job_list_t page;
    assert_int_equal(broker_list_filtered(b, q, JOB_STATE_WAITING, &(list_filter_t){.desc = true},
                                          NULL, 3, &page),
                     0);
    assert_int_equal(page.n, 3); /* 6, 5, then 7 */
    char *cursor = strdup(page.next_cursor);
    job_list_cleanup(&page);
    job_list_t taken;
    assert_int_equal(broker_reserve(b, q, 4, 30000, "w", &taken), 0); /* 3, 4, 8 and 0 */
    job_list_cleanup(&taken);
    char late[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, late); /* at a tail: newer, not shown */
    assert_int_equal(broker_list_filtered(b, q, JOB_STATE_WAITING, &(list_filter_t){.desc = true},
                                          cursor, 10, &page),
                     0);
    assert_null(page.next_cursor);
    assert_int_equal(page.n, 2); /* 2 and 1 are left of level 0; level 9 is empty */
    assert_string_equal(page.jobs[0]->id, ids[2]);
    assert_string_equal(page.jobs[1]->id, ids[1]);
    job_list_cleanup(&page);
    free(cursor);
}

static void sets_desc_reverse_their_natural_order(void **state)
{
    (void)state;
    const char *q = test_queue_name("desc-s");
    char ids[7][JOB_ID_MAX];
    for (int i = 0; i < 7; i++)
        enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, ids[i]);
    for (int i = 0; i < 7; i++) {
        job_list_t got;
        assert_int_equal(broker_reserve(b, q, 1, 30000, "w", &got), 0);
        assert_int_equal(broker_ack(b, got.jobs[0]->id, got.jobs[0]->lease_token, NULL, 0), 0);
        job_list_cleanup(&got);
    }
    char seen[7][JOB_ID_MAX];
    walk_t w = walker(seen, 7);
    walk(q, JOB_STATE_SUCCEEDED, NULL, 3, &w); /* natural: newest first */
    assert_int_equal(w.n, 7);
    for (int i = 0; i < 7; i++)
        assert_string_equal(seen[i], ids[6 - i]);
    walk(q, JOB_STATE_SUCCEEDED, &(list_filter_t){.desc = true}, 3, &w); /* oldest first */
    assert_int_equal(w.n, 7);
    for (int i = 0; i < 7; i++)
        assert_string_equal(seen[i], ids[i]);

    /* Scheduled: by due time, and desc latest first. */
    const char *qs = test_queue_name("desc-sched");
    char sched[5][JOB_ID_MAX];
    int64_t delays[5] = {50000, 10000, 40000, 20000, 30000};
    for (int i = 0; i < 5; i++)
        enqueue_ok(&(job_spec_t){.queue = qs, .type = "t", .delay_ms = delays[i]}, sched[i]);
    char seen5[5][JOB_ID_MAX];
    w = walker(seen5, 5);
    walk(qs, JOB_STATE_SCHEDULED, NULL, 2, &w);
    int by_due[5] = {1, 3, 4, 2, 0};
    for (int i = 0; i < 5; i++)
        assert_string_equal(seen5[i], sched[by_due[i]]);
    walk(qs, JOB_STATE_SCHEDULED, &(list_filter_t){.desc = true}, 2, &w);
    for (int i = 0; i < 5; i++)
        assert_string_equal(seen5[i], sched[by_due[4 - i]]);
}

/* Thousands of jobs with one score (one run_at) page in (score, id) order in both
 * directions: a cursor's place is found by value, not by skipping its equals. */
static void equal_scores_page_exactly(void **state)
{
    (void)state;
    const char *q = test_queue_name("ties");
    enum { N = 3000 };
    static char ids[N][JOB_ID_MAX], seen[N][JOB_ID_MAX];
    job_spec_t *specs = calloc(JOB_BATCH_MAX, sizeof(*specs));
    enqueue_result_t *res = calloc(JOB_BATCH_MAX, sizeof(*res));
    int64_t at = hp_now_ms() + 3600 * 1000;
    for (size_t done = 0; done < N; done += JOB_BATCH_MAX) {
        for (size_t i = 0; i < JOB_BATCH_MAX; i++)
            specs[i] = (job_spec_t){.queue = q, .type = "t", .run_at_ms = at};
        assert_int_equal(broker_enqueue(b, specs, JOB_BATCH_MAX, res), 0);
        for (size_t i = 0; i < JOB_BATCH_MAX; i++)
            strcpy(ids[done + i], res[i].id);
    }
    free(specs);
    free(res);
    walk_t w = walker(seen, N);
    walk(q, JOB_STATE_SCHEDULED, NULL, 7, &w);
    assert_int_equal(w.n, N);
    for (size_t i = 0; i < N; i++) /* ids grow in the order they were made */
        assert_string_equal(seen[i], ids[i]);
    walk(q, JOB_STATE_SCHEDULED, &(list_filter_t){.desc = true}, 1000, &w);
    assert_int_equal(w.n, N);
    assert_int_equal(w.pages, 3);
    for (size_t i = 0; i < N; i++)
        assert_string_equal(seen[i], ids[N - 1 - i]);

    /* A cursor whose job has gone still marks its place. */
    job_list_t page;
    assert_int_equal(broker_list(b, q, JOB_STATE_SCHEDULED, NULL, 10, &page), 0);
    char *cursor = strdup(page.next_cursor);
    job_list_cleanup(&page);
    assert_int_equal(broker_delete(b, ids[9]), 0);  /* the job the cursor names */
    assert_int_equal(broker_delete(b, ids[10]), 0); /* and the next one */
    assert_int_equal(broker_list(b, q, JOB_STATE_SCHEDULED, cursor, 2, &page), 0);
    assert_int_equal(page.n, 2);
    assert_string_equal(page.jobs[0]->id, ids[11]);
    assert_string_equal(page.jobs[1]->id, ids[12]);
    job_list_cleanup(&page);
    free(cursor);
}

/* ---- Listing: filters ---- */

static void type_filter_is_exact(void **state)
{
    (void)state;
    const char *q = test_queue_name("ftype");
    const char *types[] = {"email.send", "email.send2", "pdf/render", "email.send"};
    char ids[12][JOB_ID_MAX];
    enqueue_many(q, 12, types, 4, ids);
    char seen[12][JOB_ID_MAX];
    walk_t w = walker(seen, 12);
    walk(q, JOB_STATE_WAITING, &(list_filter_t){.type = "email.send"}, 100, &w);
    assert_int_equal(w.n, 6);
    for (size_t i = 0, k = 0; i < 12; i++)
        if (i % 4 == 0 || i % 4 == 3)
            assert_string_equal(seen[k++], ids[i]);
    /* A type JSON escapes ('/'), in a record re-encoded by a failure. */
    size_t failed = reserve_and_fail(q, 3, "w", "boom", false); /* 0, 1 and 2 fail */
    assert_int_equal(failed, 3);
    walk(q, JOB_STATE_FAILED, &(list_filter_t){.type = "pdf/render"}, 100, &w);
    assert_int_equal(w.n, 1);
    assert_string_equal(seen[0], ids[2]);
    walk(q, JOB_STATE_WAITING, &(list_filter_t){.type = "pdf/render", .desc = true}, 1, &w);
    assert_int_equal(w.n, 2);
    assert_string_equal(seen[0], ids[10]);
    assert_string_equal(seen[1], ids[6]);
    walk(q, JOB_STATE_WAITING, &(list_filter_t){.type = "nope"}, 100, &w);
    assert_int_equal(w.n, 0);
    assert_int_equal(w.pages, 1);
}

static void error_filter_ignores_case(void **state)
{
    (void)state;
    const char *q = test_queue_name("ferr");
    char ids[6][JOB_ID_MAX];
    for (int i = 0; i < 6; i++)
        enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .max_attempts = 1}, ids[i]);
    reserve_and_fail(q, 1, "w", "Connection REFUSED by smtp.example.com", true);
    reserve_and_fail(q, 1, "w", "file /tmp/in.pdf: not found", true);
    reserve_and_fail(q, 1, "w", "quote \"inside\" and caf\xc3\xa9", true);
    reserve_and_fail(q, 1, "w", "timeout", true);
    char seen[6][JOB_ID_MAX];
    walk_t w = walker(seen, 6);
    walk(q, JOB_STATE_DEAD, &(list_filter_t){.error = "connection refused"}, 10, &w);
    assert_int_equal(w.n, 1);
    assert_string_equal(seen[0], ids[0]);
    walk(q, JOB_STATE_DEAD, &(list_filter_t){.error = "/TMP/in.pdf"}, 10, &w);
    assert_int_equal(w.n, 1);
    assert_string_equal(seen[0], ids[1]);
    walk(q, JOB_STATE_DEAD, &(list_filter_t){.error = "\"INSIDE\""}, 10, &w);
    assert_int_equal(w.n, 1);
    assert_string_equal(seen[0], ids[2]);
    walk(q, JOB_STATE_DEAD, &(list_filter_t){.error = "caf\xc3\xa9"}, 10, &w);
    assert_int_equal(w.n, 1);
    walk(q, JOB_STATE_DEAD, &(list_filter_t){.error = "o"}, 10, &w);
    assert_int_equal(w.n, 4);
    /* The type and the payload are not errors; jobs without any never match. */
    walk(q, JOB_STATE_DEAD, &(list_filter_t){.error = "\"t\""}, 10, &w);
    assert_int_equal(w.n, 0);
    walk(q, JOB_STATE_WAITING, &(list_filter_t){.error = "o"}, 10, &w);
    assert_int_equal(w.n, 0);
    /* Type and error together. */
    walk(q, JOB_STATE_DEAD, &(list_filter_t){.error = "timeout", .type = "other"}, 10, &w);
    assert_int_equal(w.n, 0);
    walk(q, JOB_STATE_DEAD, &(list_filter_t){.error = "timeout", .type = "t"}, 10, &w);
    assert_int_equal(w.n, 1);
    assert_string_equal(seen[0], ids[3]);
}

static void worker_filter_takes_active_jobs(void **state)
{
    (void)state;
    const char *q = test_queue_name("fwork");
    enqueue_many(q, 5, (const char *[]){"t"}, 1, NULL);
    job_list_t one, two;
    assert_int_equal(broker_reserve(b, q, 2, 30000, "host-a:1", &one), 0);
    assert_int_equal(broker_reserve(b, q, 3, 30000, "host-b:2", &two), 0);
    char seen[5][JOB_ID_MAX];
    walk_t w = walker(seen, 5);
    walk(q, JOB_STATE_ACTIVE, &(list_filter_t){.worker = "host-b:2"}, 10, &w);
    assert_int_equal(w.n, 3);
    for (size_t i = 0; i < 3; i++) {
        bool found = false;
        for (size_t k = 0; k < two.n; k++)
            found |= strcmp(seen[i], two.jobs[k]->id) == 0;
        assert_true(found);
    }
    job_list_t page;
    assert_int_equal(broker_list_filtered(b, q, JOB_STATE_ACTIVE,
                                          &(list_filter_t){.worker = "host-a:1"}, NULL, 10, &page),
                     0);
    assert_int_equal(page.n, 2);
    assert_string_equal(page.jobs[0]->worker, "host-a:1");
    job_list_cleanup(&page);
    walk(q, JOB_STATE_ACTIVE, &(list_filter_t){.worker = "host-b"}, 10, &w); /* exact */
    assert_int_equal(w.n, 0);
    /* Only active jobs have a worker; a bad id is refused. */
    assert_int_equal(broker_list_filtered(b, q, JOB_STATE_WAITING,
                                          &(list_filter_t){.worker = "host-a:1"}, NULL, 10, &page),
                     HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "worker"));
    assert_int_equal(broker_list_filtered(b, q, JOB_STATE_ACTIVE, &(list_filter_t){.worker = "a|b"},
                                          NULL, 10, &page),
                     HP_EINVAL);
    job_list_cleanup(&one);
    job_list_cleanup(&two);
}

/* A rare filter: each call examines LIST_SCAN_MAX entries at most, so a page can
 * be empty while the cursor says there is more. */
static void filtered_pages_are_bounded(void **state)
{
    (void)state;
    const char *q = test_queue_name("rare");
    size_t n = 2 * LIST_SCAN_MAX + 100;
    const char **types = calloc(n, sizeof(*types));
    for (size_t i = 0; i < n; i++)
        types[i] = i == 10 || i == 2 * LIST_SCAN_MAX + 10 ? "rare" : "common";
    char(*ids)[JOB_ID_MAX] = calloc(n, sizeof(*ids));
    job_spec_t *specs = calloc(n, sizeof(*specs));
    for (size_t done = 0; done < n; done += JOB_BATCH_MAX) {
        size_t k = n - done < JOB_BATCH_MAX ? n - done : JOB_BATCH_MAX;
        enqueue_result_t res[JOB_BATCH_MAX];
        for (size_t i = 0; i < k; i++)
            specs[i] = (job_spec_t){.queue = q, .type = types[done + i]};
        assert_int_equal(broker_enqueue(b, specs, k, res), 0);
        for (size_t i = 0; i < k; i++)
            strcpy(ids[done + i], res[i].id);
    }
    list_filter_t f = {.type = "rare"};
    job_list_t page;
    assert_int_equal(broker_list_filtered(b, q, JOB_STATE_WAITING, &f, NULL, 50, &page), 0);
    assert_int_equal(page.n, 1);
    assert_string_equal(page.jobs[0]->id, ids[10]);
    assert_non_null(page.next_cursor);
    char *cursor = strdup(page.next_cursor);
    job_list_cleanup(&page);
    assert_int_equal(broker_list_filtered(b, q, JOB_STATE_WAITING, &f, cursor, 50, &page), 0);
    assert_int_equal(page.n, 0); /* LIST_SCAN_MAX more examined, none kept */
    assert_non_null(page.next_cursor);
    free(cursor);
    cursor = strdup(page.next_cursor);
    job_list_cleanup(&page);
    assert_int_equal(broker_list_filtered(b, q, JOB_STATE_WAITING, &f, cursor, 50, &page), 0);
    assert_int_equal(page.n, 1);
    assert_string_equal(page.jobs[0]->id, ids[2 * LIST_SCAN_MAX + 10]);
    assert_null(page.next_cursor);
    job_list_cleanup(&page);
    free(cursor);

    /* Tombstones count too: a page past many canceled jobs is bounded as well. */
    for (size_t i = 0; i < LIST_SCAN_MAX + 5; i++)
        assert_int_equal(broker_cancel(b, ids[i], NULL), 0);
    assert_int_equal(broker_list(b, q, JOB_STATE_WAITING, NULL, 10, &page), 0);
    assert_int_equal(page.n, 0);
    assert_non_null(page.next_cursor);
    cursor = strdup(page.next_cursor);
    job_list_cleanup(&page);
    assert_int_equal(broker_list(b, q, JOB_STATE_WAITING, cursor, 10, &page), 0);
    assert_int_equal(page.n, 10);
    assert_string_equal(page.jobs[0]->id, ids[LIST_SCAN_MAX + 5]);
    job_list_cleanup(&page);
    free(cursor);
    free(specs);
    free(ids);
    free(types);
}

static void cursors_are_checked(void **state)
{
    (void)state;
    const char *q = test_queue_name("curs");
    enqueue_many(q, 3, (const char *[]){"t"}, 1, NULL);
    job_list_t page;
    /* Shaped like a cursor to the C side, but not one for this state. */
    const char *bad_waiting[] = {"0:ABC", "x:1", "0:", ":1", "0:1:2", "0:-1"};
    for (size_t i = 0; i < sizeof(bad_waiting) / sizeof(*bad_waiting); i++) {
        assert_int_equal(broker_list(b, q, JOB_STATE_WAITING, bad_waiting[i], 10, &page),
                         HP_EINVAL);
        assert_non_null(strstr(broker_errmsg(b), "cursor"));
    }
    const char *bad_set[] = {
        "-5:01ABC", "abc", "12:", "12:AB-C", "1.5:AB", "0:ABC", "0:01m888c5g74kzrd1b5rtze000b"};
    for (size_t i = 0; i < sizeof(bad_set) / sizeof(*bad_set); i++) {
        assert_int_equal(broker_list_filtered(b, q, JOB_STATE_DEAD, &(list_filter_t){.desc = true},
                                              bad_set[i], 10, &page),
                         HP_EINVAL);
        assert_non_null(strstr(broker_errmsg(b), "cursor"));
    }
    /* Filters are checked too. */
    char long_error[LIST_FILTER_ERROR_MAX + 2];
    memset(long_error, 'e', sizeof(long_error) - 1);
    long_error[sizeof(long_error) - 1] = '\0';
    assert_int_equal(broker_list_filtered(b, q, JOB_STATE_DEAD,
                                          &(list_filter_t){.error = long_error}, NULL, 10, &page),
                     HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "error"));
    assert_int_equal(broker_list_filtered(b, q, JOB_STATE_DEAD,
                                          &(list_filter_t){.type = "has space"}, NULL, 10, &page),
                     HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "type"));
    /* A well-formed cursor past the end is simply the end. */
    assert_int_equal(broker_list(b, q, JOB_STATE_WAITING, "0:999", 10, &page), 0);
    assert_int_equal(page.n, 0);
    assert_null(page.next_cursor);
    job_list_cleanup(&page);
}

/* ---- A million jobs ---- */

static void print_walk(const char *what, const walk_t *w)
{
    printf("    %-42s %7zu jobs %5zu pages, mean %5.1f ms, slowest %6.1f ms\n", what, w->n,
           w->pages, (double)w->total_us / 1000.0 / (double)w->pages,
           (double)w->slowest_us / 1000.0);
}

/* The slowest page of each walk is printed, not asserted: what it is depends on the
 * machine. What is asserted is that every job is found once and in order. */
static void a_million_jobs_page_in_bounded_steps(void **state)
{
    (void)state;
    enum { N = 1000000, RARE = 10 };
    const char *q = test_queue_name("million");
    queue_conf_t conf = {0};
    conf.keep_count[JOB_STATE_SUCCEEDED] = 2 * N;
    conf.keep_age_ms[JOB_STATE_SUCCEEDED] = 7LL * 86400 * 1000;
    assert_int_equal(broker_queue_configure(b, q, &conf), 0);
    int64_t t0 = hp_mono_ms();
    const char **types = malloc(N * sizeof(*types));
    for (size_t i = 0; i < N; i++)
        types[i] = i % (N / RARE) == N / RARE / 2 ? "rare" : "common";
    char(*ids)[JOB_ID_MAX] = malloc((size_t)N * sizeof(*ids));
    job_spec_t *specs = calloc(JOB_BATCH_MAX, sizeof(*specs));
    enqueue_result_t *res = calloc(JOB_BATCH_MAX, sizeof(*res));
    for (size_t done = 0; done < N; done += JOB_BATCH_MAX) {
        for (size_t i = 0; i < JOB_BATCH_MAX; i++)
            specs[i] = (job_spec_t){.queue = q, .type = types[done + i], .payload = "{}"};
        if (broker_enqueue(b, specs, JOB_BATCH_MAX, res))
            fail_msg("enqueue: %s", broker_errmsg(b));
        for (size_t i = 0; i < JOB_BATCH_MAX; i++)
            strcpy(ids[done + i], res[i].id);
    }
    free(specs);
    free(res);
    printf("    enqueued %d jobs in %.1f s\n", N, (double)(hp_mono_ms() - t0) / 1000.0);
    assert_int_equal(stats_of(q).counts[JOB_STATE_WAITING], N);

    static char seen[RARE][JOB_ID_MAX];
    walk_t w = walker(seen, RARE);
    walk(q, JOB_STATE_WAITING, &(list_filter_t){.type = "rare"}, 50, &w);
    print_walk("waiting, type=rare (asc)", &w);
    assert_int_equal(w.n, RARE);
    for (size_t i = 0; i < RARE; i++)
        assert_string_equal(seen[i], ids[i * (N / RARE) + N / RARE / 2]);
    assert_true(w.pages >= N / LIST_SCAN_MAX);
    walk(q, JOB_STATE_WAITING, &(list_filter_t){.type = "rare", .desc = true}, 50, &w);
    print_walk("waiting, type=rare, desc", &w);
    assert_int_equal(w.n, RARE);
    assert_string_equal(seen[0], ids[(RARE - 1) * (N / RARE) + N / RARE / 2]);

    /* Unfiltered: the first and a deep page, both directions, are one step each. */
    walk_t all = walker(NULL, 0);
    walk(q, JOB_STATE_WAITING, NULL, 1000, &all);
    print_walk("waiting, no filter, limit 1000 (asc)", &all);
    assert_int_equal(all.n, N);
    assert_int_equal(all.pages, N / 1000);

    /* Every job through reserve and ack, in batches. */
    t0 = hp_mono_ms();
    job_ack_t *acks = calloc(JOB_BATCH_MAX, sizeof(*acks));
    for (;;) {
        job_list_t got;
        if (broker_reserve(b, q, JOB_BATCH_MAX, 600000, "w", &got))
            fail_msg("reserve: %s", broker_errmsg(b));
        if (got.n == 0) {
            job_list_cleanup(&got);
            break;
        }
        for (size_t i = 0; i < got.n; i++)
            acks[i] = (job_ack_t){.id = got.jobs[i]->id, .token = got.jobs[i]->lease_token};
        if (broker_ack_batch(b, acks, got.n))
            fail_msg("ack: %s", broker_errmsg(b));
        job_list_cleanup(&got);
    }
    free(acks);
    printf("    reserved and acked %d jobs in %.1f s\n", N, (double)(hp_mono_ms() - t0) / 1000.0);
    assert_int_equal(stats_of(q).counts[JOB_STATE_SUCCEEDED], N);

    walk(q, JOB_STATE_SUCCEEDED, &(list_filter_t){.type = "rare"}, 50, &w);
    print_walk("succeeded, type=rare (newest first)", &w);
    assert_int_equal(w.n, RARE);
    assert_string_equal(seen[0], ids[(RARE - 1) * (N / RARE) + N / RARE / 2]);
    walk(q, JOB_STATE_SUCCEEDED, &(list_filter_t){.type = "rare", .desc = true}, 50, &w);
    print_walk("succeeded, type=rare, desc (oldest first)", &w);
    assert_int_equal(w.n, RARE);
    assert_string_equal(seen[0], ids[N / RARE / 2]);
    walk(q, JOB_STATE_SUCCEEDED, &(list_filter_t){.error = "timeout"}, 50, &w);
    print_walk("succeeded, error=timeout (none has one)", &w);
    assert_int_equal(w.n, 0);
    walk(q, JOB_STATE_SUCCEEDED, NULL, 1000, &all);
    print_walk("succeeded, no filter, limit 1000", &all);
    assert_int_equal(all.n, N);

    int64_t removed = 0;
    assert_int_equal(broker_purge(b, q, JOB_STATE_SUCCEEDED, &removed), 0);
    assert_int_equal(removed, N);
    free(ids);
    free(types);
}

/* ---- Bulk ---- */

static void bulk_retry_and_delete_by_filter(void **state)
{
    (void)state;
    const char *q = test_queue_name("bulk");
    /* More dead jobs than one step examines: 1250 of type a, 1250 of type b. */
    enum { N = 2 * BULK_SCAN_MAX + 500 };
    job_spec_t *specs = calloc(JOB_BATCH_MAX, sizeof(*specs));
    enqueue_result_t *res = calloc(JOB_BATCH_MAX, sizeof(*res));
    for (size_t done = 0; done < N; done += JOB_BATCH_MAX) {
        size_t k = N - done < JOB_BATCH_MAX ? N - done : JOB_BATCH_MAX;
        for (size_t i = 0; i < k; i++)
            specs[i] =
                (job_spec_t){.queue = q, .type = (done + i) % 2 ? "b" : "a", .max_attempts = 1};
        assert_int_equal(broker_enqueue(b, specs, k, res), 0);
    }
    free(specs);
    free(res);
    size_t failed = 0;
    while (failed < N) {
        size_t k =
            reserve_and_fail(q, 500, "w", failed % 1000 < 500 ? "SMTP timeout" : "refused", true);
        assert_true(k > 0);
        failed += k;
    }
    assert_int_equal(stats_of(q).counts[JOB_STATE_DEAD], N);

    /* Jobs are reserved in the order they were enqueued: job j is of type a when j
     * is even, and failed with "SMTP timeout" when j % 1000 < 500. */
    int64_t a_smtp = 0;
    for (int j = 0; j < N; j++)
        a_smtp += j % 2 == 0 && j % 1000 < 500;
    int64_t matched = -1, done = -1;
    assert_int_equal(broker_bulk(b, q, JOB_STATE_DEAD, BULK_RETRY,
                                 &(list_filter_t){.type = "a", .error = "smtp"}, &matched, &done),
                     0);
    assert_int_equal(matched, a_smtp);
    assert_int_equal(done, a_smtp);
    queue_stats_t s = stats_of(q);
    assert_int_equal(s.counts[JOB_STATE_WAITING], a_smtp);
    assert_int_equal(s.counts[JOB_STATE_DEAD], N - a_smtp);
    walk_t w = walker(NULL, 0);
    walk(q, JOB_STATE_WAITING, &(list_filter_t){.type = "b"}, 1000, &w);
    assert_int_equal(w.n, 0);
    walk(q, JOB_STATE_DEAD, &(list_filter_t){.type = "a", .error = "smtp"}, 1000, &w);
    assert_int_equal(w.n, 0);

    assert_int_equal(broker_bulk(b, q, JOB_STATE_DEAD, BULK_DELETE, &(list_filter_t){.type = "b"},
                                 &matched, &done),
                     0);
    assert_int_equal(matched, N / 2);
    assert_int_equal(done, N / 2);
    assert_int_equal(stats_of(q).counts[JOB_STATE_DEAD], N / 2 - a_smtp);
    walk(q, JOB_STATE_DEAD, NULL, 1000, &w);
    assert_int_equal(w.n, N / 2 - a_smtp);

    /* Waiting jobs can be deleted in bulk (their ids stay behind as tombstones). */
    assert_int_equal(broker_bulk(b, q, JOB_STATE_WAITING, BULK_DELETE, NULL, &matched, &done), 0);
    assert_int_equal(matched, a_smtp);
    assert_int_equal(stats_of(q).counts[JOB_STATE_WAITING], 0);
    job_list_t none;
    assert_int_equal(broker_reserve(b, q, 10, 30000, "w", &none), 0);
    assert_int_equal(none.n, 0);
    job_list_cleanup(&none);

    /* What a bulk action refuses. */
    assert_int_equal(broker_bulk(b, q, JOB_STATE_WAITING, BULK_RETRY, NULL, NULL, NULL), HP_ESTATE);
    assert_non_null(strstr(broker_errmsg(b), "state"));
    assert_int_equal(broker_bulk(b, q, JOB_STATE_ACTIVE, BULK_DELETE, NULL, NULL, NULL), HP_ESTATE);
    assert_int_equal(broker_bulk(b, q, JOB_STATE_DEAD, (bulk_action_t)7, NULL, NULL, NULL),
                     HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "action"));
    assert_int_equal(
        broker_bulk(b, q, JOB_STATE_DEAD, BULK_DELETE, &(list_filter_t){.worker = "w"}, NULL, NULL),
        HP_EINVAL);
    /* Nothing to do is done at once. */
    assert_int_equal(broker_bulk(b, test_queue_name("bulk-empty"), JOB_STATE_DEAD, BULK_DELETE,
                                 NULL, &matched, &done),
                     0);
    assert_int_equal(matched, 0);
    assert_int_equal(done, 0);
}

/* ---- Retry with an edited payload ---- */

static void retry_replaces_the_payload_byte_for_byte(void **state)
{
    (void)state;
    const char *q = test_queue_name("edit");
    char id[JOB_ID_MAX];
    enqueue_ok(
        &(job_spec_t){.queue = q, .type = "t", .payload = "{\"to\":\"old\"}", .max_attempts = 1},
        id);
    reserve_and_fail(q, 1, "w", "bad address", true);
    const char *edited = "{ \"to\" : \"new\", \"amount\": 0.10, \"big\": "
                         "123456789012345678901234567890 }";
    assert_int_equal(broker_retry_with_payload(b, id, edited, 0), 0);
    job_t *job = NULL;
    assert_int_equal(broker_get(b, id, &job), 0);
    assert_int_equal(job->state, JOB_STATE_WAITING);
    assert_int_equal(job->payload_len, strlen(edited));
    assert_memory_equal(job->payload, edited, strlen(edited));
    assert_int_equal(job->nerrors, 1); /* the history stays */
    assert_string_equal(job->errors[0].message, "bad address");
    job_free(job);

    /* Refused: not retryable now, not JSON, too big; nothing changes. */
    assert_int_equal(broker_retry_with_payload(b, id, "[1]", 0), HP_ESTATE);
    assert_int_equal(broker_retry_with_payload(b, id, "{nope", 0), HP_EINVAL);
    assert_non_null(strstr(broker_errmsg(b), "payload"));
    assert_int_equal(broker_retry_with_payload(b, id, NULL, 0), HP_EINVAL);
    broker_t *small = test_redis_broker(&server, 64);
    char big[200];
    snprintf(big, sizeof(big), "\"%0150d\"", 0);
    assert_int_equal(broker_retry_with_payload(small, id, big, 0), HP_ETOOBIG);
    broker_close(small);
    assert_int_equal(broker_get(b, id, &job), 0);
    assert_memory_equal(job->payload, edited, strlen(edited));
    job_free(job);

    /* The payload may be any JSON value, and the plain retry keeps it. */
    job_list_t got;
    assert_int_equal(broker_reserve(b, q, 1, 30000, "w", &got), 0);
    assert_int_equal(
        broker_fail(b, got.jobs[0]->id, got.jobs[0]->lease_token, "x", true, NULL, NULL), 0);
    job_list_cleanup(&got);
    assert_int_equal(broker_retry_with_payload(b, id, "null", 4), 0);
    assert_int_equal(broker_cancel(b, id, NULL), 0);
    assert_int_equal(broker_retry(b, id), 0);
    assert_int_equal(broker_get(b, id, &job), 0);
    assert_int_equal(job->payload_len, 4);
    assert_memory_equal(job->payload, "null", 4);
    job_free(job);
}

/* ---- Oldest waiting ---- */

/* The creation time in a job id's ULID. */
static int64_t id_time(const char *id)
{
    char ulid[HP_ULID_LEN + 1], queue[JOB_QUEUE_NAME_MAX + 1];
    assert_true(job_id_parse(id, ulid, queue));
    return hp_ulid_time_ms(ulid);
}

static void oldest_waiting_comes_from_the_list_heads(void **state)
{
    (void)state;
    const char *q = test_queue_name("oldest");
    assert_int_equal(stats_of(q).oldest_waiting_ms, 0);
    char a[JOB_ID_MAX], bj[JOB_ID_MAX], c[JOB_ID_MAX], d[JOB_ID_MAX];
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t"}, a);
    assert_int_equal(stats_of(q).oldest_waiting_ms, id_time(a));
    hp_sleep_ms(3); /* so the two ids' times differ */
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .priority = 5}, bj);
    assert_true(id_time(bj) > id_time(a));
    assert_int_equal(stats_of(q).oldest_waiting_ms, id_time(a)); /* across levels */
    /* A canceled job's id stays at the head of its list: it is looked past. */
    assert_int_equal(broker_cancel(b, a, NULL), 0);
    assert_int_equal(stats_of(q).oldest_waiting_ms, id_time(bj));
    job_list_t got;
    assert_int_equal(broker_reserve(b, q, 1, 30000, "w", &got), 0);
    assert_string_equal(got.jobs[0]->id, bj);
    job_list_cleanup(&got);
    assert_int_equal(stats_of(q).oldest_waiting_ms, 0); /* only a's tombstone is left */

    /* A job that becomes waiting later waits since then, not since it was made:
     * c comes due after 50 ms; d fails and is retried. */
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .delay_ms = 50}, c);
    enqueue_ok(&(job_spec_t){.queue = q, .type = "t", .priority = -7, .max_attempts = 1}, d);
    assert_int_equal(stats_of(q).oldest_waiting_ms, id_time(d));
    assert_int_equal(reserve_and_fail(q, 1, "w", "x", true), 1);
    assert_int_equal(stats_of(q).oldest_waiting_ms, 0);
    hp_sleep_ms(80);
    assert_int_equal(broker_maintain(b, q, NULL), 0);
    int64_t since = stats_of(q).oldest_waiting_ms;
    assert_true(since >= id_time(c) + 50);
    assert_int_equal(broker_retry(b, d), 0);
    assert_int_equal(stats_of(q).oldest_waiting_ms, since); /* c waits longer than d */
    assert_int_equal(broker_reserve(b, q, 1, 30000, "w", &got), 0);
    assert_string_equal(got.jobs[0]->id, c);
    job_list_cleanup(&got);
    int64_t retried = stats_of(q).oldest_waiting_ms;
    assert_true(retried >= since);
    assert_true(retried >= id_time(d) + 80);
}

/* ---- Throughput ---- */

static int64_t sum(const int64_t *v, size_t n)
{
    int64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return s;
}

static void throughput_counts_finished_attempts(void **state)
{
    (void)state;
    const char *q = test_queue_name("tp");
    throughput_t *t = malloc(sizeof(*t));
    assert_int_equal(broker_throughput(b, q, t), 0);
    assert_int_equal(sum(t->processed_per_second, THROUGHPUT_SECONDS), 0);

    enqueue_many(q, 8, (const char *[]){"t"}, 1, NULL);
    job_list_t got;
    assert_int_equal(broker_reserve(b, q, 5, 30000, "w", &got), 0);
    job_ack_t acks[3];
    for (size_t i = 0; i < 3; i++)
        acks[i] = (job_ack_t){.id = got.jobs[i]->id, .token = got.jobs[i]->lease_token};
    assert_int_equal(broker_ack_batch(b, acks, 3), 0); /* 3 succeeded in one call */
    assert_int_equal(
        broker_fail(b, got.jobs[3]->id, got.jobs[3]->lease_token, "x", false, NULL, NULL), 0);
    assert_int_equal(
        broker_fail(b, got.jobs[4]->id, got.jobs[4]->lease_token, "x", true, NULL, NULL), 0);
    job_list_cleanup(&got);
    /* A lease that runs out is a failed attempt too. */
    assert_int_equal(broker_reserve(b, q, 1, 1, "w", &got), 0);
    job_list_cleanup(&got);
    hp_sleep_ms(20);
    assert_int_equal(broker_maintain(b, q, NULL), 0);

    assert_int_equal(broker_throughput(b, q, t), 0);
    assert_int_equal(sum(t->processed_per_second, THROUGHPUT_SECONDS), 6);
    assert_int_equal(sum(t->failed_per_second, THROUGHPUT_SECONDS), 3);
    assert_int_equal(sum(t->processed_per_minute, THROUGHPUT_MINUTES), 6);
    assert_int_equal(sum(t->failed_per_minute, THROUGHPUT_MINUTES), 3);
    /* The window ends now, and each second sits in its minute. */
    int64_t now_s = t->now_ms / 1000;
    assert_int_equal(t->second_start, now_s - THROUGHPUT_SECONDS + 1);
    assert_int_equal(t->minute_start % 60, 0);
    assert_int_equal(t->minute_start, (now_s / 60 - THROUGHPUT_MINUTES + 1) * 60);
    for (size_t i = 0; i < THROUGHPUT_SECONDS; i++) {
        if (!t->processed_per_second[i])
            continue;
        int64_t sec = t->second_start + (int64_t)i;
        int64_t m = (sec - t->minute_start) / 60;
        assert_true(m >= 0 && m < THROUGHPUT_MINUTES);
        assert_true(t->processed_per_minute[m] >= t->processed_per_second[i]);
    }
    /* The minute's hash expires by itself, within two hours. */
    char key[160];
    snprintf(key, sizeof(key), "hopper:{%s}:tp:%lld", q, (long long)(now_s / 60));
    long long ttl = test_redis_int(&server, "TTL %s", key);
    if (ttl == -2) { /* the minute turned since the last ack: the previous one */
        snprintf(key, sizeof(key), "hopper:{%s}:tp:%lld", q, (long long)(now_s / 60 - 1));
        ttl = test_redis_int(&server, "TTL %s", key);
    }
    assert_true(ttl > 0 && ttl <= 7200);

    /* Every queue: at least this one's. */
    assert_int_equal(broker_throughput(b, NULL, t), 0);
    assert_true(sum(t->processed_per_second, THROUGHPUT_SECONDS) >= 6);
    assert_true(sum(t->failed_per_minute, THROUGHPUT_MINUTES) >= 3);
    free(t);
}

/* ---- Health ---- */

static void info_reads_the_server(void **state)
{
    (void)state;
    broker_info_t info;
    assert_int_equal(broker_info(b, &info), 0);
    assert_string_equal(info.backend, "redis");
    assert_non_null(strchr(info.version, '.'));
    assert_true(info.uptime_s >= 0);
    assert_true(info.used_memory > 0);
    assert_int_equal(info.maxmemory, 0);
    assert_string_equal(info.maxmemory_policy, "noeviction");
    assert_true(info.connected_clients >= 1);

    assert_int_equal(test_redis_int(&server, "CONFIG SET maxmemory-policy allkeys-lru"), -1);
    assert_int_equal(test_redis_int(&server, "CONFIG SET maxmemory 1gb"), -1);
    assert_int_equal(broker_info(b, &info), 0);
    assert_string_equal(info.maxmemory_policy, "allkeys-lru");
    assert_int_equal(info.maxmemory, 1024LL * 1024 * 1024);
    test_redis_int(&server, "CONFIG SET maxmemory-policy noeviction");
    test_redis_int(&server, "CONFIG SET maxmemory 0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(waiting_desc_is_reserve_order_reversed),
        cmocka_unit_test(sets_desc_reverse_their_natural_order),
        cmocka_unit_test(equal_scores_page_exactly),
        cmocka_unit_test(type_filter_is_exact),
        cmocka_unit_test(error_filter_ignores_case),
        cmocka_unit_test(worker_filter_takes_active_jobs),
        cmocka_unit_test(filtered_pages_are_bounded),
        cmocka_unit_test(cursors_are_checked),
        cmocka_unit_test(bulk_retry_and_delete_by_filter),
        cmocka_unit_test(retry_replaces_the_payload_byte_for_byte),
        cmocka_unit_test(oldest_waiting_comes_from_the_list_heads),
        cmocka_unit_test(throughput_counts_finished_attempts),
        cmocka_unit_test(info_reads_the_server),
        cmocka_unit_test(a_million_jobs_page_in_bounded_steps),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
