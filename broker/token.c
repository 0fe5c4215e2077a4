/*
 * API tokens: their text, the record the broker keeps, and the checks on both.
 *
 * A token is "hop_<id>_<secret>". The id (TOKEN_ID_LEN of [a-z0-9]) is public and
 * finds the record; the secret is 256 random bits from OpenSSL in lowercase base32.
 * Only the SHA-256 of the whole token text is stored, never the secret, so a copy of
 * the broker's data holds no usable token. A record is a JSON object:
 *   {"id","name","scope","queues","rate","burst","created","sha256"}
 * This file owns the format; the backend stores records by id and knows nothing of
 * their content (broker_ops_t token_*).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "broker/internal.h"

#define TOKEN_PREFIX       "hop_"
#define TOKEN_PREFIX_LEN   4
#define TOKEN_SECRET_BYTES 32
#define TOKEN_SECRET_LEN   52 /* base32 of 256 bits, unpadded */
#define TOKEN_TEXT_LEN     (TOKEN_PREFIX_LEN + TOKEN_ID_LEN + 1 + TOKEN_SECRET_LEN)
#define SHA256_HEX_LEN     64
/* A new id that is taken is drawn again; with 36^12 ids even one retry is rare. */
#define CREATE_TRIES 4

_Static_assert(TOKEN_TEXT_LEN < TOKEN_MAX, "a token and its NUL fit in TOKEN_MAX");

static const char id_alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
static const char base32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

/* One message for every token that does not verify, so a caller learns nothing about
 * which part was wrong. */
#define NOT_RECOGNIZED "token not recognized (malformed, unknown or revoked)"

/* ---- Scopes ---- */

static const char *const scope_names[] = {"submit", "read", "admin"};
#define NSCOPES (sizeof(scope_names) / sizeof(scope_names[0]))

const char *token_scope_name(token_scope_t scope)
{
    return (unsigned)scope < NSCOPES ? scope_names[scope] : "unknown";
}

int token_scope_parse(const char *name)
{
    for (size_t i = 0; name && i < NSCOPES; i++) {
        if (strcmp(name, scope_names[i]) == 0)
            return (int)i;
    }
    return -1;
}

/* ---- Queue patterns ---- */

/* Whether pattern[0..plen) matches all of `s`, '*' matching any run of characters
 * (also none). Greedy with one backtrack point, the last star: linear for patterns
 * with one star and never recursive, whatever a token's creator wrote. */
static bool glob_match(const char *pattern, size_t plen, const char *s)
{
    size_t p = 0, i = 0, star = SIZE_MAX, resume = 0;
    while (s[i]) {
        if (p < plen && pattern[p] == '*') {
            star = p++;
            resume = i;
        } else if (p < plen && pattern[p] == s[i]) {
            p++;
            i++;
        } else if (star != SIZE_MAX) {
            p = star + 1; /* let the last star swallow one more character */
            i = ++resume;
        } else {
            return false;
        }
    }
    while (p < plen && pattern[p] == '*')
        p++;
    return p == plen;
}

bool token_queue_allowed(const char *patterns, const char *queue)
{
    if (!patterns || !patterns[0])
        return true;
    if (!queue)
        return false;
    for (const char *p = patterns;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len > 0 && glob_match(p, len, queue))
            return true;
        if (!comma)
            return false;
        p = comma + 1;
    }
}

/* ---- Checks ---- */

static bool bounded(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

static int check_info(broker_t *b, const token_info_t *info)
{
    if (!bounded(info->name, sizeof(info->name)))
        return broker__error(b, HP_EINVAL, "token name: at most %d characters", TOKEN_NAME_MAX);
    for (const char *c = info->name; *c; c++) {
        if (*c < 0x20 || *c > 0x7e)
            return broker__error(b, HP_EINVAL, "token name: printable ASCII characters only");
    }
    if ((unsigned)info->scope >= NSCOPES)
        return broker__error(b, HP_EINVAL, "token scope: must be submit, read or admin");
    if (!bounded(info->queues, sizeof(info->queues)))
        return broker__error(b, HP_EINVAL, "token queues: at most %d characters", TOKEN_QUEUES_MAX);
    size_t run = 0;
    for (const char *c = info->queues;; c++) {
        if (*c == ',' || *c == '\0') {
            if (run == 0 && (*c == ',' || c != info->queues))
                return broker__error(b, HP_EINVAL,
                                     "token queues: an empty pattern in \"%.80s\" (patterns are "
                                     "separated by single commas)",
                                     info->queues);
            if (*c == '\0')
                break;
            run = 0;
        } else if (strchr("._*-", *c) || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                   (*c >= '0' && *c <= '9')) {
            run++;
        } else {
            return broker__error(b, HP_EINVAL,
                                 "token queues: patterns are A-Z a-z 0-9 . _ - and *, got '%c' "
                                 "in \"%.80s\"",
                                 *c, info->queues);
        }
    }
    if (!isfinite(info->rate) || info->rate < 0)
        return broker__error(b, HP_EINVAL, "token rate: must be 0 (unlimited) or more per second");
    if (info->burst < 0)
        return broker__error(b, HP_EINVAL, "token burst: must not be negative");
    return 0;
}

static bool id_valid(const char *id, size_t len)
{
    if (len != TOKEN_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!id[i] || !strchr(id_alphabet, id[i]))
            return false;
    }
    return true;
}

/* Splits a presented token; false unless it is exactly the shape create makes. */
static bool token_parse(const char *token, char id[TOKEN_ID_LEN + 1])
{
    if (!token || strnlen(token, TOKEN_MAX) != TOKEN_TEXT_LEN ||
        strncmp(token, TOKEN_PREFIX, TOKEN_PREFIX_LEN) != 0 ||
        token[TOKEN_PREFIX_LEN + TOKEN_ID_LEN] != '_' ||
        !id_valid(token + TOKEN_PREFIX_LEN, TOKEN_ID_LEN))
        return false;
    const char *secret = token + TOKEN_PREFIX_LEN + TOKEN_ID_LEN + 1;
    for (size_t i = 0; i < TOKEN_SECRET_LEN; i++) {
        if (!strchr(base32_alphabet, secret[i]))
            return false;
    }
    memcpy(id, token + TOKEN_PREFIX_LEN, TOKEN_ID_LEN);
    id[TOKEN_ID_LEN] = '\0';
    return true;
}

/* ---- Making and hashing ---- */

int broker__random_bytes(broker_t *b, unsigned char *buf, size_t n)
{
    if (RAND_bytes(buf, (int)n) != 1)
        return broker__error(b, HP_EIO, "OpenSSL could not produce random bytes");
    return 0;
}

/* TOKEN_ID_LEN characters of [a-z0-9], each uniform: bytes of 252 and above are
 * drawn again, since 252 is the largest multiple of 36 that fits in a byte. */
static int random_id(broker_t *b, char id[TOKEN_ID_LEN + 1])
{
    size_t have = 0;
    while (have < TOKEN_ID_LEN) {
        unsigned char buf[32];
        int err = broker__random_bytes(b, buf, sizeof(buf));
        if (err)
            return err;
        for (size_t i = 0; i < sizeof(buf) && have < TOKEN_ID_LEN; i++) {
            if (buf[i] < 252)
                id[have++] = id_alphabet[buf[i] % 36];
        }
    }
    id[TOKEN_ID_LEN] = '\0';
    return 0;
}

/* RFC 4648 base32, lowercase, no padding: 5 bits per character. */
static void base32_encode(const unsigned char *in, size_t n, char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = base32_alphabet[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[o++] = base32_alphabet[(acc << (5 - bits)) & 31];
    out[o] = '\0';
}

void broker__sha256_hex(const char *text, char out[65])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_Digest(text, strlen(text), digest, &dlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < dlen && i < SHA256_HEX_LEN / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    OPENSSL_cleanse(digest, sizeof(digest));
}

/* ---- Records ---- */

/* The record as JSON text; hp_free it. */
static char *record_encode(const token_info_t *info, const char *hash)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:f, s:i, s:I, s:s}", "id", info->id, "name",
                          info->name, "scope", token_scope_name(info->scope), "queues",
                          info->queues, "rate", info->rate, "burst", info->burst, "created",
                          (json_int_t)info->created_ms, "sha256", hash);
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    char *out = hp_strdup(text);
    free(text);
    return out;
}

/* Fills info (and hash, when given) from a stored record; false when it is not one
 * this file wrote. */
static bool record_decode(const char *text, token_info_t *info, char hash[SHA256_HEX_LEN + 1])
{
    json_t *o = json_loads(text, 0, NULL);
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *queues = json_string_value(json_object_get(o, "queues"));
    const char *sha = json_string_value(json_object_get(o, "sha256"));
    int scope = token_scope_parse(json_string_value(json_object_get(o, "scope")));
    bool ok = id && id_valid(id, strlen(id)) && name && queues && sha &&
              strlen(sha) == SHA256_HEX_LEN && scope >= 0;
    if (ok) {
        memset(info, 0, sizeof(*info));
        snprintf(info->id, sizeof(info->id), "%s", id);
        snprintf(info->name, sizeof(info->name), "%s", name);
        snprintf(info->queues, sizeof(info->queues), "%s", queues);
        info->scope = (token_scope_t)scope;
        info->rate = json_number_value(json_object_get(o, "rate"));
        info->burst = (int)json_integer_value(json_object_get(o, "burst"));
        info->created_ms = (int64_t)json_integer_value(json_object_get(o, "created"));
        if (hash)
            memcpy(hash, sha, SHA256_HEX_LEN + 1);
    }
    json_decref(o);
    return ok;
}

/* ---- Tokens API ---- */

int broker_token_create(broker_t *b, token_info_t *info, char token[TOKEN_MAX])
{
    token[0] = '\0';
    int err = check_info(b, info);
    if (err)
        return err;
    info->created_ms = hp_now_ms();
    bool stored = false;
    for (int attempt = 0; !err && !stored && attempt < CREATE_TRIES; attempt++) {
        unsigned char secret[TOKEN_SECRET_BYTES];
        char encoded[TOKEN_SECRET_LEN + 1], hash[SHA256_HEX_LEN + 1];
        err = random_id(b, info->id);
        if (!err)
            err = broker__random_bytes(b, secret, sizeof(secret));
        if (!err) {
            base32_encode(secret, sizeof(secret), encoded);
            snprintf(token, TOKEN_MAX, TOKEN_PREFIX "%s_%s", info->id, encoded);
            broker__sha256_hex(token, hash);
            char *record = record_encode(info, hash);
            err = b->ops->token_store(b, info->id, record, &stored);
            hp_free(record);
        }
        OPENSSL_cleanse(secret, sizeof(secret));
        OPENSSL_cleanse(encoded, sizeof(encoded));
    }
    if (!err && !stored)
        err = broker__error(b, HP_EIO, "token: no free id after %d tries", CREATE_TRIES);
    if (err) {
        OPENSSL_cleanse(token, TOKEN_MAX);
        token[0] = '\0';
    }
    return err;
}

/* The stored record of token `id`, decoded (and its hash into `hash` when not
 * NULL); an unknown id is "not recognized", as a wrong secret is. */
static int load_record(broker_t *b, const char *id, token_info_t *info, char *hash)
{
    char *record = NULL;
    int err = b->ops->token_load(b, id, &record);
    if (err == HP_ENOTFOUND)
        return broker__error(b, HP_ENOTFOUND, NOT_RECOGNIZED);
    if (err)
        return err;
    if (!record_decode(record, info, hash))
        err = broker__error(b, HP_EPROTO, "token %s: damaged record in the broker", id);
    hp_free(record);
    return err;
}

int broker_token_verify(broker_t *b, const char *token, token_info_t *info)
{
    char id[TOKEN_ID_LEN + 1];
    if (!token_parse(token, id))
        return broker__error(b, HP_ENOTFOUND, NOT_RECOGNIZED);
    char stored[SHA256_HEX_LEN + 1], presented[SHA256_HEX_LEN + 1];
    token_info_t found;
    int err = load_record(b, id, &found, stored);
    if (err)
        return err;
    broker__sha256_hex(token, presented);
    if (CRYPTO_memcmp(stored, presented, SHA256_HEX_LEN) != 0)
        return broker__error(b, HP_ENOTFOUND, NOT_RECOGNIZED);
    if (info)
        *info = found;
    return 0;
}

static int compare_created(const void *a, const void *b)
{
    const token_info_t *x = a, *y = b;
    if (x->created_ms != y->created_ms)
        return x->created_ms < y->created_ms ? -1 : 1;
    return strcmp(x->id, y->id);
}

int broker__token_info(broker_t *b, const char *id, token_info_t *info)
{
    if (!id_valid(id, strlen(id)))
        return broker__error(b, HP_ENOTFOUND, NOT_RECOGNIZED);
    return load_record(b, id, info, NULL);
}

int broker_tokens(broker_t *b, token_info_t **infos, size_t *n)
{
    *infos = NULL;
    *n = 0;
    char **records = NULL;
    size_t nrecords = 0;
    int err = b->ops->token_records(b, &records, &nrecords);
    if (err)
        return err;
    *infos = hp_calloc(nrecords ? nrecords : 1, sizeof(token_info_t));
    for (size_t i = 0; i < nrecords; i++) {
        if (record_decode(records[i], &(*infos)[*n], NULL))
            (*n)++;
        else
            hp_warn("broker: skipping a damaged token record");
    }
    broker_queues_free(records, nrecords);
    qsort(*infos, *n, sizeof(token_info_t), compare_created);
    return 0;
}

int broker_token_revoke(broker_t *b, const char *id)
{
    if (!id || !id_valid(id, strlen(id)))
        return broker__error(b, HP_EINVAL,
                             "token id: expected %d characters of a-z 0-9, got \"%.40s\"",
                             TOKEN_ID_LEN, id ? id : "");
    return b->ops->token_delete(b, id);
}
