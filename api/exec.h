/*
 * api/exec.h -- the broker executor: a few threads, each with its own broker_t,
 * that run broker calls for the event loops so no loop ever waits on Redis.
 *
 * A loop submits a task; a thread runs task->run with its broker; the loop that
 * submitted it gets task->done back on its own thread (a uv_async wake-up). Tasks
 * that share a batch function and wait in the queue together run as one call of it
 * (e.g. single enqueues as one broker_enqueue, up to JOB_BATCH_MAX): one round
 * trip for many requests, which is where the API's speed under load comes from.
 *
 * Why threads and not hiredis's async API: broker.h is one synchronous door for
 * every backend, and the embedded SQLite backend has no asynchronous API at all;
 * a small pool of blocking connections serves both, and the batching above needs
 * a place where concurrent requests meet anyway.
 */
#ifndef HP_API_EXEC_H
#define HP_API_EXEC_H

#include <uv.h>

#include "broker/broker.h"

typedef struct exec_s exec_t;
typedef struct exec_home_s exec_home_t;
typedef struct exec_task_s exec_task_t;

struct exec_task_s {
    /* On an executor thread; b is connected (or the task is failed without it). */
    void (*run)(exec_task_t *t, broker_t *b);
    /* Back on the submitting loop. */
    void (*done)(exec_task_t *t);
    /* Or, instead of run: runs every waiting task with the same batch function in
     * one call (tasks[0] is this one). */
    void (*batch)(exec_task_t **tasks, size_t n, broker_t *b);
    /* Set instead of calling run when no broker could be opened. */
    int unavailable;
    char errmsg[256];
    /* private */
    exec_home_t *home;
    exec_task_t *next;
};

exec_t *exec_start(const broker_config_t *cfg, int nthreads);
/* Waits for queued tasks to be run, then stops the threads. Homes must still be
 * run (their loops) for the last done callbacks. */
void exec_stop(exec_t *e);

/* A loop's mailbox for finished tasks. */
exec_home_t *exec_home_new(exec_t *e, uv_loop_t *loop);
void exec_home_close(exec_home_t *h);

void exec_submit(exec_home_t *h, exec_task_t *t);
/* Tasks submitted and not yet done, across all homes. */
int exec_pending(exec_t *e);

#endif
