/*
 * The worker's configuration: its table of options, which the common option engine
 * (common/config.h) applies the same way from a JSON file, HOPPER_* environment
 * variables and command-line flags. This file owns the worker's options, their
 * defaults, the two options whose text needs the worker's own parser (queues and
 * plugins), the check of the whole, and the order in which queues are tried.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "worker/internal.h"

static int set_queues(void *cfg, const char *value, char **errmsg);
static int set_plugins(void *cfg, const char *value, char **errmsg);

#define OFF(field) offsetof(worker_config_t, field)
#define DAY_MS     (86400LL * 1000)

static const hp_option_t options[] = {
    {"queues", HP_OPT_CUSTOM, 0, 0, 0,
     "queues to serve, e.g. email,pdf:2,default (weights share fetching)", set_queues},
    {"plugins", HP_OPT_CUSTOM, 0, 0, 0, "plugin .so files or directories of them", set_plugins},
    {"processes", HP_OPT_INT, OFF(processes), 1, 256, "worker processes (default: cores)", NULL},
    {"threads", HP_OPT_INT, OFF(threads), 1, 1024, "handler threads per process (default 8)", NULL},
    {"prefetch", HP_OPT_INT, OFF(prefetch), 1, 64,
     "jobs a process holds per thread, running or next in line (default 4)", NULL},
    {"redis", HP_OPT_STRING, OFF(redis_url), 0, 0, "broker URL (default redis://127.0.0.1:6379)",
     NULL},
    {"strict-order", HP_OPT_BOOL, OFF(strict_order), 0, 0,
     "fetch queues strictly in the order given", NULL},
    {"lease", HP_OPT_DURATION, OFF(lease_ms), 300, DAY_MS,
     "lease on a running job; heartbeats every third (default 30s)", NULL},
    {"grace", HP_OPT_DURATION, OFF(grace_ms), 0, DAY_MS,
     "on SIGTERM, how long running jobs may finish (default 25s)", NULL},
    {"timeout", HP_OPT_DURATION, OFF(timeout_ms), 1, 7 * DAY_MS,
     "timeout of jobs that set none (default 30m)", NULL},
    {"timeout-grace", HP_OPT_DURATION, OFF(timeout_grace_ms), 0, DAY_MS,
     "past its timeout, how long a job may take to stop (default 5s)", NULL},
    {"fork-types", HP_OPT_STRING, OFF(fork_types), 0, 0,
     "job types to run each in a fresh process, e.g. pdf.render,image.resize", NULL},
    {"fork-cpu", HP_OPT_DURATION, OFF(fork_cpu_ms), 0, DAY_MS,
     "CPU time limit of a forked job, when its plugin set none", NULL},
    {"fork-memory-mb", HP_OPT_INT, OFF(fork_memory_mb), 0, 1 << 20,
     "address-space limit (MiB) of a forked job, when its plugin set none", NULL},
    {"plugin-config", HP_OPT_STRING, OFF(plugin_config), 0, 0,
     "JSON object of per-plugin settings: {\"email\": {...}}", NULL},
    {"blob-dir", HP_OPT_STRING, OFF(blob_dir), 0, 0,
     "directory of the blob store shared with hopper server (default ./hopper-blobs)", NULL},
    {"max-blob", HP_OPT_INT64, OFF(max_blob), 1, 1LL << 40,
     "largest blob a plugin may create, in bytes (default 1 GiB)", NULL},
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

/* HOPPER_REDIS_URL, not HOPPER_REDIS, because that is what every other verb reads. */
static const char *const env_renames[] = {"HOPPER_REDIS", "HOPPER_REDIS_URL", NULL};

static const hp_option_table_t table = {options, NOPTIONS, "HOPPER_", env_renames};

const hp_option_table_t *worker_config_table(void)
{
    return &table;
}

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
    cfg->max_blob = 1LL << 30;
    cfg->max_restart_backoff_ms = 10000;
}

void worker_config_cleanup(worker_config_t *cfg)
{
    hp_free(cfg->redis_url);
    hp_free(cfg->plugin_config);
    hp_free(cfg->blob_dir);
    hp_free(cfg->fork_types);
    for (size_t i = 0; i < cfg->nplugins; i++)
        hp_free(cfg->plugins[i]);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- The options with a parser of their own ---- */

/* "email,pdf:2,default": names with optional weights, into a fixed array. */
static int set_queues(void *cfgp, const char *value, char **errmsg)
{
    worker_config_t *cfg = cfgp;
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
                err = hp_config_bad_value(errmsg, "queues", "a weight is 1-100 (queue:weight)",
                                          value);
        }
        if (!err && (strlen(item) > JOB_QUEUE_NAME_MAX || n == WORKER_QUEUES_MAX))
            err = hp_config_bad_value(errmsg, "queues",
                                      "too many queues or a name over 64 characters", value);
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

/* "a.so,dir": owned copies, replacing the previous list. */
static int set_plugins(void *cfgp, const char *value, char **errmsg)
{
    worker_config_t *cfg = cfgp;
    char *copy = hp_strdup(value), *save = NULL;
    for (size_t i = 0; i < cfg->nplugins; i++)
        hp_free(cfg->plugins[i]);
    cfg->nplugins = 0;
    int err = 0;
    for (char *item = strtok_r(copy, ",", &save); item && !err; item = strtok_r(NULL, ",", &save)) {
        if (cfg->nplugins == WORKER_PLUGINS_MAX)
            err = hp_config_bad_value(errmsg, "plugins", "at most 64 entries", value);
        else
            cfg->plugins[cfg->nplugins++] = hp_strdup(item);
    }
    hp_free(copy);
    return err;
}

/* ---- Setting options, through the common engine ---- */

int worker_config_set(worker_config_t *cfg, const char *name, const char *value, char **errmsg)
{
    return hp_config_set(&table, cfg, name, value, errmsg);
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
