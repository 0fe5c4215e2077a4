/*
 * `hopper worker`: builds the worker's configuration from, in rising precedence,
 * defaults, --config FILE, HOPPER_* variables and flags (cli_config_load), then
 * runs the supervisor.
 */
#include <stdio.h>

#include "cli/cli.h"
#include "worker/worker.h"

int cli_worker(const cli_verb_t *verb, int argc, char **argv)
{
    worker_config_t cfg;
    worker_config_init(&cfg);
    const char *file;
    int rc =
        cli_config_load(verb, worker_config_table(), &cfg, NULL, argc, argv, &cfg.strict, &file);
    char *msg = NULL;
    if (rc < 0 && worker_config_check(&cfg, &msg)) {
        fprintf(stderr, "hopper worker: %s; see hopper worker --help\n", msg);
        hp_free(msg);
        rc = CLI_EXIT_USAGE;
    }
    if (rc < 0)
        rc = worker_run(&cfg);
    worker_config_cleanup(&cfg);
    return rc;
}
