/*
 * The broker's front door: checks every argument, turns job ids into (ulid, queue),
 * makes lease tokens, and hands well-formed calls to the backend's vtable. Error
 * messages for bad input are written here, once, for every backend.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "broker/internal.h"

#define LEASE_TOKEN_BYTES 12
#define LIST_LIMIT_MAX    1000
#define RESERVE_MAX       1000
#define LEASE_MAX_MS      (24LL * 3600 * 1000)

int broker__error(broker_t *b, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->errmsg, sizeof(b->errmsg), fmt, ap);
    va_end(ap);
    return err;
}

/* ---- Opening ---- */

int broker_open(const broker_config_t *cfg, broker_t **out, char **errmsg)
{
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    const char *url = cfg && cfg->url ? cfg->url : "redis://127.0.0.1:6379";
    if (strncmp(url, "redis://", 8) != 0 && strncmp(url, "unix://", 7) != 0) {
        if (errmsg)
            *errmsg = hp_sprintf("broker url \"%s\": expected redis://host:port or "
                                 "unix:///path (the only backend so far is Redis)",
                                 url);
        return HP_EINVAL;
    }
    broker_config_t c = cfg ? *cfg : (broker_config_t){0};
    c.url = url;
    int err = broker__redis_open(&c, out, errmsg);
    if (err)
        return err;
    (*out)->max_payload = c.max_payload ? c.max_payload : JOB_PAYLOAD_DEFAULT_MAX;
    return 0;
}

void broker_close(broker_t *b)
{
    if (b)
        b->ops->close(b);
}

const char *broker_errmsg(const broker_t *b)
{
    return b->errmsg;
}

int broker_ping(broker_t *b)
{
    return b->ops->ping(b);
}

static int check_queue(broker_t *b, const char *queue)
{
    if (!job_queue_name_valid(queue))
        return broker__error(b, HP_EINVAL,
                             "queue: must be 1-%d characters of A-Z a-z 0-9 . _ -, got \"%.80s\"",
                             JOB_QUEUE_NAME_MAX, queue ? queue : "");
    return 0;
}

static int parse_id(broker_t *b, const char *id, char *ulid, char *queue)
{
    if (!job_id_parse(id, ulid, queue))
        return broker__error(
            b, HP_EINVAL, "job id \"%.100s\": expected <26-character ULID>-<queue>", id ? id : "");
    return 0;
}

/* For calls from the worker holding a lease: a well-formed id and a token. `what`
 * names the call in the message ("ack", "fail", ...). */
static int parse_leased(broker_t *b, const char *what, const char *id, const char *token,
                        char *ulid, char *queue)
{
    int err = parse_id(b, id, ulid, queue);
    if (!err && (!token || !token[0]))
        err = broker__error(b, HP_EINVAL, "%s: a lease token is required", what);
    return err;
}

/* ---- Producing ---- */

int broker_enqueue(broker_t *b, const job_spec_t *specs, size_t n, enqueue_result_t *results)
{
    if (n == 0 || n > JOB_BATCH_MAX)
        return broker__error(b, HP_EINVAL, "batch: must hold 1-%d jobs, got %zu", JOB_BATCH_MAX, n);
    memset(results, 0, n * sizeof(*results));
    broker__prepared_t *ready = hp_calloc(n, sizeof(*ready));
    size_t nready = 0;
    int first_err = 0;
    for (size_t i = 0; i < n; i++) {
        int err = broker__validate_spec(&specs[i], b->max_payload, results[i].errmsg,
                                        sizeof(results[i].errmsg));
        if (err) {
            results[i].err = err;
            if (!first_err) {
                first_err = err;
                if (n > 1)
                    broker__error(b, err, "jobs[%zu].%s", i, results[i].errmsg);
                else
                    broker__error(b, err, "%s", results[i].errmsg);
            }
            continue;
        }
        broker__prepare(&specs[i], &ready[nready]);
        ready[nready++].index = i;
    }
    if (nready > 0) {
        int err = b->ops->enqueue(b, ready, nready, results);
        if (err && !first_err)
            first_err = err;
    }
    for (size_t i = 0; i < nready; i++)
        broker__prepared_cleanup(&ready[i]);
    hp_free(ready);
    return first_err;
}

/* ---- Working ---- */

#define WORKER_NAME_MAX WORKER_ID_MAX

/* Worker names go into the lease value and the record as they are, so they hold
 * nothing that needs quoting: no '|', no '"'. */
static bool worker_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len > WORKER_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!isalnum((unsigned char)name[i]) && !strchr("._:@/-", name[i]))
            return false;
    }
    return true;
}

int broker_reserve(broker_t *b, const char *queue, size_t max, int64_t lease_ms, const char *worker,
                   job_list_t *out)
{
    memset(out, 0, sizeof(*out));
    int err = check_queue(b, queue);
    if (err)
        return err;
    if (max == 0 || max > RESERVE_MAX)
        return broker__error(b, HP_EINVAL, "reserve: max must be 1-%d, got %zu", RESERVE_MAX, max);
    if (lease_ms <= 0 || lease_ms > LEASE_MAX_MS)
        return broker__error(b, HP_EINVAL, "lease: must be 1 ms to 24 h, got %lld ms",
                             (long long)lease_ms);
    worker = worker ? worker : "";
    if (!worker_name_valid(worker))
        return broker__error(b, HP_EINVAL,
                             "worker: must be 0-%d characters of A-Z a-z 0-9 . _ : @ / -",
                             WORKER_NAME_MAX);
    char token[LEASE_TOKEN_BYTES * 2 + 1];
    hp_random_hex(token, LEASE_TOKEN_BYTES);
    return b->ops->reserve(b, queue, max, lease_ms, token, worker, out);
}

int broker_wait(broker_t *b, const char *const *queues, size_t nqueues, int64_t timeout_ms)
{
    if (nqueues == 0 || timeout_ms < 0)
        return broker__error(b, HP_EINVAL, "wait: needs at least one queue and a timeout >= 0");
    for (size_t i = 0; i < nqueues; i++) {
        int err = check_queue(b, queues[i]);
        if (err)
            return err;
    }
    return b->ops->wait(b, queues, nqueues, timeout_ms);
}

int broker_heartbeat(broker_t *b, const lease_ref_t *leases, size_t n, int64_t lease_ms,
                     lease_status_t *status)
{
    if (lease_ms <= 0 || lease_ms > LEASE_MAX_MS)
        return broker__error(b, HP_EINVAL, "lease: must be 1 ms to 24 h, got %lld ms",
                             (long long)lease_ms);
    char ulid[HP_ULID_LEN + 1], queue[JOB_QUEUE_NAME_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        int err = parse_id(b, leases[i].id, ulid, queue);
        if (err)
            return err;
        if (!leases[i].token || !leases[i].token[0])
            return broker__error(b, HP_EINVAL, "heartbeat: job %s has no lease token",
                                 leases[i].id);
    }
    return n ? b->ops->heartbeat(b, leases, n, lease_ms, status) : 0;
}

int broker_ack(broker_t *b, const char *id, const char *token, const char *result,
               size_t result_len)
{
    job_ack_t ack = {id, token, result, result_len, 0};
    return broker_ack_batch(b, &ack, 1);
}

/* Checks one ack; on failure sets ack->err and b->errmsg. */
static int check_ack(broker_t *b, job_ack_t *ack)
{
    char ulid[HP_ULID_LEN + 1], queue[JOB_QUEUE_NAME_MAX + 1];
    ack->err = parse_leased(b, "ack", ack->id, ack->token, ulid, queue);
    if (!ack->err && ack->result) {
        ack->result_len = ack->result_len ? ack->result_len : strlen(ack->result);
        ack->err = broker__check_json("result", ack->result, ack->result_len, b->max_payload,
                                      b->errmsg, sizeof(b->errmsg));
    }
    return ack->err;
}

int broker_ack_batch(broker_t *b, job_ack_t *acks, size_t n)
{
    if (n == 0 || n > JOB_BATCH_MAX)
        return broker__error(b, HP_EINVAL, "batch: must hold 1-%d acks, got %zu", JOB_BATCH_MAX, n);
    int first = 0;
    char first_msg[sizeof(b->errmsg)] = "";
    size_t valid = 0;
    for (size_t i = 0; i < n; i++) {
        if (check_ack(b, &acks[i]) == 0)
            valid++;
        else if (!first) {
            first = acks[i].err;
            snprintf(first_msg, sizeof(first_msg), "%s", b->errmsg);
        }
    }
    if (valid > 0) {
        int err = b->ops->ack_batch(b, acks, n);
        if (err && !first)
            return err; /* b->errmsg says it */
    }
    if (first)
        snprintf(b->errmsg, sizeof(b->errmsg), "%s", first_msg);
    return first;
}

int broker_fail(broker_t *b, const char *id, const char *token, const char *message, bool permanent,
                job_state_t *new_state, int64_t *retry_at_ms)
{
    char ulid[HP_ULID_LEN + 1], queue[JOB_QUEUE_NAME_MAX + 1];
    int err = parse_leased(b, "fail", id, token, ulid, queue);
    if (err)
        return err;
    char cut[JOB_ERROR_MAX + 1];
    snprintf(cut, sizeof(cut), "%s", message && message[0] ? message : "failed (no message)");
    job_state_t state;
    int64_t retry_at = 0;
    err = b->ops->fail(b, ulid, queue, token, cut, permanent, &state, &retry_at);
    if (!err && new_state)
        *new_state = state;
    if (!err && retry_at_ms)
        *retry_at_ms = retry_at;
    return err;
}

int broker_release(broker_t *b, const char *id, const char *token)
{
    char ulid[HP_ULID_LEN + 1], queue[JOB_QUEUE_NAME_MAX + 1];
    int err = parse_leased(b, "release", id, token, ulid, queue);
    return err ? err : b->ops->release(b, ulid, queue, token);
}

/* Progress (line NULL) or a log line: one call, one step. */
static int report(broker_t *b, const char *id, const char *token, int percent, const char *message,
                  int level, const char *line)
{
    char ulid[HP_ULID_LEN + 1], queue[JOB_QUEUE_NAME_MAX + 1];
    int err = parse_leased(b, line ? "log" : "progress", id, token, ulid, queue);
    if (err)
        return err;
    char cut[JOB_LOG_LINE_MAX + 1];
    const char *text = line ? line : message;
    int max = line ? JOB_LOG_LINE_MAX : JOB_PROGRESS_MESSAGE_MAX;
    snprintf(cut, sizeof(cut), "%.*s", max, text ? text : "");
    return b->ops->report(b, ulid, queue, token, percent, line ? NULL : cut, level,
                          line ? cut : NULL);
}

int broker_progress(broker_t *b, const char *id, const char *token, int percent,
                    const char *message)
{
    if (percent < 0 || percent > 100)
        return broker__error(b, HP_EINVAL, "progress: must be 0-100, got %d", percent);
    return report(b, id, token, percent, message, 0, NULL);
}

int broker_log(broker_t *b, const char *id, const char *token, int level, const char *line)
{
    if (level < 0 || level > 3 || !line)
        return broker__error(b, HP_EINVAL, "log: level must be 0-3 and the line given");
    return report(b, id, token, -1, NULL, level, line);
}

/* ---- Workers ---- */

bool broker_worker_id_valid(const char *worker_id)
{
    return worker_id && worker_id[0] && worker_name_valid(worker_id);
}

static int check_worker_id(broker_t *b, const char *id)
{
    if (!broker_worker_id_valid(id))
        return broker__error(b, HP_EINVAL,
                             "worker id: must be 1-%d characters of A-Z a-z 0-9 . _ : @ / -",
                             WORKER_ID_MAX);
    return 0;
}

int broker_worker_beat(broker_t *b, const char *worker_id, const char *info_json, int64_t ttl_ms)
{
    int err = check_worker_id(b, worker_id);
    if (!err && ttl_ms <= 0)
        err = broker__error(b, HP_EINVAL, "worker beat: ttl must be positive");
    if (!err)
        err = broker__check_json("worker info", info_json, strlen(info_json), b->max_payload,
                                 b->errmsg, sizeof(b->errmsg));
    return err ? err : b->ops->worker_beat(b, worker_id, info_json, ttl_ms, NULL);
}

int broker_worker_poll(broker_t *b, const char *worker_id, const char *info_json, int64_t ttl_ms,
                       worker_command_t *cmd)
{
    *cmd = WORKER_COMMAND_NONE;
    int err = check_worker_id(b, worker_id);
    if (!err && info_json && ttl_ms <= 0)
        err = broker__error(b, HP_EINVAL, "worker beat: ttl must be positive");
    if (!err && info_json)
        err = broker__check_json("worker info", info_json, strlen(info_json), b->max_payload,
                                 b->errmsg, sizeof(b->errmsg));
    return err ? err : b->ops->worker_beat(b, worker_id, info_json, ttl_ms, cmd);
}

const char *worker_command_name(worker_command_t cmd)
{
    return cmd == WORKER_COMMAND_QUIET ? "quiet" : cmd == WORKER_COMMAND_STOP ? "stop" : "";
}

int broker_worker_command(broker_t *b, const char *worker_id, worker_command_t cmd)
{
    int err = check_worker_id(b, worker_id);
    if (!err && cmd != WORKER_COMMAND_QUIET && cmd != WORKER_COMMAND_STOP)
        err = broker__error(b, HP_EINVAL, "worker command: must be quiet or stop");
    return err ? err : b->ops->worker_command(b, worker_id, cmd);
}

int broker_worker_get(broker_t *b, const char *worker_id, char **info)
{
    *info = NULL;
    int err = check_worker_id(b, worker_id);
    return err ? err : b->ops->worker_get(b, worker_id, info);
}

int broker_worker_gone(broker_t *b, const char *worker_id)
{
    int err = check_worker_id(b, worker_id);
    return err ? err : b->ops->worker_gone(b, worker_id);
}

int broker_workers(broker_t *b, char ***infos, size_t *n)
{
    *infos = NULL;
    *n = 0;
    return b->ops->workers(b, infos, n);
}

/* ---- Operating ---- */

#define WITH_ID(call)                                                                              \
    char ulid[HP_ULID_LEN + 1], queue[JOB_QUEUE_NAME_MAX + 1];                                     \
    int err = parse_id(b, id, ulid, queue);                                                        \
    return err ? err : (call)

int broker_get(broker_t *b, const char *id, job_t **out)
{
    *out = NULL;
    WITH_ID(b->ops->get(b, ulid, queue, out));
}

int broker_get_many(broker_t *b, const char *const *ids, size_t n, job_t **jobs, int *errs)
{
    if (n > JOB_BATCH_MAX)
        return broker__error(b, HP_EINVAL, "get: at most %d jobs per call, got %zu", JOB_BATCH_MAX,
                             n);
    char(*ulids)[HP_ULID_LEN + 1] = hp_malloc(n ? n * sizeof(*ulids) : 1);
    char(*queues)[JOB_QUEUE_NAME_MAX + 1] = hp_malloc(n ? n * sizeof(*queues) : 1);
    const char **ulid_ptrs = hp_calloc(n ? n : 1, sizeof(*ulid_ptrs));
    const char **queue_ptrs = hp_calloc(n ? n : 1, sizeof(*queue_ptrs));
    size_t *index = hp_calloc(n ? n : 1, sizeof(*index));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        jobs[i] = NULL;
        errs[i] = HP_EINVAL;
        if (!ids[i] || !job_id_parse(ids[i], ulids[m], queues[m]))
            continue;
        ulid_ptrs[m] = ulids[m];
        queue_ptrs[m] = queues[m];
        index[m++] = i;
    }
    job_t **found = hp_calloc(m ? m : 1, sizeof(*found));
    int *found_errs = hp_calloc(m ? m : 1, sizeof(*found_errs));
    int err = m ? b->ops->get_many(b, ulid_ptrs, queue_ptrs, m, found, found_errs) : 0;
    for (size_t k = 0; k < m; k++) {
        if (err) {
            job_free(found[k]);
            continue;
        }
        jobs[index[k]] = found[k];
        errs[index[k]] = found_errs[k];
    }
    hp_free(found);
    hp_free(found_errs);
    hp_free(index);
    hp_free(queue_ptrs);
    hp_free(ulid_ptrs);
    hp_free(queues);
    hp_free(ulids);
    return err;
}

int broker_cancel(broker_t *b, const char *id, job_state_t *state_after)
{
    job_state_t ignored;
    WITH_ID(b->ops->cancel(b, ulid, queue, state_after ? state_after : &ignored));
}

int broker_retry(broker_t *b, const char *id)
{
    WITH_ID(b->ops->retry(b, ulid, queue, NULL, 0));
}

int broker_retry_with_payload(broker_t *b, const char *id, const char *payload, size_t len)
{
    char ulid[HP_ULID_LEN + 1], queue[JOB_QUEUE_NAME_MAX + 1];
    int err = parse_id(b, id, ulid, queue);
    if (err)
        return err;
    if (!payload)
        return broker__error(b, HP_EINVAL, "payload: required (JSON text; \"null\" for none)");
    len = len ? len : strlen(payload);
    err = broker__check_json("payload", payload, len, b->max_payload, b->errmsg, sizeof(b->errmsg));
    return err ? err : b->ops->retry(b, ulid, queue, payload, len);
}

int broker_delete(broker_t *b, const char *id)
{
    WITH_ID(b->ops->delete (b, ulid, queue));
}

/* Cursors are "<number>:<number or ulid>" (list.lua); anything else was not given
 * out by a listing, and would silently start from the beginning. */
static bool cursor_shaped(const char *cursor)
{
    size_t len = strlen(cursor), i = cursor[0] == '-' ? 1 : 0, digits = 0;
    if (len == 0 || len > 64)
        return len == 0;
    for (; i < len && cursor[i] >= '0' && cursor[i] <= '9'; i++)
        digits++;
    if (digits == 0 || i >= len || cursor[i] != ':' || i + 1 == len)
        return false;
    for (i++; i < len; i++) {
        char ch = cursor[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')))
            return false;
    }
    return true;
}

int broker_list(broker_t *b, const char *queue, job_state_t state, const char *cursor, size_t limit,
                job_list_t *out)
{
    return broker_list_filtered(b, queue, state, NULL, cursor, limit, out);
}

/* Checks a filter and copies it with "" for every string not given. */
static int check_filter(broker_t *b, const list_filter_t *in, list_filter_t *out)
{
    *out = in ? *in : (list_filter_t){0};
    out->type = out->type ? out->type : "";
    out->error = out->error ? out->error : "";
    out->worker = out->worker ? out->worker : "";
    size_t tlen = strlen(out->type);
    bool printable = true; /* a type is printable ASCII without spaces */
    for (size_t i = 0; i < tlen && printable; i++)
        printable = out->type[i] > 0x20 && out->type[i] <= 0x7e;
    if (tlen > JOB_TYPE_NAME_MAX || !printable)
        return broker__error(b, HP_EINVAL,
                             "type: a job type is 1-%d printable ASCII characters without spaces",
                             JOB_TYPE_NAME_MAX);
    if (strlen(out->error) > LIST_FILTER_ERROR_MAX)
        return broker__error(b, HP_EINVAL, "error: at most %d characters to look for",
                             LIST_FILTER_ERROR_MAX);
    if (out->worker[0] && !worker_name_valid(out->worker))
        return broker__error(b, HP_EINVAL,
                             "worker: a worker id is 1-%d characters of A-Z a-z 0-9 . _ : @ / -",
                             WORKER_ID_MAX);
    return 0;
}

int broker_list_filtered(broker_t *b, const char *queue, job_state_t state,
                         const list_filter_t *filter, const char *cursor, size_t limit,
                         job_list_t *out)
{
    memset(out, 0, sizeof(*out));
    int err = check_queue(b, queue);
    if (err)
        return err;
    if ((unsigned)state >= JOB_STATE_COUNT)
        return broker__error(b, HP_EINVAL, "state: unknown");
    if (limit == 0 || limit > LIST_LIMIT_MAX)
        return broker__error(b, HP_EINVAL, "limit: must be 1-%d, got %zu", LIST_LIMIT_MAX, limit);
    if (cursor && !cursor_shaped(cursor))
        return broker__error(b, HP_EINVAL, "cursor: not one this server gave out");
    list_filter_t f;
    err = check_filter(b, filter, &f);
    if (err)
        return err;
    if (f.worker[0] && state != JOB_STATE_ACTIVE)
        return broker__error(b, HP_EINVAL,
                             "worker: only active jobs are held by a worker; list state active");
    return b->ops->list(b, queue, state, &f, cursor ? cursor : "", limit, out);
}

int broker_bulk(broker_t *b, const char *queue, job_state_t state, bulk_action_t action,
                const list_filter_t *filter, int64_t *matched, int64_t *done)
{
    int64_t ignored[2];
    matched = matched ? matched : &ignored[0];
    done = done ? done : &ignored[1];
    *matched = *done = 0;
    int err = check_queue(b, queue);
    if (err)
        return err;
    if ((unsigned)state >= JOB_STATE_COUNT)
        return broker__error(b, HP_EINVAL, "state: unknown");
    if (action != BULK_RETRY && action != BULK_DELETE)
        return broker__error(b, HP_EINVAL, "action: must be retry or delete");
    if (action == BULK_RETRY && state != JOB_STATE_DEAD && state != JOB_STATE_FAILED &&
        state != JOB_STATE_CANCELED)
        return broker__error(b, HP_ESTATE,
                             "state: only dead, failed or canceled jobs can be retried, not %s",
                             job_state_name(state));
    if (action == BULK_DELETE && state == JOB_STATE_ACTIVE)
        return broker__error(b, HP_ESTATE,
                             "state: active jobs are held by workers and cannot be deleted; "
                             "cancel them");
    list_filter_t f;
    err = check_filter(b, filter, &f);
    if (err)
        return err;
    if (f.worker[0])
        return broker__error(b, HP_EINVAL, "worker: a bulk action never takes active jobs");
    return b->ops->bulk(b, queue, state, action, &f, matched, done);
}

/* ---- Queues ---- */

int broker_queue_configure(broker_t *b, const char *queue, const queue_conf_t *conf)
{
    int err = check_queue(b, queue);
    if (err)
        return err;
    if (conf->max_length < -1)
        return broker__error(b, HP_EINVAL, "max_length: must be -1 (unlimited) or positive");
    for (int s = 0; s < JOB_STATE_COUNT; s++) {
        if (conf->keep_count[s] < 0 || conf->keep_age_ms[s] < 0)
            return broker__error(b, HP_EINVAL, "retention for %s: must not be negative",
                                 job_state_name((job_state_t)s));
    }
    return b->ops->queue_configure(b, queue, conf);
}

int broker_queue_pause(broker_t *b, const char *queue, bool paused)
{
    int err = check_queue(b, queue);
    return err ? err : b->ops->queue_pause(b, queue, paused);
}

int broker_queue_stats(broker_t *b, const char *queue, queue_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    int err = check_queue(b, queue);
    return err ? err : b->ops->queue_stats(b, queue, out);
}

int broker_queues(broker_t *b, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    return b->ops->queues(b, names, n);
}

void broker_queues_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hp_free(names[i]);
    hp_free(names);
}

int broker_maintain(broker_t *b, const char *queue, int64_t *next_due_ms)
{
    int64_t ignored;
    int err = check_queue(b, queue);
    return err ? err : b->ops->maintain(b, queue, next_due_ms ? next_due_ms : &ignored);
}

/* Every job of one state, in steps (the backend chooses their size). */
int broker_purge(broker_t *b, const char *queue, job_state_t state, int64_t *removed)
{
    int64_t ignored;
    removed = removed ? removed : &ignored;
    *removed = 0;
    int err = check_queue(b, queue);
    if (err)
        return err;
    if ((unsigned)state >= JOB_STATE_COUNT)
        return broker__error(b, HP_EINVAL, "state: unknown");
    if (state == JOB_STATE_ACTIVE)
        return broker__error(b, HP_ESTATE,
                             "purge: active jobs are held by workers; cancel them instead");
    return b->ops->purge(b, queue, state, removed);
}

/* ---- Throughput and health ---- */

int broker_throughput(broker_t *b, const char *queue, throughput_t *out)
{
    memset(out, 0, sizeof(*out));
    if (queue) {
        int err = check_queue(b, queue);
        return err ? err : b->ops->throughput(b, &queue, 1, out);
    }
    char **names;
    size_t n;
    int err = broker_queues(b, &names, &n);
    if (err)
        return err;
    err = b->ops->throughput(b, (const char *const *)names, n, out);
    broker_queues_free(names, n);
    return err;
}

int broker_info(broker_t *b, broker_info_t *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->backend, sizeof(out->backend), "%s", b->ops->name);
    return b->ops->info(b, out);
}

/* ---- Events ---- */

int broker_events_next(broker_t *b, int64_t timeout_ms, char **json)
{
    *json = NULL;
    if (timeout_ms < 0)
        return broker__error(b, HP_EINVAL, "events: timeout must be >= 0 ms, got %lld",
                             (long long)timeout_ms);
    return b->ops->events_next(b, timeout_ms, json);
}

/* ---- Schedules ---- */

#define SCHEDULE_CRON_MAX   256
#define SCHEDULE_TZ_MAX     64
#define SCHEDULE_JITTER_MAX (24LL * 3600 * 1000)

static int check_schedule_name(broker_t *b, const char *name)
{
    if (!schedule_name_valid(name))
        return broker__error(b, HP_EINVAL,
                             "schedule name: must be 1-%d characters of A-Z a-z 0-9 . _ : -, got "
                             "\"%.80s\"",
                             SCHEDULE_NAME_MAX, name ? name : "");
    return 0;
}

static int check_text(broker_t *b, const char *what, const char *text, size_t max)
{
    size_t len = text ? strlen(text) : 0;
    if (len == 0 || len > max)
        return broker__error(b, HP_EINVAL, "%s: must be 1-%zu characters, got %zu", what, max, len);
    return 0;
}

/* The template must be a job broker_schedule_fire could enqueue, on the schedule's
 * queue: its record lives in that queue's slot, next to the jobs it fires. */
static int check_template(broker_t *b, const schedule_t *s)
{
    size_t len = s->job ? strlen(s->job) : 0;
    if (len == 0)
        return broker__error(b, HP_EINVAL, "job: the job template is required");
    int err = broker__check_json("job", s->job, len, JOB_PAYLOAD_DEFAULT_MAX, b->errmsg,
                                 sizeof(b->errmsg));
    if (err)
        return err;
    job_spec_json_t js;
    char why[200];
    err = job_spec_from_json(s->job, len, &js, why, sizeof(why));
    if (!err)
        err = broker__validate_spec(&js.spec, b->max_payload, why, sizeof(why));
    if (err)
        broker__error(b, err, "job: %s", why);
    else if (strcmp(js.spec.queue, s->queue) != 0)
        err = broker__error(b, HP_EINVAL, "queue: \"%s\" is not the job template's queue \"%s\"",
                            s->queue, js.spec.queue);
    job_spec_json_cleanup(&js);
    return err;
}

int broker_schedule_put(broker_t *b, const schedule_t *s, bool *created)
{
    bool ignored;
    created = created ? created : &ignored;
    *created = false;
    int err = check_schedule_name(b, s->name);
    if (!err)
        err = check_text(b, "cron", s->cron, SCHEDULE_CRON_MAX);
    if (!err)
        err = check_text(b, "tz", s->tz, SCHEDULE_TZ_MAX);
    if (!err)
        err = check_queue(b, s->queue);
    if (!err)
        err = check_template(b, s);
    if (err)
        return err;
    if (s->misfire != SCHEDULE_MISFIRE_SKIP && s->misfire != SCHEDULE_MISFIRE_ONCE)
        return broker__error(b, HP_EINVAL, "misfire: must be skip or once");
    if (s->overlap != SCHEDULE_OVERLAP_ALLOW && s->overlap != SCHEDULE_OVERLAP_SKIP)
        return broker__error(b, HP_EINVAL, "overlap: must be allow or skip");
    if (s->jitter_ms < 0 || s->jitter_ms > SCHEDULE_JITTER_MAX)
        return broker__error(b, HP_EINVAL, "jitter: must be 0 to %lld ms (a day), got %lld",
                             SCHEDULE_JITTER_MAX, (long long)s->jitter_ms);
    if (s->next_fire_ms < 0)
        return broker__error(b, HP_EINVAL, "next_fire: must be a Unix time in ms or 0 (none)");
    return b->ops->schedule_put(b, s, created);
}

int broker_schedule_get(broker_t *b, const char *name, schedule_t **out)
{
    *out = NULL;
    int err = check_schedule_name(b, name);
    return err ? err : b->ops->schedule_get(b, name, out);
}

int broker_schedules(broker_t *b, schedule_t ***list, size_t *n)
{
    *list = NULL;
    *n = 0;
    return b->ops->schedules(b, list, n);
}

int broker_schedule_delete(broker_t *b, const char *name)
{
    int err = check_schedule_name(b, name);
    return err ? err : b->ops->schedule_delete(b, name);
}

int broker_schedule_pause(broker_t *b, const char *name, bool paused, int64_t next_fire_ms)
{
    int err = check_schedule_name(b, name);
    if (!err && next_fire_ms < 0)
        err = broker__error(b, HP_EINVAL, "next_fire: must be a Unix time in ms or 0 (none)");
    return err ? err : b->ops->schedule_pause(b, name, paused, next_fire_ms);
}

int broker_schedule_fire(broker_t *b, const char *name, int64_t tick_ms, int64_t next_ms,
                         bool missed, const job_spec_t *spec, schedule_fire_t *outcome,
                         char job_id[JOB_ID_MAX])
{
    *outcome = SCHEDULE_LOST;
    job_id[0] = '\0';
    int err = check_schedule_name(b, name);
    if (err)
        return err;
    if (tick_ms < 0 || next_ms < 0)
        return broker__error(b, HP_EINVAL, "fire: tick and next must be Unix times in ms");
    if (missed && tick_ms == 0)
        return broker__error(b, HP_EINVAL, "fire: a trigger (tick 0) cannot be missed");
    if (!spec && !missed)
        return broker__error(b, HP_EINVAL, "fire: the job to enqueue is required");
    broker__fire_mode_t mode = missed        ? BROKER__FIRE_MISSED
                               : tick_ms > 0 ? BROKER__FIRE_TICK
                                             : BROKER__FIRE_TRIGGER;
    if (spec) {
        err = check_queue(b, spec->queue);
        if (err)
            return err;
    }
    if (missed)
        return b->ops->schedule_fire(b, name, spec ? spec->queue : NULL, tick_ms, next_ms, mode,
                                     NULL, outcome, job_id);
    /* The job carries its schedule and tick. Its own keys stay; an idempotency key
     * belongs to an API request, and a fire is none. */
    job_spec_t s = *spec;
    s.schedule = name;
    s.schedule_tick_ms = tick_ms ? tick_ms : hp_now_ms();
    s.idempotency_key = NULL;
    s.request_hash = NULL;
    err = broker__validate_spec(&s, b->max_payload, b->errmsg, sizeof(b->errmsg));
    if (err)
        return err;
    broker__prepared_t job;
    broker__prepare(&s, &job);
    err = b->ops->schedule_fire(b, name, s.queue, s.schedule_tick_ms, next_ms, mode, &job, outcome,
                                job_id);
    broker__prepared_cleanup(&job);
    return err;
}

int broker_schedules_version(broker_t *b, int64_t *version)
{
    *version = 0;
    return b->ops->schedules_version(b, version);
}

/* ---- Rate limits ---- */

#define RATE_KEY_MAX 200

int broker_rate_take(broker_t *b, const char *key, double rate, int burst, int64_t *retry_after_ms)
{
    int64_t ignored;
    retry_after_ms = retry_after_ms ? retry_after_ms : &ignored;
    *retry_after_ms = 0;
    size_t len = key ? strlen(key) : 0;
    bool key_ok = len > 0 && len <= RATE_KEY_MAX;
    for (size_t i = 0; key_ok && i < len; i++)
        key_ok = key[i] >= 0x21 && key[i] <= 0x7e;
    if (!key_ok)
        return broker__error(b, HP_EINVAL,
                             "rate limit key: must be 1-%d printable ASCII characters without "
                             "spaces",
                             RATE_KEY_MAX);
    if (!isfinite(rate) || rate < 0)
        return broker__error(b, HP_EINVAL, "rate: must be 0 (unlimited) or more per second");
    if (burst < 0)
        return broker__error(b, HP_EINVAL, "burst: must not be negative, got %d", burst);
    if (rate == 0)
        return 1;
    /* A burst of 0 would refuse everything: at least one request passes. */
    return b->ops->rate_take(b, key, rate, burst > 0 ? burst : 1, retry_after_ms);
}

int broker_maintain_all(broker_t *b)
{
    char **names;
    size_t n;
    int err = broker_queues(b, &names, &n);
    if (err)
        return err;
    for (size_t i = 0; i < n; i++) {
        if (broker_maintain(b, names[i], NULL) != 0)
            hp_warn("maintenance of queue %s: %s", names[i], broker_errmsg(b));
    }
    broker_queues_free(names, n);
    return 0;
}
