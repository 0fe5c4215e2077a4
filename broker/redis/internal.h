/*
 * broker/redis/internal.h -- shared by the Redis backend's files: the connection
 * (conn.c), the script table (scripts.c) and the operations (ops.c).
 *
 * Key layout, version 1 (docs/architecture.md explains each):
 *   hopper:schema                 layout version ("1"); a newer one is refused
 *   hopper:queues                 set of queue names (a directory, not job state)
 *   hopper:{q}:jobs               hash ulid -> record "<meta JSON>\n<payload>"
 *   hopper:{q}:res                hash ulid -> result JSON
 *   hopper:{q}:w:<prio>           list of waiting ulids, FIFO, one per priority
 *   hopper:{q}:prios, :wpop       zset of priorities in use; hash prio -> pops so far
 *   hopper:{q}:sched, :retry      zset ulid -> due ms (scheduled; failed awaiting retry)
 *   hopper:{q}:active, :lease     zset ulid -> lease deadline; hash ulid -> token
 *   hopper:{q}:succeeded, :dead, :canceled   zset ulid -> finished ms
 *   hopper:{q}:counts, :conf      hash of counts per state and totals; queue config
 *   hopper:{q}:u:<key>            unique key -> first job id, with a TTL
 *   hopper:{q}:notify             list holding at most one wake-up token
 *   hopper:{q}:prog, :logs        hash ulid -> "<percent>|<message>"; ulid -> JSON lines
 *   hopper:{q}:i:<key>            idempotency key -> "<request hash>|<job id>", 24 h TTL
 *   hopper:{q}:rt                 hash run-time bucket index (0-12) -> count, "sum" -> ms
 *   hopper:{q}:tp:<minute>        hash "s<sec>"/"f<sec>" -> attempts that succeeded/failed in
 *                                 that second of that Unix minute; expires after 2 h
 *   hopper:{q}:schedule:<name>    hash: a schedule whose template enqueues to q (cron,
 *                                 tz, job, paused, misfire, overlap, jitter_ms,
 *                                 next_fire_ms, last_fire_ms, last_job_id, created_ms,
 *                                 updated_ms, version, history JSON newest first)
 *   hopper:{q}:stick:<name>:<tick>   a fired tick's guard -> its job id, kept a day
 *   hopper:schedules              hash schedule name -> queue (a directory)
 *   hopper:schedules:version      counter bumped by every schedule put, pause, delete
 *   hopper:workers, hopper:worker:<id>   zset id -> last beat; info JSON with a TTL
 *   hopper:wcmd:<id>              a command for worker <id> ("quiet"|"stop"), with a TTL
 *   hopper:tokens                 hash token id -> JSON record (SHA-256 of the token)
 *   hopper:session:<sha256>       a dashboard session's record, with its TTL
 *   hopper:audit                  stream of audit entries, capped near AUDIT_KEEP
 *   hopper:rl:<key>               rate limit: the next request's GCRA time, with a TTL
 *   channel hopper:events         one JSON event per state change (PUBLISH)
 * The schedule keys are new keys, not a change to existing ones: layout 1 holds
 * them, and a Redis without them simply has no schedules.
 * Upgrades: none yet. A change to this layout bumps REDIS_SCHEMA_VERSION and adds
 * its upgrade step here.
 */
#ifndef HP_BROKER_REDIS_INTERNAL_H
#define HP_BROKER_REDIS_INTERNAL_H

#include <hiredis/hiredis.h>

#include "broker/internal.h"

#define REDIS_SCHEMA_VERSION "1"

/* ---- Scripts (scripts.c) ---- */

#define REDIS_SCRIPT_MAP(XX)                                                                       \
    XX(ENQUEUE, enqueue)                                                                           \
    XX(RESERVE, reserve)                                                                           \
    XX(ACK, ack)                                                                                   \
    XX(FAIL, fail)                                                                                 \
    XX(HEARTBEAT, heartbeat)                                                                       \
    XX(CANCEL, cancel)                                                                             \
    XX(RETRY, retry)                                                                               \
    XX(DELETE, delete)                                                                             \
    XX(GET, get)                                                                                   \
    XX(LIST, list)                                                                                 \
    XX(MAINTAIN, maintain)                                                                         \
    XX(PAUSE, pause)                                                                               \
    XX(STATS, stats)                                                                               \
    XX(RELEASE, release)                                                                           \
    XX(REPORT, report)                                                                             \
    XX(PURGE, purge)                                                                               \
    XX(RATE, rate)                                                                                 \
    XX(SCHEDULE_PUT, schedule_put)                                                                 \
    XX(SCHEDULE_PAUSE, schedule_pause)                                                             \
    XX(SCHEDULE_FIRE, schedule_fire)                                                               \
    XX(THROUGHPUT, throughput)

typedef enum {
#define XX(id, file) SCRIPT_##id,
    REDIS_SCRIPT_MAP(XX)
#undef XX
        SCRIPT_COUNT
} redis_script_id_t;

typedef struct redis_script_s {
    const char *name;
    char *text; /* defaults + prelude + body */
    size_t len;
    char sha[41];
} redis_script_t;

/* The script, assembled and hashed on first use (thread-safe). */
const redis_script_t *broker__redis_script(redis_script_id_t id);

/* ---- Connection (conn.c) ---- */

typedef struct rconn_s {
    char *host;
    int port;
    char *path; /* unix socket, or NULL */
    char *password;
    int db;
    int connect_timeout_ms;
    int command_timeout_ms;
    redisContext *ctx;    /* NULL while disconnected */
    int64_t next_try_ms;  /* monotonic: no reconnect attempt before this */
    int64_t last_used_ms; /* monotonic: the last command sent */
    char where[160];      /* "127.0.0.1:6379" or the socket path, for messages */
} rconn_t;

/* Parses a URL into c; on failure writes errbuf and returns HP_EINVAL. */
int broker__rconn_init(rconn_t *c, const char *url, char *errbuf, size_t errlen);
void broker__rconn_cleanup(rconn_t *c);

/* One command in a pipeline: argv with lengths (lens NULL: strlen). */
typedef struct rcmd_s {
    int argc;
    const char **argv;
    const size_t *lens;
} rcmd_t;

/*
 * Sends n commands in one round trip and reads n replies into `replies` (freed by
 * the caller with freeReplyObject). Connects first when needed. On a connection
 * failure every reply is NULL, the connection is dropped (the next call
 * reconnects) and HP_EUNAVAIL is returned with b->errmsg set.
 */
int broker__rconn_pipeline(rconn_t *c, broker_t *b, const rcmd_t *cmds, size_t n,
                           redisReply **replies);
int broker__rconn_command(rconn_t *c, broker_t *b, redisReply **reply, int argc, const char **argv,
                          const size_t *lens);

/* A script call: EVALSHA sha 1 hopper:{queue}: args... (or `key` as it is). */
typedef struct reval_s {
    const char *queue;
    const char *key; /* NULL: the queue's prefix; else KEYS[1] itself (rate limits) */
    int nargs;
    const char **args;
    const size_t *lens; /* NULL: strlen */
} reval_t;

/*
 * Runs n script calls (one script) in one round trip; a NOSCRIPT answer (Redis
 * restarted or flushed its cache) loads the script and runs those calls again.
 * Error replies stay in `replies` for the caller to map with broker__redis_reply_err.
 */
int broker__redis_eval(rconn_t *c, broker_t *b, redis_script_id_t script, const reval_t *calls,
                       size_t n, redisReply **replies);
/* Maps a script's error reply ("ENOTFOUND job ... not found") to a code and
 * b->errmsg; 0 when `r` is not an error. */
int broker__redis_reply_err(broker_t *b, const redisReply *r);
/* The same for an error text a script returns per item ("ELEASE job ..."). */
int broker__redis_error_text(broker_t *b, const char *msg);

/* Waits up to timeout_ms for the next message on `channel`, subscribing first when
 * *subscribed is false (and setting it). 1 with *payload (hp_free), 0 on timeout;
 * on a dropped connection HP_EUNAVAIL and *subscribed false. The context is never
 * left broken by a timeout: it polls the socket instead of timing out a read. */
int broker__rconn_next_message(rconn_t *c, broker_t *b, const char *channel, bool *subscribed,
                               int64_t timeout_ms, char **payload);

/* Blocks in BLPOP on the notify keys; 1 woken, 0 timed out. */
int broker__rconn_blpop(rconn_t *c, broker_t *b, const char *const *keys, size_t n,
                        int64_t timeout_ms);

/* ---- Operations shared between files (ops.c, schedules.c) ---- */

/* The connection of a Redis broker. */
rconn_t *broker__redis_conn(broker_t *b);

/* Seven numbers, then the unique key, the idempotency key and the request hash. */
#define ENQUEUE_OPTS_MAX (7 * 24 + 3 * JOB_UNIQUE_KEY_MAX + 1)
/* A prepared job's options argument for enqueue_one (prelude.lua): '' when every
 * option is the default, else the numbers and keys it reads. */
void broker__redis_enqueue_opts(const broker__prepared_t *p, char opts[ENQUEUE_OPTS_MAX]);

/* Schedules (schedules.c): the broker_ops_t entries of the same names. */
int broker__redis_schedule_put(broker_t *b, const schedule_t *s, bool *created);
int broker__redis_schedule_get(broker_t *b, const char *name, schedule_t **out);
int broker__redis_schedules(broker_t *b, schedule_t ***list, size_t *n);
int broker__redis_schedule_delete(broker_t *b, const char *name);
int broker__redis_schedule_pause(broker_t *b, const char *name, bool paused, int64_t next_fire_ms);
int broker__redis_schedule_fire(broker_t *b, const char *name, const char *queue, int64_t tick_ms,
                                int64_t next_ms, broker__fire_mode_t mode, broker__prepared_t *job,
                                schedule_fire_t *outcome, char job_id[JOB_ID_MAX]);
int broker__redis_schedules_version(broker_t *b, int64_t *version);

/* ---- Sessions and the audit log (session.c) ---- */
int broker__redis_session_store(broker_t *b, const char *key, const char *record, int64_t ttl_ms);
int broker__redis_session_load(broker_t *b, const char *key, char **record);
int broker__redis_session_delete(broker_t *b, const char *key);
int broker__redis_audit_append(broker_t *b, const char *entry, size_t keep);
int broker__redis_audit_list(broker_t *b, const char *cursor, size_t limit, char ***ids,
                             char ***entries, size_t *n);

#endif
