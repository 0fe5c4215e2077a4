/*
 * `hopper schedule list|get|set|delete|trigger|pause|resume`: schedules from the
 * command line, talking to the broker directly like every other verb. A definition
 * goes through the same door as PUT /v1/schedules/{name} and the config file
 * (sched_schedule_from_json: the cron expression, the zone and the job template are
 * checked there, and the parser's message is printed as it is), then
 * broker_schedule_put. Servers see a change within a second (the broker's schedule
 * version), so nothing here talks to a server.
 *
 * Each sub-verb is its own entry of a small table with its own options and --help,
 * as in verbs_tokens.c. What this file does not do: read cron or fire ticks itself
 * (scheduler/), or store anything (broker/).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "scheduler/scheduler.h"

const struct option cli_schedule_options[] = {CLI_COMMON_OPTIONS, {0}};

static const struct option set_options[] = {
    {"cron", required_argument, NULL, 'c'},
    {"tz", required_argument, NULL, 'z'},
    {"job", required_argument, NULL, 'j'},
    {"queue", required_argument, NULL, 'q'},
    {"type", required_argument, NULL, 't'},
    {"payload", required_argument, NULL, 'p'},
    {"misfire", required_argument, NULL, 'm'},
    {"overlap", required_argument, NULL, 'o'},
    {"jitter", required_argument, NULL, 'x'},
    {"paused", no_argument, NULL, 'P'},
    CLI_COMMON_OPTIONS,
    {0},
};

static int schedule_list(const cli_verb_t *verb, int argc, char **argv);
static int schedule_get(const cli_verb_t *verb, int argc, char **argv);
static int schedule_set(const cli_verb_t *verb, int argc, char **argv);
static int schedule_delete(const cli_verb_t *verb, int argc, char **argv);
static int schedule_trigger(const cli_verb_t *verb, int argc, char **argv);
static int schedule_pause(const cli_verb_t *verb, int argc, char **argv); /* pause, resume */

static const cli_verb_t subverbs[] = {
    {"schedule list", "", "list schedules: name, cron, zone, next fire, paused, last job",
     "  --json           one JSON object per line, as hopper schedule get prints it\n",
     cli_schedule_options, schedule_list},
    {"schedule get", "NAME", "print a schedule as JSON: its definition, next fires and history", "",
     cli_schedule_options, schedule_get},
    {"schedule set", "NAME", "create or replace a schedule; prints created or updated",
     "  --cron EXPR      when it fires: 5 fields, or 6 with seconds first, or a macro\n"
     "                   like @daily; quote it (required; see hopper cron --help)\n"
     "  --tz ZONE        read EXPR in an IANA time zone, e.g. Europe/Berlin (default UTC)\n"
     "  --job JSON       the job to enqueue, as POST /v1/jobs takes it, e.g.\n"
     "                   '{\"queue\":\"reports\",\"type\":\"report.daily\",\"priority\":5}'; or\n"
     "  --queue Q --type T [--payload JSON]\n"
     "                   the job's queue, type and payload (not with --job)\n"
     "  --misfire M      skip (default): after downtime, resume at the next tick;\n"
     "                   once: enqueue one catch-up job for the ticks missed\n"
     "  --overlap O      allow (default), or skip a tick while the previous tick's job\n"
     "                   has not finished\n"
     "  --jitter DUR     delay each job by a random 0..DUR (default 0; at most 1d)\n"
     "  --paused         define it paused (resume with hopper schedule resume)\n",
     set_options, schedule_set},
    {"schedule delete", "NAME", "delete a schedule; jobs it fired stay", "", cli_schedule_options,
     schedule_delete},
    {"schedule trigger", "NAME", "enqueue the schedule's job now; prints the job id", "",
     cli_schedule_options, schedule_trigger},
    {"schedule pause", "NAME", "stop a schedule firing until it is resumed", "",
     cli_schedule_options, schedule_pause},
    {"schedule resume", "NAME", "resume a paused schedule at its next tick from now", "",
     cli_schedule_options, schedule_pause},
};
#define NSUBVERBS (sizeof(subverbs) / sizeof(subverbs[0]))

int cli_schedule(const cli_verb_t *verb, int argc, char **argv)
{
    return cli_run_subverb(verb, subverbs, NSUBVERBS, argc, argv,
                           "list, get, set, delete, trigger, pause or resume");
}

/* ---- Options ---- */

/* What `set` was given; the strings are borrowed from argv. */
typedef struct schedule_args_s {
    cli_common_t common;
    const char *cron, *tz, *job, *queue, *type, *payload, *misfire, *overlap;
    int64_t jitter_ms;
    bool jitter_given, paused;
} schedule_args_t;

/* The sub-verb's own option (set's), or an exit code. */
static int set_option(const cli_verb_t *verb, int opt, const char *arg, schedule_args_t *a)
{
    switch (opt) {
    case 'c':
        a->cron = arg;
        return 0;
    case 'z':
        a->tz = arg;
        return 0;
    case 'j':
        a->job = arg;
        return 0;
    case 'q':
        a->queue = arg;
        return 0;
    case 't':
        a->type = arg;
        return 0;
    case 'p':
        a->payload = arg;
        return 0;
    case 'm':
        if (strcmp(arg, "skip") != 0 && strcmp(arg, "once") != 0)
            return cli_usage(verb, "--misfire: expected skip or once, got \"%s\"", arg);
        a->misfire = arg;
        return 0;
    case 'o':
        if (strcmp(arg, "allow") != 0 && strcmp(arg, "skip") != 0)
            return cli_usage(verb, "--overlap: expected allow or skip, got \"%s\"", arg);
        a->overlap = arg;
        return 0;
    case 'x':
        a->jitter_given = true;
        return cli_parse_duration(verb, "jitter", arg, &a->jitter_ms);
    case 'P':
        a->paused = true;
        return 0;
    default:
        return cli_usage(verb, "bad option");
    }
}

/* getopt over a sub-verb's argv (argv[0] is the sub-verb), then min..max positional
 * arguments at argv[optind..]. Returns 0 or an exit code. */
static int parse(const cli_verb_t *verb, int argc, char **argv, schedule_args_t *a, int min,
                 int max)
{
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "", verb->options, NULL)) != -1) {
        if (opt == '?')
            return cli_usage(verb, "bad option \"%s\" (unknown, or missing its value)",
                             argv[optind - 1]);
        if (cli_common_option(verb, opt, optarg, &a->common) == 0)
            continue;
        int rc = set_option(verb, opt, optarg, a);
        if (rc)
            return rc;
    }
    int n = argc - optind;
    if (n < min || n > max)
        return max == 0 ? cli_usage(verb, "expected no arguments")
                        : cli_usage(verb, "expected %s", verb->args);
    return 0;
}

/* A JSON value given on the command line; NULL after printing why. */
static json_t *json_arg(const cli_verb_t *verb, const char *option, const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        cli_usage(verb, "--%s: not valid JSON: %s (column %d)", option, jerr.text, jerr.column);
    return v;
}

/* The definition as PUT /v1/schedules/{name} takes it, from set's options; NULL
 * after printing why. The caller frees it with free() (jansson's allocation). */
static char *definition(const cli_verb_t *verb, const schedule_args_t *a)
{
    if (!a->cron) {
        cli_usage(verb, "--cron is required");
        return NULL;
    }
    if (a->job && (a->queue || a->type || a->payload)) {
        cli_usage(verb, "--job gives the whole job: not with --queue, --type or --payload");
        return NULL;
    }
    if (!a->job && (!a->queue || !a->type)) {
        cli_usage(verb, "the job is required: --job JSON, or --queue and --type");
        return NULL;
    }
    json_t *job;
    if (a->job) {
        job = json_arg(verb, "job", a->job);
    } else {
        job = json_pack("{s:s, s:s}", "queue", a->queue, "type", a->type);
        json_t *payload = a->payload ? json_arg(verb, "payload", a->payload) : json_null();
        if (payload) {
            json_object_set_new(job, "payload", payload);
        } else {
            json_decref(job);
            job = NULL;
        }
    }
    if (!job)
        return NULL;
    json_t *def = json_object();
    json_object_set_new(def, "cron", json_string(a->cron));
    if (a->tz)
        json_object_set_new(def, "tz", json_string(a->tz));
    json_object_set_new(def, "job", job);
    if (a->misfire)
        json_object_set_new(def, "misfire", json_string(a->misfire));
    if (a->overlap)
        json_object_set_new(def, "overlap", json_string(a->overlap));
    if (a->jitter_given)
        json_object_set_new(def, "jitter_ms", json_integer(a->jitter_ms));
    json_object_set_new(def, "paused", json_boolean(a->paused));
    char *text = json_dumps(def, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(def);
    return text;
}

/* ---- Output ---- */

static void format_time(int64_t ms, char out[HP_RFC3339_MAX])
{
    if (ms > 0)
        hp_format_rfc3339_ms(ms, out);
    else
        snprintf(out, HP_RFC3339_MAX, "-");
}

/* The schedule as one line of compact JSON, or indented. */
static void print_json(const schedule_t *s, bool indent)
{
    char *text = sched_schedule_to_json(s);
    json_t *doc = indent ? json_loads(text, 0, NULL) : NULL;
    if (doc) {
        char *pretty = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", pretty);
        free(pretty);
        json_decref(doc);
    } else {
        printf("%s\n", text);
    }
    hp_free(text);
}

static void print_row(const schedule_t *s)
{
    char next[HP_RFC3339_MAX];
    format_time(s->paused ? 0 : s->next_fire_ms, next);
    printf("%-24s  %-20s  %-16s  %-24s  %-6s  %s\n", s->name, s->cron, s->tz, next,
           s->paused ? "yes" : "no", s->last_job_id[0] ? s->last_job_id : "-");
}

/* ---- Sub-verbs ---- */

static int schedule_list(const cli_verb_t *verb, int argc, char **argv)
{
    schedule_args_t a = {0};
    broker_t *b = NULL;
    int rc = parse(verb, argc, argv, &a, 0, 0);
    if (!rc)
        rc = cli_open_broker(&a.common, &b);
    if (!rc) {
        schedule_t **list = NULL;
        size_t n = 0;
        int err = broker_schedules(b, &list, &n);
        if (err) {
            rc = cli_broker_fail(b, err);
        } else {
            if (!a.common.json)
                printf("%-24s  %-20s  %-16s  %-24s  %-6s  %s\n", "NAME", "CRON", "TZ", "NEXT FIRE",
                       "PAUSED", "LAST JOB");
            for (size_t i = 0; i < n; i++) {
                if (a.common.json)
                    print_json(list[i], false);
                else
                    print_row(list[i]);
            }
        }
        schedules_free(list, n);
    }
    broker_close(b);
    return rc;
}

static int schedule_get(const cli_verb_t *verb, int argc, char **argv)
{
    schedule_args_t a = {0};
    broker_t *b = NULL;
    int rc = parse(verb, argc, argv, &a, 1, 1);
    if (!rc)
        rc = cli_open_broker(&a.common, &b);
    if (!rc) {
        schedule_t *s = NULL;
        int err = broker_schedule_get(b, argv[optind], &s);
        if (err)
            rc = cli_broker_fail(b, err);
        else
            print_json(s, !a.common.json);
        schedule_free(s);
    }
    broker_close(b);
    return rc;
}

static int schedule_set(const cli_verb_t *verb, int argc, char **argv)
{
    schedule_args_t a = {0};
    broker_t *b = NULL;
    int rc = parse(verb, argc, argv, &a, 1, 1);
    const char *name = rc ? NULL : argv[optind];
    char *def = rc ? NULL : definition(verb, &a);
    if (!rc && !def)
        rc = CLI_EXIT_USAGE;
    schedule_t *s = NULL;
    if (!rc) {
        char err[600];
        if (sched_schedule_from_json(name, def, strlen(def), hp_now_ms(), &s, err, sizeof(err)))
            rc = cli_fail(HP_EINVAL, "%s", err);
    }
    if (!rc)
        rc = cli_open_broker(&a.common, &b);
    if (!rc) {
        bool created = false;
        int err = broker_schedule_put(b, s, &created);
        cli_audit(b, "hopper schedule set", s->name, err);
        if (err) {
            rc = cli_broker_fail(b, err);
        } else {
            char next[HP_RFC3339_MAX];
            format_time(s->next_fire_ms, next);
            if (s->paused)
                printf("schedule %s %s, paused\n", s->name, created ? "created" : "updated");
            else
                printf("schedule %s %s, next fire %s\n", s->name, created ? "created" : "updated",
                       next);
        }
    }
    schedule_free(s);
    free(def);
    broker_close(b);
    return rc;
}

static int schedule_delete(const cli_verb_t *verb, int argc, char **argv)
{
    schedule_args_t a = {0};
    broker_t *b = NULL;
    int rc = parse(verb, argc, argv, &a, 1, 1);
    if (!rc)
        rc = cli_open_broker(&a.common, &b);
    if (!rc) {
        int err = broker_schedule_delete(b, argv[optind]);
        cli_audit(b, "hopper schedule delete", argv[optind], err);
        if (err)
            rc = cli_broker_fail(b, err);
        else
            printf("schedule %s deleted\n", argv[optind]);
    }
    broker_close(b);
    return rc;
}

/* As POST /v1/schedules/{name}/trigger: the job now, next fire untouched. */
static int schedule_trigger(const cli_verb_t *verb, int argc, char **argv)
{
    schedule_args_t a = {0};
    broker_t *b = NULL;
    int rc = parse(verb, argc, argv, &a, 1, 1);
    if (!rc)
        rc = cli_open_broker(&a.common, &b);
    schedule_t *s = NULL;
    if (!rc) {
        int err = broker_schedule_get(b, argv[optind], &s);
        if (err)
            rc = cli_broker_fail(b, err);
    }
    if (!rc) {
        job_spec_json_t js;
        char why[400];
        if (job_spec_from_json(s->job, strlen(s->job), &js, why, sizeof(why)) != 0) {
            rc = cli_fail(HP_ESTATE, "schedule %s: its job template does not read as a job: %s",
                          s->name, why);
        } else {
            schedule_fire_t outcome;
            char id[JOB_ID_MAX] = "";
            int err = broker_schedule_fire(b, s->name, 0, 0, false, &js.spec, &outcome, id);
            cli_audit(b, "hopper schedule trigger", s->name, err);
            if (err)
                rc = cli_broker_fail(b, err);
            else
                printf("%s\n", id);
        }
        job_spec_json_cleanup(&js);
    }
    schedule_free(s);
    broker_close(b);
    return rc;
}

/* Pausing keeps the next fire; resuming sets it to the next tick from now, so the
 * ticks that passed while paused are not fired late. */
static int schedule_pause(const cli_verb_t *verb, int argc, char **argv)
{
    bool pause = strcmp(verb->name, "schedule pause") == 0;
    schedule_args_t a = {0};
    broker_t *b = NULL;
    int rc = parse(verb, argc, argv, &a, 1, 1);
    if (!rc)
        rc = cli_open_broker(&a.common, &b);
    schedule_t *s = NULL;
    if (!rc) {
        int err = broker_schedule_get(b, argv[optind], &s);
        int64_t next = 0;
        if (!err) {
            next = pause ? s->next_fire_ms : sched_next_tick(s, hp_now_ms());
            err = broker_schedule_pause(b, s->name, pause, next);
            cli_audit(b, pause ? "hopper schedule pause" : "hopper schedule resume", s->name, err);
        }
        if (err) {
            rc = cli_broker_fail(b, err);
        } else if (pause) {
            printf("schedule %s paused\n", s->name);
        } else {
            char when[HP_RFC3339_MAX];
            format_time(next, when);
            printf("schedule %s resumed, next fire %s\n", s->name, when);
        }
    }
    schedule_free(s);
    broker_close(b);
    return rc;
}
