/*
 * broker/ -- the job lifecycle, and the only door to job state.
 *
 * A producer submits a job_spec_t; the broker stores it as a job in one queue and
 * moves it through these states, each move one atomic step in the backend (one
 * Lua script on Redis):
 *
 *   enqueue ──► scheduled ──(run_at due)──► waiting ◄──────────────┐
 *      └────────────────────────────────────► │                    │
 *                                   reserve   ▼ (lease: deadline + token)
 *                                          active ──ack──► succeeded
 *                                             │ fail / lease expired
 *                          attempts left ─────┤──────────► failed ──(backoff due)──┘
 *                     none left or permanent ─┴──────────► dead
 *   cancel: waiting/scheduled/failed ──► canceled; active: flagged, the worker is
 *   told on its next heartbeat. retry by hand: dead/failed/canceled ──► waiting.
 *
 * A broker_t is one connection: use one per thread (like a SQLite connection
 * handle without the mutex). Every call returns 0 or a negative HP_E* code, and
 * broker_errmsg() then says what was wrong in words, naming the field or limit.
 */
#ifndef HP_BROKER_H
#define HP_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ---- Job model ---- */

/* State, its name, and whether it is final. Declared once (libuv's UV_ERRNO_MAP). */
#define JOB_STATE_MAP(XX)                                                                          \
    XX(SCHEDULED, "scheduled", false)                                                              \
    XX(WAITING, "waiting", false)                                                                  \
    XX(ACTIVE, "active", false)                                                                    \
    XX(FAILED, "failed", false)                                                                    \
    XX(SUCCEEDED, "succeeded", true)                                                               \
    XX(DEAD, "dead", true)                                                                         \
    XX(CANCELED, "canceled", true)

typedef enum {
#define XX(name, str, final) JOB_STATE_##name,
    JOB_STATE_MAP(XX)
#undef XX
        JOB_STATE_COUNT
} job_state_t;

const char *job_state_name(job_state_t state);
/* Returns the state for a name, or -1. */
int job_state_parse(const char *name);

typedef enum { BACKOFF_EXPONENTIAL, BACKOFF_FIXED, BACKOFF_LINEAR } backoff_kind_t;

/* Delay before attempt n+1 after attempt n failed:
 *   exponential: base * 2^(n-1), then "equal jitter" (a random point in the upper half),
 *   fixed:       base,
 *   linear:      base * n,
 * never more than cap. */
typedef struct backoff_s {
    backoff_kind_t kind;
    int64_t base_ms;
    int64_t cap_ms;
} backoff_t;

/* Limits and defaults a producer meets. */
#define JOB_QUEUE_NAME_MAX        64  /* [A-Za-z0-9._-]; braces would break the hash tag */
#define JOB_TYPE_NAME_MAX         128 /* printable ASCII, no spaces */
#define JOB_PAYLOAD_DEFAULT_MAX   (1 << 20)
#define JOB_PRIORITY_MIN          (-1000) /* higher runs first */
#define JOB_PRIORITY_MAX          1000
#define JOB_ATTEMPTS_DEFAULT      25
#define JOB_ATTEMPTS_MAX          1000
#define JOB_DELAY_MAX_MS          (366LL * 86400 * 1000) /* a year and a day */
#define JOB_TIMEOUT_MAX_MS        (7LL * 86400 * 1000)
#define JOB_UNIQUE_KEY_MAX        256
#define JOB_UNIQUE_TTL_DEFAULT_MS (24LL * 3600 * 1000)
#define JOB_TAGS_MAX              16
#define JOB_TAG_MAX               64
#define JOB_ERROR_MAX             2048 /* longer failure messages are cut */
#define JOB_BATCH_MAX             1000
#define JOB_LOG_MAX_BYTES         (64 * 1024) /* log lines kept per job; the oldest go first */
#define JOB_LOG_LINE_MAX          1024        /* longer lines are cut */
#define JOB_PROGRESS_MESSAGE_MAX  256
#define BACKOFF_BASE_DEFAULT_MS   1000
#define BACKOFF_CAP_DEFAULT_MS    (3600LL * 1000)

/* A job id is "<ULID>-<queue>": the ULID orders ids by creation time, and the queue
 * part lets the broker find the job from its id alone, with no index, on the one
 * Redis Cluster slot that holds its queue. */
#define JOB_ID_MAX (HP_ULID_LEN + 1 + JOB_QUEUE_NAME_MAX + 1)

/*
 * What a producer submits. All pointers are borrowed for the duration of the call.
 * Zero means "default" for every number, so `job_spec_t s = {.queue=…, .type=…}`
 * is a complete job.
 */
typedef struct job_spec_s {
    const char *queue;
    const char *type;
    const char *payload; /* JSON text, any JSON value; NULL means null */
    size_t payload_len;  /* 0 means strlen(payload) */
    int priority;
    int64_t delay_ms;       /* run this much later; or */
    int64_t run_at_ms;      /* run at this Unix ms (not both) */
    int max_attempts;       /* 0: JOB_ATTEMPTS_DEFAULT */
    backoff_t backoff;      /* base/cap 0: defaults */
    int64_t timeout_ms;     /* how long one attempt may run; 0: the worker's default */
    int64_t expires_at_ms;  /* discard (dead, "expired") if not started by then; 0: never */
    const char *unique_key; /* a second job with this key within the TTL enqueues nothing */
    int64_t unique_ttl_ms;  /* 0: JOB_UNIQUE_TTL_DEFAULT_MS */
    const char *const *tags;
    size_t ntags;
    /* The API's Idempotency-Key (already namespaced by the caller, e.g. by token),
     * and a hash of the request it came with. Like unique_key, but atomic with the
     * enqueue and with a 24 h TTL: a repeat with the same hash gets the first job's
     * id (result.duplicate); a repeat with another hash is refused
     * (result.err HP_EINVAL, result.idempotency_mismatch). */
    const char *idempotency_key;
    const char *request_hash;
    /* Set by the scheduler: the schedule and the tick (Unix ms) this job is for;
     * stored with the job and shown by job_to_json as "schedule". */
    const char *schedule;
    int64_t schedule_tick_ms;
} job_spec_t;

typedef struct job_error_s {
    int64_t at_ms;
    int attempt;
    char *message;
} job_error_t;

/*
 * A job as stored. Returned by broker_get/broker_reserve/broker_list, owned by the
 * caller, freed with job_free(). Times are Unix ms, 0 when not (yet) set.
 * created_ms comes from the id's ULID. A reserved job carries its lease token;
 * ack, fail and heartbeat must present it.
 */
typedef struct job_s {
    char id[JOB_ID_MAX];
    char *queue;
    char *type;
    char *payload; /* JSON text */
    size_t payload_len;
    job_state_t state;
    int priority;
    int attempts; /* attempts started so far */
    int max_attempts;
    backoff_t backoff;
    int64_t timeout_ms;
    int64_t expires_at_ms;
    int64_t created_ms;
    int64_t run_at_ms;         /* scheduled/failed: when it becomes waiting */
    int64_t started_ms;        /* last reservation */
    int64_t finished_ms;       /* succeeded/dead/canceled */
    int64_t lease_deadline_ms; /* active: lease ends unless extended */
    char *lease_token;         /* active only */
    char *worker;              /* active: who holds it */
    bool cancel_requested;     /* active job asked to stop */
    char *unique_key;
    char **tags;
    size_t ntags;
    job_error_t *errors; /* every failure, oldest first */
    size_t nerrors;
    char *result;           /* JSON text given at ack, or NULL */
    int progress;           /* 0-100, -1 when never reported */
    char *progress_message; /* or NULL */
    char *logs;             /* JSON lines [at_ms, level, "text"], oldest first, or NULL */
    char *schedule;         /* the schedule that fired it, or NULL */
    int64_t schedule_tick_ms;
} job_t;

void job_free(job_t *job);
/* The job as a JSON object (text), for the CLI and the API. hp_free() the result. */
char *job_to_json(const job_t *job, int indent);

/* 1-64 characters of A-Z a-z 0-9 . _ - */
bool job_queue_name_valid(const char *name);
/* Splits "<ULID>-<queue>"; false when `id` is not a well-formed job id. */
bool job_id_parse(const char *id, char ulid[HP_ULID_LEN + 1], char queue[JOB_QUEUE_NAME_MAX + 1]);

/* The delay before the next attempt after `attempt` failed; `rand01` in [0,1). */
int64_t backoff_delay_ms(const backoff_t *b, int attempt, double rand01);

/* ---- Jobs from JSON (job_json.c) ----
 * A job as the API and schedule templates write it, a JSON object with the fields
 * queue, type, payload, priority, delay_ms, run_at, max_attempts, backoff,
 * timeout_ms, unique_key, unique_ttl_ms, tags, expires_at, turned into a
 * job_spec_t. Every field is checked by type and named in the message; the broker
 * checks the limits at enqueue. The payload keeps the client's own bytes (found in
 * the text by a scan, not re-encoded), so 0.1 stays 0.1 and a 30-digit integer
 * stays whole. */
typedef struct job_spec_json_s {
    job_spec_t spec;
    void *doc; /* the parsed JSON, which owns the strings spec points to */
    char *payload;
    const char **tags;
    char *idempotency_key;
    char request_hash[65];
} job_spec_json_t;

int job_spec_from_json(const char *text, size_t len, job_spec_json_t *out, char *err,
                       size_t errlen);
/* {"jobs": [...]} or a bare array, up to JOB_BATCH_MAX: (*errors)[i] is NULL or
 * why item i is refused (hp_free each and both arrays; job_spec_json_cleanup each
 * spec). Fails as a whole only when the text is not such a list. */
int job_specs_from_json(const char *text, size_t len, job_spec_json_t **specs, char ***errors,
                        size_t *n, char *err, size_t errlen);
/* The API's Idempotency-Key, namespaced by a hash of the token, with the body's hash. */
void job_spec_set_idempotency(job_spec_json_t *js, const char *token, const char *key,
                              const char *body, size_t len);
void job_spec_json_cleanup(job_spec_json_t *js);
/* The body of a retry with an edited payload, {"payload": <any JSON>} and nothing
 * else: *payload (hp_free) gets the value's own bytes, as job_spec_from_json keeps
 * them. HP_EINVAL with a message otherwise. */
int job_payload_from_json(const char *text, size_t len, char **payload, char *err, size_t errlen);

/* ---- Opening ---- */

typedef struct broker_s broker_t;

typedef struct broker_config_s {
    const char *url;        /* redis://[:password@]host[:port][/db] or unix:///path.sock[?db=N] */
    int connect_timeout_ms; /* 0: 2000 */
    int command_timeout_ms; /* 0: 5000 */
    size_t max_payload;     /* 0: JOB_PAYLOAD_DEFAULT_MAX */
    bool strict;            /* refuse a Redis whose maxmemory-policy could evict jobs */
} broker_config_t;

/*
 * Connects and checks the server. On failure returns an HP_E* code, *out is NULL
 * and *errmsg (if given) is a message the caller frees with hp_free. A broker whose
 * server goes away later stays usable: calls fail fast with HP_EUNAVAIL and it
 * reconnects by itself when the server is back.
 */
int broker_open(const broker_config_t *cfg, broker_t **out, char **errmsg);
void broker_close(broker_t *b);
/* The message for the last failed call on `b`; valid until the next call. */
const char *broker_errmsg(const broker_t *b);
/* 0 when the backend answers. */
int broker_ping(broker_t *b);

/* ---- Producing ---- */

typedef struct enqueue_result_s {
    int err;                   /* 0, or why this job was not enqueued */
    bool duplicate;            /* unique or idempotency key seen: id is the first job's id */
    bool idempotency_mismatch; /* the key was used with another request */
    job_state_t state;         /* waiting or scheduled */
    char id[JOB_ID_MAX];
    char errmsg[256];
} enqueue_result_t;

/*
 * Enqueues n (<= JOB_BATCH_MAX) jobs in one round trip, atomically per queue.
 * Each job gets its own result; an invalid job is refused alone, and a queue past
 * its max length refuses all of that call's jobs for it. Returns 0 when every
 * job was enqueued (or found duplicate), else the first error.
 */
int broker_enqueue(broker_t *b, const job_spec_t *specs, size_t n, enqueue_result_t *results);

/* ---- Working ---- */

typedef struct job_list_s {
    job_t **jobs;
    size_t n;
    int64_t next_due_ms; /* reserve: when a scheduled job or a lease comes due, or 0 */
    char *next_cursor;   /* list: NULL at the end */
} job_list_t;

void job_list_cleanup(job_list_t *list);

/*
 * Leases up to `max` waiting jobs of `queue` to `worker` for lease_ms, highest
 * priority first, FIFO within a priority. Due scheduled jobs are promoted and
 * expired leases recovered first, in the same atomic step. A paused queue hands
 * out nothing. Jobs past their expires_at go dead ("expired") instead.
 */
int broker_reserve(broker_t *b, const char *queue, size_t max, int64_t lease_ms, const char *worker,
                   job_list_t *out);

/* Blocks until a job may be waiting on one of `queues` or timeout_ms passes,
 * without polling. Returns 1 when woken, 0 on timeout, or an error. */
int broker_wait(broker_t *b, const char *const *queues, size_t nqueues, int64_t timeout_ms);

typedef struct lease_ref_s {
    const char *id;
    const char *token;
} lease_ref_t;

typedef enum {
    LEASE_HELD = 0,     /* extended */
    LEASE_CANCELED = 1, /* extended, but cancel was asked: stop and fail the job */
    LEASE_LOST = 2,     /* no longer ours: stop, the job went back or away */
} lease_status_t;

int broker_heartbeat(broker_t *b, const lease_ref_t *leases, size_t n, int64_t lease_ms,
                     lease_status_t *status);

/* Finishes an active job. `result` is JSON text or NULL. HP_ELEASE when the lease
 * was lost; the job is then left as it is. */
int broker_ack(broker_t *b, const char *id, const char *token, const char *result,
               size_t result_len);

typedef struct job_ack_s {
    const char *id;
    const char *token;
    const char *result; /* JSON text or NULL */
    size_t result_len;  /* 0: strlen(result) */
    int err;            /* out: 0, or why this ack was refused (HP_ELEASE, ...) */
} job_ack_t;

/* Acks n (<= JOB_BATCH_MAX) jobs of any queues in one round trip, one atomic step
 * per queue: what a worker finishing many short jobs should call. Returns 0 when
 * all were acked, else the first error; each item's err says which. */
int broker_ack_batch(broker_t *b, job_ack_t *acks, size_t n);

/* Records a failed attempt. Retryable with attempts left: failed, due again after
 * the backoff (*retry_at_ms); else dead. A job whose cancel was asked ends
 * canceled. `new_state` and `retry_at_ms` may be NULL. */
int broker_fail(broker_t *b, const char *id, const char *token, const char *message, bool permanent,
                job_state_t *new_state, int64_t *retry_at_ms);

/* Gives an active job back unrun, as a worker that stops must: waiting again at
 * the end of its queue, and this attempt not counted. */
int broker_release(broker_t *b, const char *id, const char *token);

/* Progress (0-100, message may be NULL) and log lines of an active job, stored with
 * it and shown by broker_get. Level: 0 debug, 1 info, 2 warn, 3 error. */
int broker_progress(broker_t *b, const char *id, const char *token, int percent,
                    const char *message);
int broker_log(broker_t *b, const char *id, const char *token, int level, const char *line);

/* ---- Workers ----
 * A registry of live worker processes, for operators: each beats its description
 * (a JSON object the worker writes) with a time to live; one that stops beating
 * drops out by itself. Not job state: a job's lease is what matters for it. */
#define WORKER_ID_MAX 128
/* 1-WORKER_ID_MAX characters of A-Z a-z 0-9 . _ : @ / - */
bool broker_worker_id_valid(const char *worker_id);
int broker_worker_beat(broker_t *b, const char *worker_id, const char *info_json, int64_t ttl_ms);
/* Removes the entry (and any command not yet taken). */
int broker_worker_gone(broker_t *b, const char *worker_id);
/* The live workers' JSON descriptions, sorted by worker id; free with broker_queues_free. */
int broker_workers(broker_t *b, char ***infos, size_t *n);
/* One live worker's description (hp_free), or HP_ENOTFOUND when it is not registered
 * (it stopped, or stopped beating). */
int broker_worker_get(broker_t *b, const char *worker_id, char **info);

/* Commands an operator sends one registered worker process. The broker keeps the
 * latest command for WORKER_COMMAND_TTL_MS; the worker takes it (reads and deletes)
 * with broker_worker_poll, which it calls about once a second. A stop is never
 * replaced by a later quiet (stop implies quiet). */
typedef enum {
    WORKER_COMMAND_NONE = 0,
    WORKER_COMMAND_QUIET, /* take no new jobs; finish the running ones; stay registered */
    WORKER_COMMAND_STOP,  /* stop gracefully, as on SIGTERM, and leave the registry */
} worker_command_t;
#define WORKER_COMMAND_TTL_MS 60000
/* "quiet", "stop" ("" for NONE). */
const char *worker_command_name(worker_command_t cmd);
/* HP_ENOTFOUND when no such worker is registered. */
int broker_worker_command(broker_t *b, const char *worker_id, worker_command_t cmd);
/* For the worker itself: takes the command waiting for it into *cmd (NONE when
 * there is none) and, when info_json is not NULL, beats it as broker_worker_beat
 * does, in the same round trip. *cmd is set even when the beat part failed. */
int broker_worker_poll(broker_t *b, const char *worker_id, const char *info_json, int64_t ttl_ms,
                       worker_command_t *cmd);

/* ---- Operating ---- */

int broker_get(broker_t *b, const char *id, job_t **out);
/* Gets n (<= JOB_BATCH_MAX) jobs in one round trip. For each, jobs[i] (job_free)
 * or NULL with errs[i] saying why (HP_ENOTFOUND; HP_EINVAL for a malformed id).
 * Returns 0, or the error that failed the whole call (HP_EUNAVAIL, ...): then
 * every jobs[i] is NULL. */
int broker_get_many(broker_t *b, const char *const *ids, size_t n, job_t **jobs, int *errs);
/* Waiting/scheduled/failed: canceled at once. Active: flagged, the worker is told
 * on its next heartbeat; *state_after is then ACTIVE. Finished: HP_ESTATE. */
int broker_cancel(broker_t *b, const char *id, job_state_t *state_after);
/* Dead, failed or canceled back to waiting, with a fresh set of attempts. */
int broker_retry(broker_t *b, const char *id);
/* broker_retry that also replaces the stored payload with `payload` (JSON text of
 * at most the broker's max payload, kept byte for byte; len 0: strlen). */
int broker_retry_with_payload(broker_t *b, const char *id, const char *payload, size_t len);
/* Removes a job that is not active. */
int broker_delete(broker_t *b, const char *id);

/* Lists one state of a queue, `limit` jobs from `cursor` (NULL: the start).
 * Order: waiting in reserve order; scheduled/failed by due time; active by lease
 * deadline; finished newest first. Cursors stay valid under concurrent inserts. */
int broker_list(broker_t *b, const char *queue, job_state_t state, const char *cursor, size_t limit,
                job_list_t *out);

/* What a filtered listing (and a bulk action) keeps; a zeroed filter keeps all. */
#define LIST_FILTER_ERROR_MAX 256
typedef struct list_filter_s {
    bool desc;          /* the reverse of the state's natural order (broker_list's) */
    const char *type;   /* only jobs of this type (exact); NULL or "": any */
    const char *error;  /* only jobs one of whose errors holds this text, ignoring
                           ASCII case; NULL or "": any */
    const char *worker; /* only active jobs leased to this worker id; NULL or "": any */
} list_filter_t;

/* Entries one listing call examines at most, matching or not (tombstones too):
 * every page costs the backend about the same, however rare the filter is. */
#define LIST_SCAN_MAX 2000

/*
 * broker_list with a filter and an order. One call examines at most LIST_SCAN_MAX
 * entries, so with a filter a page may hold fewer than `limit` jobs, even none,
 * while next_cursor is not NULL: keep paging until it is. The cursor names where
 * the walk stopped, so the next call goes on from there. A worker filter is for
 * the active state only (HP_EINVAL otherwise).
 */
int broker_list_filtered(broker_t *b, const char *queue, job_state_t state,
                         const list_filter_t *filter, const char *cursor, size_t limit,
                         job_list_t *out);

typedef enum { BULK_RETRY, BULK_DELETE } bulk_action_t;

/* Entries one bulk step examines at most (one script call each). */
#define BULK_SCAN_MAX 1000

/*
 * Retries (dead, failed, canceled: else HP_ESTATE) or deletes (not active: else
 * HP_ESTATE) every job of `state` in `queue` that the filter keeps (its order and
 * worker are not used: a worker filter is HP_EINVAL). Walks the state in steps of
 * BULK_SCAN_MAX entries, each one atomic script call, so the backend never stalls;
 * jobs that arrive in the state meanwhile may or may not be included. *matched
 * counts the jobs the filter kept, *done those retried or deleted (both may be
 * NULL). On an error midway the steps done stay done and the counts say so.
 */
int broker_bulk(broker_t *b, const char *queue, job_state_t state, bulk_action_t action,
                const list_filter_t *filter, int64_t *matched, int64_t *done);

/* ---- Queues ---- */

/* Retention of finished jobs, per queue; trimmed as jobs finish and on
 * maintenance. A count or age of 0 here means "default". */
#define QUEUE_KEEP_SUCCEEDED_DEFAULT        1000
#define QUEUE_KEEP_SUCCEEDED_AGE_DEFAULT_MS (24LL * 3600 * 1000)
#define QUEUE_KEEP_DEAD_DEFAULT             10000
#define QUEUE_KEEP_DEAD_AGE_DEFAULT_MS      (7LL * 86400 * 1000)
#define QUEUE_KEEP_CANCELED_DEFAULT         1000
#define QUEUE_KEEP_CANCELED_AGE_DEFAULT_MS  (24LL * 3600 * 1000)

typedef struct queue_conf_s {
    int64_t max_length; /* waiting+scheduled+failed+active; -1 unlimited, 0 unchanged */
    int64_t keep_count[JOB_STATE_COUNT];  /* for SUCCEEDED, DEAD, CANCELED; 0 unchanged */
    int64_t keep_age_ms[JOB_STATE_COUNT]; /* likewise */
} queue_conf_t;

#define QUEUE_RUNTIME_NBUCKETS 12
extern const int64_t QUEUE_RUNTIME_BUCKETS_MS[QUEUE_RUNTIME_NBUCKETS];

typedef struct queue_stats_s {
    int64_t counts[JOB_STATE_COUNT];
    int64_t enqueued_total;
    int64_t succeeded_total;
    int64_t failed_total; /* failed attempts, including those retried */
    int64_t dead_total;
    bool paused;
    int64_t max_length; /* -1: unlimited */
    /* Run time of finished attempts (acked or failed), a Prometheus-style
     * histogram: runtime_count[i] counts attempts that ran <= QUEUE_RUNTIME_BUCKETS_MS[i]
     * (not cumulative), the last slot those longer than every bound. */
    int64_t runtime_count[QUEUE_RUNTIME_NBUCKETS + 1];
    int64_t runtime_sum_ms;
    /* When the job waiting longest became waiting (created, promoted, retried or
     * given back), Unix ms; 0 when nothing waits. Read from the head of each
     * priority's list: cheap, whatever the queue's length. */
    int64_t oldest_waiting_ms;
} queue_stats_t;

int broker_queue_configure(broker_t *b, const char *queue, const queue_conf_t *conf);
int broker_queue_pause(broker_t *b, const char *queue, bool paused);
int broker_queue_stats(broker_t *b, const char *queue, queue_stats_t *out);
/* Every queue ever enqueued to, sorted. Free with broker_queues_free. */
int broker_queues(broker_t *b, char ***names, size_t *n);
void broker_queues_free(char **names, size_t n);

/* Removes every job of `queue` in `state` (not ACTIVE: HP_ESTATE), in steps of a
 * few thousand so Redis never stalls; *removed (may be NULL) counts them. */
int broker_purge(broker_t *b, const char *queue, job_state_t state, int64_t *removed);

/* ---- Throughput ----
 * Finished attempts per queue and second, counted by the ack and fail steps
 * themselves and kept for about two hours. */
#define THROUGHPUT_SECONDS 3600
#define THROUGHPUT_MINUTES 60

typedef struct throughput_s {
    int64_t now_ms;       /* the backend's clock when read */
    int64_t second_start; /* Unix s of per-second slot 0: the last hour, oldest first */
    int64_t minute_start; /* Unix s of per-minute slot 0: the last 60 minutes */
    /* processed: attempts finished (succeeded or failed); failed: failed attempts
     * (retried or not, lease expiries included). The last slot is the current,
     * partial second or minute. */
    int64_t processed_per_second[THROUGHPUT_SECONDS];
    int64_t failed_per_second[THROUGHPUT_SECONDS];
    int64_t processed_per_minute[THROUGHPUT_MINUTES];
    int64_t failed_per_minute[THROUGHPUT_MINUTES];
} throughput_t;

/* The last hour of one queue, or of every queue when `queue` is NULL. */
int broker_throughput(broker_t *b, const char *queue, throughput_t *out);

/* ---- Backend health ---- */
typedef struct broker_info_s {
    char backend[16];          /* "redis" */
    char version[32];          /* the server's version */
    int64_t uptime_s;          /* since the server started */
    int64_t used_memory;       /* bytes */
    int64_t maxmemory;         /* bytes; 0: no limit */
    char maxmemory_policy[32]; /* "" when the server does not say */
    int64_t connected_clients;
} broker_info_t;

int broker_info(broker_t *b, broker_info_t *out);

/* Promotes due jobs, recovers expired leases and trims finished jobs by age, for
 * one queue. *next_due_ms (may be NULL) is when something next comes due, or 0.
 * Reserve does the first two by itself; servers call this on a timer so queues
 * without workers still move. */
int broker_maintain(broker_t *b, const char *queue, int64_t *next_due_ms);
/* broker_maintain for every queue; problems with one queue are logged, not
 * returned. 0, or the error that kept it from listing the queues. */
int broker_maintain_all(broker_t *b);

/* ---- Events ----
 * Every state change publishes one event, a JSON object:
 *   {"event":"enqueued|started|progress|succeeded|failed|dead|canceled|retried|deleted",
 *    "id":"...","queue":"...","type":"...","at":<Unix ms>, ...}
 * with, where they apply, "attempt", "state" (the state after), "error",
 * "runtime_ms", "progress", "retry_at". Delivery is best effort (Redis pub/sub):
 * a subscriber that is away misses events; job state itself is never an event.
 *
 * broker_events_next subscribes on its first call: give it a broker_t of its
 * own, which then serves nothing else. Returns 1 with *json (hp_free) set, 0 when
 * timeout_ms passed with no event, or an error (the subscription is then gone;
 * the next call subscribes again). */
int broker_events_next(broker_t *b, int64_t timeout_ms, char **json);

/* ---- Schedules ----
 * A schedule fires a job from its template at the ticks of a cron expression. The
 * broker stores schedules and fires them atomically; it does not read cron: the
 * scheduler (scheduler/) computes ticks and hands them in. A schedule lives in its
 * job queue's Redis Cluster slot, so its fire (the job's enqueue and the move of
 * next_fire) is one script, and any number of servers fire each tick once. */
#define SCHEDULE_NAME_MAX    128 /* [A-Za-z0-9._:-] */
#define SCHEDULE_HISTORY_MAX 20  /* runs kept per schedule, newest first */

typedef enum { SCHEDULE_MISFIRE_SKIP, SCHEDULE_MISFIRE_ONCE } schedule_misfire_t;
typedef enum { SCHEDULE_OVERLAP_ALLOW, SCHEDULE_OVERLAP_SKIP } schedule_overlap_t;

typedef struct schedule_s {
    char name[SCHEDULE_NAME_MAX + 1];
    char *cron; /* the expression, as given */
    char *tz;   /* IANA zone name, "UTC" by default */
    char *job;  /* the job template: a JSON object as POST /v1/jobs takes it */
    char queue[JOB_QUEUE_NAME_MAX + 1]; /* the template's queue */
    bool paused;
    schedule_misfire_t misfire;
    schedule_overlap_t overlap;
    int64_t jitter_ms;            /* each fired job is delayed by a random 0..jitter_ms */
    int64_t next_fire_ms;         /* the next tick, Unix ms; 0: none */
    int64_t last_fire_ms;         /* the last tick that fired, or 0 */
    char last_job_id[JOB_ID_MAX]; /* "" when none */
    int64_t created_ms, updated_ms;
    /* Runs, newest first: [{"tick":ms,"at":ms,"job":"<id>"|null,"outcome":
     * "enqueued"|"triggered"|"skipped_overlap"|"missed"}]; JSON text. */
    char *history;
    int64_t version; /* bumped by every change to the definition */
} schedule_t;

void schedule_free(schedule_t *s);
void schedules_free(schedule_t **list, size_t n);
bool schedule_name_valid(const char *name);

/* Creates or replaces the definition (cron, tz, job, queue, paused, misfire,
 * overlap, jitter_ms, next_fire_ms as computed by the caller); keeps the run
 * history and last fire. *created (may be NULL) says which. */
int broker_schedule_put(broker_t *b, const schedule_t *s, bool *created);
int broker_schedule_get(broker_t *b, const char *name, schedule_t **out);
/* Every schedule, sorted by name. */
int broker_schedules(broker_t *b, schedule_t ***list, size_t *n);
int broker_schedule_delete(broker_t *b, const char *name);
/* Pausing keeps next_fire_ms as it is; resuming sets it (the caller computes it). */
int broker_schedule_pause(broker_t *b, const char *name, bool paused, int64_t next_fire_ms);

typedef enum {
    SCHEDULE_FIRED,           /* the job was enqueued */
    SCHEDULE_SKIPPED_OVERLAP, /* overlap skip and the last job not finished: none enqueued */
    SCHEDULE_MISSED,          /* misfire skip: the tick was recorded as missed */
    SCHEDULE_LOST,            /* next_fire was no longer `tick` (fired elsewhere, changed,
                                 paused or deleted): nothing done */
} schedule_fire_t;

/*
 * The compare-and-set at the heart of the scheduler, one atomic step: if the
 * schedule's next_fire_ms is still `tick_ms` (and it is not paused), enqueue
 * `spec` (unless `missed`, or overlap skip finds the last job unfinished), set
 * next_fire_ms = next_ms, and record the run. The job carries the schedule and
 * tick (spec->schedule, spec->schedule_tick_ms are set by the broker). `job_id`
 * gets the new job's id ("" when none). With tick_ms 0 this is "trigger now":
 * enqueue at once, next_fire_ms untouched, no compare (and no overlap check: a
 * person asked); HP_ENOTFOUND when the schedule is not in spec->queue.
 * The schedule is found in spec->queue's slot: a spec for another queue (a stale
 * template) answers SCHEDULE_LOST. With `missed`, spec may be NULL.
 * A tick already fired (next_fire_ms set back to it by a put) enqueues nothing:
 * next_fire_ms moves, the outcome is SCHEDULE_LOST and job_id the first job's.
 * The broker does not apply jitter_ms: the caller delays spec (delay_ms) itself.
 * A queue at its max length refuses the fire (HP_EFULL) and nothing moves.
 */
int broker_schedule_fire(broker_t *b, const char *name, int64_t tick_ms, int64_t next_ms,
                         bool missed, const job_spec_t *spec, schedule_fire_t *outcome,
                         char job_id[JOB_ID_MAX]);
/* A number that changes whenever any schedule is put, paused or deleted: a server
 * reloads its schedules when it moves. */
int broker_schedules_version(broker_t *b, int64_t *version);

/* ---- Tokens ----
 * API tokens, stored hashed (SHA-256) in the broker; the secret is shown once. */
typedef enum { TOKEN_SCOPE_SUBMIT, TOKEN_SCOPE_READ, TOKEN_SCOPE_ADMIN } token_scope_t;
const char *token_scope_name(token_scope_t scope);
int token_scope_parse(const char *name); /* or -1 */

#define TOKEN_ID_LEN     12 /* public part, [a-z0-9] */
#define TOKEN_MAX        80 /* "hop_<id>_<secret>" and a NUL */
#define TOKEN_NAME_MAX   64
#define TOKEN_QUEUES_MAX 256 /* comma-separated patterns; '*' matches any run */

typedef struct token_info_s {
    char id[TOKEN_ID_LEN + 1];
    char name[TOKEN_NAME_MAX + 1];
    token_scope_t scope;
    char queues[TOKEN_QUEUES_MAX + 1]; /* "" : every queue */
    double rate;                       /* requests per second; 0: unlimited */
    int burst;
    int64_t created_ms;
} token_info_t;

/* Creates a token: writes the secret token text (shown once) into `token`, and
 * its record (id, created) back into *info. */
int broker_token_create(broker_t *b, token_info_t *info, char token[TOKEN_MAX]);
/* Checks a presented token (constant-time compare of hashes): 0 and *info, or
 * HP_ENOTFOUND for any token that is malformed, unknown or revoked. */
int broker_token_verify(broker_t *b, const char *token, token_info_t *info);
int broker_tokens(broker_t *b, token_info_t **infos, size_t *n); /* hp_free(*infos) */
int broker_token_revoke(broker_t *b, const char *id);

/* True when `queue` matches one of the comma-separated patterns ("" matches all). */
bool token_queue_allowed(const char *patterns, const char *queue);

/* ---- Rate limits ----
 * A token bucket kept in the broker, so every server instance shares it: `rate`
 * per second, up to `burst` at once. 1: allowed; 0: limited, *retry_after_ms
 * says when the next one would be. */
int broker_rate_take(broker_t *b, const char *key, double rate, int burst, int64_t *retry_after_ms);

/* ---- Dashboard sessions ----
 * Logging in to the dashboard with a token opens a session: a random id (the
 * cookie's value) whose SHA-256 names the stored record, so a copy of the broker's
 * data holds no usable cookie. The session carries who opened it (the token's
 * record), a CSRF secret, and an expiry; it ends at its expiry, at logout, or when
 * its token is revoked (checked at every lookup). */
#define SESSION_ID_LEN   64 /* hex of 32 random bytes */
#define SESSION_CSRF_LEN 64
#define SESSION_IP_MAX   64

typedef struct session_s {
    token_info_t token;  /* who: the token the session was opened with */
    bool env_admin;      /* opened with the server's HOPPER_ADMIN_TOKEN (no record) */
    char admin_hash[65]; /* env_admin: SHA-256 of that token, to notice it changed */
    char csrf[SESSION_CSRF_LEN + 1];
    char ip[SESSION_IP_MAX]; /* where it was opened from */
    int64_t created_ms, expires_ms;
} session_t;

/* Opens a session for s->token (or s->env_admin) lasting ttl_ms: fills s->csrf,
 * created_ms and expires_ms, and writes the new id (the cookie) into `id`. */
int broker_session_create(broker_t *b, session_t *s, int64_t ttl_ms, char id[SESSION_ID_LEN + 1]);
/* The live session with this id: 0 and *out, or HP_ENOTFOUND when the id is
 * malformed, unknown, expired or its token revoked. */
int broker_session_get(broker_t *b, const char *id, session_t *out);
/* Ends a session; ending one that is gone is not an error. */
int broker_session_delete(broker_t *b, const char *id);

/* ---- Audit log ----
 * Every admin action, as a JSON object the API writes (who, what, when, from
 * where), kept newest first up to AUDIT_KEEP entries. */
#define AUDIT_KEEP       100000
#define AUDIT_CURSOR_MAX 48

typedef struct audit_page_s {
    char **entries; /* JSON objects, each with "id" added first; newest first */
    size_t n;
    char *next_cursor; /* NULL at the end */
} audit_page_t;

int broker_audit_append(broker_t *b, const char *entry_json);
/* Up to `limit` (1-1000) entries older than `cursor` (NULL: the newest). */
int broker_audit_list(broker_t *b, const char *cursor, size_t limit, audit_page_t *out);
void audit_page_cleanup(audit_page_t *page);

#endif
