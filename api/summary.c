/*
 * Event summaries for GET /v1/events?coalesce=: instead of one SSE message per job
 * event, a client gets one "summary" message per interval saying how many events
 * of each kind each queue had, by the state each left its job in, over which span
 * of event times, and which jobs they were about (the first SUMMARY_JOBS_MAX).
 * A dashboard needs no more to keep its counts, and a burst of 100,000 events a
 * second then costs it a few messages a second instead of falling behind.
 */
#include <jansson.h>
#include <string.h>

#include "api/summary.h"

#define SUMMARY_QUEUES_MAX 64
#define SUMMARY_JOBS_MAX   100

static const char *const KINDS[] = {"enqueued", "started",  "progress", "succeeded", "failed",
                                    "dead",     "canceled", "retried",  "deleted"};
#define NKINDS ((int)(sizeof(KINDS) / sizeof(KINDS[0])))
/* The states an event can leave its job in; the last slot: no state given. */
static const char *const STATES[] = {"waiting", "scheduled", "active",  "succeeded",
                                     "failed",  "dead",      "canceled"};
#define NSTATES  ((int)(sizeof(STATES) / sizeof(STATES[0])))
#define NO_STATE NSTATES

typedef struct queue_sum_s {
    char name[JOB_QUEUE_NAME_MAX + 1];
    int64_t from, to;
    uint64_t count;
    uint64_t n[NKINDS][NSTATES + 1];
} queue_sum_t;

struct api_summary_s {
    uint64_t count;
    int64_t from, to;
    int nqueues;
    queue_sum_t queues[SUMMARY_QUEUES_MAX];
    uint64_t queues_omitted; /* events of queues past SUMMARY_QUEUES_MAX */
    int njobs;
    char jobs[SUMMARY_JOBS_MAX][JOB_ID_MAX + 1];
    uint64_t jobs_omitted; /* events that came once the job list was full */
};

api_summary_t *api_summary_new(void)
{
    return hp_calloc(1, sizeof(api_summary_t));
}

void api_summary_free(api_summary_t *s)
{
    hp_free(s);
}

bool api_summary_empty(const api_summary_t *s)
{
    return s->count == 0;
}

static int index_of(const char *const *names, int n, const char *name)
{
    for (int i = 0; name && i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

static void widen(int64_t *from, int64_t *to, uint64_t count, int64_t at)
{
    if (count == 0 || at < *from)
        *from = at;
    if (count == 0 || at > *to)
        *to = at;
}

static queue_sum_t *queue_slot(api_summary_t *s, const char *queue)
{
    for (int i = 0; i < s->nqueues; i++)
        if (strcmp(s->queues[i].name, queue) == 0)
            return &s->queues[i];
    if (s->nqueues == SUMMARY_QUEUES_MAX || strlen(queue) > JOB_QUEUE_NAME_MAX)
        return NULL;
    queue_sum_t *q = &s->queues[s->nqueues++];
    memset(q, 0, sizeof(*q));
    memcpy(q->name, queue, strlen(queue) + 1);
    return q;
}

/* Once the list is full, later events only count (no search through it): under a
 * burst most events of an interval then cost nothing here. */
static void note_job(api_summary_t *s, const char *id)
{
    if (!id)
        return;
    if (s->njobs == SUMMARY_JOBS_MAX || strlen(id) > JOB_ID_MAX) {
        s->jobs_omitted++;
        return;
    }
    for (int i = 0; i < s->njobs; i++)
        if (strcmp(s->jobs[i], id) == 0)
            return;
    memcpy(s->jobs[s->njobs++], id, strlen(id) + 1);
}

void api_summary_add(api_summary_t *s, const char *event, const char *queue, const char *id,
                     const char *state, int64_t at)
{
    widen(&s->from, &s->to, s->count, at);
    s->count++;
    note_job(s, id);
    queue_sum_t *q = queue_slot(s, queue);
    if (!q) {
        s->queues_omitted++;
        return;
    }
    widen(&q->from, &q->to, q->count, at);
    q->count++;
    int k = index_of(KINDS, NKINDS, event);
    if (k < 0)
        return; /* a kind this server does not know: counted, not sorted */
    int st = index_of(STATES, NSTATES, state);
    q->n[k][st < 0 ? NO_STATE : st]++;
}

static json_t *queue_json(const queue_sum_t *q)
{
    json_t *events = json_object();
    for (int k = 0; k < NKINDS; k++) {
        json_t *by_state = NULL;
        for (int st = 0; st <= NSTATES; st++) {
            if (!q->n[k][st])
                continue;
            if (!by_state)
                by_state = json_object();
            json_object_set_new(by_state, st == NO_STATE ? "none" : STATES[st],
                                json_integer((json_int_t)q->n[k][st]));
        }
        if (by_state)
            json_object_set_new(events, KINDS[k], by_state);
    }
    return json_pack("{s:I, s:I, s:I, s:o}", "count", (json_int_t)q->count, "from",
                     (json_int_t)q->from, "to", (json_int_t)q->to, "events", events);
}

char *api_summary_take(api_summary_t *s)
{
    json_t *queues = json_object();
    for (int i = 0; i < s->nqueues; i++)
        json_object_set_new(queues, s->queues[i].name, queue_json(&s->queues[i]));
    json_t *jobs = json_array();
    for (int i = 0; i < s->njobs; i++)
        json_array_append_new(jobs, json_string(s->jobs[i]));
    json_t *doc =
        json_pack("{s:s, s:I, s:I, s:I, s:o, s:I, s:o, s:I}", "event", "summary", "count",
                  (json_int_t)s->count, "from", (json_int_t)s->from, "to", (json_int_t)s->to,
                  "queues", queues, "queues_omitted", (json_int_t)s->queues_omitted, "jobs", jobs,
                  "jobs_omitted", (json_int_t)s->jobs_omitted);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    char *out = hp_strdup(text);
    free(text);
    /* Reset what the next interval reads; the tables are overwritten as they fill. */
    s->count = 0;
    s->nqueues = 0;
    s->njobs = 0;
    s->queues_omitted = s->jobs_omitted = 0;
    return out;
}
