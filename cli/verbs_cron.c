/* `hopper cron next` and `hopper cron explain`: check a cron expression without a
 * broker, by printing its next fire times or saying in words when it fires. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "scheduler/scheduler.h"

#define COUNT_DEFAULT 5
#define COUNT_MAX     1000

const struct option cli_cron_options[] = {
    {"tz", required_argument, NULL, 'z'},
    {"from", required_argument, NULL, 'f'},
    {"count", required_argument, NULL, 'n'},
    {"help", no_argument, NULL, 'h'},
    {0},
};

typedef struct cron_args_s {
    const char *sub;  /* "next" or "explain" */
    const char *expr; /* the expression, as given */
    const char *tz;   /* NULL: UTC */
    const char *from; /* NULL: now */
    long count;
} cron_args_t;

static int parse_args(const cli_verb_t *verb, int argc, char **argv, cron_args_t *args)
{
    cli_common_t unused = {0};
    *args = (cron_args_t){.count = COUNT_DEFAULT};
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "", verb->options, NULL)) != -1) {
        int rc = 0;
        if (opt == 'z')
            args->tz = optarg;
        else if (opt == 'f')
            args->from = optarg;
        else if (opt == 'n')
            rc = cli_parse_int(verb, "count", optarg, 1, COUNT_MAX, &args->count);
        else if (cli_common_option(verb, opt, optarg, &unused) != 0)
            rc = cli_usage(verb, "bad option \"%s\"", argv[optind - 1]);
        if (rc)
            return rc;
    }
    if (argc - optind != 2)
        return cli_usage(verb, "expected next or explain, then one quoted expression");
    args->sub = argv[optind];
    args->expr = argv[optind + 1];
    if (strcmp(args->sub, "next") != 0 && strcmp(args->sub, "explain") != 0)
        return cli_usage(verb, "unknown cron subcommand \"%s\" (next or explain)", args->sub);
    if (strcmp(args->sub, "explain") == 0 && (args->tz || args->from))
        return cli_usage(verb, "explain takes no --tz or --from");
    return 0;
}

/* "2026-01-07T00:00:00Z": whole seconds, since fire times are whole seconds. */
static void print_time(int64_t unix_s)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    printf("%04d-%02d-%02dT%02d:%02d:%02dZ\n", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int run_next(const cli_verb_t *verb, const cron_args_t *args, const sched_cron_expr_t *e)
{
    char *msg = NULL;
    sched_cron_zone_t zone;
    if (sched_cron_zone_init(&zone, args->tz, &msg)) {
        int rc = cli_fail(HP_EINVAL, "%s", msg);
        hp_free(msg);
        return rc;
    }
    int64_t from_ms = hp_now_ms();
    if (args->from && hp_parse_rfc3339_ms(args->from, &from_ms))
        return cli_usage(verb,
                         "--from: expected an RFC 3339 time like 2026-01-07T00:00:00Z, "
                         "got \"%s\"",
                         args->from);
    /* Fire times are whole seconds: "after 12:00:00.5" is "after 12:00:00". */
    int64_t t = from_ms / 1000 - (from_ms % 1000 < 0);
    for (long i = 0; i < args->count; i++) {
        int err = sched_cron_next(e, &zone, t, &t);
        if (err) {
            fflush(stdout);
            fprintf(stderr, "hopper: cron: no further fire time (%s)\n",
                    err == HP_EINVAL ? "the time is outside years 1-9999"
                                     : "searched 100 years, up to year 9999");
            return CLI_EXIT_FAILURE;
        }
        print_time(t);
    }
    return CLI_EXIT_OK;
}

int cli_cron(const cli_verb_t *verb, int argc, char **argv)
{
    cron_args_t args;
    int rc = parse_args(verb, argc, argv, &args);
    if (rc)
        return rc;
    sched_cron_expr_t e;
    char *msg = NULL;
    if (sched_cron_parse(args.expr, &e, &msg)) {
        rc = cli_fail(HP_EINVAL, "%s", msg);
        hp_free(msg);
        return rc;
    }
    if (strcmp(args.sub, "next") == 0)
        return run_next(verb, &args, &e);
    char text[SCHED_CRON_EXPLAIN_MAX];
    sched_cron_explain(&e, text, sizeof(text));
    printf("%s\n", text);
    return CLI_EXIT_OK;
}
