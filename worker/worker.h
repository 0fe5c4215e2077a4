/*
 * worker/ -- `hopper worker`: a supervisor that runs P worker processes, each with T
 * handler threads fed by one fetch loop, running the job types that plugins
 * register (include/hopper/plugin.h). This header is the module's only door.
 */
#ifndef HP_WORKER_H
#define HP_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "broker/broker.h"

typedef struct worker_queue_s {
    char name[JOB_QUEUE_NAME_MAX + 1];
    int weight; /* "pdf:2": fetched twice as often as weight 1 */
} worker_queue_t;

#define WORKER_QUEUES_MAX   64
#define WORKER_PLUGINS_MAX  64
#define WORKER_CAPACITY_MAX 4096 /* threads x prefetch, per process */

/*
 * What a worker runs with. Filled, in rising order of precedence, from defaults,
 * a JSON config file, HOPPER_* environment variables and command-line flags, all
 * through one table of options (config.c) that the common option engine applies
 * (common/config.h). Owned strings are freed by worker_config_cleanup.
 */
typedef struct worker_config_s {
    char *redis_url;
    bool strict; /* refuse an evicting Redis */
    worker_queue_t queues[WORKER_QUEUES_MAX];
    size_t nqueues;
    bool strict_order;                 /* always fetch the first queue with jobs first */
    char *plugins[WORKER_PLUGINS_MAX]; /* .so files or directories of them */
    size_t nplugins;
    char *plugin_config;      /* JSON object text: {"<plugin>": {...}} or NULL */
    char *blob_dir;           /* the blob store shared with the API; default ./hopper-blobs */
    int64_t max_blob;         /* largest blob a plugin may create */
    char *fork_types;         /* comma-separated job types to run with FORK isolation */
    int64_t fork_cpu_ms;      /* their CPU limit when the plugin set none; 0: none */
    int fork_memory_mb;       /* their address-space limit when the plugin set none */
    int processes;            /* default: number of cores */
    int threads;              /* per process; default 8 */
    int prefetch;             /* jobs held per thread, running or next in line; default 4 */
    int64_t lease_ms;         /* heartbeats come every third of it */
    int64_t grace_ms;         /* SIGTERM: how long running jobs may finish */
    int64_t timeout_ms;       /* a job without its own timeout gets this */
    int64_t timeout_grace_ms; /* past its timeout, how long a job may take to stop */
    int64_t max_restart_backoff_ms;
} worker_config_t;

void worker_config_init(worker_config_t *cfg);
void worker_config_cleanup(worker_config_t *cfg);
/* Applies one option by name ("queues", "threads", ...) from text; on failure
 * returns HP_EINVAL with a message naming the option (caller frees with hp_free). */
int worker_config_set(worker_config_t *cfg, const char *name, const char *value, char **errmsg);
/* Checks the whole (queues and plugins given, ...). */
int worker_config_check(const worker_config_t *cfg, char **errmsg);
/* The worker's option table: the command line, a JSON file and HOPPER_*
 * variables all go through it (cli_config_load). Static: valid for the life of
 * the program. */
const hp_option_table_t *worker_config_table(void);

/* Runs the supervisor until it is told to stop. Returns the process exit status:
 * 0 after a graceful stop, 2 when the configuration or a plugin is refused. */
int worker_run(const worker_config_t *cfg);

#endif
