/*
 * The supervisor of `hopper worker`: checks the plugins once, forks P worker
 * processes, and keeps them running. A process that crashes (a handler's SIGSEGV
 * takes down only its own process) has every job it held failed with the reason,
 * read from the slot table it shares with us, and is restarted with backoff.
 *
 * Signals: SIGTERM or a first SIGINT stop gracefully (each process lets its jobs
 * finish within the grace period, then gives the rest back); a second SIGINT forces
 * (processes are killed, their jobs given back unrun); SIGTSTP quiets (no new jobs).
 * SIGUSR2 comes from one of our processes that was told "stop" by an operator
 * (POST /v1/workers/{id}/stop, the dashboard or `hopper workers stop`): it counts as
 * the first SIGTERM, never as a second.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "worker/internal.h"

typedef struct child_s {
    pid_t pid;
    int restarts; /* in a row, for backoff */
    int64_t started_ms;
    int64_t restart_at_ms; /* 0: running or not due */
} child_t;

static volatile sig_atomic_t stops;  /* count of SIGTERM/SIGINT */
static volatile sig_atomic_t quiets; /* SIGTSTP seen */
static volatile sig_atomic_t asked;  /* SIGUSR2: the pid of the process that asked, or -1 */

static void on_stop(int sig)
{
    (void)sig;
    stops++;
}

static void on_asked_to_stop(int sig, siginfo_t *info, void *context)
{
    (void)sig;
    (void)context;
    asked = info && info->si_pid > 0 ? (sig_atomic_t)info->si_pid : -1;
}

/* 0 running, 1 stopping gracefully, 2 or more forced. */
static int stop_level(void)
{
    return stops > 0 ? stops : asked != 0;
}

static void on_quiet(int sig)
{
    (void)sig;
    quiets = 1;
}

static pid_t spawn(const worker_config_t *cfg, worker_slot_t *slots, worker_place_t *places,
                   int index)
{
    pid_t pid = fork();
    if (pid == 0)
        worker__process_main(cfg, slots, &places[index], index);
    if (pid < 0)
        hp_error("worker: fork failed: %s", strerror(errno));
    return pid;
}

static const char *describe_exit(int status, char *buf, size_t len)
{
    if (WIFSIGNALED(status)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(status));
        snprintf(buf, len, "worker process crashed: signal %d (SIG%s)", WTERMSIG(status),
                 abbrev ? abbrev : "?");
    } else {
        snprintf(buf, len, "worker process exited with status %d", WEXITSTATUS(status));
    }
    return buf;
}

/* The jobs a dead process held: failed with why it died (the attempt counts), or
 * given back unrun when we killed it ourselves. */
static void settle_slots(const worker_config_t *cfg, broker_t **b, worker_slot_t *slots,
                         const char *why, bool give_back)
{
    for (int i = 0; i < worker__capacity(cfg); i++) {
        worker_slot_t *s = &slots[i];
        int state = atomic_load(&s->used);
        if (state == SLOT_FREE)
            continue;
        /* Only a job that was running can have killed the process. */
        bool back = give_back || state != SLOT_RUNNING;
        if (!*b) {
            broker_config_t bc = {.url = cfg->redis_url};
            char *msg = NULL;
            if (broker_open(&bc, b, &msg)) {
                hp_error("worker: cannot record the fate of job %s: %s", s->id, msg);
                hp_free(msg);
                return; /* their leases will expire and recovery takes over */
            }
        }
        int err = back ? broker_release(*b, s->id, s->token)
                       : broker_fail(*b, s->id, s->token, why, false, NULL, NULL);
        if (err && err != HP_ELEASE && err != HP_ENOTFOUND)
            hp_error("worker: job %s: %s", s->id, broker_errmsg(*b));
        else if (!back)
            hp_warn("worker: job %s failed: %s", s->id, why);
        atomic_store(&s->used, 0);
    }
}

static int64_t backoff_ms(const worker_config_t *cfg, int restarts)
{
    int64_t ms = 100;
    for (int i = 1; i < restarts && ms < cfg->max_restart_backoff_ms; i++)
        ms *= 2;
    return ms < cfg->max_restart_backoff_ms ? ms : cfg->max_restart_backoff_ms;
}

/* Something to wait for: a running process, or one due to restart (unless stopping). */
static bool anything_left(const child_t *children, int n)
{
    for (int i = 0; i < n; i++)
        if (children[i].pid > 0 || (children[i].restart_at_ms && !stop_level()))
            return true;
    return false;
}

static void signal_all(child_t *children, int n, int sig)
{
    for (int i = 0; i < n; i++)
        if (children[i].pid > 0)
            kill(children[i].pid, sig);
}

/* Loads and unloads every plugin once, so a bad one is refused before any fork. */
static int check_plugins(const worker_config_t *cfg)
{
    worker_plugins_t set;
    char *msg = NULL;
    if (worker__plugins_load(&set, cfg->plugins, cfg->nplugins, cfg->plugin_config, &msg) ||
        worker__plugins_apply_config(&set, cfg, &msg)) {
        if (set.nplugins)
            worker__plugins_unload(&set);
        fprintf(stderr, "hopper worker: %s\n", msg);
        hp_free(msg);
        return WORKER_EXIT_CONFIG;
    }
    hp_info("worker: %zu plugin(s), %zu job type(s)", set.nplugins, set.ntypes);
    worker__plugins_unload(&set);
    return 0;
}

int worker_run(const worker_config_t *cfg)
{
    int rc = check_plugins(cfg);
    if (rc)
        return rc;
    size_t nslots = (size_t)cfg->processes * (size_t)worker__capacity(cfg);
    worker_slot_t *slots = mmap(NULL, nslots * sizeof(worker_slot_t), PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED) {
        fprintf(stderr, "hopper worker: cannot map the slot table: %s\n", strerror(errno));
        return 1;
    }
    size_t places_len = (size_t)cfg->processes * sizeof(worker_place_t);
    worker_place_t *places =
        mmap(NULL, places_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (places == MAP_FAILED) {
        fprintf(stderr, "hopper worker: cannot map the process places: %s\n", strerror(errno));
        munmap(slots, nslots * sizeof(worker_slot_t));
        munmap(places, places_len);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_quiet;
    sigaction(SIGTSTP, &sa, NULL);
    struct sigaction su = {.sa_sigaction = on_asked_to_stop, .sa_flags = SA_SIGINFO};
    sigaction(SIGUSR2, &su, NULL);
    signal(SIGPIPE, SIG_IGN);

    child_t *children = hp_calloc((size_t)cfg->processes, sizeof(*children));
    for (int i = 0; i < cfg->processes; i++) {
        children[i].pid = spawn(cfg, slots, places, i);
        children[i].started_ms = hp_mono_ms();
    }
    hp_info("worker: supervisor %d running %d process(es) x %d thread(s)", (int)getpid(),
            cfg->processes, cfg->threads);
    broker_t *b = NULL;
    int forwarded_stops = 0, config_errors = 0;
    bool quiet_sent = false;
    while (anything_left(children, cfg->processes)) {
        if (stop_level() > forwarded_stops) {
            forwarded_stops = stop_level();
            if (forwarded_stops == 1 && !stops) {
                hp_info("worker: process %d was told to stop by an operator: stopping every "
                        "process gracefully (grace %lld ms)",
                        (int)asked, (long long)cfg->grace_ms);
                signal_all(children, cfg->processes, SIGTERM);
            } else if (forwarded_stops == 1) {
                hp_info("worker: stopping gracefully (grace %lld ms); again to force",
                        (long long)cfg->grace_ms);
                signal_all(children, cfg->processes, SIGTERM);
            } else {
                hp_warn("worker: forced stop");
                signal_all(children, cfg->processes, SIGKILL);
            }
        }
        if (quiets && !quiet_sent) {
            hp_info("worker: quiet: no new jobs; running ones finish");
            signal_all(children, cfg->processes, SIGUSR1);
            quiet_sent = true;
        }
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) {
            /* restart what is due, then sleep a little (signals cut it short) */
            for (int i = 0; i < cfg->processes && !stop_level(); i++) {
                if (children[i].pid == 0 && children[i].restart_at_ms &&
                    hp_mono_ms() >= children[i].restart_at_ms) {
                    children[i].pid = spawn(cfg, slots, places, i);
                    children[i].started_ms = hp_mono_ms();
                    children[i].restart_at_ms = 0;
                }
            }
            hp_sleep_ms(20);
            continue;
        }
        int i = 0;
        while (i < cfg->processes && children[i].pid != pid)
            i++;
        if (i == cfg->processes)
            continue; /* not ours (a fork-isolated job's child is reaped by its thread) */
        children[i].pid = 0;
        worker_slot_t *mine = slots + (size_t)i * (size_t)worker__capacity(cfg);
        char why[128];
        describe_exit(status, why, sizeof(why));
        bool we_killed = forwarded_stops > 1;
        settle_slots(cfg, &b, mine, why, we_killed);
        if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_CONFIG) {
            config_errors++;
            continue; /* it said why on stderr; restarting would say it again */
        }
        if (stop_level())
            continue;
        if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_STOPPED)
            continue; /* stopped on its own (e.g. SIGTERM sent to it alone) */
        if (hp_mono_ms() - children[i].started_ms > 60000)
            children[i].restarts = 0;
        children[i].restarts++;
        int64_t delay = backoff_ms(cfg, children[i].restarts);
        hp_warn("worker: %s; restarting it in %lld ms", why, (long long)delay);
        children[i].restart_at_ms = hp_mono_ms() + delay;
    }
    broker_close(b);
    hp_free(children);
    munmap(slots, nslots * sizeof(worker_slot_t));
    hp_info("worker: stopped");
    return config_errors ? WORKER_EXIT_CONFIG : 0;
}
