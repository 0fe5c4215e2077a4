/* A job from JSON (the API, schedule templates) into a job_spec_t: see broker.h. */
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

/* ---- Finding a member's raw text ----
 * The body is valid JSON by the time these run (jansson parsed it), so they only
 * need to skip values, minding strings. */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end && *p != '"'; p++) {
        if (*p == '\\')
            p++;
    }
    return p < end ? p + 1 : end;
}

static const char *skip_value(const char *p, const char *end)
{
    if (p < end && *p == '"')
        return skip_string(p, end);
    int depth = 0;
    for (; p < end; p++) {
        char ch = *p;
        if (ch == '"') {
            p = skip_string(p, end) - 1;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (depth == 0)
                return p;
            if (--depth == 0)
                return p + 1;
        } else if (depth == 0 &&
                   (ch == ',' || ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')) {
            return p;
        }
    }
    return p;
}

/* In the object at p, the raw text of member `name` (written without escapes). */
static bool member_span(const char *p, const char *end, const char *name, const char **start,
                        size_t *len)
{
    size_t nlen = strlen(name);
    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        return false;
    p++;
    while (p < end) {
        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return false;
        const char *key = p + 1;
        p = skip_string(p, end);
        bool hit = (size_t)(p - 1 - key) == nlen && memcmp(key, name, nlen) == 0;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return false;
        p = skip_ws(p + 1, end);
        const char *v = p;
        p = skip_value(p, end);
        if (hit) {
            *start = v;
            *len = (size_t)(p - v);
            return true;
        }
        p = skip_ws(p, end);
        if (p >= end || *p != ',')
            return false;
        p++;
    }
    return false;
}

/* The start of each element of the array at p, up to max. */
static size_t array_elements(const char *p, const char *end, const char **out, size_t max)
{
    size_t n = 0;
    p = skip_ws(p, end);
    if (p >= end || *p != '[')
        return 0;
    p = skip_ws(p + 1, end);
    while (p < end && *p != ']' && n < max) {
        out[n++] = p;
        p = skip_ws(skip_value(p, end), end);
        if (p < end && *p == ',')
            p = skip_ws(p + 1, end);
    }
    return n;
}

/* ---- Fields ---- */

static const char *const known_fields[] = {
    "queue",         "type",         "payload",    "priority",   "delay_ms",
    "run_at",        "max_attempts", "backoff",    "timeout_ms", "unique_key",
    "unique_ttl_ms", "tags",         "expires_at", NULL,
};

static bool integer_field(json_t *obj, const char *name, double min, double max, int64_t *out,
                          char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v))
        return true;
    double d = json_number_value(v);
    if (!json_is_number(v) || d != floor(d) || d < min || d > max) {
        snprintf(err, errlen, "%s: expected an integer from %.0f to %.0f", name, min, max);
        return false;
    }
    *out = (int64_t)d;
    return true;
}

/* The body is parsed with JSON_ALLOW_NUL so that a \u0000 gets an error naming its
 * field (jansson's own names its flag): the payload's check refuses it (plugins read
 * payloads with jansson, which refuses it), and the fields read as C strings refuse
 * it here, where it would cut them short without a word. */
static bool has_nul(json_t *str)
{
    return strlen(json_string_value(str)) != json_string_length(str);
}

static bool string_field(json_t *obj, const char *name, bool required, const char **out, char *err,
                         size_t errlen)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v)) {
        if (required)
            snprintf(err, errlen, "%s: required", name);
        return !required;
    }
    if (!json_is_string(v)) {
        snprintf(err, errlen, "%s: expected a string", name);
        return false;
    }
    if (has_nul(v)) {
        snprintf(err, errlen, "%s: must not contain \\u0000", name);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

static bool time_field(json_t *obj, const char *name, int64_t *out, char *err, size_t errlen)
{
    const char *text = NULL;
    if (!string_field(obj, name, false, &text, err, errlen))
        return false;
    if (text && hp_parse_rfc3339_ms(text, out) != 0) {
        snprintf(err, errlen, "%s: expected an RFC 3339 time like 2026-01-07T09:30:00Z", name);
        return false;
    }
    return true;
}

static bool backoff_field(json_t *obj, backoff_t *b, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, "backoff");
    if (!v || json_is_null(v))
        return true;
    const char *kind = NULL;
    if (json_is_string(v)) {
        kind = has_nul(v) ? "\\u0000" : json_string_value(v);
    } else if (json_is_object(v)) {
        if (!string_field(v, "type", false, &kind, err, errlen))
            return false;
        int64_t base = 0, cap = 0;
        if (!integer_field(v, "base_ms", 1, 86400000.0, &base, err, errlen) ||
            !integer_field(v, "cap_ms", 1, 7 * 86400000.0, &cap, err, errlen)) {
            char inner[256];
            snprintf(inner, sizeof(inner), "%s", err);
            snprintf(err, errlen, "backoff.%s", inner);
            return false;
        }
        b->base_ms = base;
        b->cap_ms = cap;
    } else {
        snprintf(err, errlen,
                 "backoff: expected \"exponential\", \"fixed\", \"linear\" or an object "
                 "{\"type\", \"base_ms\", \"cap_ms\"}");
        return false;
    }
    if (!kind || strcmp(kind, "exponential") == 0) {
        b->kind = BACKOFF_EXPONENTIAL;
    } else if (strcmp(kind, "fixed") == 0) {
        b->kind = BACKOFF_FIXED;
    } else if (strcmp(kind, "linear") == 0) {
        b->kind = BACKOFF_LINEAR;
    } else {
        snprintf(err, errlen, "backoff.type: expected exponential, fixed or linear, got \"%.64s\"",
                 kind);
        return false;
    }
    return true;
}

static bool tags_field(json_t *obj, job_spec_json_t *js, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, "tags");
    if (!v || json_is_null(v))
        return true;
    if (!json_is_array(v) || json_array_size(v) > JOB_TAGS_MAX) {
        snprintf(err, errlen, "tags: expected an array of at most %d strings", JOB_TAGS_MAX);
        return false;
    }
    size_t n = json_array_size(v);
    js->tags = hp_calloc(n ? n : 1, sizeof(*js->tags));
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(v, i);
        if (!json_is_string(t) || has_nul(t)) {
            snprintf(err, errlen, "tags[%zu]: expected a string without \\u0000", i);
            return false;
        }
        js->tags[i] = json_string_value(t);
    }
    js->spec.tags = js->tags;
    js->spec.ntags = n;
    return true;
}

static bool check_known(json_t *obj, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool known = false;
        for (size_t i = 0; known_fields[i] && !known; i++)
            known = strcmp(key, known_fields[i]) == 0;
        if (!known) {
            snprintf(err, errlen,
                     "unknown field \"%.64s\" (fields: queue, type, payload, priority, delay_ms, "
                     "run_at, max_attempts, backoff, timeout_ms, unique_key, unique_ttl_ms, tags, "
                     "expires_at)",
                     key);
            return false;
        }
    }
    return true;
}

/* Fills js from one job object; raw/rawlen is the object's own text, for the payload. */
static int from_object(json_t *obj, const char *raw, size_t rawlen, job_spec_json_t *js, char *err,
                       size_t errlen)
{
    job_spec_t *s = &js->spec;
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "a job must be a JSON object");
        return HP_EINVAL;
    }
    int64_t priority = 0, attempts = 0;
    bool ok =
        check_known(obj, err, errlen) && string_field(obj, "queue", true, &s->queue, err, errlen) &&
        string_field(obj, "type", true, &s->type, err, errlen) &&
        integer_field(obj, "priority", JOB_PRIORITY_MIN, JOB_PRIORITY_MAX, &priority, err,
                      errlen) &&
        integer_field(obj, "delay_ms", 0, (double)JOB_DELAY_MAX_MS, &s->delay_ms, err, errlen) &&
        time_field(obj, "run_at", &s->run_at_ms, err, errlen) &&
        integer_field(obj, "max_attempts", 1, JOB_ATTEMPTS_MAX, &attempts, err, errlen) &&
        backoff_field(obj, &s->backoff, err, errlen) &&
        integer_field(obj, "timeout_ms", 1, (double)JOB_TIMEOUT_MAX_MS, &s->timeout_ms, err,
                      errlen) &&
        string_field(obj, "unique_key", false, &s->unique_key, err, errlen) &&
        integer_field(obj, "unique_ttl_ms", 1, 366 * 86400000.0, &s->unique_ttl_ms, err, errlen) &&
        time_field(obj, "expires_at", &s->expires_at_ms, err, errlen) &&
        tags_field(obj, js, err, errlen);
    if (!ok)
        return HP_EINVAL;
    if (!job_queue_name_valid(s->queue)) {
        snprintf(err, errlen,
                 "queue: \"%.64s\" is not a queue name: 1-64 characters of A-Z a-z "
                 "0-9 . _ -",
                 s->queue);
        return HP_EINVAL;
    }
    if (s->delay_ms && s->run_at_ms) {
        snprintf(err, errlen, "delay_ms and run_at: give one, not both");
        return HP_EINVAL;
    }
    s->priority = (int)priority;
    s->max_attempts = (int)attempts;
    json_t *payload = json_object_get(obj, "payload");
    const char *span = NULL;
    size_t span_len = 0;
    if (payload && raw && member_span(raw, raw + rawlen, "payload", &span, &span_len)) {
        js->payload = hp_strndup(span, span_len);
    } else if (payload) { /* an escaped key: fall back to jansson's rendering */
        char *text = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
        js->payload = hp_strdup(text);
        free(text);
    }
    s->payload = js->payload;
    s->payload_len = js->payload ? strlen(js->payload) : 0;
    return 0;
}

static json_t *load(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *doc = json_loadb(
        body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &jerr);
    if (!doc)
        snprintf(err, errlen, "the body is not valid JSON: %s at line %d column %d", jerr.text,
                 jerr.line, jerr.column);
    return doc;
}

int job_spec_from_json(const char *body, size_t len, job_spec_json_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    json_t *doc = load(body, len, err, errlen);
    if (!doc)
        return HP_EINVAL;
    out->doc = doc;
    return from_object(doc, body, len, out, err, errlen);
}

int job_specs_from_json(const char *body, size_t len, job_spec_json_t **specs, char ***errors,
                        size_t *n, char *err, size_t errlen)
{
    *specs = NULL;
    *errors = NULL;
    *n = 0;
    json_t *doc = load(body, len, err, errlen);
    if (!doc)
        return HP_EINVAL;
    json_t *jobs = json_is_array(doc) ? doc : json_object_get(doc, "jobs");
    const char *raw = body;
    size_t rawlen = len;
    const char *span;
    if (!json_is_array(doc) && member_span(body, body + len, "jobs", &span, &rawlen))
        raw = span;
    if (!json_is_array(jobs) || json_array_size(jobs) == 0 ||
        json_array_size(jobs) > JOB_BATCH_MAX) {
        snprintf(err, errlen, "expected {\"jobs\": [ ... ]} with 1 to %d jobs", JOB_BATCH_MAX);
        json_decref(doc);
        return HP_EINVAL;
    }
    size_t count = json_array_size(jobs);
    const char **starts = hp_calloc(count, sizeof(*starts));
    size_t found = array_elements(raw, raw + rawlen, starts, count);
    *specs = hp_calloc(count, sizeof(**specs));
    *errors = hp_calloc(count, sizeof(**errors));
    for (size_t i = 0; i < count; i++) {
        char why[512];
        json_t *item = json_array_get(jobs, i);
        const char *item_raw = i < found ? starts[i] : NULL;
        size_t item_len = item_raw ? (size_t)(raw + rawlen - item_raw) : 0;
        json_incref(item);
        (*specs)[i].doc = item;
        if (from_object(item, item_raw, item_len, &(*specs)[i], why, sizeof(why)) != 0)
            (*errors)[i] = hp_sprintf("jobs[%zu].%s", i, why);
    }
    hp_free(starts);
    json_decref(doc);
    *n = count;
    return 0;
}

void job_spec_set_idempotency(job_spec_json_t *js, const char *token, const char *key,
                              const char *body, size_t len)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(body, len, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(js->request_hash + 2 * i, 3, "%02x", md[i]);
    /* Namespaced by a hash of the token, so two clients' keys never meet and the
     * token itself is never stored. */
    unsigned char tmd[32];
    EVP_Digest(token, strlen(token), tmd, &mdlen, EVP_sha256(), NULL);
    char tk[17];
    for (int i = 0; i < 8; i++)
        snprintf(tk + 2 * i, 3, "%02x", tmd[i]);
    js->idempotency_key = hp_sprintf("%s:%s", tk, key);
    js->spec.idempotency_key = js->idempotency_key;
    js->spec.request_hash = js->request_hash;
}

int job_payload_from_json(const char *text, size_t len, char **payload, char *err, size_t errlen)
{
    *payload = NULL;
    json_t *doc = load(text, len, err, errlen);
    if (!doc)
        return HP_EINVAL;
    json_t *value = json_object_get(doc, "payload");
    if (!json_is_object(doc) || !value || json_object_size(doc) != 1) {
        snprintf(err, errlen,
                 "expected {\"payload\": <any JSON value>}, the new payload and no "
                 "other field");
        json_decref(doc);
        return HP_EINVAL;
    }
    const char *span;
    size_t span_len;
    if (member_span(text, text + len, "payload", &span, &span_len)) {
        *payload = hp_strndup(span, span_len);
    } else { /* an escaped key: fall back to jansson's rendering */
        char *dumped = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        *payload = hp_strdup(dumped);
        free(dumped);
    }
    json_decref(doc);
    return 0;
}

void job_spec_json_cleanup(job_spec_json_t *js)
{
    if (js->doc)
        json_decref((json_t *)js->doc);
    hp_free(js->payload);
    hp_free(js->tags);
    hp_free(js->idempotency_key);
    memset(js, 0, sizeof(*js));
}
