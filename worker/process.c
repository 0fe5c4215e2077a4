/*
 * One worker process: a fetch loop (the main thread), T handler threads, and a
 * reporter thread.
 *
 *   fetch loop --ready--> handler threads --done--> reporter --> broker
 *
 * The fetch loop reserves only as many jobs as there are idle threads, and blocks in
 * broker_wait when the queues are empty (no polling). Handlers never touch the
 * broker: they push their outcome, and progress and log lines, to the reporter,
 * which owns its own connection: it acks in batches, records failures, extends
 * leases by heartbeat, asks jobs past their deadline to stop, and restarts the
 * process (exit WORKER_EXIT_RESTART) when one will not. Every job held has a slot in
 * shared memory so that the supervisor can fail its lease if this process crashes.
 *
 * The reporter also keeps the process's registry entry (broker_worker_beat) and,
 * once a second, takes the command an operator may have left for it in the same
 * round trip (broker_worker_poll): quiet stops fetching here, as SIGUSR1 does; stop
 * asks the supervisor (SIGUSR2) to stop the whole `hopper worker` as on SIGTERM.
 */
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "worker/internal.h"

#define FETCH_WAIT_MAX_MS 1000 /* a stop request is seen within this */
#define ACK_CHUNK         500
#define POLL_EVERY_MS     1000 /* an operator's command is seen within this */
/* The registry entry is rewritten when it changed, at most once per POLL_EVERY_MS
 * and about this many bytes a second (a process holding thousands of jobs has a
 * large entry), and every third of a lease in any case (its TTL is three). */
#define REGISTRY_BYTES_PER_S (64 * 1024)

typedef struct report_msg_s {
    char id[JOB_ID_MAX];
    char token[WORKER_TOKEN_MAX];
    int percent; /* -1: a log line */
    int level;
    char *text;
} report_msg_t;

struct worker_process_s {
    const worker_config_t *cfg;
    worker_plugins_t plugins;
    worker_slot_t *slots;
    int threads;
    int capacity; /* jobs held at most: threads x prefetch */
    char id[WORKER_ID_MAX];
    int64_t started_ms;
    pid_t supervisor;
    broker_t *fetch_broker;
    broker_t *report_broker;
    /* the registry entry, the reporter's alone */
    char *last_info;         /* the description last beaten, or NULL */
    int64_t info_refresh_at; /* monotonic: beat it again by then, changed or not */
    int64_t info_change_at;  /* monotonic: a changed one no sooner than this */
    atomic_bool info_now;    /* the state changed: beat at once */

    pthread_mutex_t lock;   /* guards everything below */
    pthread_cond_t work_cv; /* handlers: a job is ready, or exiting */
    pthread_cond_t done_cv; /* reporter: an outcome or a message is there */
    pthread_cond_t slot_cv; /* fetch loop and shutdown: a slot came free */
    hopper_job_t **held;    /* by slot: every job this process holds, or NULL */
    hopper_job_t **ready;   /* FIFO of jobs waiting for a thread */
    size_t nready;
    hopper_job_t **done; /* outcomes waiting for the reporter */
    size_t ndone;
    report_msg_t *msgs;
    size_t nmsgs, msgs_cap;
    int busy;     /* slots in use */
    bool exiting; /* handlers and reporter: finish up */
    bool abandon; /* reporter: release whatever still runs */
};

/* Set by signal handlers and by the reporter (lock-free atomics: safe in both). */
static atomic_int stop_requested;
static atomic_int quiet_requested;
static worker_place_t *my_place; /* shared with the supervisor; outlives this process */

/* From here on no new jobs, for this process and any restarted in its place.
 * Async-signal-safe (lock-free atomics only). */
static void go_quiet(void)
{
    atomic_store(&quiet_requested, 1);
    if (my_place)
        atomic_store(&my_place->quiet, 1);
}

static void on_stop(int sig)
{
    (void)sig;
    atomic_store(&stop_requested, 1);
}

static void on_quiet(int sig)
{
    (void)sig;
    go_quiet();
}

/* ---- Slots ---- */

static void slot_fill(worker_process_t *wp, int slot, const job_t *job)
{
    worker_slot_t *s = &wp->slots[slot];
    snprintf(s->id, sizeof(s->id), "%s", job->id);
    snprintf(s->token, sizeof(s->token), "%s", job->lease_token);
    atomic_store(&s->used, SLOT_HELD);
}

static void slot_clear(worker_process_t *wp, int slot)
{
    atomic_store(&wp->slots[slot].used, SLOT_FREE);
}

static int free_slot(worker_process_t *wp)
{
    for (int i = 0; i < wp->capacity; i++)
        if (!wp->held[i])
            return i;
    return -1;
}

/* ---- Handler threads ---- */

static void report_cb(void *ctx, const char *job_id, const char *token, int percent,
                      const char *message, int level, const char *line)
{
    worker_process_t *wp = ctx;
    pthread_mutex_lock(&wp->lock);
    if (wp->nmsgs == wp->msgs_cap) {
        wp->msgs_cap = wp->msgs_cap ? 2 * wp->msgs_cap : 16;
        wp->msgs = hp_realloc(wp->msgs, wp->msgs_cap * sizeof(*wp->msgs));
    }
    report_msg_t *m = &wp->msgs[wp->nmsgs++];
    snprintf(m->id, sizeof(m->id), "%s", job_id);
    snprintf(m->token, sizeof(m->token), "%s", token);
    m->percent = line ? -1 : percent;
    m->level = level;
    m->text = hp_strdup(line ? line : message ? message : "");
    pthread_cond_signal(&wp->done_cv);
    pthread_mutex_unlock(&wp->lock);
}

static void push_done(worker_process_t *wp, hopper_job_t *hj)
{
    wp->done[wp->ndone++] = hj;
    pthread_cond_signal(&wp->done_cv);
}

/* Jobs leased but not started go back to their queues unrun (the reporter
 * releases them). Called with the lock held. */
static void give_back_unstarted(worker_process_t *wp)
{
    for (size_t i = 0; i < wp->nready; i++) {
        wp->ready[i]->status = (hopper_status_t)-1;
        push_done(wp, wp->ready[i]);
    }
    wp->nready = 0;
}

static void *handler_thread(void *arg)
{
    worker_process_t *wp = arg;
    pthread_mutex_lock(&wp->lock);
    for (;;) {
        while (wp->nready == 0 && !wp->exiting)
            pthread_cond_wait(&wp->work_cv, &wp->lock);
        if (wp->nready == 0)
            break;
        hopper_job_t *hj = wp->ready[0];
        memmove(wp->ready, wp->ready + 1, --wp->nready * sizeof(*wp->ready));
        /* The timeout runs from here: waiting for a thread is not the job's time. */
        int64_t timeout = hj->job->timeout_ms ? hj->job->timeout_ms : wp->cfg->timeout_ms;
        hj->deadline_ms = hp_now_ms() + timeout;
        atomic_store(&wp->slots[hj->slot].used, SLOT_RUNNING);
        pthread_mutex_unlock(&wp->lock);
        if (hj->type) {
            worker__job_run(hj, wp->cfg->timeout_grace_ms);
        } else {
            hj->failure = hp_sprintf("no handler for type '%s'", hj->job->type);
            hj->status = HOPPER_FAIL;
        }
        atomic_store(&wp->slots[hj->slot].used, SLOT_FINISHED);
        pthread_mutex_lock(&wp->lock);
        push_done(wp, hj);
    }
    pthread_mutex_unlock(&wp->lock);
    return NULL;
}

/* ---- Reporter ---- */

/* Says what happened to one held job, and lets its slot go. Called with the lock
 * released; takes it to free the slot. */
static void forget(worker_process_t *wp, hopper_job_t *hj)
{
    pthread_mutex_lock(&wp->lock);
    slot_clear(wp, hj->slot);
    wp->held[hj->slot] = NULL;
    wp->busy--;
    pthread_cond_broadcast(&wp->slot_cv);
    pthread_mutex_unlock(&wp->lock);
    worker__job_free(hj);
}

static void send_messages(worker_process_t *wp, report_msg_t *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        report_msg_t *m = &msgs[i];
        int err = m->percent >= 0
                      ? broker_progress(wp->report_broker, m->id, m->token, m->percent, m->text)
                      : broker_log(wp->report_broker, m->id, m->token, m->level, m->text);
        if (err && err != HP_ELEASE && err != HP_ENOTFOUND)
            hp_warn("worker %s: job %s: progress or log not stored: %s", wp->id, m->id,
                    broker_errmsg(wp->report_broker));
        hp_free(m->text);
    }
}

/* Acks up to ACK_CHUNK successes in one round trip; those the broker could not take
 * (it is down) are appended to `left`. */
static void ack_chunk(worker_process_t *wp, hopper_job_t **jobs, size_t n, hopper_job_t **left,
                      size_t *nleft)
{
    job_ack_t acks[ACK_CHUNK];
    for (size_t k = 0; k < n; k++)
        acks[k] = (job_ack_t){jobs[k]->job->id, jobs[k]->job->lease_token, jobs[k]->result,
                              jobs[k]->result_len, 0};
    int err = broker_ack_batch(wp->report_broker, acks, n);
    for (size_t k = 0; k < n; k++) {
        if (acks[k].err == HP_EUNAVAIL || (err == HP_EUNAVAIL && acks[k].err)) {
            left[(*nleft)++] = jobs[k];
            continue;
        }
        if (acks[k].err) /* e.g. the lease was lost: the job is someone else's now */
            hp_info("worker %s: ack of %s refused: %s", wp->id, jobs[k]->job->id,
                    hp_strerror(acks[k].err));
        forget(wp, jobs[k]);
    }
}

/* Stores outcomes: successes acked in batches, failures and give-backs one by one.
 * Returns how many are left in done[] unreported (the broker was down). */
static size_t send_outcomes(worker_process_t *wp, hopper_job_t **done, size_t n)
{
    broker_t *b = wp->report_broker;
    hopper_job_t *ok[ACK_CHUNK];
    size_t nok = 0, left = 0;
    for (size_t i = 0; i < n; i++) {
        hopper_job_t *hj = done[i];
        if (hj->status == HOPPER_OK) {
            ok[nok++] = hj;
            if (nok == ACK_CHUNK) {
                ack_chunk(wp, ok, nok, done, &left);
                nok = 0;
            }
            continue;
        }
        int err;
        if (hj->status == (hopper_status_t)-1) /* given back unrun */
            err = broker_release(b, hj->job->id, hj->job->lease_token);
        else
            err = broker_fail(b, hj->job->id, hj->job->lease_token,
                              hj->failure ? hj->failure : "failed (the handler gave no reason)",
                              hj->status == HOPPER_FAIL, NULL, NULL);
        if (err == HP_EUNAVAIL)
            done[left++] = hj;
        else
            forget(wp, hj);
    }
    if (nok)
        ack_chunk(wp, ok, nok, done, &left);
    return left;
}

/* Extends the leases of every job held; a job whose lease was lost or whose cancel
 * was asked is told to stop. */
static void heartbeat(worker_process_t *wp)
{
    pthread_mutex_lock(&wp->lock);
    lease_ref_t *refs = hp_calloc((size_t)wp->capacity, sizeof(*refs));
    hopper_job_t **jobs = hp_calloc((size_t)wp->capacity, sizeof(*jobs));
    char(*ids)[JOB_ID_MAX] = hp_malloc((size_t)wp->capacity * sizeof(*ids));
    char(*tokens)[WORKER_TOKEN_MAX] = hp_malloc((size_t)wp->capacity * sizeof(*tokens));
    size_t n = 0;
    for (int i = 0; i < wp->capacity; i++) {
        hopper_job_t *hj = wp->held[i];
        if (!hj)
            continue;
        snprintf(ids[n], JOB_ID_MAX, "%s", hj->job->id);
        snprintf(tokens[n], WORKER_TOKEN_MAX, "%s", hj->job->lease_token);
        refs[n] = (lease_ref_t){ids[n], tokens[n]};
        jobs[n++] = hj;
    }
    pthread_mutex_unlock(&wp->lock);
    lease_status_t *st = hp_calloc(n ? n : 1, sizeof(*st));
    if (n && broker_heartbeat(wp->report_broker, refs, n, wp->cfg->lease_ms, st) == 0) {
        pthread_mutex_lock(&wp->lock);
        for (size_t i = 0; i < n; i++) {
            /* jobs[i] may have been reported and freed since: check it is still held */
            bool still = false;
            for (int k = 0; k < wp->capacity && !still; k++)
                still = wp->held[k] == jobs[i];
            if (still && st[i] != LEASE_HELD)
                atomic_store(&jobs[i]->canceled, 1);
        }
        pthread_mutex_unlock(&wp->lock);
    }
    hp_free(st);
    hp_free(tokens);
    hp_free(ids);
    hp_free(jobs);
    hp_free(refs);
}

/* ---- The registry entry, and commands ---- */

typedef struct held_view_s {
    const hopper_job_t *hj;
    bool running; /* on a handler thread now */
} held_view_t;

/* Running jobs first, then by start (the lease), then by id. */
static int compare_held(const void *pa, const void *pb)
{
    const held_view_t *a = pa, *b = pb;
    if (a->running != b->running)
        return a->running ? -1 : 1;
    if (a->hj->job->started_ms != b->hj->job->started_ms)
        return a->hj->job->started_ms < b->hj->job->started_ms ? -1 : 1;
    return strcmp(a->hj->job->id, b->hj->job->id);
}

static const char *process_state(void)
{
    return atomic_load(&stop_requested)    ? "stopping"
           : atomic_load(&quiet_requested) ? "quiet"
                                           : "running";
}

/* The registry entry: who this process is, its state, and every job it holds
 * ("running": on a thread; the others are leased and next in line, or done and
 * not yet reported). hp_free the text. */
static char *describe(worker_process_t *wp)
{
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    char started[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(wp->started_ms, started);
    json_t *queues = json_array();
    for (size_t i = 0; i < wp->cfg->nqueues; i++)
        json_array_append_new(queues, json_string(wp->cfg->queues[i].name));
    char *plugins = worker__plugins_describe(&wp->plugins);

    held_view_t *view = hp_calloc((size_t)wp->capacity, sizeof(*view));
    json_t *jobs = json_array();
    size_t n = 0, running = 0;
    pthread_mutex_lock(&wp->lock);
    for (int i = 0; i < wp->capacity; i++) {
        hopper_job_t *hj = wp->held[i];
        if (!hj)
            continue;
        view[n].hj = hj;
        view[n].running = atomic_load(&wp->slots[hj->slot].used) == SLOT_RUNNING;
        running += view[n++].running;
    }
    qsort(view, n, sizeof(*view), compare_held);
    for (size_t i = 0; i < n; i++) { /* under the lock: a job may be freed once it is out */
        const job_t *job = view[i].hj->job;
        char at[HP_RFC3339_MAX];
        hp_format_rfc3339_ms(job->started_ms, at);
        json_array_append_new(jobs,
                              json_pack("{s:s, s:s, s:s, s:b}", "id", job->id, "type", job->type,
                                        "started_at", at, "running", view[i].running));
    }
    pthread_mutex_unlock(&wp->lock);
    hp_free(view);

    json_t *info = json_pack("{s:s, s:s, s:i, s:o, s:o?, s:s, s:i, s:s, s:I, s:I, s:o}", "id",
                             wp->id, "host", host, "pid", (int)getpid(), "queues", queues,
                             "plugins", json_loads(plugins, 0, NULL), "started_at", started,
                             "threads", wp->threads, "state", process_state(), "running",
                             (json_int_t)running, "held", (json_int_t)n, "jobs", jobs);
    char *text = json_dumps(info, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char *copy = hp_strdup(text);
    free(text);
    json_decref(info);
    hp_free(plugins);
    return copy;
}

/* quiet: no new jobs from here on (the fetch loop gives back what has not started).
 * stop: the supervisor stops every process of this worker, as on SIGTERM. */
static void obey(worker_process_t *wp, worker_command_t cmd)
{
    if (cmd == WORKER_COMMAND_QUIET && !atomic_load(&quiet_requested)) {
        hp_info("worker %s: quiet (asked by an operator): no new jobs; running ones finish",
                wp->id);
        go_quiet();
        atomic_store(&wp->info_now, true);
    } else if (cmd == WORKER_COMMAND_STOP && !atomic_load(&stop_requested)) {
        if (getppid() == wp->supervisor) {
            hp_info("worker %s: stop (asked by an operator): the whole worker stops gracefully "
                    "(supervisor %d)",
                    wp->id, (int)wp->supervisor);
            kill(wp->supervisor, SIGUSR2);
        } else {
            hp_info("worker %s: stop (asked by an operator)", wp->id);
        }
        atomic_store(&stop_requested, 1);
        atomic_store(&wp->info_now, true);
    }
}

/* Takes a waiting command, and beats the registry entry in the same round trip when
 * it changed (or is due for its refresh). */
static void registry_sync(worker_process_t *wp)
{
    int64_t now = hp_mono_ms();
    char *text = describe(wp);
    bool changed = !wp->last_info || strcmp(text, wp->last_info) != 0;
    bool beat = atomic_exchange(&wp->info_now, false) || now >= wp->info_refresh_at ||
                (changed && now >= wp->info_change_at);
    worker_command_t cmd = WORKER_COMMAND_NONE;
    int err = broker_worker_poll(wp->report_broker, wp->id, beat ? text : NULL,
                                 3 * wp->cfg->lease_ms, &cmd);
    if (err) {
        hp_debug("worker %s: registry beat failed: %s", wp->id, broker_errmsg(wp->report_broker));
    } else if (beat) {
        int64_t every = (int64_t)strlen(text) * 1000 / REGISTRY_BYTES_PER_S;
        wp->info_change_at = now + (every > POLL_EVERY_MS ? every : POLL_EVERY_MS);
        wp->info_refresh_at = now + wp->cfg->lease_ms / 3;
        hp_free(wp->last_info);
        wp->last_info = text;
        text = NULL;
    }
    hp_free(text);
    if (cmd != WORKER_COMMAND_NONE)
        obey(wp, cmd);
}

/* Every job still held goes back unrun (shutdown past the grace, or a restart). */
static void release_all(worker_process_t *wp)
{
    for (int i = 0; i < wp->capacity; i++) {
        if (!atomic_load(&wp->slots[i].used))
            continue;
        if (broker_release(wp->report_broker, wp->slots[i].id, wp->slots[i].token) == 0)
            slot_clear(wp, i);
    }
}

/* Past its deadline a job is asked to stop; past the deadline and the grace, a job
 * on a thread cannot be stopped: fail it, give the others back, and restart. */
static void check_deadlines(worker_process_t *wp)
{
    int64_t now = hp_now_ms();
    hopper_job_t *hung = NULL;
    pthread_mutex_lock(&wp->lock);
    for (int i = 0; i < wp->capacity; i++) {
        hopper_job_t *hj = wp->held[i];
        if (!hj || !hj->deadline_ms || now <= hj->deadline_ms)
            continue; /* not started yet, or in time */
        atomic_store(&hj->canceled, 1);
        bool on_thread = hj->type && hj->type->type.isolation == HOPPER_ISOLATION_THREAD;
        if (on_thread && now > hj->deadline_ms + wp->cfg->timeout_grace_ms && !hung)
            hung = hj;
    }
    pthread_mutex_unlock(&wp->lock);
    if (!hung)
        return;
    int64_t timeout = hung->job->timeout_ms ? hung->job->timeout_ms : wp->cfg->timeout_ms;
    char msg[128];
    snprintf(msg, sizeof(msg), "timed out after %lld s", (long long)((timeout + 999) / 1000));
    hp_warn("worker %s: job %s %s and did not stop; restarting the process", wp->id, hung->job->id,
            msg);
    broker_fail(wp->report_broker, hung->job->id, hung->job->lease_token, msg, false, NULL, NULL);
    slot_clear(wp, hung->slot);
    /* Stop fetching first (the fetch loop adds to the slots), then give back what is
     * left, read from the slot table: it holds exactly the leases still out. */
    pthread_mutex_lock(&wp->lock);
    atomic_store(&stop_requested, 1);
    pthread_mutex_unlock(&wp->lock);
    release_all(wp);
    broker_worker_gone(wp->report_broker, wp->id);
    _exit(WORKER_EXIT_RESTART);
}

static void *reporter_thread(void *arg)
{
    worker_process_t *wp = arg;
    int64_t beat_every = wp->cfg->lease_ms / 3;
    int64_t next_beat = 0, next_poll = 0;
    hopper_job_t **pending = hp_calloc((size_t)wp->capacity, sizeof(*pending));
    size_t npending = 0;
    for (;;) {
        pthread_mutex_lock(&wp->lock);
        if (wp->ndone == 0 && wp->nmsgs == 0 && !wp->exiting && !npending) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000000L; /* deadlines are checked ten times a second */
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&wp->done_cv, &wp->lock, &ts);
        }
        report_msg_t *msgs = wp->msgs;
        size_t nmsgs = wp->nmsgs;
        wp->msgs = NULL;
        wp->nmsgs = wp->msgs_cap = 0;
        memcpy(pending + npending, wp->done, wp->ndone * sizeof(*pending));
        npending += wp->ndone;
        wp->ndone = 0;
        bool exiting = wp->exiting, abandon = wp->abandon;
        pthread_mutex_unlock(&wp->lock);

        if (abandon) /* stopping past the grace: a job the stop interrupted goes back */
            for (size_t i = 0; i < npending; i++)
                if (pending[i]->status != HOPPER_OK)
                    pending[i]->status = (hopper_status_t)-1;
        send_messages(wp, msgs, nmsgs); /* before outcomes: a finished job refuses them */
        hp_free(msgs);
        npending = send_outcomes(wp, pending, npending);
        if (npending)
            hp_sleep_ms(200); /* the broker is down: try again */
        if (hp_mono_ms() >= next_beat) {
            heartbeat(wp);
            next_beat = hp_mono_ms() + beat_every;
        }
        if (hp_mono_ms() >= next_poll || atomic_load(&wp->info_now)) {
            registry_sync(wp);
            next_poll = hp_mono_ms() + POLL_EVERY_MS;
        }
        if (abandon) {
            release_all(wp);
            break;
        }
        if (!exiting)
            check_deadlines(wp);
        pthread_mutex_lock(&wp->lock);
        bool finished = exiting && wp->busy == 0;
        pthread_mutex_unlock(&wp->lock);
        if (finished)
            break;
    }
    hp_free(pending);
    return NULL;
}

/* ---- Fetch loop ---- */

static broker_t *open_broker_retrying(const worker_config_t *cfg)
{
    broker_config_t bc = {.url = cfg->redis_url, .strict = cfg->strict};
    int64_t next_warn = 0;
    while (!atomic_load(&stop_requested)) {
        broker_t *b = NULL;
        char *msg = NULL;
        int err = broker_open(&bc, &b, &msg);
        if (!err)
            return b;
        if (err == HP_EINVAL || err == HP_EUNSAFE) {
            fprintf(stderr, "hopper worker: %s\n", msg);
            hp_free(msg);
            _exit(WORKER_EXIT_CONFIG);
        }
        if (hp_mono_ms() >= next_warn) {
            hp_warn("worker: %s; retrying", msg);
            next_warn = hp_mono_ms() + 10000;
        }
        hp_free(msg);
        hp_sleep_ms(500);
    }
    return NULL;
}

/* Hands a reserved job to the handler threads. Called with the lock held. */
static void take_job(worker_process_t *wp, job_t *job)
{
    const worker_type_t *type = worker__plugins_find(&wp->plugins, job->type);
    hopper_job_t *hj = worker__job_new(job, type, 0, JOB_PAYLOAD_DEFAULT_MAX);
    hj->report = report_cb;
    hj->report_ctx = wp;
    hj->slot = free_slot(wp);
    wp->held[hj->slot] = hj;
    slot_fill(wp, hj->slot, job);
    wp->busy++;
    wp->ready[wp->nready++] = hj;
    pthread_cond_signal(&wp->work_cv);
}

/* One round: reserve for the idle threads from the queues in weighted order.
 * Returns the number of jobs taken; *next_due says when something comes due. */
static size_t fetch_round(worker_process_t *wp, unsigned *seed, int64_t *next_due)
{
    size_t order[WORKER_QUEUES_MAX];
    worker__queue_order(wp->cfg, seed, order);
    pthread_mutex_lock(&wp->lock);
    int idle = wp->capacity - wp->busy;
    pthread_mutex_unlock(&wp->lock);
    *next_due = 0;
    for (size_t k = 0; k < wp->cfg->nqueues && idle > 0 && !atomic_load(&quiet_requested); k++) {
        job_list_t list;
        const char *queue = wp->cfg->queues[order[k]].name;
        int err =
            broker_reserve(wp->fetch_broker, queue, (size_t)idle, wp->cfg->lease_ms, wp->id, &list);
        if (err) {
            hp_warn("worker %s: reserve from %s: %s", wp->id, queue,
                    broker_errmsg(wp->fetch_broker));
            hp_sleep_ms(err == HP_EUNAVAIL ? 500 : 1000);
            return 0;
        }
        if (list.next_due_ms && (!*next_due || list.next_due_ms < *next_due))
            *next_due = list.next_due_ms;
        pthread_mutex_lock(&wp->lock);
        for (size_t i = 0; i < list.n; i++) {
            take_job(wp, list.jobs[i]);
            list.jobs[i] = NULL;
        }
        pthread_mutex_unlock(&wp->lock);
        size_t got = list.n;
        list.n = 0;
        job_list_cleanup(&list);
        if (got)
            return got;
    }
    return 0;
}

static void fetch_loop(worker_process_t *wp)
{
    unsigned seed = (unsigned)getpid() ^ (unsigned)hp_mono_us();
    const char **names = hp_malloc(wp->cfg->nqueues * sizeof(*names));
    for (size_t i = 0; i < wp->cfg->nqueues; i++)
        names[i] = wp->cfg->queues[i].name;
    while (!atomic_load(&stop_requested)) {
        if (atomic_load(&quiet_requested)) {
            /* also what a round under way when quiet came took */
            pthread_mutex_lock(&wp->lock);
            give_back_unstarted(wp);
            pthread_mutex_unlock(&wp->lock);
            hp_sleep_ms(100);
            continue;
        }
        /* Every place taken: wait for one. A quiet that comes meanwhile must be seen
         * before the next reserve, or a job enqueued after it would be taken (and
         * could start before the loop gives it back). */
        pthread_mutex_lock(&wp->lock);
        while (wp->busy == wp->capacity && !atomic_load(&stop_requested) &&
               !atomic_load(&quiet_requested)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&wp->slot_cv, &wp->lock, &ts);
        }
        pthread_mutex_unlock(&wp->lock);
        if (atomic_load(&stop_requested))
            break;
        if (atomic_load(&quiet_requested))
            continue;
        int64_t next_due;
        if (fetch_round(wp, &seed, &next_due) > 0)
            continue;
        int64_t wait = FETCH_WAIT_MAX_MS;
        if (next_due) {
            int64_t until = next_due - hp_now_ms();
            wait = until < 1 ? 1 : until < wait ? until : wait;
        }
        int rc = broker_wait(wp->fetch_broker, names, wp->cfg->nqueues, wait);
        if (rc < 0)
            hp_sleep_ms(500);
    }
    hp_free(names);
}

/* ---- Stopping ---- */

static void stop_gracefully(worker_process_t *wp, pthread_t reporter, pthread_t *handlers)
{
    pthread_mutex_lock(&wp->lock);
    give_back_unstarted(wp); /* not started: give back at once */
    int64_t give_up = hp_mono_ms() + wp->cfg->grace_ms;
    while (wp->busy > 0 && hp_mono_ms() < give_up) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&wp->slot_cv, &wp->lock, &ts);
    }
    bool all_done = wp->busy == 0;
    wp->exiting = true;
    wp->abandon = !all_done;
    for (int i = 0; i < wp->capacity; i++)
        if (wp->held[i])
            atomic_store(&wp->held[i]->canceled, 1);
    pthread_cond_broadcast(&wp->work_cv);
    pthread_cond_broadcast(&wp->done_cv);
    pthread_mutex_unlock(&wp->lock);
    pthread_join(reporter, NULL);
    hp_free(wp->last_info);
    wp->last_info = NULL;
    if (all_done) { /* handlers are idle: plugins may shut down cleanly */
        for (int i = 0; i < wp->threads; i++)
            pthread_join(handlers[i], NULL);
        worker__plugins_unload(&wp->plugins);
    } else {
        hp_warn("worker %s: grace period over; running jobs were given back to their queues",
                wp->id);
    }
    broker_worker_gone(wp->report_broker, wp->id);
}

void worker__process_main(const worker_config_t *cfg, worker_slot_t *slots, worker_place_t *place,
                          int index)
{
    my_place = place;
    if (atomic_load(&place->quiet))
        atomic_store(&quiet_requested, 1); /* before any signal or command can come */
    /* If the supervisor dies, stop gracefully rather than serve unsupervised. */
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        raise(SIGTERM);
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_quiet;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGINT, SIG_IGN); /* the supervisor decides what Ctrl-C means */
    signal(SIGTSTP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);

    worker_process_t *wp = hp_calloc(1, sizeof(*wp));
    wp->cfg = cfg;
    wp->threads = cfg->threads;
    wp->capacity = worker__capacity(cfg);
    wp->slots = slots + (size_t)index * (size_t)wp->capacity;
    wp->supervisor = parent;
    char host[200] = "host";
    gethostname(host, sizeof(host) - 1);
    for (char *p = host; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_", *p))
            *p = '_';
    snprintf(wp->id, sizeof(wp->id), "%.100s:%d", host, (int)getpid());
    wp->started_ms = hp_now_ms();
    char *msg = NULL;
    worker__blobs_configure(cfg->blob_dir, cfg->max_blob);
    if (worker__plugins_load(&wp->plugins, cfg->plugins, cfg->nplugins, cfg->plugin_config, &msg) ||
        worker__plugins_apply_config(&wp->plugins, cfg, &msg)) {
        fprintf(stderr, "hopper worker: %s\n", msg);
        _exit(WORKER_EXIT_CONFIG);
    }
    wp->fetch_broker = open_broker_retrying(cfg);
    wp->report_broker = wp->fetch_broker ? open_broker_retrying(cfg) : NULL;
    if (!wp->report_broker)
        _exit(WORKER_EXIT_STOPPED);

    pthread_mutex_init(&wp->lock, NULL);
    pthread_cond_init(&wp->work_cv, NULL);
    pthread_cond_init(&wp->done_cv, NULL);
    pthread_cond_init(&wp->slot_cv, NULL);
    wp->held = hp_calloc((size_t)wp->capacity, sizeof(*wp->held));
    wp->ready = hp_calloc((size_t)wp->capacity, sizeof(*wp->ready));
    wp->done = hp_calloc((size_t)wp->capacity, sizeof(*wp->done));
    pthread_t reporter, *handlers = hp_calloc((size_t)wp->threads, sizeof(pthread_t));
    pthread_create(&reporter, NULL, reporter_thread, wp);
    for (int i = 0; i < wp->threads; i++)
        pthread_create(&handlers[i], NULL, handler_thread, wp);
    hp_info("worker %s: serving %zu queue(s) with %d thread(s)%s", wp->id, cfg->nqueues,
            wp->threads,
            atomic_load(&quiet_requested) ? ", quiet (as the process it replaces was)" : "");

    fetch_loop(wp);
    stop_gracefully(wp, reporter, handlers);
    _exit(WORKER_EXIT_STOPPED);
}
