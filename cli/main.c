/* `hopper`: the verb table, dispatch, and what every verb shares. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <unistd.h>

#include "cli/cli.h"

/* ---- The verbs ---- */

static const cli_verb_t verbs[] = {
    {"run", "", "everything in one process: the HTTP API, scheduler and broker upkeep",
     "  --config FILE        a JSON file of these options (\"listen\", \"threads\", ...)\n"
     "                       and \"schedules\" (docs/scheduling.md)\n"
     "  --strict             refuse a Redis whose maxmemory-policy may evict jobs\n"
     "  (every option below can also come from HOPPER_<NAME>, e.g. HOPPER_LISTEN)\n",
     NULL, cli_server},
    {"worker", "", "run handler plugins on jobs: P processes x T threads",
     "  --config FILE        a JSON file of these options (\"queues\", \"threads\", ...)\n"
     "  --strict             refuse a Redis whose maxmemory-policy may evict jobs\n"
     "  (every option below can also come from HOPPER_<NAME>, e.g. HOPPER_QUEUES)\n",
     NULL /* cli_worker builds its own from the worker's option table */, cli_worker},
    {"server", "", "serve the HTTP API, fire schedules, keep the broker up",
     "  --config FILE        a JSON file of these options (\"listen\", \"threads\", ...)\n"
     "                       and \"schedules\" (docs/scheduling.md)\n"
     "  --strict             refuse a Redis whose maxmemory-policy may evict jobs\n"
     "  (every option below can also come from HOPPER_<NAME>, e.g. HOPPER_LISTEN)\n"
     "  HOPPER_ADMIN_TOKEN   a token with admin scope that needs no broker record\n",
     NULL, cli_server},
    {"enqueue", "", "submit a job; prints its id",
     "  --queue Q        queue name (required)\n"
     "  --type T         job type, which picks the handler (required)\n"
     "  --payload JSON   the job's payload, any JSON (default null); @FILE reads a file\n"
     "  --delay DUR      run later: 500ms, 10s, 5m, 2h, 1d (a bare number is seconds)\n"
     "  --run-at TIME    run at an RFC 3339 time (not with --delay)\n"
     "  --priority N     -1000..1000, higher first (default 0)\n"
     "  --max-attempts N 1..1000 (default 25)\n"
     "  --backoff KIND   exponential (default), fixed or linear\n"
     "  --backoff-base DUR, --backoff-cap DUR   (defaults 1s and 1h)\n"
     "  --timeout DUR    how long one attempt may run\n"
     "  --expires-in DUR discard the job if not started within DUR\n"
     "  --unique-key K   a second job with this key enqueues nothing and prints the first id\n"
     "  --unique-ttl DUR how long the key holds (default 24h)\n"
     "  --tag T          a tag (repeatable, up to 16)\n",
     cli_enqueue_options, cli_enqueue},
    {"job", "ID", "print a job as JSON", "", cli_job_options, cli_job},
    {"jobs", "", "list a queue's jobs in one state",
     "  --queue Q        queue name (required)\n"
     "  --state S        scheduled, waiting, active, failed, succeeded, dead, canceled\n"
     "                   (default waiting)\n"
     "  --limit N        1..1000 (default 20)\n"
     "  --cursor C       continue from a cursor a previous page printed\n"
     "  --json           one JSON object per line\n",
     cli_jobs_options, cli_jobs},
    {"retry", "ID", "put a dead, failed or canceled job back to waiting", "", cli_plain_options,
     cli_job_action},
    {"cancel", "ID", "cancel a job (a running job is told on its next heartbeat)", "",
     cli_plain_options, cli_job_action},
    {"delete", "ID", "delete a job that is not running", "", cli_plain_options, cli_job_action},
    {"stats", "[QUEUE]", "counts per state for every queue, or one", "  --json           as JSON\n",
     cli_stats_options, cli_stats},
    {"queues", "", "list known queues", "", cli_plain_options, cli_queues},
    {"workers", "[quiet|stop ID]",
     "list live worker processes and the jobs they run; quiet or stop one",
     "  --json           one JSON object per line (the list)\n"
     "  hopper workers quiet ID: that process takes no new job, gives back the ones it\n"
     "                   has not started, finishes the running ones and stays listed\n"
     "  hopper workers stop ID: its whole `hopper worker` stops as on SIGTERM\n"
     "                   (both act within a second or two; ID as the list shows it)\n",
     cli_stats_options, cli_workers},
    {"pause", "QUEUE", "stop handing out a queue's jobs", "", cli_plain_options, cli_pause},
    {"resume", "QUEUE", "resume a paused queue", "", cli_plain_options, cli_pause},
    {"token", "SUB", "API tokens: create (shown once), list, revoke",
     "  (hopper token create --help, and likewise, for each one's options)\n", cli_token_options,
     cli_token},
    {"cron", "SUB EXPR", "check a cron expression: its next fire times, or it in words",
     "  hopper cron next EXPR [--tz ZONE] [--from TIME] [--count N]\n"
     "                   print the next N fire times as RFC 3339 UTC, one per line\n"
     "  hopper cron explain EXPR\n"
     "                   say in words when EXPR fires\n"
     "  --tz ZONE        read EXPR in an IANA time zone, e.g. Europe/Berlin (default UTC)\n"
     "  --from TIME      start after this RFC 3339 time (default now)\n"
     "  --count N        1..1000 (default 5)\n"
     "  (EXPR: 5 fields, or 6 with seconds first, or a macro like @daily; quote it;\n"
     "   see docs/scheduling.md)\n",
     cli_cron_options, cli_cron},
    {"schedule", "SUB", "recurring jobs: list, get, set, delete, trigger, pause, resume",
     "  hopper schedule list [--json]\n"
     "  hopper schedule get NAME\n"
     "  hopper schedule set NAME --cron EXPR [--tz ZONE] (--job JSON | --queue Q --type T\n"
     "                   [--payload JSON]) [--misfire skip|once] [--overlap allow|skip]\n"
     "                   [--jitter DUR] [--paused]\n"
     "  hopper schedule delete|trigger|pause|resume NAME\n"
     "  (hopper schedule SUB --help, for each one's options; docs/scheduling.md)\n",
     cli_schedule_options, cli_schedule},
};
#define NVERBS (sizeof(verbs) / sizeof(verbs[0]))

/* The running verb's argv, for naming a bad option. */
static char **verb_argv;

static void print_main_help(FILE *out)
{
    fprintf(out,
            "hopper %s: a job queue and scheduler\n\n"
            "usage: hopper VERB [options]\n       hopper VERB --help\n\nverbs:\n",
            HOPPER_VERSION_STRING);
    for (size_t i = 0; i < NVERBS; i++)
        fprintf(out, "  %-9s %-8s %s\n", verbs[i].name, verbs[i].args, verbs[i].summary);
    fprintf(out, "\nexit status:\n");
#define XX(name, code, msg) fprintf(out, "  %d  %s\n", code, msg);
    CLI_EXIT_MAP(XX)
#undef XX
}

/* Whether the help lists the common broker options: not for `cron`, which needs
 * no broker, nor for verbs with an option table, which list their own. */
static bool uses_broker(const cli_verb_t *verb)
{
    /* (Verbs with an option table, options NULL here, print the table's own
     * --redis line and say --strict in their help text.) */
    return verb->options && verb->options != cli_cron_options;
}

int cli_run_subverb(const cli_verb_t *verb, const cli_verb_t *subs, size_t n, int argc, char **argv,
                    const char *expected)
{
    const char *sub = argc > 1 ? argv[1] : "";
    size_t prefix = strlen(verb->name) + 1; /* sub-verbs are named "<verb> <sub>" */
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        cli_print_help(verb);
        for (size_t i = 0; i < n; i++)
            printf("\nhopper %s%s%s: %s.\n%s", subs[i].name, subs[i].args[0] ? " " : "",
                   subs[i].args, subs[i].summary, subs[i].help);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(subs[i].name + prefix, sub) == 0)
            return subs[i].run(&subs[i], argc - 1, argv + 1);
    }
    return cli_usage(verb, "expected %s, got \"%s\"", expected, sub);
}

void cli_print_help(const cli_verb_t *verb)
{
    printf("usage: hopper %s%s%s [options]\n\n%s.\n\noptions:\n%s%s", verb->name,
           verb->args[0] ? " " : "", verb->args, verb->summary, verb->help,
           uses_broker(verb) ? CLI_COMMON_HELP : CLI_LOCAL_HELP);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_main_help(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("hopper %s\n", HOPPER_VERSION_STRING);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        if (argc > 2 && strcmp(name, "help") == 0) {
            for (size_t i = 0; i < NVERBS; i++)
                if (strcmp(verbs[i].name, argv[2]) == 0) {
                    cli_print_help(&verbs[i]);
                    return CLI_EXIT_OK;
                }
        }
        print_main_help(stdout);
        return CLI_EXIT_OK;
    }
    opterr = 0; /* cli_common_option says what was wrong, in our words */
    for (size_t i = 0; i < NVERBS; i++) {
        if (strcmp(verbs[i].name, name) == 0) {
            verb_argv = argv + 1;
            return verbs[i].run(&verbs[i], argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "hopper: unknown verb \"%s\"; try hopper --help\n", name);
    return CLI_EXIT_USAGE;
}

/* ---- Shared helpers ---- */

int cli_exit_for(int err)
{
    switch (err) {
    case 0:
        return CLI_EXIT_OK;
    case HP_EINVAL:
    case HP_ETOOBIG:
        return CLI_EXIT_USAGE;
    case HP_ENOTFOUND:
        return CLI_EXIT_NOT_FOUND;
    case HP_ESTATE:
    case HP_ELEASE:
        return CLI_EXIT_STATE;
    case HP_EFULL:
        return CLI_EXIT_FULL;
    case HP_EUNAVAIL:
        return CLI_EXIT_UNAVAILABLE;
    case HP_EUNSAFE:
        return CLI_EXIT_UNSAFE;
    default:
        return CLI_EXIT_FAILURE;
    }
}

int cli_fail(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("hopper: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return cli_exit_for(err);
}

int cli_usage(const cli_verb_t *verb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "hopper %s: ", verb->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "; see hopper %s --help\n", verb->name);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_common_option(const cli_verb_t *verb, int opt, const char *arg, cli_common_t *common)
{
    switch (opt) {
    case 'R':
        common->redis_url = arg;
        return 0;
    case 'S':
        common->strict = true;
        return 0;
    case 'J':
        common->json = true;
        return 0;
    case 'h':
        cli_print_help(verb);
        exit(CLI_EXIT_OK);
    case '?':
        exit(cli_usage(verb, "bad option \"%s\" (unknown, or missing its value)",
                       optind > 0 ? verb_argv[optind - 1] : "?"));
    default:
        return -1;
    }
}

int cli_parse_plain(const cli_verb_t *verb, int argc, char **argv, cli_common_t *common, int min,
                    int max)
{
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "", verb->options, NULL)) != -1) {
        if (cli_common_option(verb, opt, optarg, common) != 0)
            return cli_usage(verb, "bad option \"%s\"", argv[optind - 1]);
    }
    int n = argc - optind;
    if (n < min || n > max) {
        if (max == 0)
            return cli_usage(verb, "expected no arguments");
        return cli_usage(verb, "expected %s", verb->args);
    }
    return 0;
}

int cli_open_broker(const cli_common_t *common, broker_t **out)
{
    const char *url = common->redis_url ? common->redis_url : getenv("HOPPER_REDIS_URL");
    broker_config_t cfg = {.url = url && url[0] ? url : NULL, .strict = common->strict};
    char *msg = NULL;
    int err = broker_open(&cfg, out, &msg);
    if (err) {
        int code = cli_fail(err, "%s", msg ? msg : hp_strerror(err));
        hp_free(msg);
        return code;
    }
    return CLI_EXIT_OK;
}

int cli_broker_fail(broker_t *b, int err)
{
    return cli_fail(err, "%s", broker_errmsg(b)[0] ? broker_errmsg(b) : hp_strerror(err));
}

void cli_audit(broker_t *b, const char *action, const char *target, int err)
{
    if (err == HP_EUNAVAIL)
        return;
    const char *user = getenv("USER");
    struct passwd *pw = user && user[0] ? NULL : getpwuid(getuid());
    if (pw)
        user = pw->pw_name;
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    char at[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(hp_now_ms(), at);
    int status = err == 0              ? 200
                 : err == HP_EINVAL    ? 400
                 : err == HP_ENOTFOUND ? 404
                 : err == HP_ESTATE    ? 409
                                       : 500;
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_printf(&sb, "{\"at\":\"%s\",\"actor\":", at);
    char actor[160];
    snprintf(actor, sizeof(actor), "cli:%.100s", user && user[0] ? user : "unknown");
    hp_strbuf_append_json_string(&sb, actor);
    hp_strbuf_appends(&sb, ",\"actor_name\":");
    hp_strbuf_append_json_string(&sb, user ? user : "");
    hp_strbuf_appends(&sb, ",\"via\":\"cli\",\"action\":");
    hp_strbuf_append_json_string(&sb, action);
    hp_strbuf_appends(&sb, ",\"path\":");
    hp_strbuf_append_json_string(&sb, target);
    hp_strbuf_printf(&sb, ",\"status\":%d,\"ip\":", status);
    hp_strbuf_append_json_string(&sb, host);
    hp_strbuf_appends(&sb, "}");
    char *entry = hp_strbuf_steal(&sb, NULL);
    if (broker_audit_append(b, entry) != 0)
        hp_warn("audit: could not record %s %s: %s", action, target, broker_errmsg(b));
    hp_free(entry);
}

int cli_parse_int(const cli_verb_t *verb, const char *name, const char *text, long min, long max,
                  long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return cli_usage(verb, "--%s: expected an integer from %ld to %ld, got \"%s\"", name, min,
                         max, text);
    *out = v;
    return 0;
}

int cli_parse_duration(const cli_verb_t *verb, const char *name, const char *text, int64_t *out)
{
    if (hp_parse_duration_ms(text, out))
        return cli_usage(verb,
                         "--%s: expected a duration like 500ms, 10s, 5m, 2h or 1d, got \"%s\"",
                         name, text);
    return 0;
}
