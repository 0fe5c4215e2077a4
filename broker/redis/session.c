/*
 * Sessions and the audit log on Redis.
 *   hopper:session:<sha256 of the id>   the session record, with its TTL
 *   hopper:audit                        a stream of entries {"e": <JSON>}, capped
 *                                       (approximately) at AUDIT_KEEP with MAXLEN ~
 * Neither lives in a queue's slot; both are small and cold.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/redis/internal.h"

#define AUDIT_KEY "hopper:audit"

static int command(broker_t *b, redisReply **r, int argc, const char **argv)
{
    *r = NULL;
    int err = broker__rconn_command(broker__redis_conn(b), b, r, argc, argv, NULL);
    if (!err)
        err = broker__redis_reply_err(b, *r);
    if (err && *r) {
        freeReplyObject(*r);
        *r = NULL;
    }
    return err;
}

int broker__redis_session_store(broker_t *b, const char *key, const char *record, int64_t ttl_ms)
{
    char rkey[96], ttl[24];
    snprintf(rkey, sizeof(rkey), "hopper:session:%.64s", key);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_ms);
    redisReply *r = NULL;
    int err = command(b, &r, 5, (const char *[]){"SET", rkey, record, "PX", ttl});
    if (r)
        freeReplyObject(r);
    return err;
}

int broker__redis_session_load(broker_t *b, const char *key, char **record)
{
    char rkey[96];
    snprintf(rkey, sizeof(rkey), "hopper:session:%.64s", key);
    redisReply *r = NULL;
    int err = command(b, &r, 2, (const char *[]){"GET", rkey});
    if (err)
        return err;
    if (r->type == REDIS_REPLY_STRING)
        *record = hp_strndup(r->str, r->len);
    else
        err = broker__error(b, HP_ENOTFOUND, "no such session");
    freeReplyObject(r);
    return err;
}

int broker__redis_session_delete(broker_t *b, const char *key)
{
    char rkey[96];
    snprintf(rkey, sizeof(rkey), "hopper:session:%.64s", key);
    redisReply *r = NULL;
    int err = command(b, &r, 2, (const char *[]){"DEL", rkey});
    if (r)
        freeReplyObject(r);
    return err;
}

int broker__redis_audit_append(broker_t *b, const char *entry, size_t keep)
{
    char skeep[24];
    snprintf(skeep, sizeof(skeep), "%zu", keep);
    redisReply *r = NULL;
    int err = command(b, &r, 8,
                      (const char *[]){"XADD", AUDIT_KEY, "MAXLEN", "~", skeep, "*", "e", entry});
    if (r)
        freeReplyObject(r);
    return err;
}

int broker__redis_audit_list(broker_t *b, const char *cursor, size_t limit, char ***ids,
                             char ***entries, size_t *n)
{
    char start[AUDIT_CURSOR_MAX + 2], count[24];
    snprintf(start, sizeof(start), "%s%s", cursor ? "(" : "", cursor ? cursor : "+");
    snprintf(count, sizeof(count), "%zu", limit);
    redisReply *r = NULL;
    int err =
        command(b, &r, 6, (const char *[]){"XREVRANGE", AUDIT_KEY, start, "-", "COUNT", count});
    if (err)
        return err;
    *n = 0;
    *ids = hp_calloc(r->elements ? r->elements : 1, sizeof(char *));
    *entries = hp_calloc(r->elements ? r->elements : 1, sizeof(char *));
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *item = r->element[i];
        if (item->type != REDIS_REPLY_ARRAY || item->elements != 2 ||
            item->element[0]->type != REDIS_REPLY_STRING ||
            item->element[1]->type != REDIS_REPLY_ARRAY || item->element[1]->elements != 2 ||
            item->element[1]->element[1]->type != REDIS_REPLY_STRING)
            continue;
        (*ids)[*n] = hp_strndup(item->element[0]->str, item->element[0]->len);
        (*entries)[*n] =
            hp_strndup(item->element[1]->element[1]->str, item->element[1]->element[1]->len);
        (*n)++;
    }
    freeReplyObject(r);
    return 0;
}
