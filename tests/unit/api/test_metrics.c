/* Unit tests for api/metrics.c: exact output, buckets, escaping, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "api/metrics.h"

static char *render(metrics_t *m)
{
    hp_strbuf_t out;
    hp_strbuf_init(&out, 0);
    assert_int_equal(metrics_render(m, &out), 0);
    return hp_strbuf_steal(&out, NULL);
}

static void small_registry_renders_exactly(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    metric_t *req = metrics_counter(m, "hopper_http_requests_total", "HTTP requests served.",
                                    "route", "status");
    metric_t *up = metrics_counter(m, "hopper_starts_total", "Start-ups.", NULL, NULL);
    metric_t *empty = metrics_counter(m, "hopper_empty_total", "Never counted.", "x", NULL);
    const double b[] = {0.25, 0.5, 1};
    metric_t *lat = metrics_histogram(m, "hopper_http_request_seconds", "Request latency.", b, 3,
                                      "route", NULL);
    assert_non_null(req);
    assert_non_null(up);
    assert_non_null(empty);
    assert_non_null(lat);
    metric_inc(req, "/jobs", "200");
    metric_inc(req, "/jobs", "200");
    metric_add(req, "/blobs", "413", 5);
    metric_inc(up, "ignored", "ignored");
    metric_observe(lat, "/jobs", NULL, 0.25);
    metric_observe(lat, "/jobs", NULL, 0.375);
    metric_observe(lat, "/jobs", NULL, 2);
    metric_observe(lat, "/blobs", "ignored", 0.125);

    char *text = render(m);
    assert_string_equal(text, "# HELP hopper_http_requests_total HTTP requests served.\n"
                              "# TYPE hopper_http_requests_total counter\n"
                              "hopper_http_requests_total{route=\"/blobs\",status=\"413\"} 5\n"
                              "hopper_http_requests_total{route=\"/jobs\",status=\"200\"} 2\n"
                              "# HELP hopper_starts_total Start-ups.\n"
                              "# TYPE hopper_starts_total counter\n"
                              "hopper_starts_total 1\n"
                              "# HELP hopper_empty_total Never counted.\n"
                              "# TYPE hopper_empty_total counter\n"
                              "# HELP hopper_http_request_seconds Request latency.\n"
                              "# TYPE hopper_http_request_seconds histogram\n"
                              "hopper_http_request_seconds_bucket{route=\"/blobs\",le=\"0.25\"} 1\n"
                              "hopper_http_request_seconds_bucket{route=\"/blobs\",le=\"0.5\"} 1\n"
                              "hopper_http_request_seconds_bucket{route=\"/blobs\",le=\"1\"} 1\n"
                              "hopper_http_request_seconds_bucket{route=\"/blobs\",le=\"+Inf\"} 1\n"
                              "hopper_http_request_seconds_sum{route=\"/blobs\"} 0.125\n"
                              "hopper_http_request_seconds_count{route=\"/blobs\"} 1\n"
                              "hopper_http_request_seconds_bucket{route=\"/jobs\",le=\"0.25\"} 1\n"
                              "hopper_http_request_seconds_bucket{route=\"/jobs\",le=\"0.5\"} 2\n"
                              "hopper_http_request_seconds_bucket{route=\"/jobs\",le=\"1\"} 2\n"
                              "hopper_http_request_seconds_bucket{route=\"/jobs\",le=\"+Inf\"} 3\n"
                              "hopper_http_request_seconds_sum{route=\"/jobs\"} 2.625\n"
                              "hopper_http_request_seconds_count{route=\"/jobs\"} 3\n");
    hp_free(text);
    metrics_free(m);
}

static void bucket_boundaries(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    const double b[] = {0.005, 0.1, 1, 10};
    metric_t *h = metrics_histogram(m, "h", NULL, b, 4, NULL, NULL);
    metric_series_t *s = metric_series(h, NULL, NULL);
    for (size_t i = 0; i < 4; i++) {
        metric_series_observe(s, b[i]);                   /* on the bound: that bucket */
        metric_series_observe(s, nextafter(b[i], 1e300)); /* just above: the next one */
    }
    metric_series_observe(s, -5);
    char *text = render(m);
    assert_non_null(strstr(text, "h_bucket{le=\"0.005\"} 2\n"));
    assert_non_null(strstr(text, "h_bucket{le=\"0.1\"} 4\n"));
    assert_non_null(strstr(text, "h_bucket{le=\"1\"} 6\n"));
    assert_non_null(strstr(text, "h_bucket{le=\"10\"} 8\n"));
    assert_non_null(strstr(text, "h_bucket{le=\"+Inf\"} 9\n"));
    assert_non_null(strstr(text, "h_count 9\n"));
    assert_null(strstr(text, "# HELP"));
    hp_free(text);
    metrics_free(m);
}

static void escaping(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    metric_t *c = metrics_counter(m, "esc_total", "Back\\slash and\nnewline \"kept\".", "v", NULL);
    metric_inc(c, "a\\b\"c\nd", NULL);
    char *text = render(m);
    assert_string_equal(text, "# HELP esc_total Back\\\\slash and\\nnewline \"kept\".\n"
                              "# TYPE esc_total counter\n"
                              "esc_total{v=\"a\\\\b\\\"c\\nd\"} 1\n");
    hp_free(text);
    metrics_free(m);
}

static void scrape_time_samples(void **state)
{
    (void)state;
    hp_strbuf_t out;
    hp_strbuf_init(&out, 0);
    assert_int_equal(metrics_write_header(&out, "hopper_jobs", "gauge", "Jobs by state."), 0);
    metrics_label_t l[] = {{"queue", "de\"fault"}, {"state", "waiting"}};
    assert_int_equal(metrics_write_sample(&out, "hopper_jobs", l, 2, 42), 0);
    assert_int_equal(metrics_write_sample(&out, "hopper_up", NULL, 0, 0.1), 0);
    assert_int_equal(metrics_write_sample(&out, "x", NULL, 0, INFINITY), 0);
    assert_int_equal(metrics_write_sample(&out, "y", NULL, 0, NAN), 0);
    assert_int_equal(metrics_write_sample(&out, "z", NULL, 0, 1.0 / 3), 0);
    assert_string_equal(out.data, "# HELP hopper_jobs Jobs by state.\n"
                                  "# TYPE hopper_jobs gauge\n"
                                  "hopper_jobs{queue=\"de\\\"fault\",state=\"waiting\"} 42\n"
                                  "hopper_up 0.1\n"
                                  "x +Inf\n"
                                  "y NaN\n"
                                  "z 0.33333333333333331\n");
    hp_strbuf_cleanup(&out);

    hp_strbuf_init(&out, 16); /* a cap that the output passes */
    assert_int_equal(metrics_write_sample(&out, "a_long_metric_name", NULL, 0, 1), HP_ETOOBIG);
    hp_strbuf_cleanup(&out);
}

static void bad_registrations(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    const double b[] = {1, 2};
    const double unsorted[] = {2, 1};
    const double inf[] = {1, INFINITY};
    assert_non_null(metrics_counter(m, "ok:total", "", "a", "b"));
    assert_null(metrics_counter(m, "ok:total", "", NULL, NULL)); /* taken */
    assert_null(metrics_counter(m, "9bad", "", NULL, NULL));
    assert_null(metrics_counter(m, "bad-name", "", NULL, NULL));
    assert_null(metrics_counter(m, "c1", "", "__reserved", NULL));
    assert_null(metrics_counter(m, "c2", "", "a:b", NULL));
    assert_null(metrics_counter(m, "c3", "", NULL, "b"));
    assert_null(metrics_counter(m, "c4", "", "a", "a"));
    assert_null(metrics_histogram(m, "h1", "", b, 2, "le", NULL));
    assert_null(metrics_histogram(m, "h2", "", unsorted, 2, NULL, NULL));
    assert_null(metrics_histogram(m, "h3", "", inf, 2, NULL, NULL));
    assert_null(metrics_histogram(m, "h4", "", b, 0, NULL, NULL));
    assert_non_null(metrics_histogram(m, "h5", "", b, 2, "le_not", NULL));
    metrics_free(m);
    metrics_free(NULL);
}

static void series_are_capped(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    metric_t *c = metrics_counter(m, "capped_total", "", "v", NULL);
    char v[32];
    for (int i = 0; i < METRICS_MAX_SERIES; i++) {
        snprintf(v, sizeof(v), "%d", i);
        assert_non_null(metric_series(c, v, NULL));
    }
    assert_null(metric_series(c, "one too many", NULL));
    metric_inc(c, "one too many", NULL); /* dropped, not a crash */
    assert_non_null(metric_series(c, "7", NULL));
    char longv[METRICS_LABEL_VALUE_MAX + 2];
    memset(longv, 'x', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    assert_null(metric_series(metrics_counter(m, "long_total", "", "v", NULL), longv, NULL));
    metrics_free(m);
}

/* ---- Threads ---- */

#define THREADS    4
#define INCREMENTS 100000

typedef struct ctx_s {
    metric_t *counter, *hist;
    int n;
} ctx_t;

static void *counting_thread(void *p)
{
    ctx_t *c = p;
    char own[16];
    snprintf(own, sizeof(own), "t%d", c->n);
    metric_series_t *h = metric_series(c->hist, "GET /jobs", NULL);
    for (int i = 0; i < INCREMENTS; i++) {
        metric_inc(c->counter, "GET /jobs", "200"); /* shared, looked up every time */
        metric_inc(c->counter, own, "200");         /* created here, on first use */
        metric_series_observe(h, (double)(i % 4));
    }
    return NULL;
}

static void four_threads_count_exactly(void **state)
{
    (void)state;
    metrics_t *m = metrics_new();
    const double b[] = {0, 1, 2};
    ctx_t ctx[THREADS];
    pthread_t th[THREADS];
    metric_t *counter = metrics_counter(m, "req_total", "", "route", "status");
    metric_t *hist = metrics_histogram(m, "val", "", b, 3, "route", NULL);
    for (int t = 0; t < THREADS; t++) {
        ctx[t] = (ctx_t){counter, hist, t};
        assert_int_equal(pthread_create(&th[t], NULL, counting_thread, &ctx[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    char *text = render(m);
    char want[128];
    snprintf(want, sizeof(want), "req_total{route=\"GET /jobs\",status=\"200\"} %d\n",
             THREADS * INCREMENTS);
    assert_non_null(strstr(text, want));
    for (int t = 0; t < THREADS; t++) {
        snprintf(want, sizeof(want), "req_total{route=\"t%d\",status=\"200\"} %d\n", t, INCREMENTS);
        assert_non_null(strstr(text, want));
    }
    snprintf(want, sizeof(want), "val_count{route=\"GET /jobs\"} %d\n", THREADS * INCREMENTS);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof(want), "val_bucket{route=\"GET /jobs\",le=\"0\"} %d\n",
             THREADS * INCREMENTS / 4);
    assert_non_null(strstr(text, want));
    /* 0+1+2+3 per four observations, summed exactly in a double. */
    snprintf(want, sizeof(want), "val_sum{route=\"GET /jobs\"} %d\n", THREADS * INCREMENTS / 4 * 6);
    assert_non_null(strstr(text, want));
    hp_free(text);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_registry_renders_exactly),
        cmocka_unit_test(bucket_boundaries),
        cmocka_unit_test(escaping),
        cmocka_unit_test(scrape_time_samples),
        cmocka_unit_test(bad_registrations),
        cmocka_unit_test(series_are_capped),
        cmocka_unit_test(four_threads_count_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
