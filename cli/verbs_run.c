/*
 * `hopper run`: everything in one process. For now that is the broker's upkeep
 * (promote due jobs, recover expired leases, trim old finished jobs) for every
 * queue; the HTTP API, the scheduler and the workers join it as they land.
 */
#include <signal.h>
#include <stdio.h>

#include "cli/cli.h"

const struct option cli_run_options[] = {
    {"interval", required_argument, NULL, 'i'},
    CLI_COMMON_OPTIONS,
    {0},
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

int cli_run(const cli_verb_t *verb, int argc, char **argv)
{
    cli_common_t common = {0};
    int64_t interval_ms = 1000;
    int opt, rc = 0;
    optind = 0;
    while (!rc && (opt = getopt_long(argc, argv, "", verb->options, NULL)) != -1) {
        if (cli_common_option(verb, opt, optarg, &common) == 0)
            continue;
        rc = opt == 'i' ? cli_parse_duration(verb, "interval", optarg, &interval_ms)
                        : cli_usage(verb, "bad option");
    }
    if (!rc && interval_ms < 10)
        rc = cli_usage(verb, "--interval: at least 10ms");
    broker_t *b = NULL;
    if (!rc)
        rc = cli_open_broker(&common, &b);
    if (rc)
        return rc;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    hp_info("hopper %s running; broker maintenance every %lld ms; Ctrl-C stops",
            HOPPER_VERSION_STRING, (long long)interval_ms);
    while (!stopping) {
        if (broker_maintain_all(b) != 0)
            hp_warn("maintenance: %s", broker_errmsg(b));
        for (int64_t slept = 0; slept < interval_ms && !stopping; slept += 10)
            hp_sleep_ms(10);
    }
    hp_info("hopper stopped");
    broker_close(b);
    return CLI_EXIT_OK;
}
