/*
 * Many workers on one queue: eight threads, each with its own connection, reserve
 * and ack from a queue of 10,000 jobs. Every job must be handed out exactly once.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/broker.h"
#include "tests/support/test_redis.h"

#define NJOBS    10000
#define NTHREADS 8

static test_redis_t server;
static char ids[NJOBS][JOB_ID_MAX]; /* sorted after enqueue, for bsearch */
static int seen[NJOBS];             /* how many times each was reserved */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;

static int compare_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

typedef struct worker_s {
    const char *queue;
    int reserved;
    int errors;
    char errmsg[256];
} worker_t;

static void *work(void *arg)
{
    worker_t *w = arg;
    broker_t *b;
    broker_config_t cfg = {.url = server.url};
    if (broker_open(&cfg, &b, NULL)) {
        w->errors++;
        return NULL;
    }
    for (;;) {
        job_list_t list;
        if (broker_reserve(b, w->queue, 50, 60000, "concurrency", &list)) {
            snprintf(w->errmsg, sizeof(w->errmsg), "reserve: %s", broker_errmsg(b));
            w->errors++;
            break;
        }
        if (list.n == 0) {
            job_list_cleanup(&list);
            break;
        }
        for (size_t i = 0; i < list.n; i++) {
            const job_t *job = list.jobs[i];
            char *hit = bsearch(job->id, ids, NJOBS, JOB_ID_MAX, compare_ids);
            pthread_mutex_lock(&seen_lock);
            if (hit)
                seen[(hit - ids[0]) / JOB_ID_MAX]++;
            pthread_mutex_unlock(&seen_lock);
            if (broker_ack(b, job->id, job->lease_token, NULL, 0)) {
                snprintf(w->errmsg, sizeof(w->errmsg), "ack: %s", broker_errmsg(b));
                w->errors++;
            }
            w->reserved++;
        }
        job_list_cleanup(&list);
    }
    broker_close(b);
    return NULL;
}

static void eight_threads_get_every_job_exactly_once(void **state)
{
    (void)state;
    assert_int_equal(test_redis_start(&server, NULL), 0);
    broker_t *b;
    broker_config_t cfg = {.url = server.url};
    assert_int_equal(broker_open(&cfg, &b, NULL), 0);
    const char *q = test_queue_name("many");
    queue_conf_t conf = {0};
    conf.keep_count[JOB_STATE_SUCCEEDED] = NJOBS; /* keep them all for the count */
    assert_int_equal(broker_queue_configure(b, q, &conf), 0);
    job_spec_t *specs = hp_calloc(JOB_BATCH_MAX, sizeof(*specs));
    enqueue_result_t *res = hp_calloc(JOB_BATCH_MAX, sizeof(*res));
    for (int i = 0; i < JOB_BATCH_MAX; i++)
        specs[i] = (job_spec_t){.queue = q, .type = "t", .payload = "{\"n\":1}"};
    for (int batch = 0; batch < NJOBS / JOB_BATCH_MAX; batch++) {
        assert_int_equal(broker_enqueue(b, specs, JOB_BATCH_MAX, res), 0);
        for (int i = 0; i < JOB_BATCH_MAX; i++)
            strcpy(ids[batch * JOB_BATCH_MAX + i], res[i].id);
    }
    qsort(ids, NJOBS, JOB_ID_MAX, compare_ids);
    for (int i = 1; i < NJOBS; i++)
        assert_true(strcmp(ids[i - 1], ids[i]) < 0); /* ids are unique */

    pthread_t threads[NTHREADS];
    worker_t workers[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        workers[t] = (worker_t){.queue = q};
        pthread_create(&threads[t], NULL, work, &workers[t]);
    }
    int total = 0, busy = 0;
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(threads[t], NULL);
        if (workers[t].errors)
            fail_msg("worker %d: %d errors, last: %s", t, workers[t].errors, workers[t].errmsg);
        total += workers[t].reserved;
        busy += workers[t].reserved > 0;
    }
    assert_int_equal(total, NJOBS);
    assert_true(busy > 1); /* the threads really shared the queue */
    for (int i = 0; i < NJOBS; i++) {
        if (seen[i] != 1)
            fail_msg("job %s reserved %d times", ids[i], seen[i]);
    }
    queue_stats_t s;
    assert_int_equal(broker_queue_stats(b, q, &s), 0);
    assert_int_equal(s.counts[JOB_STATE_SUCCEEDED], NJOBS);
    assert_int_equal(s.counts[JOB_STATE_WAITING], 0);
    assert_int_equal(s.counts[JOB_STATE_ACTIVE], 0);
    hp_free(specs);
    hp_free(res);
    broker_close(b);
    test_redis_stop(&server);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(eight_threads_get_every_job_exactly_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
