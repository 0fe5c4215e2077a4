/* Schedules as JSON, for the API, the CLI and the config file: see scheduler.h. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/scheduler.h"

static const char *const known_fields[] = {"cron",    "tz",      "job",       "paused",
                                           "misfire", "overlap", "jitter_ms", NULL};

int64_t sched_next_tick(const schedule_t *s, int64_t after_ms)
{
    sched_cron_expr_t e;
    sched_cron_zone_t z;
    int64_t next_s = 0;
    if (sched_cron_parse(s->cron, &e, NULL) != 0 || sched_cron_zone_init(&z, s->tz, NULL) != 0)
        return 0;
    /* Ticks are whole seconds: "after" 12:00:00.500 is 12:00:01 at the earliest. */
    int64_t after_s = after_ms / 1000;
    if (sched_cron_next(&e, &z, after_s, &next_s) != 0)
        return 0;
    return next_s * 1000;
}

static int refuse(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return HP_EINVAL;
}

static int check_fields(json_t *obj, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool known = false;
        for (size_t i = 0; known_fields[i] && !known; i++)
            known = strcmp(key, known_fields[i]) == 0;
        if (!known)
            return refuse(err, errlen,
                          "unknown field \"%.64s\" (fields: cron, tz, job, paused, misfire, "
                          "overlap, jitter_ms)",
                          key);
    }
    return 0;
}

/* Definitions are parsed with JSON_ALLOW_NUL so that a \u0000 gets an error naming
 * its field (the template's payload check refuses it; the strings read here as C
 * strings refuse it too) rather than jansson's, which names its flag. */
static bool has_nul(json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) != json_string_length(v);
}

static int enum_field(json_t *obj, const char *name, const char *a, const char *b, int *out,
                      char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v))
        return 0;
    const char *text = has_nul(v) ? NULL : json_string_value(v);
    if (text && strcmp(text, a) == 0)
        *out = 0;
    else if (text && strcmp(text, b) == 0)
        *out = 1;
    else
        return refuse(err, errlen, "%s: expected \"%s\" or \"%s\"", name, a, b);
    return 0;
}

static int read_definition(json_t *obj, schedule_t *s, char *err, size_t errlen)
{
    if (!json_is_object(obj))
        return refuse(err, errlen, "a schedule must be a JSON object");
    int rc = check_fields(obj, err, errlen);
    if (rc)
        return rc;
    json_t *cron_v = json_object_get(obj, "cron");
    const char *cron = has_nul(cron_v) ? NULL : json_string_value(cron_v);
    if (!cron)
        return refuse(err, errlen, "cron: required, a cron expression like \"*/5 * * * *\"");
    json_t *tz = json_object_get(obj, "tz");
    if (tz && !json_is_null(tz) && (!json_is_string(tz) || has_nul(tz)))
        return refuse(err, errlen, "tz: expected an IANA zone name like \"Europe/Berlin\"");
    s->cron = hp_strdup(cron);
    s->tz = hp_strdup(json_is_string(tz) ? json_string_value(tz) : "UTC");
    json_t *paused = json_object_get(obj, "paused");
    if (paused && !json_is_null(paused) && !json_is_boolean(paused))
        return refuse(err, errlen, "paused: expected true or false");
    s->paused = json_is_true(paused);
    int misfire = 0, overlap = 0;
    if ((rc = enum_field(obj, "misfire", "skip", "once", &misfire, err, errlen)) ||
        (rc = enum_field(obj, "overlap", "allow", "skip", &overlap, err, errlen)))
        return rc;
    s->misfire = misfire ? SCHEDULE_MISFIRE_ONCE : SCHEDULE_MISFIRE_SKIP;
    s->overlap = overlap ? SCHEDULE_OVERLAP_SKIP : SCHEDULE_OVERLAP_ALLOW;
    json_t *jitter = json_object_get(obj, "jitter_ms");
    if (jitter && !json_is_null(jitter)) {
        if (!json_is_integer(jitter) || json_integer_value(jitter) < 0 ||
            json_integer_value(jitter) > 86400000)
            return refuse(err, errlen, "jitter_ms: expected an integer from 0 to 86400000");
        s->jitter_ms = json_integer_value(jitter);
    }
    return 0;
}

static int check_cron(schedule_t *s, char *err, size_t errlen)
{
    sched_cron_expr_t e;
    sched_cron_zone_t z;
    char *why = NULL;
    int rc = sched_cron_parse(s->cron, &e, &why);
    if (rc == 0) {
        rc = sched_cron_zone_init(&z, s->tz, &why);
        if (rc)
            refuse(err, errlen, "tz: %s", why ? why : "unknown zone");
    } else {
        refuse(err, errlen, "%s", why ? why : "cron: invalid expression");
    }
    hp_free(why);
    return rc;
}

/* The template must read as a job, and its queue is where the schedule lives. */
static int check_job(json_t *obj, schedule_t *s, char *err, size_t errlen)
{
    json_t *job = json_object_get(obj, "job");
    if (!json_is_object(job))
        return refuse(err, errlen,
                      "job: required, the job to enqueue as POST /v1/jobs takes it, e.g. "
                      "{\"queue\": \"reports\", \"type\": \"report.daily\"}");
    char *text = json_dumps(job, JSON_COMPACT | JSON_PRESERVE_ORDER);
    s->job = hp_strdup(text);
    free(text);
    job_spec_json_t js;
    char why[400];
    int rc = job_spec_from_json(s->job, strlen(s->job), &js, why, sizeof(why));
    if (rc == 0)
        snprintf(s->queue, sizeof(s->queue), "%s", js.spec.queue);
    else
        refuse(err, errlen, "job.%s", why);
    job_spec_json_cleanup(&js);
    return rc;
}

int sched_schedule_from_object(const char *name, void *json_object, int64_t now_ms,
                               schedule_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!schedule_name_valid(name))
        return refuse(err, errlen,
                      "schedule name: 1-%d characters of A-Z a-z 0-9 . _ : -, got \"%.64s\"",
                      SCHEDULE_NAME_MAX, name);
    schedule_t *s = hp_calloc(1, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    json_t *obj = json_object;
    int rc = read_definition(obj, s, err, errlen);
    if (!rc)
        rc = check_cron(s, err, errlen);
    if (!rc)
        rc = check_job(obj, s, err, errlen);
    if (rc) {
        schedule_free(s);
        return rc;
    }
    s->next_fire_ms = sched_next_tick(s, now_ms);
    *out = s;
    return 0;
}

int sched_schedule_from_json(const char *name, const char *text, size_t len, int64_t now_ms,
                             schedule_t **out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!doc) {
        *out = NULL;
        return refuse(err, errlen, "the body is not valid JSON: %s at line %d column %d", jerr.text,
                      jerr.line, jerr.column);
    }
    int rc = sched_schedule_from_object(name, doc, now_ms, out, err, errlen);
    json_decref(doc);
    return rc;
}

bool sched_same_definition(const schedule_t *a, const schedule_t *b)
{
    return strcmp(a->cron, b->cron) == 0 && strcmp(a->tz, b->tz) == 0 &&
           strcmp(a->job, b->job) == 0 && a->paused == b->paused && a->misfire == b->misfire &&
           a->overlap == b->overlap && a->jitter_ms == b->jitter_ms;
}

/* ---- Out ---- */

static json_t *time_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char text[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(ms, text);
    return json_string(text);
}

char *sched_schedule_to_json(const schedule_t *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(s->name));
    json_object_set_new(o, "cron", json_string(s->cron));
    json_object_set_new(o, "tz", json_string(s->tz));
    sched_cron_expr_t e;
    char words[SCHED_CRON_EXPLAIN_MAX] = "";
    if (sched_cron_parse(s->cron, &e, NULL) == 0)
        sched_cron_explain(&e, words, sizeof(words));
    json_object_set_new(o, "explain", json_string(words));
    json_t *job = json_loads(s->job ? s->job : "null", JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    json_object_set_new(o, "job", job ? job : json_null());
    json_object_set_new(o, "queue", json_string(s->queue));
    json_object_set_new(o, "paused", json_boolean(s->paused));
    json_object_set_new(o, "misfire",
                        json_string(s->misfire == SCHEDULE_MISFIRE_ONCE ? "once" : "skip"));
    json_object_set_new(o, "overlap",
                        json_string(s->overlap == SCHEDULE_OVERLAP_SKIP ? "skip" : "allow"));
    json_object_set_new(o, "jitter_ms", json_integer(s->jitter_ms));
    json_object_set_new(o, "next_fire", time_or_null(s->paused ? 0 : s->next_fire_ms));
    json_t *next = json_array();
    int64_t t = s->next_fire_ms;
    for (int i = 0; i < 5 && t > 0 && !s->paused; i++) {
        json_array_append_new(next, time_or_null(t));
        t = sched_next_tick(s, t);
    }
    json_object_set_new(o, "next_fires", next);
    json_object_set_new(o, "last_fire", time_or_null(s->last_fire_ms));
    json_object_set_new(o, "last_job_id",
                        s->last_job_id[0] ? json_string(s->last_job_id) : json_null());
    json_t *history = json_loads(s->history ? s->history : "[]", 0, NULL);
    json_object_set_new(o, "history", history ? history : json_array());
    json_object_set_new(o, "created_at", time_or_null(s->created_ms));
    json_object_set_new(o, "updated_at", time_or_null(s->updated_ms));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    char *copy = hp_strdup(text);
    free(text);
    return copy;
}

/* ---- The config file ---- */

int sched_apply_config(broker_t *b, void *schedules_object, char *err, size_t errlen)
{
    json_t *all = schedules_object;
    if (!json_is_object(all))
        return refuse(err, errlen,
                      "schedules: expected an object of name -> {\"cron\": ..., \"job\": ...}");
    const char *name;
    json_t *def;
    int64_t now = hp_now_ms();
    json_object_foreach(all, name, def)
    {
        schedule_t *want = NULL, *have = NULL;
        char why[512];
        int rc = sched_schedule_from_object(name, def, now, &want, why, sizeof(why));
        if (rc)
            return refuse(err, errlen, "schedules.%s: %s", name, why);
        rc = broker_schedule_get(b, name, &have);
        if (rc == 0 && sched_same_definition(have, want)) {
            schedule_free(have);
            schedule_free(want);
            continue; /* unchanged: keeps its next fire */
        }
        schedule_free(have);
        if (rc == 0 || rc == HP_ENOTFOUND)
            rc = broker_schedule_put(b, want, NULL);
        if (rc)
            snprintf(err, errlen, "schedules.%s: %s", name, broker_errmsg(b));
        schedule_free(want);
        if (rc)
            return rc;
    }
    return 0;
}
