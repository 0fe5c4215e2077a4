/*
 * api/metrics.h -- Prometheus counters and histograms for a multi-threaded server,
 * rendered in the text exposition format 0.0.4.
 *
 * Metric families are registered at start-up, each with up to two label names
 * (e.g. route and status). A family's series -- one per set of label values -- is
 * created on first use under the family's mutex; after that, finding it is a
 * lock-free probe of a table whose slots are published with release stores, and
 * counting is a relaxed atomic add. Callers on a hot path can also look a series
 * up once and keep the handle, which stays valid until metrics_free.
 *
 * Label values should come from a small set (routes from the route table, status
 * codes): a family holds at most METRICS_MAX_SERIES series and drops counts for
 * new label sets past that, with one warning in the log, so input can never make
 * it grow without bound.
 *
 * Values the server reads only at scrape time (jobs by queue and state, from the
 * broker) are not registered: the scrape handler appends them after
 * metrics_render with metrics_write_header and metrics_write_sample.
 *
 * This module owns the registry and the format; it does not serve HTTP.
 */
#ifndef HP_API_METRICS_H
#define HP_API_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define METRICS_CONTENT_TYPE    "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_MAX_SERIES      1024 /* per family */
#define METRICS_MAX_BUCKETS     32   /* per histogram, +Inf not counted */
#define METRICS_LABEL_VALUE_MAX 256  /* bytes; longer values are dropped */

typedef struct metrics_s metrics_t;
typedef struct metric_s metric_t;               /* a family: name, help, labels */
typedef struct metric_series_s metric_series_t; /* one set of label values */

/* ---- Registry ---- */

/* A new, empty registry; the caller frees it with metrics_free. */
metrics_t *metrics_new(void);

/* Frees the registry, its families and their series; metrics_free(NULL) is a no-op.
 * No other thread may be using it. */
void metrics_free(metrics_t *m);

/* Registers a counter family. `label1` and `label2` are label names, NULL when
 * unused (label2 only with label1); `help` NULL means no HELP line. A family
 * without labels has its one series from the start, so it renders as 0 before
 * its first count. Returns the family, owned by the registry, or NULL when a name
 * is malformed or taken. */
metric_t *metrics_counter(metrics_t *m, const char *name, const char *help, const char *label1,
                          const char *label2);

/* Registers a histogram family with `nbounds` (1..METRICS_MAX_BUCKETS) finite,
 * strictly increasing upper bounds; +Inf is implied. An observation equal to a
 * bound counts in that bound's bucket (le means "less or equal"). "le" may not be
 * a label name. Returns as metrics_counter. */
metric_t *metrics_histogram(metrics_t *m, const char *name, const char *help, const double *bounds,
                            size_t nbounds, const char *label1, const char *label2);

/* ---- Counting (any thread) ---- */

/* The series of family `f` for the given label values (NULL counts as "";
 * values for labels the family lacks are ignored), created on first use. Returns
 * NULL when the family is full or a value is longer than METRICS_LABEL_VALUE_MAX;
 * the functions below accept NULL and then do nothing. */
metric_series_t *metric_series(metric_t *f, const char *v1, const char *v2);

/* Adds n to a counter series. */
void metric_series_add(metric_series_t *s, uint64_t n);
/* Records one observation in a histogram series. */
void metric_series_observe(metric_series_t *s, double value);

/* Shorthands that look the series up each time. */
void metric_inc(metric_t *f, const char *v1, const char *v2);
void metric_add(metric_t *f, const char *v1, const char *v2, uint64_t n);
void metric_observe(metric_t *f, const char *v1, const char *v2, double value);

/* ---- Rendering ---- */

/* Appends every family, in registration order, and their series, sorted by label
 * values, to `out` in the text format 0.0.4. Returns 0, or HP_ETOOBIG when out's
 * cap was reached (the output is then cut short). The caller owns `out`. */
int metrics_render(metrics_t *m, hp_strbuf_t *out);

/* Appends "# HELP name help" (skipped when help is NULL) and "# TYPE name type",
 * with type "counter", "gauge", "histogram", "summary" or "untyped". */
int metrics_write_header(hp_strbuf_t *out, const char *name, const char *type, const char *help);

typedef struct metrics_label_s {
    const char *name;
    const char *value; /* escaped on output */
} metrics_label_t;

/* Appends one sample line, `name{l1="v1",...} value`. Returns 0 or HP_ETOOBIG. */
int metrics_write_sample(hp_strbuf_t *out, const char *name, const metrics_label_t *labels,
                         size_t nlabels, double value);

#endif
