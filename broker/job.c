/*
 * The job model: states, ids, the rules a submitted job must pass, and the record
 * a backend stores.
 *
 * A stored record is "<meta JSON>\n<payload JSON>". Meta holds short keys, written
 * only when they differ from the default, because a queue of millions of jobs pays
 * for every byte (docs/architecture.md has the table):
 *   s state   t type      p priority   ma max_attempts  bk/bb/bc backoff kind/base/cap
 *   to timeout_ms  ex expires_at  uk unique key  tg tags  ra run_at  a attempts
 *   st started  fa finished  wk worker  cr cancel requested  er [[at, attempt, msg]...]
 *   sc schedule that fired it  sk that schedule's tick (Unix ms)
 *   wa waiting since (set by every move to waiting but an enqueue's)
 * The payload stays the producer's own text: it is checked to be JSON here and then
 * never re-encoded, so no digit of a big number is ever rounded away.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "broker/internal.h"

/* ---- States and ids ---- */

/* Upper bounds of the run-time histogram's buckets; scripts.c writes them into every
 * Lua script, so C and Lua bucket the same way. */
const int64_t QUEUE_RUNTIME_BUCKETS_MS[QUEUE_RUNTIME_NBUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 60000};

static const char *const state_names[] = {
#define XX(name, str, final) str,
    JOB_STATE_MAP(XX)
#undef XX
};

const char *job_state_name(job_state_t state)
{
    return (unsigned)state < JOB_STATE_COUNT ? state_names[state] : "unknown";
}

int job_state_parse(const char *name)
{
    for (int i = 0; name && i < JOB_STATE_COUNT; i++) {
        if (strcmp(name, state_names[i]) == 0)
            return i;
    }
    return -1;
}

bool job_queue_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > JOB_QUEUE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

bool job_id_parse(const char *id, char ulid[HP_ULID_LEN + 1], char queue[JOB_QUEUE_NAME_MAX + 1])
{
    size_t len = id ? strnlen(id, JOB_ID_MAX) : 0;
    if (len < HP_ULID_LEN + 2 || len >= JOB_ID_MAX || id[HP_ULID_LEN] != '-' ||
        !hp_ulid_valid(id, HP_ULID_LEN) || !job_queue_name_valid(id + HP_ULID_LEN + 1))
        return false;
    memcpy(ulid, id, HP_ULID_LEN);
    ulid[HP_ULID_LEN] = '\0';
    strcpy(queue, id + HP_ULID_LEN + 1);
    return true;
}

/* ---- Validation ---- */

static bool type_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > JOB_TYPE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (name[i] < 0x21 || name[i] > 0x7e)
            return false;
    }
    return true;
}

static bool utf8_text_valid(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20)
            return false;
    }
    json_t *probe = json_stringn(s, len); /* NULL unless valid UTF-8 */
    bool ok = probe != NULL;
    json_decref(probe);
    return ok;
}

#define REFUSE(code, ...)                                                                          \
    do {                                                                                           \
        snprintf(errbuf, errlen, __VA_ARGS__);                                                     \
        return code;                                                                               \
    } while (0)

int broker__check_json(const char *what, const char *text, size_t len, size_t max, char *errbuf,
                       size_t errlen)
{
    if (len > max)
        REFUSE(HP_ETOOBIG, "%s: %zu bytes is over the limit of %zu bytes", what, len, max);
    char why[160];
    if (hp_json_check(text, len, why, sizeof(why)))
        REFUSE(HP_EINVAL, "%s: not valid JSON: %s", what, why);
    return 0;
}

static int validate_times(const job_spec_t *s, char *errbuf, size_t errlen)
{
    if (s->delay_ms < 0 || s->delay_ms > JOB_DELAY_MAX_MS)
        REFUSE(HP_EINVAL, "delay: must be between 0 and %lld ms (366 days), got %lld",
               JOB_DELAY_MAX_MS, (long long)s->delay_ms);
    int64_t now = hp_now_ms();
    if (s->run_at_ms < 0 || s->run_at_ms > now + JOB_DELAY_MAX_MS)
        REFUSE(HP_EINVAL, "run_at: must be within 366 days from now");
    if (s->delay_ms && s->run_at_ms)
        REFUSE(HP_EINVAL, "delay and run_at: give one or the other, not both");
    if (s->timeout_ms < 0 || s->timeout_ms > JOB_TIMEOUT_MAX_MS)
        REFUSE(HP_EINVAL, "timeout: must be between 0 and %lld ms (7 days), got %lld",
               JOB_TIMEOUT_MAX_MS, (long long)s->timeout_ms);
    if (s->expires_at_ms < 0 || (s->expires_at_ms && s->expires_at_ms <= now))
        REFUSE(HP_EINVAL, "expires_at: must be in the future");
    return 0;
}

static int validate_retries(const job_spec_t *s, char *errbuf, size_t errlen)
{
    if (s->max_attempts < 0 || s->max_attempts > JOB_ATTEMPTS_MAX)
        REFUSE(HP_EINVAL, "max_attempts: must be between 1 and %d, got %d", JOB_ATTEMPTS_MAX,
               s->max_attempts);
    const backoff_t *b = &s->backoff;
    if (b->kind != BACKOFF_EXPONENTIAL && b->kind != BACKOFF_FIXED && b->kind != BACKOFF_LINEAR)
        REFUSE(HP_EINVAL, "backoff.kind: must be exponential, fixed or linear");
    if (b->base_ms < 0 || b->base_ms > JOB_DELAY_MAX_MS || b->cap_ms < 0 ||
        b->cap_ms > JOB_DELAY_MAX_MS)
        REFUSE(HP_EINVAL, "backoff: base and cap must be between 0 and %lld ms", JOB_DELAY_MAX_MS);
    if (b->cap_ms && b->cap_ms < b->base_ms)
        REFUSE(HP_EINVAL, "backoff: cap (%lld ms) is below base (%lld ms)", (long long)b->cap_ms,
               (long long)b->base_ms);
    return 0;
}

/* The request hash is stored as "<hash>|<job id>", so it holds no '|'; any digest
 * in hex or base64 fits. */
#define REQUEST_HASH_MAX 128

static int validate_idempotency(const job_spec_t *s, char *errbuf, size_t errlen)
{
    if (!s->idempotency_key) {
        if (s->request_hash)
            REFUSE(HP_EINVAL, "request_hash: given without an idempotency_key");
        return 0;
    }
    if (!utf8_text_valid(s->idempotency_key, JOB_UNIQUE_KEY_MAX))
        REFUSE(HP_EINVAL, "idempotency_key: must be 1-%d bytes of UTF-8 text", JOB_UNIQUE_KEY_MAX);
    size_t len = s->request_hash ? strlen(s->request_hash) : 0;
    bool ok = len > 0 && len <= REQUEST_HASH_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = s->request_hash[i] >= 0x21 && s->request_hash[i] <= 0x7e && s->request_hash[i] != '|';
    if (!ok)
        REFUSE(HP_EINVAL,
               "request_hash: must be 1-%d printable ASCII characters without '|' or spaces "
               "(required with an idempotency_key)",
               REQUEST_HASH_MAX);
    return 0;
}

int broker__validate_spec(const job_spec_t *s, size_t max_payload, char *errbuf, size_t errlen)
{
    if (!job_queue_name_valid(s->queue))
        REFUSE(HP_EINVAL, "queue: must be 1-%d characters of A-Z a-z 0-9 . _ -, got \"%.80s\"",
               JOB_QUEUE_NAME_MAX, s->queue ? s->queue : "");
    if (!type_name_valid(s->type))
        REFUSE(HP_EINVAL, "type: must be 1-%d printable ASCII characters without spaces",
               JOB_TYPE_NAME_MAX);
    if (s->priority < JOB_PRIORITY_MIN || s->priority > JOB_PRIORITY_MAX)
        REFUSE(HP_EINVAL, "priority: must be between %d and %d, got %d", JOB_PRIORITY_MIN,
               JOB_PRIORITY_MAX, s->priority);
    int err = validate_times(s, errbuf, errlen);
    if (!err)
        err = validate_retries(s, errbuf, errlen);
    if (err)
        return err;
    if (s->unique_key && !utf8_text_valid(s->unique_key, JOB_UNIQUE_KEY_MAX))
        REFUSE(HP_EINVAL, "unique_key: must be 1-%d bytes of UTF-8 text", JOB_UNIQUE_KEY_MAX);
    int err_idem = validate_idempotency(s, errbuf, errlen);
    if (err_idem)
        return err_idem;
    if (s->unique_ttl_ms < 0 || s->unique_ttl_ms > JOB_DELAY_MAX_MS)
        REFUSE(HP_EINVAL, "unique_ttl: must be between 0 and %lld ms", JOB_DELAY_MAX_MS);
    if (s->ntags > JOB_TAGS_MAX)
        REFUSE(HP_EINVAL, "tags: at most %d, got %zu", JOB_TAGS_MAX, s->ntags);
    for (size_t i = 0; i < s->ntags; i++) {
        if (!s->tags[i] || !utf8_text_valid(s->tags[i], JOB_TAG_MAX))
            REFUSE(HP_EINVAL, "tags[%zu]: must be 1-%d bytes of UTF-8 text", i, JOB_TAG_MAX);
    }
    if (s->schedule && !schedule_name_valid(s->schedule))
        REFUSE(HP_EINVAL, "schedule: must be 1-%d characters of A-Z a-z 0-9 . _ : -",
               SCHEDULE_NAME_MAX);
    if (s->schedule_tick_ms < 0 || (s->schedule_tick_ms && !s->schedule))
        REFUSE(HP_EINVAL, "schedule_tick: must be a Unix time in ms, given with a schedule");
    if (!s->payload)
        return 0;
    return broker__check_json("payload", s->payload,
                              s->payload_len ? s->payload_len : strlen(s->payload), max_payload,
                              errbuf, errlen);
}

/* ---- Encoding ---- */

static const char *const backoff_names[] = {"exponential", "fixed", "linear"};

/* Appends `,"key":value` for a number. */
static void meta_int(hp_strbuf_t *sb, const char *key, int64_t v)
{
    hp_strbuf_printf(sb, ",\"%s\":%lld", key, (long long)v);
}

void broker__prepare(const job_spec_t *s, broker__prepared_t *out)
{
    /* Written by hand, not through jansson: this runs for every job enqueued, and
     * every value is a number or an already validated UTF-8 string. */
    const char *payload = s->payload ? s->payload : "null";
    size_t plen = s->payload ? (s->payload_len ? s->payload_len : strlen(s->payload)) : 4;
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_appends(&sb, "\"t\":");
    hp_strbuf_append_json_string(&sb, s->type);
    if (s->priority)
        meta_int(&sb, "p", s->priority);
    meta_int(&sb, "ma", s->max_attempts ? s->max_attempts : JOB_ATTEMPTS_DEFAULT);
    if (s->backoff.kind != BACKOFF_EXPONENTIAL)
        hp_strbuf_printf(&sb, ",\"bk\":\"%s\"", backoff_names[s->backoff.kind]);
    if (s->backoff.base_ms && s->backoff.base_ms != BACKOFF_BASE_DEFAULT_MS)
        meta_int(&sb, "bb", s->backoff.base_ms);
    if (s->backoff.cap_ms && s->backoff.cap_ms != BACKOFF_CAP_DEFAULT_MS)
        meta_int(&sb, "bc", s->backoff.cap_ms);
    if (s->timeout_ms)
        meta_int(&sb, "to", s->timeout_ms);
    if (s->expires_at_ms)
        meta_int(&sb, "ex", s->expires_at_ms);
    if (s->unique_key) {
        hp_strbuf_appends(&sb, ",\"uk\":");
        hp_strbuf_append_json_string(&sb, s->unique_key);
    }
    for (size_t i = 0; i < s->ntags; i++) {
        hp_strbuf_appends(&sb, i == 0 ? ",\"tg\":[" : ",");
        hp_strbuf_append_json_string(&sb, s->tags[i]);
    }
    if (s->ntags)
        hp_strbuf_appends(&sb, "]");
    if (s->schedule) {
        hp_strbuf_appends(&sb, ",\"sc\":");
        hp_strbuf_append_json_string(&sb, s->schedule);
        meta_int(&sb, "sk", s->schedule_tick_ms);
    }
    hp_strbuf_appends(&sb, "}\n");
    hp_strbuf_append(&sb, payload, plen);
    out->body = hp_strbuf_steal(&sb, &out->body_len);

    out->queue = s->queue;
    hp_ulid_new(out->ulid);
    out->priority = s->priority;
    out->delay_ms = s->delay_ms;
    out->run_at_ms = s->run_at_ms;
    out->unique_key = s->unique_key ? s->unique_key : "";
    out->unique_ttl_ms = s->unique_ttl_ms ? s->unique_ttl_ms : JOB_UNIQUE_TTL_DEFAULT_MS;
    out->idempotency_key = s->idempotency_key ? s->idempotency_key : "";
    out->request_hash = s->request_hash ? s->request_hash : "";
}

void broker__prepared_cleanup(broker__prepared_t *p)
{
    hp_free(p->body);
    p->body = NULL;
}

/* ---- Decoding ---- */

static int64_t meta_i64(json_t *meta, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(meta, key);
    return json_is_number(v) ? (int64_t)json_number_value(v) : dflt;
}

static char *meta_str(json_t *meta, const char *key)
{
    const char *v = json_string_value(json_object_get(meta, key));
    return v ? hp_strdup(v) : NULL;
}

static void decode_errors(json_t *meta, job_t *job)
{
    json_t *errs = json_object_get(meta, "er");
    size_t n = json_is_array(errs) ? json_array_size(errs) : 0;
    job->errors = n ? hp_calloc(n, sizeof(job_error_t)) : NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(errs, i);
        const char *msg = json_string_value(json_array_get(e, 2));
        job->errors[job->nerrors].at_ms = (int64_t)json_number_value(json_array_get(e, 0));
        job->errors[job->nerrors].attempt = (int)json_number_value(json_array_get(e, 1));
        job->errors[job->nerrors].message = hp_strdup(msg ? msg : "");
        job->nerrors++;
    }
}

static void decode_tags(json_t *meta, job_t *job)
{
    json_t *tags = json_object_get(meta, "tg");
    size_t n = json_is_array(tags) ? json_array_size(tags) : 0;
    job->tags = n ? hp_calloc(n, sizeof(char *)) : NULL;
    for (size_t i = 0; i < n; i++) {
        const char *t = json_string_value(json_array_get(tags, i));
        if (t)
            job->tags[job->ntags++] = hp_strdup(t);
    }
}

int broker__job_decode(const char *ulid, const char *queue, const char *rec, size_t len,
                       job_t **out)
{
    *out = NULL;
    const char *nl = memchr(rec, '\n', len);
    json_t *meta = nl ? json_loadb(rec, (size_t)(nl - rec), 0, NULL) : NULL;
    int state = job_state_parse(json_string_value(json_object_get(meta, "s")));
    const char *type = json_string_value(json_object_get(meta, "t"));
    if (!json_is_object(meta) || state < 0 || !type) {
        json_decref(meta);
        return HP_EPROTO;
    }
    job_t *job = hp_calloc(1, sizeof(*job));
    snprintf(job->id, sizeof(job->id), "%s-%s", ulid, queue);
    job->queue = hp_strdup(queue);
    job->type = hp_strdup(type);
    job->payload_len = len - (size_t)(nl + 1 - rec);
    job->payload = hp_strndup(nl + 1, job->payload_len);
    job->state = (job_state_t)state;
    job->priority = (int)meta_i64(meta, "p", 0);
    job->attempts = (int)meta_i64(meta, "a", 0);
    job->max_attempts = (int)meta_i64(meta, "ma", JOB_ATTEMPTS_DEFAULT);
    const char *bk = json_string_value(json_object_get(meta, "bk"));
    job->backoff.kind = !bk                        ? BACKOFF_EXPONENTIAL
                        : strcmp(bk, "fixed") == 0 ? BACKOFF_FIXED
                                                   : BACKOFF_LINEAR;
    job->backoff.base_ms = meta_i64(meta, "bb", BACKOFF_BASE_DEFAULT_MS);
    job->backoff.cap_ms = meta_i64(meta, "bc", BACKOFF_CAP_DEFAULT_MS);
    job->timeout_ms = meta_i64(meta, "to", 0);
    job->expires_at_ms = meta_i64(meta, "ex", 0);
    job->created_ms = hp_ulid_time_ms(ulid);
    job->run_at_ms = meta_i64(meta, "ra", 0);
    job->started_ms = meta_i64(meta, "st", 0);
    job->finished_ms = meta_i64(meta, "fa", 0);
    job->worker = meta_str(meta, "wk");
    job->cancel_requested = meta_i64(meta, "cr", 0) != 0;
    job->unique_key = meta_str(meta, "uk");
    job->schedule = meta_str(meta, "sc");
    job->schedule_tick_ms = meta_i64(meta, "sk", 0);
    job->progress = -1;
    decode_tags(meta, job);
    decode_errors(meta, job);
    json_decref(meta);
    *out = job;
    return 0;
}

void job_free(job_t *job)
{
    if (!job)
        return;
    hp_free(job->queue);
    hp_free(job->type);
    hp_free(job->payload);
    hp_free(job->lease_token);
    hp_free(job->worker);
    hp_free(job->unique_key);
    for (size_t i = 0; i < job->ntags; i++)
        hp_free(job->tags[i]);
    hp_free(job->tags);
    for (size_t i = 0; i < job->nerrors; i++)
        hp_free(job->errors[i].message);
    hp_free(job->errors);
    hp_free(job->result);
    hp_free(job->progress_message);
    hp_free(job->logs);
    hp_free(job->schedule);
    hp_free(job);
}

void job_list_cleanup(job_list_t *list)
{
    for (size_t i = 0; i < list->n; i++)
        job_free(list->jobs[i]);
    hp_free(list->jobs);
    hp_free(list->next_cursor);
    memset(list, 0, sizeof(*list));
}

/* ---- The public JSON view ---- */

static void set_time(json_t *obj, const char *key, int64_t ms)
{
    if (ms <= 0)
        return;
    char buf[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(ms, buf);
    json_object_set_new(obj, key, json_string(buf));
}

/* Stored log lines [at_ms, level, "text"] as [{"at", "level", "message"}]. */
static json_t *logs_view(const char *lines)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    json_t *out = json_array();
    for (const char *p = lines; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        json_t *line = json_loadb(p, len, 0, NULL);
        json_int_t level = json_integer_value(json_array_get(line, 1));
        const char *text = json_string_value(json_array_get(line, 2));
        char at[HP_RFC3339_MAX];
        hp_format_rfc3339_ms((int64_t)json_number_value(json_array_get(line, 0)), at);
        if (json_is_array(line))
            json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "at", at, "level",
                                                 levels[level >= 0 && level < 4 ? level : 1],
                                                 "message", text ? text : ""));
        json_decref(line);
        p += len + (nl ? 1 : 0);
    }
    return out;
}

static json_t *job_view(const job_t *job)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(job->id));
    json_object_set_new(o, "queue", json_string(job->queue));
    json_object_set_new(o, "type", json_string(job->type));
    json_object_set_new(o, "state", json_string(job_state_name(job->state)));
    json_object_set_new(o, "priority", json_integer(job->priority));
    json_object_set_new(o, "attempts", json_integer(job->attempts));
    json_object_set_new(o, "max_attempts", json_integer(job->max_attempts));
    json_object_set_new(o, "backoff",
                        json_pack("{s:s, s:I, s:I}", "kind", backoff_names[job->backoff.kind],
                                  "base_ms", (json_int_t)job->backoff.base_ms, "cap_ms",
                                  (json_int_t)job->backoff.cap_ms));
    if (job->timeout_ms)
        json_object_set_new(o, "timeout_ms", json_integer(job->timeout_ms));
    set_time(o, "created_at", job->created_ms);
    set_time(o, "run_at", job->run_at_ms);
    set_time(o, "started_at", job->started_ms);
    set_time(o, "finished_at", job->finished_ms);
    set_time(o, "expires_at", job->expires_at_ms);
    set_time(o, "lease_deadline", job->lease_deadline_ms);
    if (job->worker)
        json_object_set_new(o, "worker", json_string(job->worker));
    if (job->cancel_requested)
        json_object_set_new(o, "cancel_requested", json_true());
    if (job->unique_key)
        json_object_set_new(o, "unique_key", json_string(job->unique_key));
    json_t *tags = json_array();
    for (size_t i = 0; i < job->ntags; i++)
        json_array_append_new(tags, json_string(job->tags[i]));
    json_object_set_new(o, "tags", tags);
    json_t *errs = json_array();
    for (size_t i = 0; i < job->nerrors; i++) {
        char at[HP_RFC3339_MAX];
        hp_format_rfc3339_ms(job->errors[i].at_ms, at);
        json_array_append_new(errs,
                              json_pack("{s:s, s:i, s:s}", "at", at, "attempt",
                                        job->errors[i].attempt, "message", job->errors[i].message));
    }
    json_object_set_new(o, "errors", errs);
    if (job->schedule) {
        char tick[HP_RFC3339_MAX];
        hp_format_rfc3339_ms(job->schedule_tick_ms, tick);
        json_object_set_new(o, "schedule",
                            json_pack("{s:s, s:s}", "name", job->schedule, "tick", tick));
    }
    if (job->progress >= 0)
        json_object_set_new(
            o, "progress",
            json_pack("{s:i, s:s?}", "percent", job->progress, "message", job->progress_message));
    json_object_set_new(o, "logs", logs_view(job->logs));
    return o;
}

char *job_to_json(const job_t *job, int indent)
{
    json_t *view = job_view(job);
    size_t flags = indent ? JSON_INDENT(indent) : JSON_COMPACT;
    char *text = json_dumps(view, flags | JSON_PRESERVE_ORDER);
    json_decref(view);
    /* Splice the payload and result in as the producer's and handler's own text. */
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '}' || text[len - 1] == '\n'))
        len--;
    hp_strbuf_append(&sb, text, len);
    free(text);
    const char *sep = indent ? ",\n  " : ",";
    const char *colon = indent ? ": " : ":";
    hp_strbuf_printf(&sb, "%s\"payload\"%s", sep, colon);
    hp_strbuf_append(&sb, job->payload, job->payload_len);
    if (job->result) {
        hp_strbuf_printf(&sb, "%s\"result\"%s", sep, colon);
        hp_strbuf_appends(&sb, job->result);
    }
    hp_strbuf_appends(&sb, indent ? "\n}" : "}");
    return hp_strbuf_steal(&sb, NULL);
}
