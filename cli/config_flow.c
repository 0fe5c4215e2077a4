/*
 * The configuration flow every long-running verb shares (worker, server): defaults,
 * then --config FILE, then HOPPER_* variables, then flags, in rising precedence,
 * all through one option table (common/config.h).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define OPT_CONFIG 900

static const struct option extra_options[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"strict", no_argument, NULL, 'S'},
    {"help", no_argument, NULL, 'h'},
    {0},
};

static int fail_config(const cli_verb_t *verb, char *msg)
{
    fprintf(stderr, "hopper %s: %s; see hopper %s --help\n", verb->name, msg, verb->name);
    hp_free(msg);
    return CLI_EXIT_USAGE;
}

int cli_config_load(const cli_verb_t *verb, const hp_option_table_t *table, void *cfg,
                    const char *const *file_skip_keys, int argc, char **argv, bool *strict,
                    const char **config_file)
{
    struct option *options = hp_config_getopt(table, extra_options);
    char *msg = NULL;
    int rc = -1, opt;
    *config_file = NULL;
    /* First pass: --help and --config, which the other sources stack on. */
    optind = 0;
    while (rc < 0 && (opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == 'h') {
            cli_print_help(verb);
            hp_config_print_help(table);
            rc = CLI_EXIT_OK;
        } else if (opt == '?') {
            rc = cli_usage(verb, "bad option \"%s\" (unknown, or missing its value)",
                           argv[optind - 1]);
        } else if (opt == OPT_CONFIG) {
            *config_file = optarg;
        }
    }
    if (rc < 0 && *config_file &&
        hp_config_load_file(table, cfg, *config_file, file_skip_keys, &msg))
        rc = fail_config(verb, msg);
    if (rc < 0 && hp_config_load_env(table, cfg, &msg))
        rc = fail_config(verb, msg);
    optind = 0;
    while (rc < 0 && (opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == 'S')
            *strict = true;
        else if (opt >= HP_CONFIG_OPT_BASE &&
                 hp_config_set(table, cfg, table->opts[opt - HP_CONFIG_OPT_BASE].name,
                               optarg ? optarg : "true", &msg))
            rc = fail_config(verb, msg);
    }
    if (rc < 0 && optind < argc)
        rc = cli_usage(verb, "unexpected argument \"%s\"", argv[optind]);
    hp_free(options);
    return rc;
}
