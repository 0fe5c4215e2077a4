/*
 * cli/ -- the `hopper` command: one table of verbs, each with its options, usage
 * and handler. Verbs print results on stdout, one-line errors on stderr, and exit
 * with a code from the table below, which never changes meaning.
 */
#ifndef HP_CLI_H
#define HP_CLI_H

#include <getopt.h>

#include "common/common.h"
#include "broker/broker.h"

/* Exit statuses, stable for scripts (see README). */
#define CLI_EXIT_MAP(XX)                                                                           \
    XX(OK, 0, "success")                                                                           \
    XX(FAILURE, 1, "failed for another reason")                                                    \
    XX(USAGE, 2, "bad arguments or bad input")                                                     \
    XX(NOT_FOUND, 3, "no such job, queue or schedule")                                             \
    XX(STATE, 4, "not allowed in the job's state, or the lease was lost")                          \
    XX(FULL, 5, "queue full or broker out of memory")                                              \
    XX(UNAVAILABLE, 6, "broker unreachable")                                                       \
    XX(UNSAFE, 7, "broker configured unsafely (e.g. it may evict jobs) and --strict given")

typedef enum {
#define XX(name, code, msg) CLI_EXIT_##name = code,
    CLI_EXIT_MAP(XX)
#undef XX
} cli_exit_t;

/* Options every broker-using verb takes; filled before the verb's own. */
typedef struct cli_common_s {
    const char *redis_url;
    bool strict;
    bool json;
} cli_common_t;

typedef struct cli_verb_s {
    const char *name;
    const char *args; /* e.g. "ID" */
    const char *summary;
    const char *help;             /* option lines */
    const struct option *options; /* NULL: the verb builds its own (worker) */
    int (*run)(const struct cli_verb_s *verb, int argc, char **argv);
} cli_verb_t;

/* ---- Helpers (main.c) ---- */
int cli_exit_for(int err);
int cli_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_usage(const cli_verb_t *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Handles --redis, --strict, --json, --help; returns -1 if `opt` is not one. */
int cli_common_option(const cli_verb_t *verb, int opt, const char *arg, cli_common_t *common);
/* Parses the common options and min..max positional arguments, which are then
 * argv[optind..]; returns 0 or an exit code. */
int cli_parse_plain(const cli_verb_t *verb, int argc, char **argv, cli_common_t *common, int min,
                    int max);
int cli_open_broker(const cli_common_t *common, broker_t **out);
/* A verb of sub-verbs ("token create", ...): --help lists them all, else argv[1]
 * picks one and runs it on argv+1; `expected` names them for a usage error. */
int cli_run_subverb(const cli_verb_t *verb, const cli_verb_t *subs, size_t n, int argc, char **argv,
                    const char *expected);
int cli_broker_fail(broker_t *b, int err);
/* Records an admin action done from the command line in the audit log, as the API
 * records its own: the local user and host stand for the token and the address.
 * `err` is how the action ended (0: done). Nothing is recorded when the broker
 * cannot be reached (the action could not have happened either). */
void cli_audit(broker_t *b, const char *action, const char *target, int err);
int cli_parse_int(const cli_verb_t *verb, const char *name, const char *text, long min, long max,
                  long *out);
int cli_parse_duration(const cli_verb_t *verb, const char *name, const char *text, int64_t *out);
void cli_print_help(const cli_verb_t *verb);

#define CLI_COMMON_OPTIONS                                                                         \
    {"redis", required_argument, NULL, 'R'}, {"strict", no_argument, NULL, 'S'},                   \
        {"json", no_argument, NULL, 'J'},                                                          \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }
#define CLI_LOCAL_HELP "  --help           this text\n"
#define CLI_COMMON_HELP                                                                            \
    "  --redis URL      broker (default $HOPPER_REDIS_URL, else redis://127.0.0.1:6379)\n"         \
    "  --strict         refuse a Redis whose maxmemory-policy could evict jobs\n"                  \
    "  --help           this text\n"

/* ---- Verbs ---- */
int cli_enqueue(const cli_verb_t *verb, int argc, char **argv);
int cli_job(const cli_verb_t *verb, int argc, char **argv);
int cli_jobs(const cli_verb_t *verb, int argc, char **argv);
int cli_job_action(const cli_verb_t *verb, int argc, char **argv); /* retry, cancel, delete */
int cli_stats(const cli_verb_t *verb, int argc, char **argv);
int cli_queues(const cli_verb_t *verb, int argc, char **argv);
int cli_workers(const cli_verb_t *verb, int argc, char **argv);
int cli_pause(const cli_verb_t *verb, int argc, char **argv); /* pause, resume */
int cli_worker(const cli_verb_t *verb, int argc, char **argv);
int cli_token(const cli_verb_t *verb, int argc, char **argv); /* create, list, revoke */
int cli_server(const cli_verb_t *verb, int argc, char **argv);
int cli_cron(const cli_verb_t *verb, int argc, char **argv); /* cron next, cron explain */
/* schedule list, get, set, delete, trigger, pause, resume */
int cli_schedule(const cli_verb_t *verb, int argc, char **argv);

/* ---- Configuration of long-running verbs (config_flow.c) ----
 * Applies --config FILE (keys in file_skip_keys left alone), then HOPPER_*
 * variables, then flags, to cfg through `table`; --strict sets *strict. Returns -1
 * to go on, or the exit code to return (0 after --help). */
int cli_config_load(const cli_verb_t *verb, const hp_option_table_t *table, void *cfg,
                    const char *const *file_skip_keys, int argc, char **argv, bool *strict,
                    const char **config_file);

extern const struct option cli_enqueue_options[], cli_job_options[], cli_jobs_options[],
    cli_plain_options[], cli_stats_options[], cli_token_options[], cli_cron_options[],
    cli_schedule_options[];

#endif
