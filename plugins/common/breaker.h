/*
 * plugins/common/breaker.h -- a circuit breaker per destination host, compiled
 * into the plugins that talk to remote servers (email, upload).
 *
 * After `threshold` retryable failures in a row to one host, the circuit opens for
 * `open_ms`: jobs for that host fail fast (retryable, "circuit open for HOST")
 * instead of each waiting out a timeout. When the time is up, one job goes through
 * as a trial (half-open); its success closes the circuit, its failure opens it for
 * another `open_ms`. Thread-safe; one breaker per plugin, hosts added as seen.
 */
#ifndef HOPPER_PLUGINS_BREAKER_H
#define HOPPER_PLUGINS_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct breaker breaker_t;

/* NULL when out of memory. threshold >= 1, open_ms >= 0. */
breaker_t *breaker_new(int threshold, int64_t open_ms);
void breaker_free(breaker_t *b);

/* 0: go ahead (the circuit is closed, or this job is the half-open trial: it must
 * report with breaker_report). -1: open; *open_for_ms (may be NULL) says for how
 * much longer (0 while another job's trial is running). */
int breaker_acquire(breaker_t *b, const char *host, int64_t *open_for_ms);

/* The outcome of a job that acquired: `retryable_failure` true for a connection
 * error, timeout, 4xx SMTP, 5xx HTTP...; false for success or for a permanent
 * failure (the server answered: it is up). */
void breaker_report(breaker_t *b, const char *host, bool retryable_failure);

/* For tests: a clock other than CLOCK_MONOTONIC (ms). NULL restores it. */
void breaker_set_clock(breaker_t *b, int64_t (*now_ms)(void));

#endif
