/*
 * `hopper worker`: builds the worker's configuration from, in rising precedence,
 * defaults, --config FILE, HOPPER_* variables and flags, then runs the supervisor.
 * The flags come from the worker's option table (hp_config_getopt), so a new option
 * needs no change here.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "worker/worker.h"

#define OPT_CONFIG 900

/* The verb's own flags, after the worker's options. */
static const struct option extra_options[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"strict", no_argument, NULL, 'S'},
    {"help", no_argument, NULL, 'h'},
    {0},
};

static int fail_config(char *msg)
{
    fprintf(stderr, "hopper worker: %s; see hopper worker --help\n", msg);
    hp_free(msg);
    return CLI_EXIT_USAGE;
}

int cli_worker(const cli_verb_t *verb, int argc, char **argv)
{
    const hp_option_table_t *table = worker_config_table();
    struct option *options = hp_config_getopt(table, extra_options);
    worker_config_t cfg;
    worker_config_init(&cfg);
    char *msg = NULL;
    int rc;
    /* First pass: --help and --config, which the other sources stack on. */
    const char *config_file = NULL;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == 'h') {
            cli_print_help(verb);
            worker_config_print_help();
            rc = CLI_EXIT_OK;
            goto done;
        }
        if (opt == '?') {
            rc = cli_usage(verb, "bad option \"%s\" (unknown, or missing its value)",
                           argv[optind - 1]);
            goto done;
        }
        if (opt == OPT_CONFIG)
            config_file = optarg;
    }
    if (config_file && worker_config_load_file(&cfg, config_file, &msg)) {
        rc = fail_config(msg);
        goto done;
    }
    if (worker_config_load_env(&cfg, &msg)) {
        rc = fail_config(msg);
        goto done;
    }
    optind = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == 'S') {
            cfg.strict = true;
        } else if (opt >= HP_CONFIG_OPT_BASE &&
                   worker_config_set(&cfg, table->opts[opt - HP_CONFIG_OPT_BASE].name,
                                     optarg ? optarg : "true", &msg)) {
            rc = fail_config(msg);
            goto done;
        }
    }
    if (optind < argc) {
        rc = cli_usage(verb, "unexpected argument \"%s\"", argv[optind]);
        goto done;
    }
    if (worker_config_check(&cfg, &msg)) {
        rc = fail_config(msg);
        goto done;
    }
    rc = worker_run(&cfg);
done:
    worker_config_cleanup(&cfg);
    hp_free(options);
    return rc;
}
