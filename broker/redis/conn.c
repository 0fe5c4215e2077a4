/*
 * The Redis connection: URL parsing, connecting and reconnecting, pipelines, and
 * calling scripts by SHA. A connection that fails is dropped; the next call
 * reconnects, so a broker outlives a Redis restart without the caller's help.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/redis/internal.h"

/* After a failed connect, calls fail at once for this long instead of paying the
 * connect timeout again (fail fast while Redis is down). */
#define RECONNECT_PAUSE_MS 100

/* ---- URL ---- */

static int parse_port(const char *s, int *port)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 1 || v > 65535)
        return HP_EINVAL;
    *port = (int)v;
    return 0;
}

static int parse_db(const char *s, int *db)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 0 || v > 1000000)
        return HP_EINVAL;
    *db = (int)v;
    return 0;
}

/* redis://[[user]:password@]host[:port][/db] */
static int parse_tcp(rconn_t *c, const char *rest, char *errbuf, size_t errlen)
{
    char *copy = hp_strdup(rest);
    char *hostpart = copy;
    char *at = strrchr(copy, '@');
    if (at) {
        *at = '\0';
        char *colon = strchr(copy, ':');
        c->password = hp_strdup(colon ? colon + 1 : copy);
        hostpart = at + 1;
    }
    char *slash = strchr(hostpart, '/');
    int err = 0;
    if (slash) {
        *slash = '\0';
        if (slash[1] && parse_db(slash + 1, &c->db))
            err = HP_EINVAL;
    }
    char *portp = NULL;
    if (hostpart[0] == '[') { /* [::1]:6379 */
        char *close = strchr(hostpart, ']');
        if (!close) {
            err = HP_EINVAL;
        } else {
            *close = '\0';
            hostpart++;
            portp = close[1] == ':' ? close + 2 : NULL;
        }
    } else {
        char *colon = strchr(hostpart, ':');
        if (colon) {
            *colon = '\0';
            portp = colon + 1;
        }
    }
    c->port = 6379;
    if (!err && portp && parse_port(portp, &c->port))
        err = HP_EINVAL;
    if (!err && !hostpart[0])
        err = HP_EINVAL;
    if (!err) {
        c->host = hp_strdup(hostpart);
        snprintf(c->where, sizeof(c->where), "%s:%d", c->host, c->port);
    }
    hp_free(copy);
    if (err)
        snprintf(errbuf, errlen,
                 "redis url: expected redis://[:password@]host[:port][/db], got \"redis://%s\"",
                 at ? "***@..." : rest);
    return err;
}

/* unix:///path/to/redis.sock[?db=N][&password=P] */
static int parse_unix(rconn_t *c, const char *rest, char *errbuf, size_t errlen)
{
    char *copy = hp_strdup(rest);
    char *q = strchr(copy, '?');
    int err = copy[0] == '/' ? 0 : HP_EINVAL;
    if (q) {
        *q++ = '\0';
        for (char *kv = strtok(q, "&"); kv && !err; kv = strtok(NULL, "&")) {
            if (strncmp(kv, "db=", 3) == 0)
                err = parse_db(kv + 3, &c->db);
            else if (strncmp(kv, "password=", 9) == 0)
                c->password = hp_strdup(kv + 9);
            else
                err = HP_EINVAL;
        }
    }
    if (!err) {
        c->path = hp_strdup(copy);
        snprintf(c->where, sizeof(c->where), "%s", c->path);
    } else {
        snprintf(errbuf, errlen,
                 "redis url: expected unix:///path/to.sock[?db=N], got \"unix://%s\"", copy);
    }
    hp_free(copy);
    return err;
}

int broker__rconn_init(rconn_t *c, const char *url, char *errbuf, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    c->connect_timeout_ms = 2000;
    c->command_timeout_ms = 5000;
    int err;
    if (strncmp(url, "redis://", 8) == 0)
        err = parse_tcp(c, url + 8, errbuf, errlen);
    else if (strncmp(url, "unix://", 7) == 0)
        err = parse_unix(c, url + 7, errbuf, errlen);
    else
        err = HP_EINVAL;
    if (err)
        broker__rconn_cleanup(c);
    return err;
}

void broker__rconn_cleanup(rconn_t *c)
{
    if (c->ctx)
        redisFree(c->ctx);
    hp_free(c->host);
    hp_free(c->path);
    hp_free(c->password);
    memset(c, 0, sizeof(*c));
}

/* ---- Connecting ---- */

static struct timeval tv_ms(int64_t ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

static void drop(rconn_t *c)
{
    if (c->ctx)
        redisFree(c->ctx);
    c->ctx = NULL;
}

/* Runs one command on a fresh context during the handshake. */
static int handshake_step(rconn_t *c, broker_t *b, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(c->ctx, argc, argv, NULL);
    int err = 0;
    if (!r)
        err = broker__error(b, HP_EUNAVAIL, "redis at %s: %s", c->where, c->ctx->errstr);
    else if (r->type == REDIS_REPLY_ERROR)
        err =
            broker__error(b, HP_EUNAVAIL, "redis at %s refused %s: %s", c->where, argv[0], r->str);
    if (r)
        freeReplyObject(r);
    return err;
}

static int connect_now(rconn_t *c, broker_t *b)
{
    if (hp_mono_ms() < c->next_try_ms)
        return HP_EUNAVAIL; /* b->errmsg still holds why the last attempt failed */
    struct timeval tv = tv_ms(c->connect_timeout_ms);
    c->ctx = c->path ? redisConnectUnixWithTimeout(c->path, tv)
                     : redisConnectWithTimeout(c->host, c->port, tv);
    int err = 0;
    if (!c->ctx || c->ctx->err) {
        err = broker__error(b, HP_EUNAVAIL, "redis at %s is unreachable: %s", c->where,
                            c->ctx ? c->ctx->errstr : "out of memory");
    } else {
        redisSetTimeout(c->ctx, tv_ms(c->command_timeout_ms));
        if (c->password)
            err = handshake_step(c, b, 2, (const char *[]){"AUTH", c->password});
        char db[16];
        snprintf(db, sizeof(db), "%d", c->db);
        if (!err && c->db)
            err = handshake_step(c, b, 2, (const char *[]){"SELECT", db});
    }
    if (err) {
        drop(c);
        c->next_try_ms = hp_mono_ms() + RECONNECT_PAUSE_MS;
    }
    return err;
}

/* ---- Commands ---- */

/* Whether a connection that sat idle was closed by the server meanwhile (Redis
 * restarted, a timeout, a proxy): a request/response connection never has
 * unasked-for bytes, so readable means EOF or an error. Checking costs a syscall,
 * so only after a second of idleness: a busy connection is known to be alive, and
 * a dead idle one would otherwise fail the first command sent after a restart
 * with "the last command may or may not have run", which is not so. */
#define IDLE_CHECK_MS 1000

static bool closed_while_idle(rconn_t *c)
{
    int64_t now = hp_mono_ms();
    bool idle = now - c->last_used_ms >= IDLE_CHECK_MS;
    c->last_used_ms = now;
    if (!idle)
        return false;
    struct pollfd pfd = {.fd = c->ctx->fd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 1;
}

int broker__rconn_pipeline(rconn_t *c, broker_t *b, const rcmd_t *cmds, size_t n,
                           redisReply **replies)
{
    memset(replies, 0, n * sizeof(*replies));
    if (c->ctx && closed_while_idle(c)) {
        drop(c);
        c->next_try_ms = 0; /* reconnect now: this is not a failing server */
    }
    if (!c->ctx) {
        int err = connect_now(c, b);
        if (err)
            return err;
    }
    for (size_t i = 0; i < n; i++)
        redisAppendCommandArgv(c->ctx, cmds[i].argc, cmds[i].argv, cmds[i].lens);
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(c->ctx, &r) != REDIS_OK) {
            bool timeout = c->ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
            broker__error(b, HP_EUNAVAIL, "redis at %s: %s%s", c->where,
                          timeout ? "no answer in time" : c->ctx->errstr,
                          " (connection dropped; the last command may or may not have run)");
            for (size_t j = 0; j < i; j++)
                freeReplyObject(replies[j]);
            memset(replies, 0, n * sizeof(*replies));
            drop(c);
            return HP_EUNAVAIL;
        }
        replies[i] = r;
    }
    return 0;
}

int broker__rconn_command(rconn_t *c, broker_t *b, redisReply **reply, int argc, const char **argv,
                          const size_t *lens)
{
    rcmd_t cmd = {argc, argv, lens};
    return broker__rconn_pipeline(c, b, &cmd, 1, reply);
}

/* ---- Scripts ---- */

static bool is_noscript(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

static int eval_pass(rconn_t *c, broker_t *b, const redis_script_t *s, const reval_t *calls,
                     size_t n, const bool *only, redisReply **replies)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += 4 + (size_t)calls[i].nargs;
    const char **argv = hp_malloc(total * sizeof(*argv));
    size_t *lens = hp_malloc(total * sizeof(*lens));
    char(*keys)[JOB_QUEUE_NAME_MAX + 16] = hp_malloc(n * sizeof(*keys));
    rcmd_t *cmds = hp_malloc(n * sizeof(*cmds));
    size_t used = 0, ncmds = 0;
    for (size_t i = 0; i < n; i++) {
        if (only && !only[i])
            continue;
        snprintf(keys[i], sizeof(keys[i]), "hopper:{%s}:", calls[i].queue);
        const char **a = argv + used;
        size_t *l = lens + used;
        a[0] = "EVALSHA", a[1] = s->sha, a[2] = "1";
        a[3] = calls[i].key ? calls[i].key : keys[i];
        for (int k = 0; k < 4; k++)
            l[k] = strlen(a[k]);
        for (int k = 0; k < calls[i].nargs; k++) {
            a[4 + k] = calls[i].args[k];
            l[4 + k] = calls[i].lens ? calls[i].lens[k] : strlen(calls[i].args[k]);
        }
        cmds[ncmds++] = (rcmd_t){4 + calls[i].nargs, a, l};
        used += 4 + (size_t)calls[i].nargs;
    }
    redisReply **got = hp_calloc(ncmds ? ncmds : 1, sizeof(*got));
    int err = broker__rconn_pipeline(c, b, cmds, ncmds, got);
    for (size_t i = 0, k = 0; !err && i < n; i++) {
        if (only && !only[i])
            continue;
        if (replies[i])
            freeReplyObject(replies[i]);
        replies[i] = got[k++];
    }
    hp_free(got);
    hp_free(cmds);
    hp_free(keys);
    hp_free(lens);
    hp_free(argv);
    return err;
}

int broker__redis_eval(rconn_t *c, broker_t *b, redis_script_id_t script, const reval_t *calls,
                       size_t n, redisReply **replies)
{
    const redis_script_t *s = broker__redis_script(script);
    memset(replies, 0, n * sizeof(*replies));
    int err = eval_pass(c, b, s, calls, n, NULL, replies);
    if (err)
        return err;
    bool *again = hp_calloc(n, sizeof(bool));
    bool any = false;
    for (size_t i = 0; i < n; i++)
        any |= again[i] = is_noscript(replies[i]);
    if (any) { /* NOSCRIPT: the call did not run; load the script and run it again */
        redisReply *r = NULL;
        const char *argv[] = {"SCRIPT", "LOAD", s->text};
        size_t lens[] = {6, 4, s->len};
        err = broker__rconn_command(c, b, &r, 3, argv, lens);
        if (!err && r->type == REDIS_REPLY_ERROR)
            err = broker__error(b, HP_EPROTO, "redis refused script %s: %s", s->name, r->str);
        if (r)
            freeReplyObject(r);
        if (!err)
            err = eval_pass(c, b, s, calls, n, again, replies);
    }
    hp_free(again);
    if (err) {
        for (size_t i = 0; i < n; i++) {
            if (replies[i])
                freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
    }
    return err;
}

/* Error codes a script may raise as the first word of its error reply. */
static const struct {
    const char *prefix;
    int err;
} script_errors[] = {
    {"EINVAL ", HP_EINVAL}, {"ENOTFOUND ", HP_ENOTFOUND}, {"ESTATE ", HP_ESTATE},
    {"ELEASE ", HP_ELEASE}, {"EFULL ", HP_EFULL},
};

int broker__redis_error_text(broker_t *b, const char *msg)
{
    if (strncmp(msg, "ERR ", 4) == 0)
        msg += 4;
    for (size_t i = 0; i < sizeof(script_errors) / sizeof(script_errors[0]); i++) {
        size_t plen = strlen(script_errors[i].prefix);
        if (strncmp(msg, script_errors[i].prefix, plen) == 0)
            return broker__error(b, script_errors[i].err, "%s", msg + plen);
    }
    if (strncmp(msg, "OOM ", 4) == 0)
        return broker__error(b, HP_EFULL, "redis is out of memory (maxmemory reached): %s",
                             msg + 4);
    if (strncmp(msg, "LOADING", 7) == 0 || strncmp(msg, "BUSY", 4) == 0 ||
        strncmp(msg, "READONLY", 8) == 0 || strncmp(msg, "MASTERDOWN", 10) == 0)
        return broker__error(b, HP_EUNAVAIL, "redis cannot serve now: %s", msg);
    return broker__error(b, HP_EPROTO, "redis error: %s", msg);
}

int broker__redis_reply_err(broker_t *b, const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ERROR)
        return 0;
    return broker__redis_error_text(b, r->str);
}

int broker__rconn_blpop(rconn_t *c, broker_t *b, const char *const *keys, size_t n,
                        int64_t timeout_ms)
{
    if (!c->ctx) {
        int err = connect_now(c, b);
        if (err)
            return err;
    }
    char secs[32];
    snprintf(secs, sizeof(secs), "%.3f", (double)(timeout_ms > 0 ? timeout_ms : 1) / 1000.0);
    const char **argv = hp_malloc((n + 2) * sizeof(*argv));
    argv[0] = "BLPOP";
    for (size_t i = 0; i < n; i++)
        argv[1 + i] = keys[i];
    argv[n + 1] = secs;
    /* The socket must wait longer than Redis does. */
    redisSetTimeout(c->ctx, tv_ms(timeout_ms + c->command_timeout_ms));
    redisReply *r = NULL;
    int err = broker__rconn_command(c, b, &r, (int)n + 2, argv, NULL);
    if (c->ctx)
        redisSetTimeout(c->ctx, tv_ms(c->command_timeout_ms));
    hp_free(argv);
    if (err)
        return err;
    int woken = r->type == REDIS_REPLY_ARRAY;
    if (r->type == REDIS_REPLY_ERROR)
        woken = broker__redis_reply_err(b, r);
    freeReplyObject(r);
    return woken;
}

/* ---- Pub/sub ---- */

/* A pushed message is ["message", channel, payload]; confirmations of SUBSCRIBE are
 * ["subscribe", channel, count] and are skipped. */
static bool take_message(redisReply *r, char **payload)
{
    bool is_message = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                      r->element[0]->type == REDIS_REPLY_STRING &&
                      strcmp(r->element[0]->str, "message") == 0 &&
                      r->element[2]->type == REDIS_REPLY_STRING;
    if (is_message)
        *payload = hp_strndup(r->element[2]->str, r->element[2]->len);
    freeReplyObject(r);
    return is_message;
}

static int lost(rconn_t *c, broker_t *b, bool *subscribed, const char *why)
{
    broker__error(b, HP_EUNAVAIL, "redis at %s: %s (event subscription lost)", c->where, why);
    drop(c);
    *subscribed = false;
    return HP_EUNAVAIL;
}

int broker__rconn_next_message(rconn_t *c, broker_t *b, const char *channel, bool *subscribed,
                               int64_t timeout_ms, char **payload)
{
    *payload = NULL;
    if (!c->ctx) {
        *subscribed = false;
        int err = connect_now(c, b);
        if (err)
            return err;
    }
    if (!*subscribed) {
        /* Sent without waiting for the confirmation: it arrives as one more reply
         * that take_message skips. */
        if (redisAppendCommand(c->ctx, "SUBSCRIBE %s", channel) != REDIS_OK)
            return lost(c, b, subscribed, c->ctx->errstr);
        int done = 0;
        while (!done) {
            if (redisBufferWrite(c->ctx, &done) != REDIS_OK)
                return lost(c, b, subscribed, c->ctx->errstr);
        }
        *subscribed = true;
    }
    /* hiredis 0.14 marks a context failed when a socket read times out, so this
     * never reads before poll() says there is something to read. */
    int64_t deadline = hp_mono_ms() + timeout_ms;
    for (;;) {
        void *reply = NULL;
        if (redisGetReplyFromReader(c->ctx, &reply) != REDIS_OK)
            return lost(c, b, subscribed, c->ctx->errstr);
        if (reply) {
            if (take_message(reply, payload))
                return 1;
            continue;
        }
        int64_t left = deadline - hp_mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {.fd = c->ctx->fd, .events = POLLIN};
        int ready = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (ready < 0 && errno != EINTR)
            return lost(c, b, subscribed, strerror(errno));
        if (ready > 0 && redisBufferRead(c->ctx) != REDIS_OK)
            return lost(c, b, subscribed, c->ctx->errstr);
    }
}
