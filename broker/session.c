/*
 * Dashboard sessions and the audit log: their records and the checks on them.
 *
 * A session id is 32 random bytes in hex (the cookie). The backend stores the
 * record under the SHA-256 of the id, with the session's time to live, so the
 * broker's data holds no cookie. A record is a JSON object:
 *   {"token","env_admin","admin_hash","csrf","ip","created","expires"}
 * The token's identity and scope are not copied in: every lookup reads the token's
 * current record, so a revoked token ends its sessions and a changed scope applies.
 *
 * Audit entries are JSON objects the API writes; the backend keeps them in order
 * with ids "<ms>-<seq>" that serve as cursors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "broker/internal.h"

/* ---- Sessions ---- */

static bool hex_valid(const char *s, size_t len)
{
    if (!s || strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

static int random_hex(broker_t *b, char *out, size_t hexlen)
{
    unsigned char buf[64];
    int err = broker__random_bytes(b, buf, hexlen / 2);
    for (size_t i = 0; !err && i < hexlen / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", buf[i]);
    OPENSSL_cleanse(buf, sizeof(buf));
    return err;
}

static char *session_encode(const session_t *s)
{
    json_t *o =
        json_pack("{s:s, s:b, s:s, s:s, s:s, s:I, s:I}", "token", s->token.id, "env_admin",
                  s->env_admin, "admin_hash", s->admin_hash, "csrf", s->csrf, "ip", s->ip,
                  "created", (json_int_t)s->created_ms, "expires", (json_int_t)s->expires_ms);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *out = hp_strdup(text);
    free(text);
    return out;
}

static bool session_decode(const char *text, session_t *s)
{
    json_t *o = json_loads(text, 0, NULL);
    const char *token = json_string_value(json_object_get(o, "token"));
    const char *admin_hash = json_string_value(json_object_get(o, "admin_hash"));
    const char *csrf = json_string_value(json_object_get(o, "csrf"));
    const char *ip = json_string_value(json_object_get(o, "ip"));
    bool ok = token && admin_hash && hex_valid(csrf, SESSION_CSRF_LEN) && ip;
    if (ok) {
        memset(s, 0, sizeof(*s));
        snprintf(s->token.id, sizeof(s->token.id), "%s", token);
        s->env_admin = json_is_true(json_object_get(o, "env_admin"));
        snprintf(s->admin_hash, sizeof(s->admin_hash), "%s", admin_hash);
        snprintf(s->csrf, sizeof(s->csrf), "%s", csrf);
        snprintf(s->ip, sizeof(s->ip), "%s", ip);
        s->created_ms = (int64_t)json_integer_value(json_object_get(o, "created"));
        s->expires_ms = (int64_t)json_integer_value(json_object_get(o, "expires"));
    }
    json_decref(o);
    return ok;
}

int broker_session_create(broker_t *b, session_t *s, int64_t ttl_ms, char id[SESSION_ID_LEN + 1])
{
    id[0] = '\0';
    if (ttl_ms < 1000)
        return broker__error(b, HP_EINVAL, "session: a time to live of at least 1 s");
    char key[65];
    int err = random_hex(b, id, SESSION_ID_LEN);
    if (!err)
        err = random_hex(b, s->csrf, SESSION_CSRF_LEN);
    if (err)
        return err;
    id[SESSION_ID_LEN] = '\0';
    s->csrf[SESSION_CSRF_LEN] = '\0';
    s->created_ms = hp_now_ms();
    s->expires_ms = s->created_ms + ttl_ms;
    broker__sha256_hex(id, key);
    char *record = session_encode(s);
    err = b->ops->session_store(b, key, record, ttl_ms);
    hp_free(record);
    if (err)
        id[0] = '\0';
    return err;
}

int broker_session_get(broker_t *b, const char *id, session_t *out)
{
    if (!hex_valid(id, SESSION_ID_LEN))
        return broker__error(b, HP_ENOTFOUND, "no such session");
    char key[65];
    broker__sha256_hex(id, key);
    char *record = NULL;
    int err = b->ops->session_load(b, key, &record);
    if (err == HP_ENOTFOUND)
        return broker__error(b, HP_ENOTFOUND, "no such session (expired or logged out)");
    if (err)
        return err;
    session_t s;
    bool ok = session_decode(record, &s);
    hp_free(record);
    if (!ok)
        return broker__error(b, HP_ENOTFOUND, "no such session (damaged record)");
    if (s.expires_ms <= hp_now_ms())
        return broker__error(b, HP_ENOTFOUND, "no such session (expired)");
    if (!s.env_admin) {
        char token_id[TOKEN_ID_LEN + 1];
        snprintf(token_id, sizeof(token_id), "%s", s.token.id);
        err = broker__token_info(b, token_id, &s.token);
        if (err == HP_ENOTFOUND) {
            b->ops->session_delete(b, key);
            return broker__error(b, HP_ENOTFOUND, "session ended: its token was revoked");
        }
        if (err)
            return err;
    } else {
        snprintf(s.token.id, sizeof(s.token.id), "env-admin");
        snprintf(s.token.name, sizeof(s.token.name), "HOPPER_ADMIN_TOKEN");
        s.token.scope = TOKEN_SCOPE_ADMIN;
    }
    *out = s;
    return 0;
}

int broker_session_delete(broker_t *b, const char *id)
{
    if (!hex_valid(id, SESSION_ID_LEN))
        return 0;
    char key[65];
    broker__sha256_hex(id, key);
    return b->ops->session_delete(b, key);
}

/* ---- Audit log ---- */

static bool audit_cursor_valid(const char *c)
{
    const char *dash = strchr(c, '-');
    if (!dash || dash == c || !dash[1] || strlen(c) >= AUDIT_CURSOR_MAX)
        return false;
    for (const char *p = c; *p; p++) {
        if (p != dash && (*p < '0' || *p > '9'))
            return false;
    }
    return true;
}

int broker_audit_append(broker_t *b, const char *entry_json)
{
    char err[160];
    size_t len = entry_json ? strlen(entry_json) : 0;
    if (!entry_json || len < 2 || entry_json[0] != '{' ||
        broker__check_json("audit entry", entry_json, len, 64 * 1024, err, sizeof(err)))
        return broker__error(b, HP_EINVAL, "audit entry: a JSON object of at most 64 KiB");
    return b->ops->audit_append(b, entry_json, AUDIT_KEEP);
}

int broker_audit_list(broker_t *b, const char *cursor, size_t limit, audit_page_t *out)
{
    memset(out, 0, sizeof(*out));
    if (limit < 1 || limit > 1000)
        return broker__error(b, HP_EINVAL, "limit: 1 to 1000");
    if (cursor && !audit_cursor_valid(cursor))
        return broker__error(b, HP_EINVAL, "cursor: not one a listing gave out");
    char **ids = NULL, **entries = NULL;
    size_t n = 0;
    int err = b->ops->audit_list(b, cursor, limit + 1, &ids, &entries, &n);
    if (err)
        return err;
    size_t shown = n > limit ? limit : n;
    out->entries = hp_calloc(shown ? shown : 1, sizeof(char *));
    for (size_t i = 0; i < shown; i++) {
        /* "{...}" becomes "{"id":"<id>",...}" (an empty object loses its comma) */
        const char *rest = entries[i] + 1;
        while (*rest == ' ')
            rest++;
        out->entries[out->n++] =
            hp_sprintf("{\"id\":\"%s\"%s%s", ids[i], *rest == '}' ? "" : ",", rest);
    }
    if (n > limit)
        out->next_cursor = hp_strdup(ids[limit - 1]);
    for (size_t i = 0; i < n; i++) {
        hp_free(ids[i]);
        hp_free(entries[i]);
    }
    hp_free(ids);
    hp_free(entries);
    return 0;
}

void audit_page_cleanup(audit_page_t *page)
{
    for (size_t i = 0; page && i < page->n; i++)
        hp_free(page->entries[i]);
    if (page) {
        hp_free(page->entries);
        hp_free(page->next_cursor);
        memset(page, 0, sizeof(*page));
    }
}
