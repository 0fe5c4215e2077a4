/*
 * `hopper server`: start-up checks, the listening sockets, one thread per event
 * loop, the broker executor, the event subscriber, broker upkeep, and a clean
 * stop on SIGINT/SIGTERM.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "api/internal.h"
#include "scheduler/scheduler.h"
#include "api/metrics_http.h"

#define AUTH_REFRESH_MS 5000

void api_config_init(api_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cores > 0 ? (int)cores : 1;
    cfg->broker_threads = 4;
    cfg->max_body = JOB_PAYLOAD_DEFAULT_MAX + 64 * 1024;
    cfg->max_blob = 100LL << 20;
    cfg->max_header_bytes = 16 * 1024;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 30000;
    cfg->keepalive_timeout_ms = 60000;
    cfg->max_connections = 10000;
    cfg->maintain_interval_ms = 1000;
    cfg->session_ttl_ms = 8 * 3600 * 1000LL;
    cfg->scheduler = true;
    cfg->log_level = -1;
}

static int set_log_level(void *cfg, const char *value, char **errmsg)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(value, names[i]) == 0) {
            ((api_config_t *)cfg)->log_level = i;
            return 0;
        }
    }
    return hp_config_bad_value(errmsg, "log-level", "expected debug, info, warn or error", value);
}

#define OFF(field) offsetof(api_config_t, field)
#define DAY_MS     (86400LL * 1000)

static const hp_option_t options[] = {
    {"listen", HP_OPT_STRING, OFF(listen), 0, 0,
     "address to serve on, HOST:PORT (default 127.0.0.1:8080; port 0 picks one)", NULL},
    {"redis", HP_OPT_STRING, OFF(redis_url), 0, 0, "broker URL (default redis://127.0.0.1:6379)",
     NULL},
    {"threads", HP_OPT_INT, OFF(threads), 1, 256, "event loops, one thread each (default: cores)",
     NULL},
    {"broker-threads", HP_OPT_INT, OFF(broker_threads), 1, 256,
     "threads with a broker connection each, shared by the loops (default 4)", NULL},
    {"max-body", HP_OPT_INT64, OFF(max_body), 1024, 1LL << 30,
     "largest JSON request body in bytes (default 1 MiB + 64 KiB)", NULL},
    {"max-blob", HP_OPT_INT64, OFF(max_blob), 1, 1LL << 40,
     "largest blob upload in bytes (default 100 MiB)", NULL},
    {"max-header", HP_OPT_INT, OFF(max_header_bytes), 1024, 1 << 20,
     "largest request line + headers in bytes (default 16 KiB)", NULL},
    {"header-timeout", HP_OPT_DURATION, OFF(header_timeout_ms), 100, DAY_MS,
     "time a client has to send its request headers (default 10s)", NULL},
    {"body-timeout", HP_OPT_DURATION, OFF(body_timeout_ms), 100, DAY_MS,
     "longest pause while a request body arrives (default 30s)", NULL},
    {"keepalive-timeout", HP_OPT_DURATION, OFF(keepalive_timeout_ms), 100, DAY_MS,
     "idle time before a kept-alive connection is closed (default 60s)", NULL},
    {"max-connections", HP_OPT_INT, OFF(max_connections), 1, 1000000,
     "open connections per server process; more are refused with 503 (default 10000)", NULL},
    {"cors-origins", HP_OPT_STRING, OFF(cors_origins), 0, 0,
     "origins allowed to call the API from a browser, comma-separated (default: none)", NULL},
    {"blob-dir", HP_OPT_STRING, OFF(blob_dir), 0, 0,
     "directory of the blob store, shared with workers (default ./hopper-blobs)", NULL},
    {"maintain-interval", HP_OPT_DURATION, OFF(maintain_interval_ms), 0, DAY_MS,
     "how often to promote due jobs and recover expired leases; 0 off (default 1s)", NULL},
    {"log-level", HP_OPT_CUSTOM, 0, 0, 0,
     "debug, info (default: one JSON line per request), warn or error", set_log_level},
    {"session-ttl", HP_OPT_DURATION, OFF(session_ttl_ms), 60 * 1000, 30 * DAY_MS,
     "how long a dashboard login lasts (default 8h)", NULL},
    {"scheduler", HP_OPT_BOOL, OFF(scheduler), 0, 0,
     "fire schedules from this server (default true; --scheduler=false not)", NULL},
};

static const char *const env_renames[] = {"HOPPER_REDIS", "HOPPER_REDIS_URL", NULL};

const hp_option_table_t *api_config_table(void)
{
    static const hp_option_table_t table = {options, sizeof(options) / sizeof(options[0]),
                                            "HOPPER_", env_renames};
    return &table;
}

void api_config_cleanup(api_config_t *cfg)
{
    hp_free(cfg->listen);
    hp_free(cfg->redis_url);
    hp_free(cfg->cors_origins);
    hp_free(cfg->blob_dir);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- The listening address ---- */

typedef struct listen_addr_s {
    struct sockaddr_storage ss;
    socklen_t len;
    bool loopback;
    char text[128];
} listen_addr_t;

static int parse_listen(const char *text, listen_addr_t *out, char *err, size_t errlen)
{
    char host[100];
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || !colon[1] || (size_t)(colon - text) >= sizeof(host)) {
        snprintf(err, errlen, "--listen: expected HOST:PORT like 127.0.0.1:8080, got \"%s\"", text);
        return HP_EINVAL;
    }
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) {
        snprintf(err, errlen, "--listen: port must be 0-65535, got \"%s\"", colon + 1);
        return HP_EINVAL;
    }
    size_t hl = strlen(host);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        out->len = sizeof(*v4);
        out->loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*v6);
        out->loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
    } else {
        snprintf(err, errlen, "--listen: \"%s\" is not an IP address (or localhost)", host);
        return HP_EINVAL;
    }
    snprintf(out->text, sizeof(out->text), "%s", text);
    return 0;
}

/* A listening socket with SO_REUSEPORT, so each loop has its own and the kernel
 * spreads new connections across them. */
static int open_listener(const listen_addr_t *a, char *err, size_t errlen)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", a->text, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* With port 0 the first socket got a port from the kernel: the others must share it. */
static void adopt_port(listen_addr_t *a, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->ss)->sin_port = ((struct sockaddr_in *)&ss)->sin_port;
    else
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = ((struct sockaddr_in6 *)&ss)->sin6_port;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    return ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                   : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* ---- Loops ---- */

#define DRAIN_MS 5000 /* on a stop, how long answers in the making may take */

static void on_wake(uv_async_t *a)
{
    api_loop_t *l = a->data;
    api_events_deliver(l);
    if (atomic_load(&l->server->stopping) && l->http && !l->drain_until) {
        /* Stop accepting; let the answers in the making go out first. */
        l->drain_until = hp_mono_ms() + DRAIN_MS;
        api_events_close_loop(l);
        http_server_drain(l->http);
    }
}

static void on_tick(uv_timer_t *t)
{
    api_loop_t *l = t->data;
    api_events_deliver(l); /* also the SSE keep-alives */
    if (l->http && l->drain_until &&
        (http_server_drain(l->http) == 0 || hp_mono_ms() >= l->drain_until)) {
        http_server_stop(l->http);
        l->http = NULL;
    }
    if (!l->http && l->drain_until && exec_pending(l->server->exec) == 0) {
        /* stopping, and nothing of ours is with the executor any more */
        api_events_close_loop(l);
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
        uv_close((uv_handle_t *)&l->wake, NULL);
        exec_home_close(l->home);
    }
}

static void loop_main(void *arg)
{
    api_loop_t *l = arg;
    uv_timer_t tick;
    uv_timer_init(&l->loop, &tick);
    tick.data = l;
    uv_timer_start(&tick, on_tick, 100, 100);
    uv_run(&l->loop, UV_RUN_DEFAULT);
    uv_loop_close(&l->loop);
}

static int start_loops(api_server_t *s, listen_addr_t *addr, char *err, size_t errlen)
{
    api_config_t *c = &s->cfg;
    http_limits_t limits = {
        .max_header_bytes = (size_t)c->max_header_bytes,
        .max_body = c->max_body,
        .header_timeout_ms = (int)c->header_timeout_ms,
        .body_timeout_ms = (int)c->body_timeout_ms,
        .keepalive_timeout_ms = (int)c->keepalive_timeout_ms,
        .max_connections = c->max_connections,
        .max_pipelined_bytes = 64 * 1024,
    };
    for (int i = 0; i < s->nloops; i++) {
        api_loop_t *l = &s->loops[i];
        l->listen_fd = open_listener(addr, err, errlen);
        if (l->listen_fd < 0)
            return HP_EINVAL;
        if (i == 0)
            adopt_port(addr, l->listen_fd);
    }
    for (int i = 0; i < s->nloops; i++) {
        api_loop_t *l = &s->loops[i];
        l->server = s;
        l->index = i;
        uv_loop_init(&l->loop);
        pthread_mutex_init(&l->events_lock, NULL);
        uv_async_init(&l->loop, &l->wake, on_wake);
        l->wake.data = l;
        l->home = exec_home_new(s->exec, &l->loop);
        http_app_t app = api_http_app(l);
        l->http =
            http_server_start(&l->loop, l->listen_fd, &limits, &app, &s->active_conns, err, errlen);
        if (!l->http)
            return HP_EINVAL;
        uv_thread_create(&l->thread, loop_main, l);
    }
    return 0;
}

/* ---- Authentication mode ---- */

static void hash_admin_token(api_server_t *s)
{
    const char *t = getenv("HOPPER_ADMIN_TOKEN");
    if (!t || !t[0])
        return;
    if (strlen(t) < 16)
        hp_warn("HOPPER_ADMIN_TOKEN is shorter than 16 characters: easy to guess");
    api_sha256_hex(t, s->admin_token_hash);
}

/* 1: tokens exist, 0: none, <0: the broker could not say. */
static int tokens_exist(broker_t *b)
{
    token_info_t *infos = NULL;
    size_t n = 0;
    int err = broker_tokens(b, &infos, &n);
    hp_free(infos);
    return err ? err : n > 0;
}

static int decide_auth(api_server_t *s, broker_t *b, const listen_addr_t *addr)
{
    int have = b ? tokens_exist(b) : HP_EUNAVAIL;
    s->auth_required = s->admin_token_hash[0] || have != 0;
    if (s->auth_required) {
        if (have < 0 && !s->admin_token_hash[0])
            hp_warn("broker unreachable: cannot tell whether tokens exist, so every request "
                    "needs one until it answers");
        return 0;
    }
    if (!addr->loopback) {
        hp_error("refusing to listen on %s without tokens: anyone who can reach it could "
                 "submit and delete jobs. Create one (hopper token create --scope admin) or set "
                 "HOPPER_ADMIN_TOKEN, or listen on 127.0.0.1",
                 addr->text);
        return HP_EUNSAFE;
    }
    hp_warn("NO AUTHENTICATION: no API token exists, so every request to %s is accepted. "
            "Only loopback clients can connect. Create tokens with `hopper token create`.",
            addr->text);
    return 0;
}

/* ---- Upkeep thread: broker maintenance and the auth mode ---- */

typedef struct upkeep_s {
    api_server_t *s;
    uv_thread_t thread;
} upkeep_t;

static void upkeep_main(void *arg)
{
    api_server_t *s = arg;
    broker_config_t bc = {.url = s->cfg.redis_url};
    broker_t *b = NULL;
    int64_t next_auth = hp_mono_ms() + AUTH_REFRESH_MS, next_maintain = 0;
    while (!atomic_load(&s->stopping)) {
        if (!b) {
            char *msg = NULL;
            if (broker_open(&bc, &b, &msg) != 0)
                b = NULL;
            hp_free(msg);
        }
        int64_t now = hp_mono_ms();
        if (b && s->cfg.maintain_interval_ms > 0 && now >= next_maintain) {
            broker_maintain_all(b);
            next_maintain = now + s->cfg.maintain_interval_ms;
        }
        if (b && now >= next_auth && !s->admin_token_hash[0]) {
            int have = tokens_exist(b);
            if (have >= 0 && (bool)have != s->auth_required) {
                s->auth_required = have;
                hp_warn(have ? "tokens exist now: every request needs one"
                             : "the last token is gone: requests need no token (loopback only)");
            }
            next_auth = now + AUTH_REFRESH_MS;
        }
        for (int i = 0; i < 10 && !atomic_load(&s->stopping); i++)
            hp_sleep_ms(10);
    }
    if (b)
        broker_close(b);
}

/* ---- Schedules from the config file ---- */

/* Checks the file's "schedules" now (a bad one refuses the start) and returns them
 * as text for the firing loop to apply once the broker answers; NULL when none. */
static int config_schedules(const char *path, char **text, char *err, size_t errlen)
{
    *text = NULL;
    if (!path)
        return 0;
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    json_t *all = doc ? json_object_get(doc, "schedules") : NULL;
    int rc = 0;
    if (all) {
        const char *name;
        json_t *def;
        json_object_foreach(all, name, def)
        {
            schedule_t *s = NULL;
            char why[400];
            rc = sched_schedule_from_object(name, def, hp_now_ms(), &s, why, sizeof(why));
            schedule_free(s);
            if (rc) {
                snprintf(err, errlen, "%s: schedules.%s: %s", path, name, why);
                break;
            }
        }
        if (!rc && !json_is_object(all)) {
            snprintf(err, errlen, "%s: schedules: expected an object of name -> definition", path);
            rc = HP_EINVAL;
        }
        if (!rc) {
            char *dumped = json_dumps(all, JSON_COMPACT);
            *text = hp_strdup(dumped);
            free(dumped);
        }
    }
    json_decref(doc);
    return rc;
}

/* ---- Run ---- */

static void set_common_headers(api_server_t *s)
{
    snprintf(s->common_headers, sizeof(s->common_headers),
             "X-Content-Type-Options: nosniff\r\n"
             "X-Frame-Options: DENY\r\n"
             "Referrer-Policy: no-referrer\r\n"
             "Cross-Origin-Resource-Policy: same-origin\r\n");
    snprintf(s->policy_headers, sizeof(s->policy_headers),
             "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
             "Cache-Control: no-store\r\n");
}

static int wait_for_signal(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    return sig;
}

static void stop_loops(api_server_t *s)
{
    atomic_store(&s->stopping, true);
    for (int i = 0; i < s->nloops; i++) {
        if (s->loops[i].http || s->loops[i].home)
            uv_async_send(&s->loops[i].wake);
    }
    for (int i = 0; i < s->nloops; i++) {
        if (s->loops[i].home)
            uv_thread_join(&s->loops[i].thread);
        pthread_mutex_destroy(&s->loops[i].events_lock);
    }
}

int api_server_run(const api_config_t *cfg)
{
    hp_log_set_json(true);
    if (cfg->log_level >= 0)
        hp_log_set_level((hp_log_level_t)cfg->log_level);
    api_metrics_init();
    api_server_t *s = hp_calloc(1, sizeof(*s));
    s->cfg = *cfg;
    char err[1024] = "";
    listen_addr_t addr;
    int rc = parse_listen(cfg->listen ? cfg->listen : "127.0.0.1:8080", &addr, err, sizeof(err));
    if (rc) {
        hp_error("%s", err);
        hp_free(s);
        return rc;
    }
    s->blobs = blobstore_open(cfg->blob_dir ? cfg->blob_dir : "hopper-blobs", err, sizeof(err));
    if (!s->blobs) {
        hp_error("blob store: %s", err);
        hp_free(s);
        return HP_EIO;
    }
    hash_admin_token(s);
    set_common_headers(s);
    char *schedules_json = NULL;
    rc = config_schedules(cfg->config_file, &schedules_json, err, sizeof(err));
    if (rc) {
        hp_error("%s", err);
        blobstore_close(s->blobs);
        hp_free(s);
        return rc;
    }
    broker_config_t bc = {.url = cfg->redis_url, .strict = cfg->strict};
    broker_t *probe = NULL;
    char *msg = NULL;
    rc = broker_open(&bc, &probe, &msg);
    if (rc == HP_EUNSAFE || rc == HP_EINVAL) {
        hp_error("%s", msg ? msg : "broker refused");
        hp_free(msg);
        hp_free(schedules_json);
        blobstore_close(s->blobs);
        hp_free(s);
        return rc;
    }
    if (rc)
        hp_warn("broker not reachable yet (%s): /readyz fails and the API answers 503 until it "
                "is",
                msg ? msg : "unavailable");
    hp_free(msg);
    rc = decide_auth(s, probe, &addr);
    if (probe)
        broker_close(probe);
    if (rc) {
        hp_free(schedules_json);
        blobstore_close(s->blobs);
        hp_free(s);
        return rc;
    }

    /* Signals go to this thread only: the loops never see them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    s->exec = exec_start(&bc, cfg->broker_threads);
    if (cfg->scheduler)
        s->sched = sched_start(&bc, schedules_json);
    else if (schedules_json)
        hp_warn("--scheduler=false: the config file's schedules are not applied by this server");
    hp_free(schedules_json);
    s->nloops = cfg->threads;
    s->loops = hp_calloc((size_t)s->nloops, sizeof(*s->loops));
    api_events_start(s);
    rc = start_loops(s, &addr, err, sizeof(err));
    upkeep_t upkeep = {s, 0};
    if (rc == 0) {
        uv_thread_create(&upkeep.thread, upkeep_main, s);
        hp_info("hopper %s serving http://%s (port %d) with %d loops, %d broker threads",
                HOPPER_VERSION_STRING, addr.text, bound_port(s->loops[0].listen_fd), s->nloops,
                cfg->broker_threads);
        int sig = wait_for_signal();
        hp_info("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    } else {
        hp_error("%s", err);
    }
    sched_stop(s->sched);
    api_events_stop(s); /* first: it hands events to the loops */
    stop_loops(s);
    if (rc == 0)
        uv_thread_join(&upkeep.thread);
    exec_stop(s->exec);
    for (int i = 0; i < s->nloops; i++) {
        if (s->loops[i].listen_fd > 0)
            close(s->loops[i].listen_fd);
    }
    blobstore_close(s->blobs);
    hp_free(s->loops);
    hp_free(s);
    if (rc == 0)
        hp_info("hopper server stopped");
    return rc;
}
