/*
 * `hopper worker`: builds the worker's configuration from, in rising precedence,
 * defaults, --config FILE, HOPPER_* variables and flags, then runs the supervisor.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "worker/worker.h"

#define OPT_CONFIG 900
#define OPT_FIRST  1000 /* worker options are OPT_FIRST + their index */

/* Filled from worker_config_option_names() at first use. */
struct option cli_worker_options[32];

static void build_options(void)
{
    struct option *o = cli_worker_options;
    const char *const *names = worker_config_option_names();
    int n = 0;
    for (; names[n] && n < 24; n++)
        o[n] = (struct option){
            names[n], worker_config_option_takes_value(names[n]) ? required_argument : no_argument,
            NULL, OPT_FIRST + n};
    o[n++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    o[n++] = (struct option){"strict", no_argument, NULL, 'S'};
    o[n++] = (struct option){"help", no_argument, NULL, 'h'};
    o[n] = (struct option){0};
}

static int fail_config(worker_config_t *cfg, char *msg)
{
    fprintf(stderr, "hopper worker: %s; see hopper worker --help\n", msg);
    hp_free(msg);
    worker_config_cleanup(cfg);
    return CLI_EXIT_USAGE;
}

int cli_worker(const cli_verb_t *verb, int argc, char **argv)
{
    build_options();
    worker_config_t cfg;
    worker_config_init(&cfg);
    char *msg = NULL;
    /* First pass: --help and --config, which the other sources stack on. */
    const char *config_file = NULL;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "", verb->options, NULL)) != -1) {
        if (opt == 'h') {
            cli_print_help(verb);
            worker_config_print_help();
            worker_config_cleanup(&cfg);
            return CLI_EXIT_OK;
        }
        if (opt == '?')
            return cli_usage(verb, "bad option \"%s\" (unknown, or missing its value)",
                             argv[optind - 1]);
        if (opt == OPT_CONFIG)
            config_file = optarg;
    }
    if (config_file && worker_config_load_file(&cfg, config_file, &msg))
        return fail_config(&cfg, msg);
    if (worker_config_load_env(&cfg, &msg))
        return fail_config(&cfg, msg);
    const char *const *names = worker_config_option_names();
    optind = 0;
    while ((opt = getopt_long(argc, argv, "", verb->options, NULL)) != -1) {
        if (opt == 'S')
            cfg.strict = true;
        else if (opt >= OPT_FIRST &&
                 worker_config_set(&cfg, names[opt - OPT_FIRST], optarg ? optarg : "true", &msg))
            return fail_config(&cfg, msg);
    }
    if (optind < argc)
        return cli_usage(verb, "unexpected argument \"%s\"", argv[optind]);
    if (worker_config_check(&cfg, &msg))
        return fail_config(&cfg, msg);
    int rc = worker_run(&cfg);
    worker_config_cleanup(&cfg);
    return rc;
}
