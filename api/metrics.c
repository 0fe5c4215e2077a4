/*
 * The Prometheus metrics registry (see metrics.h for the contract).
 *
 * Each family keeps its series in an open-addressing table of atomic pointers,
 * twice as large as METRICS_MAX_SERIES so probes stay short and always meet an
 * empty slot. Series are only ever added, never moved or removed, so a reader that
 * probes without the lock either finds its series or meets an empty slot and
 * takes the slow path, which locks, probes again and inserts. Counts are relaxed
 * atomics: a scrape may see one counter a little ahead of another, which
 * Prometheus tolerates, and no increment is ever lost.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/metrics.h"

#define SLOTS (2 * METRICS_MAX_SERIES) /* a power of two */

typedef enum { KIND_COUNTER, KIND_HISTOGRAM } metric_kind_t;

/* One set of label values and its counts. For a counter, counts[0]; for a
 * histogram, counts[i] is the (non-cumulative) bucket of bounds[i], and
 * counts[nbounds] the +Inf bucket, so the total count is their sum and _count
 * always equals the +Inf bucket. sum_bits holds the sum of observations as the
 * bits of a double (C11 has no atomic add for doubles). */
struct metric_series_s {
    metric_t *family;
    uint64_t hash;
    char *values[2]; /* owned; "" for a label the family lacks */
    _Atomic uint64_t sum_bits;
    _Atomic uint64_t counts[];
};

/* A family: its description, fixed at registration, and its series table. */
struct metric_s {
    metric_kind_t kind;
    char *name;
    char *help;
    char *labels[2]; /* owned; NULL when unused */
    int nlabels;
    double *bounds; /* histograms: nbounds upper bounds, owned */
    size_t nbounds;
    pthread_mutex_t lock; /* serializes inserting series */
    size_t nseries;
    atomic_bool full; /* set once nseries reaches the cap: misses then skip the lock */
    metric_t *next;   /* registration order */
    _Atomic(metric_series_t *) slots[SLOTS];
};

struct metrics_s {
    pthread_mutex_t lock; /* guards the family list */
    metric_t *head, *tail;
};

/* ---- Registry ---- */

metrics_t *metrics_new(void)
{
    metrics_t *m = hp_calloc(1, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

static void family_free(metric_t *f)
{
    for (size_t i = 0; i < SLOTS; i++) {
        metric_series_t *s = atomic_load_explicit(&f->slots[i], memory_order_relaxed);
        if (s) {
            hp_free(s->values[0]);
            hp_free(s->values[1]);
            hp_free(s);
        }
    }
    pthread_mutex_destroy(&f->lock);
    hp_free(f->name);
    hp_free(f->help);
    hp_free(f->labels[0]);
    hp_free(f->labels[1]);
    hp_free(f->bounds);
    hp_free(f);
}

void metrics_free(metrics_t *m)
{
    if (!m)
        return;
    for (metric_t *f = m->head, *next; f; f = next) {
        next = f->next;
        family_free(f);
    }
    pthread_mutex_destroy(&m->lock);
    hp_free(m);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metric names; label names allow no ':' and may not
 * start with "__", which Prometheus reserves. */
static bool name_valid(const char *s, bool is_label)
{
    if (!s || !*s || (is_label && strncmp(s, "__", 2) == 0))
        return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (c == ':' && !is_label) || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool labels_valid(metric_kind_t kind, const char *l1, const char *l2)
{
    if (l2 && (!l1 || strcmp(l1, l2) == 0))
        return false;
    for (int i = 0; i < 2; i++) {
        const char *l = i == 0 ? l1 : l2;
        if (l && (!name_valid(l, true) || (kind == KIND_HISTOGRAM && strcmp(l, "le") == 0)))
            return false;
    }
    return true;
}

static metric_t *find_family(metrics_t *m, const char *name)
{
    for (metric_t *f = m->head; f; f = f->next) {
        if (strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

static metric_series_t *series_get(metric_t *f, const char *v1, const char *v2);

/* Builds and links a family after its arguments were checked; NULL if the name is
 * taken. Takes ownership of `bounds`. */
static metric_t *add_family(metrics_t *m, metric_kind_t kind, const char *name, const char *help,
                            const char *l1, const char *l2, double *bounds, size_t nbounds)
{
    metric_t *f = hp_calloc(1, sizeof(*f));
    f->kind = kind;
    f->name = hp_strdup(name);
    f->help = help ? hp_strdup(help) : NULL; /* NULL: no HELP line */
    f->labels[0] = l1 ? hp_strdup(l1) : NULL;
    f->labels[1] = l2 ? hp_strdup(l2) : NULL;
    f->nlabels = l2 ? 2 : l1 ? 1 : 0;
    f->bounds = bounds;
    f->nbounds = nbounds;
    pthread_mutex_init(&f->lock, NULL);
    for (size_t i = 0; i < SLOTS; i++)
        atomic_init(&f->slots[i], NULL);
    atomic_init(&f->full, false);

    pthread_mutex_lock(&m->lock);
    bool taken = find_family(m, name) != NULL;
    if (!taken) {
        if (m->tail)
            m->tail->next = f;
        else
            m->head = f;
        m->tail = f;
    }
    pthread_mutex_unlock(&m->lock);
    if (taken) {
        family_free(f);
        return NULL;
    }
    if (f->nlabels == 0)
        series_get(f, NULL, NULL); /* render 0 from the start */
    return f;
}

metric_t *metrics_counter(metrics_t *m, const char *name, const char *help, const char *label1,
                          const char *label2)
{
    if (!name_valid(name, false) || !labels_valid(KIND_COUNTER, label1, label2))
        return NULL;
    return add_family(m, KIND_COUNTER, name, help, label1, label2, NULL, 0);
}

metric_t *metrics_histogram(metrics_t *m, const char *name, const char *help, const double *bounds,
                            size_t nbounds, const char *label1, const char *label2)
{
    if (!name_valid(name, false) || !labels_valid(KIND_HISTOGRAM, label1, label2))
        return NULL;
    if (!bounds || nbounds == 0 || nbounds > METRICS_MAX_BUCKETS)
        return NULL;
    for (size_t i = 0; i < nbounds; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return NULL;
    }
    double *copy = hp_malloc(nbounds * sizeof(*copy));
    memcpy(copy, bounds, nbounds * sizeof(*copy));
    return add_family(m, KIND_HISTOGRAM, name, help, label1, label2, copy, nbounds);
}

/* ---- Series lookup ---- */

/* FNV-1a over both values with a separator, so ("a", "bc") and ("ab", "c") differ. */
static uint64_t hash_values(const char *v1, const char *v2)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = v1; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xffu) * 1099511628211ULL;
    for (const char *p = v2; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

/* Probes for the series; returns it, or NULL with *slot set to the empty slot
 * where it would go. */
static metric_series_t *probe(metric_t *f, const char *v1, const char *v2, uint64_t h, size_t *slot)
{
    for (size_t i = 0; i < SLOTS; i++) {
        size_t idx = (size_t)(h + i) & (SLOTS - 1);
        metric_series_t *s = atomic_load_explicit(&f->slots[idx], memory_order_acquire);
        if (!s) {
            *slot = idx;
            return NULL;
        }
        if (s->hash == h && strcmp(s->values[0], v1) == 0 && strcmp(s->values[1], v2) == 0)
            return s;
    }
    *slot = SLOTS; /* cannot happen: the table is never more than half full */
    return NULL;
}

static metric_series_t *series_new(metric_t *f, const char *v1, const char *v2, uint64_t h)
{
    size_t ncounts = f->kind == KIND_HISTOGRAM ? f->nbounds + 1 : 1;
    metric_series_t *s = hp_calloc(1, sizeof(*s) + ncounts * sizeof(s->counts[0]));
    s->family = f;
    s->hash = h;
    s->values[0] = hp_strdup(v1);
    s->values[1] = hp_strdup(v2);
    atomic_init(&s->sum_bits, 0); /* the bits of 0.0 */
    for (size_t i = 0; i < ncounts; i++)
        atomic_init(&s->counts[i], 0);
    return s;
}

/* The slow path: insert under the family's lock, unless another thread just did. */
static metric_series_t *series_insert(metric_t *f, const char *v1, const char *v2, uint64_t h)
{
    pthread_mutex_lock(&f->lock);
    size_t slot;
    metric_series_t *s = probe(f, v1, v2, h, &slot);
    if (!s && f->nseries < METRICS_MAX_SERIES && slot < SLOTS) {
        s = series_new(f, v1, v2, h);
        atomic_store_explicit(&f->slots[slot], s, memory_order_release);
        f->nseries++;
    } else if (!s && !atomic_load_explicit(&f->full, memory_order_relaxed)) {
        atomic_store_explicit(&f->full, true, memory_order_relaxed);
        hp_warn("metrics: %s has %d label sets; dropping counts for new ones", f->name,
                METRICS_MAX_SERIES);
    }
    pthread_mutex_unlock(&f->lock);
    return s;
}

static metric_series_t *series_get(metric_t *f, const char *v1, const char *v2)
{
    v1 = f->nlabels >= 1 && v1 ? v1 : "";
    v2 = f->nlabels >= 2 && v2 ? v2 : "";
    if (strlen(v1) > METRICS_LABEL_VALUE_MAX || strlen(v2) > METRICS_LABEL_VALUE_MAX)
        return NULL;
    uint64_t h = hash_values(v1, v2);
    size_t slot;
    metric_series_t *s = probe(f, v1, v2, h, &slot);
    if (s || atomic_load_explicit(&f->full, memory_order_relaxed))
        return s;
    return series_insert(f, v1, v2, h);
}

metric_series_t *metric_series(metric_t *f, const char *v1, const char *v2)
{
    return f ? series_get(f, v1, v2) : NULL;
}

/* ---- Counting ---- */

void metric_series_add(metric_series_t *s, uint64_t n)
{
    if (s && s->family->kind == KIND_COUNTER)
        atomic_fetch_add_explicit(&s->counts[0], n, memory_order_relaxed);
}

static void add_double(_Atomic uint64_t *bits, double v)
{
    uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
    for (;;) {
        double d;
        memcpy(&d, &old, sizeof(d));
        d += v;
        uint64_t next;
        memcpy(&next, &d, sizeof(next));
        if (atomic_compare_exchange_weak_explicit(bits, &old, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            return;
    }
}

void metric_series_observe(metric_series_t *s, double value)
{
    if (!s || s->family->kind != KIND_HISTOGRAM)
        return;
    const double *b = s->family->bounds;
    size_t lo = 0, hi = s->family->nbounds; /* first bound >= value; NaN lands in +Inf */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (value <= b[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    if (isnan(value))
        lo = s->family->nbounds;
    atomic_fetch_add_explicit(&s->counts[lo], 1, memory_order_relaxed);
    add_double(&s->sum_bits, value);
}

void metric_inc(metric_t *f, const char *v1, const char *v2)
{
    metric_series_add(metric_series(f, v1, v2), 1);
}

void metric_add(metric_t *f, const char *v1, const char *v2, uint64_t n)
{
    metric_series_add(metric_series(f, v1, v2), n);
}

void metric_observe(metric_t *f, const char *v1, const char *v2, double value)
{
    metric_series_observe(metric_series(f, v1, v2), value);
}

/* ---- Text format ---- */

/* The shortest of %.15g and %.17g that reads back as the same double, so 0.1
 * prints as "0.1" and every value still round-trips. */
static void format_double(double v, char out[32])
{
    if (isnan(v)) {
        snprintf(out, 32, "NaN");
    } else if (isinf(v)) {
        snprintf(out, 32, "%s", v > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(out, 32, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, 32, "%.17g", v);
    }
}

/* Appends s with backslash and newline escaped, and '"' too when `quote`. */
static int append_escaped(hp_strbuf_t *out, const char *s, bool quote)
{
    int err = 0;
    for (const char *p = s; *p && !err; p++) {
        if (*p == '\\')
            err = hp_strbuf_append(out, "\\\\", 2);
        else if (*p == '\n')
            err = hp_strbuf_append(out, "\\n", 2);
        else if (*p == '"' && quote)
            err = hp_strbuf_append(out, "\\\"", 2);
        else
            err = hp_strbuf_append(out, p, 1);
    }
    return err;
}

/* Appends `{n1="v1",n2="v2"}`, or nothing for no labels. */
static int append_labels(hp_strbuf_t *out, const metrics_label_t *labels, size_t n)
{
    int err = 0;
    for (size_t i = 0; i < n && !err; i++) {
        err = hp_strbuf_printf(out, "%s%s=\"", i == 0 ? "{" : ",", labels[i].name);
        if (!err)
            err = append_escaped(out, labels[i].value ? labels[i].value : "", true);
        if (!err)
            err = hp_strbuf_append(out, "\"", 1);
    }
    if (!err && n)
        err = hp_strbuf_append(out, "}", 1);
    return err;
}

int metrics_write_header(hp_strbuf_t *out, const char *name, const char *type, const char *help)
{
    int err = 0;
    if (help) {
        err = hp_strbuf_printf(out, "# HELP %s ", name);
        if (!err)
            err = append_escaped(out, help, false);
        if (!err)
            err = hp_strbuf_append(out, "\n", 1);
    }
    if (!err)
        err = hp_strbuf_printf(out, "# TYPE %s %s\n", name, type);
    return err;
}

static int write_line(hp_strbuf_t *out, const char *name, const char *suffix,
                      const metrics_label_t *labels, size_t n, const char *value)
{
    int err = hp_strbuf_printf(out, "%s%s", name, suffix);
    if (!err)
        err = append_labels(out, labels, n);
    if (!err)
        err = hp_strbuf_printf(out, " %s\n", value);
    return err;
}

int metrics_write_sample(hp_strbuf_t *out, const char *name, const metrics_label_t *labels,
                         size_t nlabels, double value)
{
    char num[32];
    format_double(value, num);
    return write_line(out, name, "", labels, nlabels, num);
}

/* ---- Rendering the registry ---- */

static int render_histogram(hp_strbuf_t *out, const metric_t *f, metric_series_t *s,
                            metrics_label_t *labels)
{
    size_t n = (size_t)f->nlabels;
    uint64_t cumulative = 0;
    int err = 0;
    for (size_t i = 0; i <= f->nbounds && !err; i++) {
        cumulative += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
        char le[32], num[32];
        if (i < f->nbounds)
            format_double(f->bounds[i], le);
        else
            snprintf(le, sizeof(le), "+Inf");
        labels[n] = (metrics_label_t){"le", le};
        snprintf(num, sizeof(num), "%" PRIu64, cumulative);
        err = write_line(out, f->name, "_bucket", labels, n + 1, num);
    }
    char sum[32], count[32];
    uint64_t bits = atomic_load_explicit(&s->sum_bits, memory_order_relaxed);
    double d;
    memcpy(&d, &bits, sizeof(d));
    format_double(d, sum);
    snprintf(count, sizeof(count), "%" PRIu64, cumulative);
    if (!err)
        err = write_line(out, f->name, "_sum", labels, n, sum);
    if (!err)
        err = write_line(out, f->name, "_count", labels, n, count);
    return err;
}

static int render_series(hp_strbuf_t *out, const metric_t *f, metric_series_t *s)
{
    metrics_label_t labels[3];
    for (int i = 0; i < f->nlabels; i++)
        labels[i] = (metrics_label_t){f->labels[i], s->values[i]};
    if (f->kind == KIND_HISTOGRAM)
        return render_histogram(out, f, s, labels);
    char num[32];
    snprintf(num, sizeof(num), "%" PRIu64,
             atomic_load_explicit(&s->counts[0], memory_order_relaxed));
    return write_line(out, f->name, "", labels, (size_t)f->nlabels, num);
}

static int compare_series(const void *a, const void *b)
{
    const metric_series_t *x = *(metric_series_t *const *)a;
    const metric_series_t *y = *(metric_series_t *const *)b;
    int c = strcmp(x->values[0], y->values[0]);
    return c ? c : strcmp(x->values[1], y->values[1]);
}

static int render_family(hp_strbuf_t *out, metric_t *f)
{
    int err = metrics_write_header(out, f->name,
                                   f->kind == KIND_HISTOGRAM ? "histogram" : "counter", f->help);
    /* Sorted, so a scrape's output does not depend on which thread counted first. */
    metric_series_t **all = hp_malloc(METRICS_MAX_SERIES * sizeof(*all));
    size_t n = 0;
    for (size_t i = 0; i < SLOTS && n < METRICS_MAX_SERIES; i++) {
        metric_series_t *s = atomic_load_explicit(&f->slots[i], memory_order_acquire);
        if (s)
            all[n++] = s;
    }
    qsort(all, n, sizeof(*all), compare_series);
    for (size_t i = 0; i < n && !err; i++)
        err = render_series(out, f, all[i]);
    hp_free(all);
    return err;
}

int metrics_render(metrics_t *m, hp_strbuf_t *out)
{
    pthread_mutex_lock(&m->lock);
    int err = 0;
    for (metric_t *f = m->head; f && !err; f = f->next)
        err = render_family(out, f);
    pthread_mutex_unlock(&m->lock);
    return err;
}
