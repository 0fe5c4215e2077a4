/* The broker executor: see exec.h. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "api/exec.h"

struct exec_home_s {
    uv_async_t async;
    uv_check_t flush;                 /* hands the outbox over once per loop iteration */
    exec_task_t *out_head, *out_tail; /* submitted this iteration (loop thread only) */
    int open_handles;                 /* while closing */
    exec_t *exec;
    pthread_mutex_t lock;
    exec_task_t *head, *tail; /* finished, waiting for the loop */
};

struct exec_s {
    broker_config_t cfg;
    char *url;
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t lock;
    pthread_cond_t more;
    exec_task_t *head, *tail; /* submitted, waiting for a thread */
    bool stopping;
    int idle; /* threads waiting for work */
    _Atomic int pending;
};

static void list_push(exec_task_t **head, exec_task_t **tail, exec_task_t *t)
{
    t->next = NULL;
    if (*tail)
        (*tail)->next = t;
    else
        *head = t;
    *tail = t;
}

/* ---- Back on the loop ---- */

static void finish(exec_task_t *t)
{
    exec_home_t *h = t->home;
    pthread_mutex_lock(&h->lock);
    list_push(&h->head, &h->tail, t);
    pthread_mutex_unlock(&h->lock);
    uv_async_send(&h->async);
}

static void on_finished(uv_async_t *a)
{
    exec_home_t *h = a->data;
    pthread_mutex_lock(&h->lock);
    exec_task_t *t = h->head;
    h->head = h->tail = NULL;
    pthread_mutex_unlock(&h->lock);
    while (t) {
        exec_task_t *next = t->next;
        atomic_fetch_sub(&h->exec->pending, 1);
        t->done(t);
        t = next;
    }
}

/* Once per loop iteration: everything submitted in it goes to the threads under
 * one lock and with at most one wake-up, so a busy loop pays the hand-over once
 * per batch of requests, not once per request. */
static void flush_outbox(uv_check_t *check)
{
    exec_home_t *h = check->data;
    exec_t *e = h->exec;
    if (!h->out_head)
        return;
    pthread_mutex_lock(&e->lock);
    if (e->tail)
        e->tail->next = h->out_head;
    else
        e->head = h->out_head;
    e->tail = h->out_tail;
    if (e->idle > 0)
        pthread_cond_signal(&e->more);
    pthread_mutex_unlock(&e->lock);
    h->out_head = h->out_tail = NULL;
}

exec_home_t *exec_home_new(exec_t *e, uv_loop_t *loop)
{
    exec_home_t *h = hp_calloc(1, sizeof(*h));
    h->exec = e;
    pthread_mutex_init(&h->lock, NULL);
    uv_async_init(loop, &h->async, on_finished);
    h->async.data = h;
    uv_check_init(loop, &h->flush);
    h->flush.data = h;
    uv_check_start(&h->flush, flush_outbox);
    uv_unref((uv_handle_t *)&h->flush);
    return h;
}

static void on_home_closed(uv_handle_t *handle)
{
    exec_home_t *h = handle->data;
    if (--h->open_handles > 0)
        return;
    pthread_mutex_destroy(&h->lock);
    hp_free(h);
}

void exec_home_close(exec_home_t *h)
{
    flush_outbox(&h->flush);
    h->open_handles = 2;
    uv_close((uv_handle_t *)&h->async, on_home_closed);
    uv_close((uv_handle_t *)&h->flush, on_home_closed);
}

/* ---- The threads ---- */

void exec_submit(exec_home_t *h, exec_task_t *t)
{
    exec_t *e = h->exec;
    t->home = h;
    t->unavailable = 0;
    atomic_fetch_add(&e->pending, 1);
    list_push(&h->out_head, &h->out_tail, t); /* sent at the end of this iteration */
}

int exec_pending(exec_t *e)
{
    return atomic_load(&e->pending);
}

/* Takes the first task, and with it every other waiting task of the same batch
 * function (up to JOB_BATCH_MAX), keeping the rest in order. Lock held. */
static size_t take_batch(exec_t *e, exec_task_t **batch)
{
    exec_task_t *first = e->head;
    e->head = first->next;
    if (!e->head)
        e->tail = NULL;
    batch[0] = first;
    size_t n = 1;
    if (!first->batch)
        return n;
    exec_task_t **link = &e->head, *last = NULL;
    while (*link && n < JOB_BATCH_MAX) {
        exec_task_t *t = *link;
        if (t->batch == first->batch) {
            batch[n++] = t;
            *link = t->next;
        } else {
            last = t;
            link = &t->next;
        }
    }
    e->tail = *link ? e->tail : last;
    return n;
}

static void fail_unavailable(exec_task_t *t, const char *msg)
{
    t->unavailable = HP_EUNAVAIL;
    snprintf(t->errmsg, sizeof(t->errmsg), "%s", msg);
}

static void *exec_thread(void *arg)
{
    exec_t *e = arg;
    broker_t *b = NULL;
    int64_t next_open_ms = 0; /* after a failed open, fail fast until then */
    char last_error[256] = "broker unavailable";
    exec_task_t **batch = hp_malloc(JOB_BATCH_MAX * sizeof(*batch));
    for (;;) {
        pthread_mutex_lock(&e->lock);
        while (!e->head && !e->stopping) {
            e->idle++;
            pthread_cond_wait(&e->more, &e->lock);
            e->idle--;
        }
        if (!e->head) {
            pthread_mutex_unlock(&e->lock);
            break;
        }
        size_t n = take_batch(e, batch);
        if (e->head && e->idle > 0) /* more than this thread can take: wake another */
            pthread_cond_signal(&e->more);
        pthread_mutex_unlock(&e->lock);

        if (!b && hp_mono_ms() >= next_open_ms) {
            char *errmsg = NULL;
            if (broker_open(&e->cfg, &b, &errmsg) != 0) {
                snprintf(last_error, sizeof(last_error), "%s", errmsg ? errmsg : "unavailable");
                next_open_ms = hp_mono_ms() + 1000;
            }
            hp_free(errmsg);
        }
        if (!b) {
            for (size_t i = 0; i < n; i++)
                fail_unavailable(batch[i], last_error);
        } else if (batch[0]->batch) {
            batch[0]->batch(batch, n, b);
        } else {
            batch[0]->run(batch[0], b);
        }
        for (size_t i = 0; i < n; i++)
            finish(batch[i]);
    }
    hp_free(batch);
    if (b)
        broker_close(b);
    return NULL;
}

exec_t *exec_start(const broker_config_t *cfg, int nthreads)
{
    exec_t *e = hp_calloc(1, sizeof(*e));
    e->cfg = *cfg;
    e->url = hp_strdup(cfg->url);
    e->cfg.url = e->url;
    e->nthreads = nthreads;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->more, NULL);
    e->threads = hp_calloc((size_t)nthreads, sizeof(*e->threads));
    for (int i = 0; i < nthreads; i++)
        pthread_create(&e->threads[i], NULL, exec_thread, e);
    return e;
}

void exec_stop(exec_t *e)
{
    pthread_mutex_lock(&e->lock);
    e->stopping = true;
    pthread_cond_broadcast(&e->more);
    pthread_mutex_unlock(&e->lock);
    for (int i = 0; i < e->nthreads; i++)
        pthread_join(e->threads[i], NULL);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->more);
    hp_free(e->threads);
    hp_free(e->url);
    hp_free(e);
}
