/*
 * worker/internal.h -- what worker/'s files share.
 *
 * Processes: the supervisor (supervisor.c) forks P worker processes (process.c).
 * In each, one fetch loop reserves jobs and hands them to T handler threads; one
 * reporter thread owns the broker connection that acks, fails, heartbeats and
 * records progress. A job's outcome flows handler -> reporter -> broker, and the
 * slot table (shared memory written by the process, read by the supervisor) says
 * which leases a process holds, so the supervisor can fail them if it crashes.
 */
#ifndef HP_WORKER_INTERNAL_H
#define HP_WORKER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <hopper/plugin.h>

#include "worker/worker.h"

/* Exit statuses of a worker process, read by the supervisor. */
#define WORKER_EXIT_STOPPED 0  /* graceful stop */
#define WORKER_EXIT_CONFIG  2  /* refused its configuration or a plugin: do not restart */
#define WORKER_EXIT_RESTART 75 /* a job hung past its timeout: restart me */

/* ---- Slots: which leases a process holds (shared with the supervisor) ---- */

#define WORKER_TOKEN_MAX 48

/* Slot states: what the supervisor does with the job if the process dies. */
enum {
    SLOT_FREE = 0,
    SLOT_HELD = 1,     /* leased, not started: give it back unrun */
    SLOT_RUNNING = 2,  /* a handler runs it: fail it with the reason (the attempt counts) */
    SLOT_FINISHED = 3, /* handled, outcome not yet stored: give it back (it re-runs) */
};

typedef struct worker_slot_s {
    atomic_int used; /* a SLOT_* state, written last when filled, first when cleared */
    char id[JOB_ID_MAX];
    char token[WORKER_TOKEN_MAX];
} worker_slot_t;

/* What one process place keeps across restarts, in memory the supervisor shares. */
typedef struct worker_place_s {
    atomic_int quiet; /* its process went quiet: the one restarted in its place starts quiet */
} worker_place_t;

/* ---- Plugins (plugins.c) ---- */

typedef struct worker_type_s {
    hopper_job_type_t type; /* a copy of what the plugin registered */
    char *name;             /* owned copy of type.name */
    struct hopper_plugin *plugin;
} worker_type_t;

typedef struct worker_plugins_s {
    struct hopper_plugin **plugins;
    size_t nplugins;
    worker_type_t *types;
    size_t ntypes;
} worker_plugins_t;

/* Loads every plugin (files, or every *.so of a directory), runs its init, and
 * collects its types. On failure returns HP_EINVAL with a message that names the
 * file and the step (open, symbol, ABI, init, type) in *errmsg. */
int worker__plugins_load(worker_plugins_t *set, char *const *paths, size_t npaths,
                         const char *plugin_config, char **errmsg);
/* Runs every shutdown hook, then unloads. */
void worker__plugins_unload(worker_plugins_t *set);
/* Host functions for init (plugins.c), placed in the host table by host.c. */
int worker__register_plugin(hopper_plugin_t *p, unsigned abi, const char *name,
                            const char *version);
int worker__register_type(hopper_plugin_t *p, const hopper_job_type_t *type);
void worker__on_shutdown(hopper_plugin_t *p, void (*fn)(void *), void *arg);
const char *worker__plugin_config(hopper_plugin_t *p, const char *key);
/* Runs the types named in cfg->fork_types with FORK isolation (and the config's
 * limits where the plugin set none). HP_EINVAL with *errmsg if a name is unknown. */
int worker__plugins_apply_config(worker_plugins_t *set, const worker_config_t *cfg, char **errmsg);
const worker_type_t *worker__plugins_find(const worker_plugins_t *set, const char *type);
/* [{"name", "version"}...] as JSON text, for the worker registry; hp_free it. */
char *worker__plugins_describe(const worker_plugins_t *set);

/* ---- Jobs as plugins see them (host.c) ---- */

typedef struct worker_process_s worker_process_t;

/* Progress and log lines travel to the reporter through this callback. */
typedef void (*worker_report_cb)(void *ctx, const char *job_id, const char *token, int percent,
                                 const char *message, int level, const char *line);

struct hopper_job {
    job_t *job;                /* owned */
    const worker_type_t *type; /* NULL: no handler for this type */
    atomic_int canceled;
    int64_t deadline_ms;
    int slot; /* index in the process's slot table */
    /* outcome */
    hopper_status_t status;
    char *result;
    size_t result_len;
    char *failure;
    /* lazily parsed payload, for the accessors */
    void *doc;
    /* where progress and logs go */
    worker_report_cb report;
    void *report_ctx;
    size_t max_result;
    char **kept; /* strings handed to the plugin, freed with the job */
    size_t nkept;
};

const hopper_host_api_t *worker__host_api(void);
/* Where the host's blob functions find the store (opened on first use). */
void worker__blobs_configure(const char *dir, int64_t max_bytes);
struct hopper_job *worker__job_new(job_t *job, const worker_type_t *type, int64_t deadline_ms,
                                   size_t max_result);
void worker__job_free(struct hopper_job *hj);
/* Runs the handler on this thread (or, for FORK types, in a child process). */
void worker__job_run(struct hopper_job *hj, int64_t timeout_grace_ms);

/* ---- One worker process (process.c) ---- */

/* Never returns: exits with a WORKER_EXIT_* status. */
/* Loads the plugins itself, then serves until stopped. Never returns: exits with a
 * WORKER_EXIT_* status. slots: the whole table; this process uses its T slots.
 * place: what its place keeps across restarts. */
void worker__process_main(const worker_config_t *cfg, worker_slot_t *slots, worker_place_t *place,
                          int index) __attribute__((noreturn));

/* Jobs one process may hold: threads x prefetch (its share of the slot table). */
static inline int worker__capacity(const worker_config_t *cfg)
{
    return cfg->threads * cfg->prefetch;
}

/* ---- Queue choice (config.c) ---- */

/* Fills `order` with queue indexes in the order to try: by weight at random, or
 * as configured in strict order. */
void worker__queue_order(const worker_config_t *cfg, unsigned *seed, size_t *order);

#endif
