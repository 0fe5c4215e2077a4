/*
 * Event summaries for GET /v1/events?coalesce= (see summary.c): fold job events in
 * with api_summary_add, take the interval's summary as JSON with api_summary_take.
 * Used on one loop thread; no locking.
 */
#ifndef HOPPER_API_SUMMARY_H
#define HOPPER_API_SUMMARY_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/broker.h"

typedef struct api_summary_s api_summary_t;

api_summary_t *api_summary_new(void);
void api_summary_free(api_summary_t *s);

/* One job event: its kind ("enqueued", ...), queue, job id (or NULL), the state it
 * left the job in (or NULL) and its time (Unix ms). */
void api_summary_add(api_summary_t *s, const char *event, const char *queue, const char *id,
                     const char *state, int64_t at);
bool api_summary_empty(const api_summary_t *s);

/* The summary of what was added since the last take, as one JSON object (hp_free):
 *   {"event":"summary","count":N,"from":ms,"to":ms,
 *    "queues":{"<queue>":{"count":N,"from":ms,"to":ms,
 *                         "events":{"<kind>":{"<state or none>":N,...},...}},...},
 *    "queues_omitted":N,"jobs":["<id>",...],"jobs_omitted":N}
 * and starts the next interval empty. */
char *api_summary_take(api_summary_t *s);

#endif
