/*
 * The worker's configuration: one table of options, applied the same way from a
 * JSON file, HOPPER_* environment variables and command-line flags (nginx's
 * ngx_command_t, Redis's static_configs[]).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "worker/internal.h"

typedef enum { OPT_STRING, OPT_INT, OPT_DURATION, OPT_BOOL, OPT_QUEUES, OPT_LIST } opt_type_t;

typedef struct option_s {
    const char *name; /* flag --name, file key name (with '_' for '-'), env HOPPER_NAME */
    opt_type_t type;
    size_t offset;
    long long min, max;
    const char *help;
} option_t;

#define OFF(field) offsetof(worker_config_t, field)
#define DAY_MS     (86400LL * 1000)

static const option_t options[] = {
    {"queues", OPT_QUEUES, OFF(queues), 0, 0,
     "queues to serve, e.g. email,pdf:2,default (weights share fetching)"},
    {"plugins", OPT_LIST, OFF(plugins), 0, 0, "plugin .so files or directories of them"},
    {"processes", OPT_INT, OFF(processes), 1, 256, "worker processes (default: cores)"},
    {"threads", OPT_INT, OFF(threads), 1, 1024, "handler threads per process (default 8)"},
    {"prefetch", OPT_INT, OFF(prefetch), 1, 64,
     "jobs a process holds per thread, running or next in line (default 4)"},
    {"redis", OPT_STRING, OFF(redis_url), 0, 0, "broker URL (default redis://127.0.0.1:6379)"},
    {"strict-order", OPT_BOOL, OFF(strict_order), 0, 0, "fetch queues strictly in the order given"},
    {"lease", OPT_DURATION, OFF(lease_ms), 300, DAY_MS,
     "lease on a running job; heartbeats every third (default 30s)"},
    {"grace", OPT_DURATION, OFF(grace_ms), 0, DAY_MS,
     "on SIGTERM, how long running jobs may finish (default 25s)"},
    {"timeout", OPT_DURATION, OFF(timeout_ms), 1, 7 * DAY_MS,
     "timeout of jobs that set none (default 30m)"},
    {"timeout-grace", OPT_DURATION, OFF(timeout_grace_ms), 0, DAY_MS,
     "past its timeout, how long a job may take to stop (default 5s)"},
    {"fork-types", OPT_STRING, OFF(fork_types), 0, 0,
     "job types to run each in a fresh process, e.g. pdf.render,image.resize"},
    {"fork-cpu", OPT_DURATION, OFF(fork_cpu_ms), 0, DAY_MS,
     "CPU time limit of a forked job, when its plugin set none"},
    {"fork-memory-mb", OPT_INT, OFF(fork_memory_mb), 0, 1 << 20,
     "address-space limit (MiB) of a forked job, when its plugin set none"},
    {"plugin-config", OPT_STRING, OFF(plugin_config), 0, 0,
     "JSON object of per-plugin settings: {\"email\": {...}}"},
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

void worker_config_init(worker_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->processes = cores > 0 ? (int)cores : 1;
    cfg->threads = 8;
    cfg->prefetch = 4;
    cfg->lease_ms = 30000;
    cfg->grace_ms = 25000;
    cfg->timeout_ms = 30LL * 60 * 1000;
    cfg->timeout_grace_ms = 5000;
    cfg->max_restart_backoff_ms = 10000;
}

void worker_config_cleanup(worker_config_t *cfg)
{
    hp_free(cfg->redis_url);
    hp_free(cfg->plugin_config);
    hp_free(cfg->fork_types);
    for (size_t i = 0; i < cfg->nplugins; i++)
        hp_free(cfg->plugins[i]);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- Setting one option ---- */

static int bad(char **errmsg, const char *name, const char *why, const char *value)
{
    if (errmsg)
        *errmsg = hp_sprintf("%s: %s, got \"%.200s\"", name, why, value);
    return HP_EINVAL;
}

static int set_queues(worker_config_t *cfg, const char *value, char **errmsg)
{
    char *copy = hp_strdup(value), *save = NULL;
    size_t n = 0;
    int err = 0;
    for (char *item = strtok_r(copy, ", ", &save); item && !err;
         item = strtok_r(NULL, ", ", &save)) {
        char *colon = strchr(item, ':');
        long weight = 1;
        if (colon) {
            *colon = '\0';
            char *end;
            weight = strtol(colon + 1, &end, 10);
            if (*end || end == colon + 1 || weight < 1 || weight > 100)
                err = bad(errmsg, "queues", "a weight is 1-100 (queue:weight)", value);
        }
        if (!err && (strlen(item) > JOB_QUEUE_NAME_MAX || n == WORKER_QUEUES_MAX))
            err = bad(errmsg, "queues", "too many queues or a name over 64 characters", value);
        if (!err) {
            snprintf(cfg->queues[n].name, sizeof(cfg->queues[n].name), "%s", item);
            cfg->queues[n++].weight = (int)weight;
        }
    }
    hp_free(copy);
    if (!err)
        cfg->nqueues = n;
    return err;
}

static int set_list(worker_config_t *cfg, const char *value, char **errmsg)
{
    char *copy = hp_strdup(value), *save = NULL;
    for (size_t i = 0; i < cfg->nplugins; i++)
        hp_free(cfg->plugins[i]);
    cfg->nplugins = 0;
    int err = 0;
    for (char *item = strtok_r(copy, ",", &save); item && !err; item = strtok_r(NULL, ",", &save)) {
        if (cfg->nplugins == WORKER_PLUGINS_MAX)
            err = bad(errmsg, "plugins", "at most 64 entries", value);
        else
            cfg->plugins[cfg->nplugins++] = hp_strdup(item);
    }
    hp_free(copy);
    return err;
}

static const option_t *find_option(const char *name)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        size_t n = strlen(options[i].name);
        bool same = strlen(name) == n;
        for (size_t k = 0; same && k < n; k++) /* "strict_order" finds "strict-order" */
            same = name[k] == options[i].name[k] || (name[k] == '_' && options[i].name[k] == '-');
        if (same)
            return &options[i];
    }
    return NULL;
}

int worker_config_set(worker_config_t *cfg, const char *name, const char *value, char **errmsg)
{
    const option_t *o = find_option(name);
    if (!o) {
        if (errmsg)
            *errmsg = hp_sprintf("unknown option \"%s\"", name);
        return HP_EINVAL;
    }
    void *field = (char *)cfg + o->offset;
    char *end;
    int64_t ms;
    switch (o->type) {
    case OPT_STRING:
        hp_free(*(char **)field);
        *(char **)field = hp_strdup(value);
        return 0;
    case OPT_INT: {
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || *end || end == value || v < o->min || v > o->max) {
            char why[64];
            snprintf(why, sizeof(why), "expected an integer from %lld to %lld", o->min, o->max);
            return bad(errmsg, o->name, why, value);
        }
        *(int *)field = (int)v;
        return 0;
    }
    case OPT_DURATION:
        if (hp_parse_duration_ms(value, &ms) || ms < o->min || ms > o->max)
            return bad(errmsg, o->name, "expected a duration like 500ms, 10s, 5m, within limits",
                       value);
        *(int64_t *)field = ms;
        return 0;
    case OPT_BOOL:
        if (strcmp(value, "true") && strcmp(value, "false") && strcmp(value, "1") &&
            strcmp(value, "0"))
            return bad(errmsg, o->name, "expected true or false", value);
        *(bool *)field = value[0] == 't' || value[0] == '1';
        return 0;
    case OPT_QUEUES:
        return set_queues(cfg, value, errmsg);
    case OPT_LIST:
        return set_list(cfg, value, errmsg);
    }
    return HP_EINVAL;
}

const char *const *worker_config_option_names(void)
{
    static const char *names[NOPTIONS + 1];
    for (size_t i = 0; i < NOPTIONS; i++)
        names[i] = options[i].name;
    return names;
}

bool worker_config_option_takes_value(const char *name)
{
    const option_t *o = find_option(name);
    return o && o->type != OPT_BOOL;
}

void worker_config_print_help(void)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        char flag[40];
        snprintf(flag, sizeof(flag), "--%s%s", options[i].name,
                 options[i].type == OPT_BOOL ? "" : " V");
        printf("  %-20s %s\n", flag, options[i].help);
    }
}

/* ---- Sources ---- */

/* A JSON value as the text worker_config_set takes. hp_free the result. */
static char *json_as_text(const char *key, json_t *v)
{
    if (json_is_string(v))
        return hp_strdup(json_string_value(v));
    if (json_is_true(v) || json_is_false(v))
        return hp_strdup(json_is_true(v) ? "true" : "false");
    if (json_is_integer(v))
        return hp_sprintf("%lld", (long long)json_integer_value(v));
    if (json_is_array(v)) { /* "queues": ["email", "pdf:2"] */
        hp_strbuf_t sb;
        hp_strbuf_init(&sb, 0);
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            if (!json_is_string(item))
                return NULL;
            hp_strbuf_printf(&sb, "%s%s", i ? "," : "", json_string_value(item));
        }
        return hp_strbuf_steal(&sb, NULL);
    }
    if (json_is_object(v) && strcmp(key, "plugin_config") == 0) {
        char *text = json_dumps(v, JSON_COMPACT);
        char *copy = hp_strdup(text);
        free(text);
        return copy;
    }
    return NULL;
}

int worker_config_load_file(worker_config_t *cfg, const char *path, char **errmsg)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!json_is_object(doc)) {
        if (errmsg)
            *errmsg = doc             ? hp_sprintf("%s: expected a JSON object", path)
                      : jerr.line > 0 ? hp_sprintf("%s: %s (line %d)", path, jerr.text, jerr.line)
                                      : hp_sprintf("%s: %s", path, jerr.text);
        json_decref(doc);
        return HP_EINVAL;
    }
    const char *key;
    json_t *v;
    int err = 0;
    json_object_foreach(doc, key, v)
    {
        char *text = json_as_text(key, v);
        if (!text) {
            if (errmsg)
                *errmsg = hp_sprintf("%s: \"%s\" has a value of the wrong type", path, key);
            err = HP_EINVAL;
        } else {
            char *why = NULL;
            err = worker_config_set(cfg, key, text, &why);
            if (err && errmsg)
                *errmsg = hp_sprintf("%s: %s", path, why);
            hp_free(why);
        }
        hp_free(text);
        if (err)
            break;
    }
    json_decref(doc);
    return err;
}

int worker_config_load_env(worker_config_t *cfg, char **errmsg)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        char env[64] = "HOPPER_";
        size_t at = strlen(env);
        for (const char *p = options[i].name; *p && at < sizeof(env) - 1; p++)
            env[at++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        env[at] = '\0';
        if (strcmp(env, "HOPPER_REDIS") == 0)
            snprintf(env, sizeof(env), "HOPPER_REDIS_URL"); /* as every verb reads it */
        const char *value = getenv(env);
        if (!value || !value[0])
            continue;
        char *why = NULL;
        int err = worker_config_set(cfg, options[i].name, value, &why);
        if (err) {
            if (errmsg)
                *errmsg = hp_sprintf("%s: %s", env, why);
            hp_free(why);
            return err;
        }
    }
    return 0;
}

int worker_config_check(const worker_config_t *cfg, char **errmsg)
{
    const char *why = NULL;
    if (cfg->nqueues == 0)
        why = "no queues: give --queues (or HOPPER_QUEUES, or \"queues\" in the config file)";
    else if (cfg->nplugins == 0)
        why = "no plugins: give --plugins with .so files or a directory of them";
    for (size_t i = 0; !why && i < cfg->nqueues; i++) {
        if (!job_queue_name_valid(cfg->queues[i].name)) {
            if (errmsg)
                *errmsg = hp_sprintf("queues: \"%s\" is not a queue name (1-64 characters of "
                                     "A-Z a-z 0-9 . _ -)",
                                     cfg->queues[i].name);
            return HP_EINVAL;
        }
    }
    if (!why && (long)cfg->threads * cfg->prefetch > WORKER_CAPACITY_MAX)
        why = "threads x prefetch: at most 4096 jobs held per process";
    if (!why && cfg->plugin_config) {
        json_t *doc = json_loads(cfg->plugin_config, 0, NULL);
        if (!json_is_object(doc))
            why = "plugin-config: expected a JSON object of objects";
        json_decref(doc);
    }
    if (why) {
        if (errmsg)
            *errmsg = hp_strdup(why);
        return HP_EINVAL;
    }
    return 0;
}

/* ---- Choosing a queue ---- */

void worker__queue_order(const worker_config_t *cfg, unsigned *seed, size_t *order)
{
    size_t n = cfg->nqueues;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    if (cfg->strict_order)
        return;
    /* Weighted order without replacement: each place goes to a remaining queue with
     * probability weight / (sum of remaining weights). */
    for (size_t place = 0; place + 1 < n; place++) {
        int total = 0;
        for (size_t k = place; k < n; k++)
            total += cfg->queues[order[k]].weight;
        int pick = (int)(rand_r(seed) % (unsigned)total);
        size_t k = place;
        while (pick >= cfg->queues[order[k]].weight) {
            pick -= cfg->queues[order[k]].weight;
            k++;
        }
        size_t tmp = order[place];
        order[place] = order[k];
        order[k] = tmp;
    }
}
