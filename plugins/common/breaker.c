/* A circuit breaker per host: see breaker.h. A small linked table under one
 * mutex: plugins talk to a handful of hosts, and each check is a few string
 * compares next to a network round trip. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "breaker.h"

#define HOST_MAX 255

typedef enum { CLOSED, OPEN, HALF_OPEN } state_t;

typedef struct host_s {
    char name[HOST_MAX + 1];
    state_t state;
    int failures; /* retryable failures in a row */
    int64_t open_until_ms;
    struct host_s *next;
} host_t;

struct breaker {
    pthread_mutex_t lock;
    int threshold;
    int64_t open_ms;
    host_t *hosts;
    int64_t (*now_ms)(void);
};

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

breaker_t *breaker_new(int threshold, int64_t open_ms)
{
    breaker_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    pthread_mutex_init(&b->lock, NULL);
    b->threshold = threshold < 1 ? 1 : threshold;
    b->open_ms = open_ms < 0 ? 0 : open_ms;
    b->now_ms = monotonic_ms;
    return b;
}

void breaker_free(breaker_t *b)
{
    if (!b)
        return;
    for (host_t *h = b->hosts, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    pthread_mutex_destroy(&b->lock);
    free(b);
}

void breaker_set_clock(breaker_t *b, int64_t (*now_ms)(void))
{
    b->now_ms = now_ms ? now_ms : monotonic_ms;
}

/* The host's entry, added when first seen (NULL when out of memory). Lock held. */
static host_t *find(breaker_t *b, const char *name)
{
    for (host_t *h = b->hosts; h; h = h->next) {
        if (strncmp(h->name, name, HOST_MAX) == 0)
            return h;
    }
    host_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    strncpy(h->name, name, HOST_MAX);
    h->next = b->hosts;
    b->hosts = h;
    return h;
}

int breaker_acquire(breaker_t *b, const char *host, int64_t *open_for_ms)
{
    int rc = 0;
    int64_t left = 0;
    pthread_mutex_lock(&b->lock);
    host_t *h = find(b, host ? host : "");
    if (h && h->state == OPEN) {
        int64_t now = b->now_ms();
        if (now >= h->open_until_ms) {
            h->state = HALF_OPEN; /* this caller is the trial */
        } else {
            rc = -1;
            left = h->open_until_ms - now;
        }
    } else if (h && h->state == HALF_OPEN) {
        rc = -1; /* a trial is running: wait for its answer */
    }
    pthread_mutex_unlock(&b->lock);
    if (open_for_ms)
        *open_for_ms = left;
    return rc;
}

void breaker_report(breaker_t *b, const char *host, bool retryable_failure)
{
    pthread_mutex_lock(&b->lock);
    host_t *h = find(b, host ? host : "");
    if (h) {
        if (!retryable_failure) {
            h->state = CLOSED;
            h->failures = 0;
        } else if (h->state == HALF_OPEN || ++h->failures >= b->threshold) {
            h->state = OPEN;
            h->open_until_ms = b->now_ms() + b->open_ms;
            h->failures = 0;
        }
    }
    pthread_mutex_unlock(&b->lock);
}
