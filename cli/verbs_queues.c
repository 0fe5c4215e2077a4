/* Queue verbs: stats, queues, pause, resume. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"

const struct option cli_stats_options[] = {CLI_COMMON_OPTIONS, {0}};

static void print_stats(const char *queue, const queue_stats_t *s, bool json, bool first)
{
    if (json) {
        printf("%s{\"queue\":\"%s\",\"paused\":%s", first ? "" : ",", queue,
               s->paused ? "true" : "false");
        for (int i = 0; i < JOB_STATE_COUNT; i++)
            printf(",\"%s\":%lld", job_state_name((job_state_t)i), (long long)s->counts[i]);
        printf(",\"enqueued_total\":%lld,\"succeeded_total\":%lld,\"failed_total\":%lld,"
               "\"dead_total\":%lld,\"max_length\":%lld}",
               (long long)s->enqueued_total, (long long)s->succeeded_total,
               (long long)s->failed_total, (long long)s->dead_total, (long long)s->max_length);
        return;
    }
    printf("%-24s", queue);
    for (int i = 0; i < JOB_STATE_COUNT; i++)
        printf(" %10lld", (long long)s->counts[i]);
    printf("%s\n", s->paused ? "  (paused)" : "");
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cli_stats(const cli_verb_t *verb, int argc, char **argv)
{
    cli_common_t common = {0};
    broker_t *b = NULL;
    int rc = cli_parse_plain(verb, argc, argv, &common, 0, 1);
    if (!rc)
        rc = cli_open_broker(&common, &b);
    if (rc) {
        broker_close(b);
        return rc;
    }
    char **names = NULL;
    size_t n = 0;
    const char *one = optind < argc ? argv[optind] : NULL;
    int err = broker_queues(b, &names, &n);
    if (err) {
        rc = cli_broker_fail(b, err);
        broker_close(b);
        return rc;
    }
    if (one && !bsearch(&one, names, n, sizeof(char *), compare_names)) {
        broker_queues_free(names, n);
        broker_close(b);
        return cli_fail(HP_ENOTFOUND,
                        "no queue named \"%s\" (a queue exists once a job was "
                        "enqueued to it)",
                        one);
    }
    if (common.json)
        printf("[");
    else {
        printf("%-24s", "QUEUE");
        for (int i = 0; i < JOB_STATE_COUNT; i++)
            printf(" %10s", job_state_name((job_state_t)i));
        printf("\n");
    }
    for (size_t i = 0; i < (one ? 1 : n) && !rc; i++) {
        const char *q = one ? one : names[i];
        queue_stats_t s;
        err = broker_queue_stats(b, q, &s);
        if (err)
            rc = cli_broker_fail(b, err);
        else
            print_stats(q, &s, common.json, i == 0);
    }
    if (common.json)
        printf("]\n");
    broker_queues_free(names, n);
    broker_close(b);
    return rc;
}

/* A verb that prints a list the broker gives as strings: queues, workers. */
typedef int (*list_fetch_fn)(broker_t *b, char ***items, size_t *n);
typedef void (*list_print_fn)(const char *item, bool json);

static int list_verb(const cli_verb_t *verb, int argc, char **argv, list_fetch_fn fetch,
                     list_print_fn print, const char *when_empty)
{
    cli_common_t common = {0};
    broker_t *b = NULL;
    int rc = cli_parse_plain(verb, argc, argv, &common, 0, 0);
    if (!rc)
        rc = cli_open_broker(&common, &b);
    if (!rc) {
        char **items;
        size_t n;
        int err = fetch(b, &items, &n);
        if (err) {
            rc = cli_broker_fail(b, err);
        } else {
            for (size_t i = 0; i < n; i++)
                print(items[i], common.json);
            if (n == 0 && when_empty && !common.json)
                fprintf(stderr, "%s\n", when_empty);
            broker_queues_free(items, n);
        }
    }
    broker_close(b);
    return rc;
}

static void print_queue(const char *name, bool json)
{
    (void)json;
    printf("%s\n", name);
}

int cli_queues(const cli_verb_t *verb, int argc, char **argv)
{
    return list_verb(verb, argc, argv, broker_queues, print_queue, NULL);
}

int cli_pause(const cli_verb_t *verb, int argc, char **argv)
{
    cli_common_t common = {0};
    broker_t *b = NULL;
    int rc = cli_parse_plain(verb, argc, argv, &common, 1, 1);
    if (!rc)
        rc = cli_open_broker(&common, &b);
    if (!rc) {
        bool pause = strcmp(verb->name, "pause") == 0;
        int err = broker_queue_pause(b, argv[optind], pause);
        cli_audit(b, pause ? "hopper pause" : "hopper resume", argv[optind], err);
        if (err)
            rc = cli_broker_fail(b, err);
        else
            printf("%s %s\n", argv[optind], pause ? "paused" : "resumed");
    }
    broker_close(b);
    return rc;
}

/* One line per worker process: id, pid, queues, how long up, and its jobs. */
static void print_worker(const char *info, bool json)
{
    if (json) {
        printf("%s\n", info);
        return;
    }
    json_t *w = json_loads(info, 0, NULL);
    const char *id = json_string_value(json_object_get(w, "id"));
    json_t *queues = json_object_get(w, "queues"), *jobs = json_object_get(w, "jobs");
    hp_strbuf_t qs;
    hp_strbuf_init(&qs, 0);
    size_t i;
    json_t *v;
    json_array_foreach(queues, i, v)
        hp_strbuf_printf(&qs, "%s%s", i ? "," : "", json_string_value(v));
    const char *started = json_string_value(json_object_get(w, "started_at"));
    const char *state = json_string_value(json_object_get(w, "state"));
    bool unusual = state && strcmp(state, "running") != 0; /* quiet, stopping */
    printf("%-32s pid %-8lld queues %-24s threads %-4lld jobs %zu  since %s%s%s%s\n", id ? id : "?",
           (long long)json_integer_value(json_object_get(w, "pid")), qs.data ? qs.data : "",
           (long long)json_integer_value(json_object_get(w, "threads")), json_array_size(jobs),
           started ? started : "?", unusual ? "  (" : "", unusual ? state : "", unusual ? ")" : "");
    json_array_foreach(jobs, i, v)
    {
        printf("    %s  %s  started %s\n", json_string_value(json_object_get(v, "id")),
               json_string_value(json_object_get(v, "type")),
               json_string_value(json_object_get(v, "started_at")));
    }
    hp_strbuf_cleanup(&qs);
    json_decref(w);
}

/* `hopper workers quiet|stop ID`: the command goes through the broker, as from the
 * API and the dashboard; the worker acts on it within a second or two. */
static int worker_command(const cli_verb_t *verb, worker_command_t cmd, int argc, char **argv)
{
    cli_common_t common = {0};
    broker_t *b = NULL;
    int rc = cli_parse_plain(verb, argc, argv, &common, 1, 1);
    if (!rc)
        rc = cli_open_broker(&common, &b);
    if (!rc) {
        const char *id = argv[optind];
        int err = broker_worker_command(b, id, cmd);
        cli_audit(b, cmd == WORKER_COMMAND_STOP ? "hopper workers stop" : "hopper workers quiet",
                  id, err);
        if (err)
            rc = cli_broker_fail(b, err);
        else
            printf("worker %s: told to %s\n", id, worker_command_name(cmd));
    }
    broker_close(b);
    return rc;
}

int cli_workers(const cli_verb_t *verb, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";
    if (strcmp(sub, "quiet") == 0)
        return worker_command(verb, WORKER_COMMAND_QUIET, argc - 1, argv + 1);
    if (strcmp(sub, "stop") == 0)
        return worker_command(verb, WORKER_COMMAND_STOP, argc - 1, argv + 1);
    if (sub[0] && sub[0] != '-')
        return cli_usage(verb, "expected quiet ID, stop ID or options, got \"%s\"", sub);
    return list_verb(verb, argc, argv, broker_workers, print_worker, "no live workers");
}
