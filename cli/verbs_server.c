/*
 * `hopper server` and `hopper run`: the HTTP API with broker upkeep. `run` is the
 * one-process form for one machine; as the scheduler and in-process workers land
 * they join it. Options from, in rising precedence, defaults, --config FILE,
 * HOPPER_* variables and flags (cli_config_load).
 */
#include <stdio.h>

#include "api/api.h"
#include "cli/cli.h"

/* Keys of the config file that are not options: api_server_run reads them. */
static const char *const file_only_keys[] = {"schedules", NULL};

int cli_server(const cli_verb_t *verb, int argc, char **argv)
{
    api_config_t cfg;
    api_config_init(&cfg);
    const char *file;
    int rc = cli_config_load(verb, api_config_table(), &cfg, file_only_keys, argc, argv,
                             &cfg.strict, &file);
    if (rc < 0) {
        cfg.config_file = file; /* its "schedules" are applied by the server */
        int err = api_server_run(&cfg);
        rc = err ? cli_exit_for(err) : CLI_EXIT_OK;
    }
    api_config_cleanup(&cfg);
    return rc;
}
