/*
 * api/api.h -- `hopper server`: the HTTP intake API (and, as they land, the
 * dashboard and the scheduler) on N libuv loops, one thread each, every loop
 * with its own SO_REUSEPORT listening socket so the kernel spreads connections.
 */
#ifndef HP_API_H
#define HP_API_H

#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"

typedef struct api_config_s {
    char *listen; /* host:port, [v6]:port; default 127.0.0.1:8080 */
    char *redis_url;
    int threads;        /* event loops; default: cores */
    int broker_threads; /* executor threads; default 4 */
    int64_t max_body;   /* JSON request bodies; default 1 MiB + 64 KiB */
    int64_t max_blob;   /* uploads; default 100 MiB */
    int max_header_bytes;
    int64_t header_timeout_ms, body_timeout_ms, keepalive_timeout_ms;
    int max_connections;
    char *cors_origins;           /* comma-separated allowed origins, or NULL: CORS off */
    char *blob_dir;               /* default ./hopper-blobs */
    int64_t maintain_interval_ms; /* broker upkeep; 0: off */
    bool scheduler;               /* run the schedule firing loop (default true) */
    int64_t session_ttl_ms;       /* dashboard logins last this long; default 8 h */
    int log_level;                /* HP_LOG_*, or -1: HOPPER_LOG_LEVEL or info */
    bool strict;
    const char *config_file; /* its "schedules" are applied at start; not an option */
} api_config_t;

void api_config_init(api_config_t *cfg);
/* The options, for flags, HOPPER_* variables and the config file. */
const hp_option_table_t *api_config_table(void);
void api_config_cleanup(api_config_t *cfg);

/* Runs until SIGINT/SIGTERM; 0 after a clean stop, else an HP_E* code with a
 * message already logged (bad listen address, port taken, refused to start). */
int api_server_run(const api_config_t *cfg);

#endif
