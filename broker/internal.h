/*
 * broker/internal.h -- what broker/'s own files share: the backend vtable, the
 * handle's base struct, and the job record codec. Nothing outside broker/
 * includes this.
 */
#ifndef HP_BROKER_INTERNAL_H
#define HP_BROKER_INTERNAL_H

#include "broker/broker.h"

/* A job checked and encoded for storage, ready for a backend to write. */
typedef struct broker__prepared_s {
    const char *queue; /* borrowed from the spec */
    char ulid[HP_ULID_LEN + 1];
    int priority;
    int64_t delay_ms;
    int64_t run_at_ms;
    const char *unique_key; /* "" when none */
    int64_t unique_ttl_ms;
    const char *idempotency_key; /* "" when none */
    const char *request_hash;    /* "" when none */
    char *body;                  /* meta members after the state, "}\n", payload; owned */
    size_t body_len;
    size_t index; /* position in the caller's batch */
} broker__prepared_t;

/* How a schedule fire goes (schedule_fire.lua): a tick compared with next_fire, a
 * tick recorded as missed, or a trigger (no compare, next_fire untouched). */
typedef enum { BROKER__FIRE_TICK, BROKER__FIRE_MISSED, BROKER__FIRE_TRIGGER } broker__fire_mode_t;

/*
 * A backend: a const table of operations (curl's Curl_protocol, Redis's engine).
 * broker.c validates every argument, parses ids and makes lease tokens before it
 * calls in, so a backend sees only well-formed input. A backend's handle embeds
 * broker_t as its first member `super`.
 */
typedef struct broker_ops_s {
    const char *name;
    void (*close)(broker_t *b);
    int (*ping)(broker_t *b);
    int (*enqueue)(broker_t *b, broker__prepared_t *jobs, size_t n, enqueue_result_t *results);
    int (*reserve)(broker_t *b, const char *queue, size_t max, int64_t lease_ms, const char *token,
                   const char *worker, job_list_t *out);
    int (*wait)(broker_t *b, const char *const *queues, size_t n, int64_t timeout_ms);
    int (*heartbeat)(broker_t *b, const lease_ref_t *leases, size_t n, int64_t lease_ms,
                     lease_status_t *status);
    /* Items whose err is already set are skipped. */
    int (*ack_batch)(broker_t *b, job_ack_t *acks, size_t n);
    int (*fail)(broker_t *b, const char *ulid, const char *queue, const char *token,
                const char *message, bool permanent, job_state_t *state, int64_t *retry_at);
    int (*release)(broker_t *b, const char *ulid, const char *queue, const char *token);
    int (*report)(broker_t *b, const char *ulid, const char *queue, const char *token, int percent,
                  const char *message, int level, const char *line);
    /* info NULL: no beat; cmd NULL: no command taken (at least one of them is given). */
    int (*worker_beat)(broker_t *b, const char *id, const char *info, int64_t ttl_ms,
                       worker_command_t *cmd);
    int (*worker_gone)(broker_t *b, const char *id);
    int (*workers)(broker_t *b, char ***infos, size_t *n);
    int (*worker_get)(broker_t *b, const char *id, char **info);              /* HP_ENOTFOUND */
    int (*worker_command)(broker_t *b, const char *id, worker_command_t cmd); /* HP_ENOTFOUND */
    int (*get)(broker_t *b, const char *ulid, const char *queue, job_t **out);
    /* errs[i]: that job's error; the return value: one for the whole call. */
    int (*get_many)(broker_t *b, const char *const *ulids, const char *const *queues, size_t n,
                    job_t **jobs, int *errs);
    int (*cancel)(broker_t *b, const char *ulid, const char *queue, job_state_t *state);
    /* payload NULL: the stored one stays. */
    int (*retry)(broker_t *b, const char *ulid, const char *queue, const char *payload,
                 size_t payload_len);
    int (*delete)(broker_t *b, const char *ulid, const char *queue);
    /* filter is never NULL; its strings are "" when unused. */
    int (*list)(broker_t *b, const char *queue, job_state_t state, const list_filter_t *filter,
                const char *cursor, size_t limit, job_list_t *out);
    int (*bulk)(broker_t *b, const char *queue, job_state_t state, bulk_action_t action,
                const list_filter_t *filter, int64_t *matched, int64_t *done);
    int (*queue_configure)(broker_t *b, const char *queue, const queue_conf_t *conf);
    int (*queue_pause)(broker_t *b, const char *queue, bool paused);
    int (*queue_stats)(broker_t *b, const char *queue, queue_stats_t *out);
    int (*queues)(broker_t *b, char ***names, size_t *n);
    int (*maintain)(broker_t *b, const char *queue, int64_t *next_due_ms);
    /* Removes every job of a non-active state, in steps that never stall the backend. */
    int (*purge)(broker_t *b, const char *queue, job_state_t state, int64_t *removed);
    /* Sums the queues' counts into *out (zeroed by the caller). */
    int (*throughput)(broker_t *b, const char *const *queues, size_t n, throughput_t *out);
    int (*info)(broker_t *b, broker_info_t *out);
    /* 1 with *json (hp_free), 0 on timeout, or an error (the subscription is gone). */
    int (*events_next)(broker_t *b, int64_t timeout_ms, char **json);
    /* Token records, stored by id; the backend never sees a secret. store sets
     * *stored false (and returns 0) when the id is taken. */
    int (*token_store)(broker_t *b, const char *id, const char *record, bool *stored);
    int (*token_load)(broker_t *b, const char *id, char **record); /* HP_ENOTFOUND */
    int (*token_records)(broker_t *b, char ***records, size_t *n);
    int (*token_delete)(broker_t *b, const char *id); /* HP_ENOTFOUND */
    /* rate > 0 and burst >= 1 here. */
    int (*rate_take)(broker_t *b, const char *key, double rate, int burst, int64_t *retry_after_ms);
    /* Schedules: every field was checked by broker.c. get and delete answer
     * HP_ENOTFOUND naming the schedule; schedules come sorted by name. */
    int (*schedule_put)(broker_t *b, const schedule_t *s, bool *created);
    int (*schedule_get)(broker_t *b, const char *name, schedule_t **out);
    int (*schedules)(broker_t *b, schedule_t ***list, size_t *n);
    int (*schedule_delete)(broker_t *b, const char *name);
    int (*schedule_pause)(broker_t *b, const char *name, bool paused, int64_t next_fire_ms);
    /* `job` is NULL for a missed tick, and `queue` may then be NULL (the backend
     * finds the schedule's). tick_ms is the tick the job carries (now for a trigger). */
    int (*schedule_fire)(broker_t *b, const char *name, const char *queue, int64_t tick_ms,
                         int64_t next_ms, broker__fire_mode_t mode, broker__prepared_t *job,
                         schedule_fire_t *outcome, char job_id[JOB_ID_MAX]);
    int (*schedules_version)(broker_t *b, int64_t *version);
    /* Sessions, stored by the SHA-256 (hex) of their id with a time to live; load
     * answers HP_ENOTFOUND for one that is gone. */
    int (*session_store)(broker_t *b, const char *key, const char *record, int64_t ttl_ms);
    int (*session_load)(broker_t *b, const char *key, char **record);
    int (*session_delete)(broker_t *b, const char *key);
    /* The audit log: append keeps the newest `keep`; list fills ids[i] and
     * entries[i] (hp_free each, and the arrays) newest first, older than `cursor`
     * (a checked "<ms>-<seq>" or NULL). */
    int (*audit_append)(broker_t *b, const char *entry, size_t keep);
    int (*audit_list)(broker_t *b, const char *cursor, size_t limit, char ***ids, char ***entries,
                      size_t *n);
} broker_ops_t;

struct broker_s {
    const broker_ops_t *ops;
    size_t max_payload;
    char errmsg[256];
};

/* token.c: n random bytes from OpenSSL; the SHA-256 of a string as hex; a
 * token's current record by id (HP_ENOTFOUND when revoked). */
int broker__random_bytes(broker_t *b, unsigned char *buf, size_t n);
void broker__sha256_hex(const char *text, char out[65]);
int broker__token_info(broker_t *b, const char *id, token_info_t *info);

/* Sets b->errmsg and returns err, so `return broker__error(b, HP_EINVAL, ...)`. */
int broker__error(broker_t *b, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- Job model (job.c) ---- */

/* Checks a spec against the limits in broker.h; on failure writes a message that
 * names the field into errbuf and returns HP_EINVAL or HP_ETOOBIG. */
int broker__validate_spec(const job_spec_t *spec, size_t max_payload, char *errbuf, size_t errlen);
/* Checks that text is JSON of at most max bytes; the message starts with `what`. */
int broker__check_json(const char *what, const char *text, size_t len, size_t max, char *errbuf,
                       size_t errlen);
/* Fills `out` from a valid spec; out->body is hp_malloc'd (broker__prepared_cleanup). */
void broker__prepare(const job_spec_t *spec, broker__prepared_t *out);
void broker__prepared_cleanup(broker__prepared_t *p);
/* Decodes a stored record into a job the caller owns (job_free). HP_EPROTO when
 * the record is not one Hopper wrote. */
int broker__job_decode(const char *ulid, const char *queue, const char *rec, size_t len,
                       job_t **out);

/* ---- Backends ---- */
int broker__redis_open(const broker_config_t *cfg, broker_t **out, char **errmsg);

#endif
