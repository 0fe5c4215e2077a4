/* Job verbs: enqueue, job, jobs, retry, cancel, delete. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

const struct option cli_enqueue_options[] = {
    {"queue", required_argument, NULL, 'q'},
    {"type", required_argument, NULL, 't'},
    {"payload", required_argument, NULL, 'p'},
    {"delay", required_argument, NULL, 'd'},
    {"run-at", required_argument, NULL, 'a'},
    {"priority", required_argument, NULL, 'P'},
    {"max-attempts", required_argument, NULL, 'm'},
    {"backoff", required_argument, NULL, 'b'},
    {"backoff-base", required_argument, NULL, 'B'},
    {"backoff-cap", required_argument, NULL, 'C'},
    {"timeout", required_argument, NULL, 'T'},
    {"expires-in", required_argument, NULL, 'e'},
    {"unique-key", required_argument, NULL, 'u'},
    {"unique-ttl", required_argument, NULL, 'U'},
    {"tag", required_argument, NULL, 'g'},
    CLI_COMMON_OPTIONS,
    {0},
};
const struct option cli_job_options[] = {CLI_COMMON_OPTIONS, {0}};
const struct option cli_plain_options[] = {CLI_COMMON_OPTIONS, {0}};
const struct option cli_jobs_options[] = {
    {"queue", required_argument, NULL, 'q'},
    {"state", required_argument, NULL, 's'},
    {"limit", required_argument, NULL, 'l'},
    {"cursor", required_argument, NULL, 'c'},
    CLI_COMMON_OPTIONS,
    {0},
};

/* Reads @FILE payloads, capped so a huge file is refused before it is read whole.
 * Returns NULL (after printing why) on failure. */
static char *read_payload_file(const cli_verb_t *verb, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_usage(verb, "--payload @%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, JOB_PAYLOAD_DEFAULT_MAX);
    char buf[65536];
    size_t n;
    int err = 0;
    while (!err && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        err = hp_strbuf_append(&sb, buf, n);
    bool failed = ferror(f);
    fclose(f);
    if (err || failed) {
        if (err)
            cli_usage(verb, "--payload @%s: payload: over the limit of %d bytes", path,
                      JOB_PAYLOAD_DEFAULT_MAX);
        else
            cli_usage(verb, "--payload @%s: cannot read: %s", path, strerror(errno));
        hp_strbuf_cleanup(&sb);
        return NULL;
    }
    return hp_strbuf_steal(&sb, len);
}

static int parse_backoff(const cli_verb_t *verb, const char *text, backoff_kind_t *kind)
{
    static const char *const names[] = {"exponential", "fixed", "linear"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(text, names[i]) == 0) {
            *kind = (backoff_kind_t)i;
            return 0;
        }
    }
    return cli_usage(verb, "--backoff: expected exponential, fixed or linear, got \"%s\"", text);
}

/* Parses one enqueue option into the spec; returns an exit code or 0. */
static int enqueue_option(const cli_verb_t *verb, int opt, const char *arg, job_spec_t *spec,
                          char **payload_owned)
{
    long n;
    int rc = 0;
    switch (opt) {
    case 'q':
        spec->queue = arg;
        break;
    case 't':
        spec->type = arg;
        break;
    case 'p':
        if (arg[0] == '@') {
            hp_free(*payload_owned);
            *payload_owned = read_payload_file(verb, arg + 1, &spec->payload_len);
            if (!*payload_owned)
                return CLI_EXIT_USAGE;
            spec->payload = *payload_owned;
        } else {
            spec->payload = arg;
            spec->payload_len = strlen(arg);
        }
        break;
    case 'd':
        rc = cli_parse_duration(verb, "delay", arg, &spec->delay_ms);
        break;
    case 'a':
        if (hp_parse_rfc3339_ms(arg, &spec->run_at_ms))
            rc = cli_usage(verb,
                           "--run-at: expected an RFC 3339 time such as "
                           "2026-01-07T09:00:00Z, got \"%s\"",
                           arg);
        break;
    case 'P':
        rc = cli_parse_int(verb, "priority", arg, JOB_PRIORITY_MIN, JOB_PRIORITY_MAX, &n);
        spec->priority = (int)n;
        break;
    case 'm':
        rc = cli_parse_int(verb, "max-attempts", arg, 1, JOB_ATTEMPTS_MAX, &n);
        spec->max_attempts = (int)n;
        break;
    case 'b':
        rc = parse_backoff(verb, arg, &spec->backoff.kind);
        break;
    case 'B':
        rc = cli_parse_duration(verb, "backoff-base", arg, &spec->backoff.base_ms);
        break;
    case 'C':
        rc = cli_parse_duration(verb, "backoff-cap", arg, &spec->backoff.cap_ms);
        break;
    case 'T':
        rc = cli_parse_duration(verb, "timeout", arg, &spec->timeout_ms);
        break;
    case 'e': {
        int64_t in = 0;
        rc = cli_parse_duration(verb, "expires-in", arg, &in);
        if (!rc)
            spec->expires_at_ms = hp_now_ms() + in;
        break;
    }
    case 'u':
        spec->unique_key = arg;
        break;
    case 'U':
        rc = cli_parse_duration(verb, "unique-ttl", arg, &spec->unique_ttl_ms);
        break;
    default:
        return cli_usage(verb, "bad option");
    }
    return rc;
}

int cli_enqueue(const cli_verb_t *verb, int argc, char **argv)
{
    cli_common_t common = {0};
    job_spec_t spec = {0};
    const char *tags[JOB_TAGS_MAX + 1];
    char *payload_owned = NULL;
    int opt, rc = 0;
    optind = 0;
    while (!rc && (opt = getopt_long(argc, argv, "", verb->options, NULL)) != -1) {
        if (cli_common_option(verb, opt, optarg, &common) == 0)
            continue;
        if (opt == 'g') {
            if (spec.ntags > JOB_TAGS_MAX)
                rc = cli_usage(verb, "--tag: at most %d tags", JOB_TAGS_MAX);
            else
                tags[spec.ntags++] = optarg;
            continue;
        }
        rc = enqueue_option(verb, opt, optarg, &spec, &payload_owned);
    }
    spec.tags = tags;
    if (!rc && optind < argc)
        rc = cli_usage(verb, "unexpected argument \"%s\"", argv[optind]);
    if (!rc && (!spec.queue || !spec.type))
        rc = cli_usage(verb, "--queue and --type are required");
    broker_t *b = NULL;
    if (!rc)
        rc = cli_open_broker(&common, &b);
    if (!rc) {
        enqueue_result_t res;
        int err = broker_enqueue(b, &spec, 1, &res);
        if (err) {
            rc = cli_broker_fail(b, err);
        } else {
            printf("%s\n", res.id);
            if (res.duplicate)
                fprintf(stderr,
                        "hopper: unique key \"%s\" already taken by job %s; nothing "
                        "enqueued\n",
                        spec.unique_key, res.id);
        }
    }
    broker_close(b);
    hp_free(payload_owned);
    return rc;
}

int cli_job(const cli_verb_t *verb, int argc, char **argv)
{
    cli_common_t common = {0};
    const char *id;
    broker_t *b = NULL;
    int rc = cli_parse_plain(verb, argc, argv, &common, 1, 1);
    id = rc ? NULL : argv[optind];
    if (!rc)
        rc = cli_open_broker(&common, &b);
    if (!rc) {
        job_t *job;
        int err = broker_get(b, id, &job);
        if (err) {
            rc = cli_broker_fail(b, err);
        } else {
            char *text = job_to_json(job, 2);
            printf("%s\n", text);
            hp_free(text);
            job_free(job);
        }
    }
    broker_close(b);
    return rc;
}

int cli_job_action(const cli_verb_t *verb, int argc, char **argv)
{
    cli_common_t common = {0};
    const char *id;
    broker_t *b = NULL;
    int rc = cli_parse_plain(verb, argc, argv, &common, 1, 1);
    id = rc ? NULL : argv[optind];
    if (!rc)
        rc = cli_open_broker(&common, &b);
    if (rc) {
        broker_close(b);
        return rc;
    }
    int err;
    job_state_t state = JOB_STATE_WAITING;
    if (strcmp(verb->name, "retry") == 0) {
        err = broker_retry(b, id);
    } else if (strcmp(verb->name, "cancel") == 0) {
        err = broker_cancel(b, id, &state);
    } else {
        err = broker_delete(b, id);
    }
    char action[32];
    snprintf(action, sizeof(action), "hopper %s", verb->name);
    cli_audit(b, action, id, err);
    if (err)
        rc = cli_broker_fail(b, err);
    else if (strcmp(verb->name, "cancel") == 0 && state == JOB_STATE_ACTIVE)
        printf("%s cancel requested: the worker is told on its next heartbeat\n", id);
    else
        printf("%s %s\n", id,
               strcmp(verb->name, "retry") == 0    ? "waiting"
               : strcmp(verb->name, "cancel") == 0 ? "canceled"
                                                   : "deleted");
    broker_close(b);
    return rc;
}

static void print_job_line(const job_t *job, bool json)
{
    if (json) {
        char *text = job_to_json(job, 0);
        printf("%s\n", text);
        hp_free(text);
        return;
    }
    char created[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(job->created_ms, created);
    printf("%s  %-9s  %-20s  attempts %d/%d  created %s\n", job->id, job_state_name(job->state),
           job->type, job->attempts, job->max_attempts, created);
}

int cli_jobs(const cli_verb_t *verb, int argc, char **argv)
{
    cli_common_t common = {0};
    const char *queue = NULL, *cursor = NULL;
    int state = JOB_STATE_WAITING;
    long limit = 20;
    int opt, rc = 0;
    optind = 0;
    while (!rc && (opt = getopt_long(argc, argv, "", verb->options, NULL)) != -1) {
        if (cli_common_option(verb, opt, optarg, &common) == 0)
            continue;
        if (opt == 'q')
            queue = optarg;
        else if (opt == 'c')
            cursor = optarg;
        else if (opt == 'l')
            rc = cli_parse_int(verb, "limit", optarg, 1, 1000, &limit);
        else if (opt == 's' && (state = job_state_parse(optarg)) < 0)
            rc = cli_usage(verb,
                           "--state: expected one of scheduled, waiting, active, failed, "
                           "succeeded, dead, canceled; got \"%s\"",
                           optarg);
    }
    if (!rc && !queue)
        rc = cli_usage(verb, "--queue is required");
    broker_t *b = NULL;
    if (!rc)
        rc = cli_open_broker(&common, &b);
    if (!rc) {
        job_list_t page;
        int err = broker_list(b, queue, (job_state_t)state, cursor, (size_t)limit, &page);
        if (err) {
            rc = cli_broker_fail(b, err);
        } else {
            for (size_t i = 0; i < page.n; i++)
                print_job_line(page.jobs[i], common.json);
            if (page.next_cursor)
                fprintf(stderr,
                        "more: hopper jobs --queue %s --state %s --limit %ld%s --cursor %s\n",
                        queue, job_state_name((job_state_t)state), limit,
                        common.json ? " --json" : "", page.next_cursor);
            job_list_cleanup(&page);
        }
    }
    broker_close(b);
    return rc;
}
