/*
 * common/ -- the small helpers every Hopper module shares: allocation, error
 * codes, logging, clocks and durations, time-ordered ids, and a capped string
 * buffer. This header is the module's main door; common/config.h, the table-driven
 * option engine that the worker and the HTTP server share, is its second, included
 * only where options are read (so <getopt.h> stays out of everything else).
 */
#ifndef HP_COMMON_H
#define HP_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <getopt.h>

#include "common/version.h"

/* HP_TESTABLE: `static` in the product, visible to unit tests (curl's UNITTEST). */
#ifdef HP_UNIT_TESTING
#define HP_TESTABLE
#else
#define HP_TESTABLE static
#endif

/* ---- Allocation ----
 * Every allocation in Hopper goes through this family. On exhaustion it prints a
 * message and aborts (like Redis's zmalloc): there is no sane recovery, and sizes
 * that come from input are checked against configured limits before they get here.
 * hp_free(NULL) is a no-op. */
void *hp_malloc(size_t size);
void *hp_calloc(size_t n, size_t size);
void *hp_realloc(void *ptr, size_t size);
char *hp_strdup(const char *s);
char *hp_strndup(const char *s, size_t n);
void hp_free(void *ptr);
/* Returns a hp_malloc'd string from a printf format; the caller frees it with hp_free. */
char *hp_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *hp_vsprintf(const char *fmt, va_list ap);

/* ---- Errors ----
 * 0 is success; failures are negative HP_E* codes. Codes never change meaning:
 * they surface as CLI exit statuses (see cli/) and, later, in the HTTP API. */
#define HP_ERRNO_MAP(XX)                                                                           \
    XX(EINVAL, -1, "invalid argument")                                                             \
    XX(ENOTFOUND, -2, "not found")                                                                 \
    XX(ESTATE, -3, "not allowed in the job's current state")                                       \
    XX(ELEASE, -4, "lease lost: the job is no longer held by this worker")                         \
    XX(EFULL, -5, "queue full")                                                                    \
    XX(EUNAVAIL, -6, "broker unavailable")                                                         \
    XX(ETOOBIG, -7, "too large")                                                                   \
    XX(EPROTO, -8, "unexpected reply from the broker")                                             \
    XX(EUNSAFE, -9, "unsafe broker configuration")                                                 \
    XX(EIO, -10, "input/output error")

typedef enum {
#define XX(name, code, msg) HP_##name = code,
    HP_ERRNO_MAP(XX)
#undef XX
} hp_errno_t;

/* A static description of `err`, e.g. "queue full". */
const char *hp_strerror(int err);
/* A static name of `err`, e.g. "EFULL". */
const char *hp_err_name(int err);

/* ---- Logging ----
 * Lines go to stderr as "2026-01-07T00:00:00.123Z LEVEL message". The threshold
 * comes from HOPPER_LOG_LEVEL (debug, info, warn, error); default info. */
typedef enum { HP_LOG_DEBUG, HP_LOG_INFO, HP_LOG_WARN, HP_LOG_ERROR } hp_log_level_t;
void hp_log(hp_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hp_log_set_level(hp_log_level_t level);
/* JSON lines ({"time","level","msg"}) instead of text; HOPPER_LOG_FORMAT=json|text wins. */
void hp_log_set_json(bool json);
bool hp_log_is_json(void);
bool hp_log_enabled(hp_log_level_t level);
/* Writes preformatted lines (each ending in '\n') to the log in one go. */
void hp_log_write(const char *lines, size_t len);
#define hp_debug(...) hp_log(HP_LOG_DEBUG, __VA_ARGS__)
#define hp_info(...)  hp_log(HP_LOG_INFO, __VA_ARGS__)
#define hp_warn(...)  hp_log(HP_LOG_WARN, __VA_ARGS__)
#define hp_error(...) hp_log(HP_LOG_ERROR, __VA_ARGS__)

/* ---- Clocks and durations ---- */
int64_t hp_now_ms(void);  /* wall clock, Unix ms */
int64_t hp_mono_ms(void); /* monotonic, for measuring intervals */
int64_t hp_mono_us(void);
void hp_sleep_ms(int64_t ms);
/* Parses "250ms", "10s", "5m", "2h", "1d" or a bare number of seconds into ms.
 * Returns 0, or HP_EINVAL for anything else (negative, empty, overflow, junk). */
int hp_parse_duration_ms(const char *text, int64_t *out_ms);
/* Parses an RFC 3339 timestamp ("2026-01-07T00:00:00Z", "...+01:00", fractions). */
int hp_parse_rfc3339_ms(const char *text, int64_t *out_ms);
/* Writes "2026-01-07T00:00:00.123Z" (24 chars + NUL) into `out`. */
#define HP_RFC3339_MAX 48
void hp_format_rfc3339_ms(int64_t ms, char out[HP_RFC3339_MAX]);

/* ---- Time-ordered ids (ULID) ----
 * 26 characters of Crockford base32: 48 bits of Unix ms, then 80 random bits,
 * monotonic within one process (ids made in the same ms increase), thread-safe. */
#define HP_ULID_LEN 26
void hp_ulid_new(char out[HP_ULID_LEN + 1]);
/* The ms timestamp inside a well-formed ULID, or -1. */
int64_t hp_ulid_time_ms(const char *ulid);
bool hp_ulid_valid(const char *s, size_t len);
/* Fills `buf` with `len` bytes from the kernel's CSPRNG. */
void hp_random_bytes(void *buf, size_t len);
/* Writes 2*len hex digits plus NUL. */
void hp_random_hex(char *out, size_t len);

/* ---- JSON ---- */

#define HP_JSON_MAX_DEPTH 1000
/* 0 when text[0..len) is exactly one JSON value (surrounding whitespace allowed);
 * else HP_EINVAL and "what, at line L column C" in errbuf. Allocates nothing. */
int hp_json_check(const char *text, size_t len, char *errbuf, size_t errlen);

/* ---- Capped string buffer ----
 * A growable byte buffer with a hard cap, so a buffer fed from input can never
 * grow without bound (curl's dynbuf). The bytes are always NUL-terminated. */
typedef struct hp_strbuf_s {
    char *data;
    size_t len;
    size_t cap;   /* allocated */
    size_t limit; /* hard cap on len; 0 means SIZE_MAX/2 */
} hp_strbuf_t;

void hp_strbuf_init(hp_strbuf_t *sb, size_t limit);
/* Each returns 0, or HP_ETOOBIG when the cap would be passed (the buffer keeps
 * what it had). */
int hp_strbuf_append(hp_strbuf_t *sb, const void *data, size_t len);
int hp_strbuf_appends(hp_strbuf_t *sb, const char *s);
int hp_strbuf_printf(hp_strbuf_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Takes the bytes out; the caller frees them with hp_free. The buffer is reset. */
char *hp_strbuf_steal(hp_strbuf_t *sb, size_t *len);
/* Appends s (NUL-terminated, valid UTF-8) as a quoted, escaped JSON string. */
int hp_strbuf_append_json_string(hp_strbuf_t *sb, const char *s);
void hp_strbuf_reset(hp_strbuf_t *sb);
void hp_strbuf_cleanup(hp_strbuf_t *sb);

/* ---- Options (config.c) ----
 * common/config.h -- a table-driven option engine: one table of options, applied the
 * same way from a JSON file, <PREFIX>NAME environment variables and command-line
 * flags (nginx's ngx_command_t, Redis's static_configs[]). The worker and the HTTP
 * server each keep their own table and config struct; this engine owns only the
 * parsing, the error messages and the getopt table, never a config struct's memory
 * beyond the fields it sets.
 */
typedef enum {
    HP_OPT_STRING,   /* char * owned by the config struct (hp_strdup), replaced on each set */
    HP_OPT_INT,      /* int, within [min, max] (which must fit an int) */
    HP_OPT_INT64,    /* int64_t, within [min, max] */
    HP_OPT_DURATION, /* int64_t ms, from "500ms", "10s", "5m"..., within [min, max] ms */
    HP_OPT_BOOL,     /* bool, from true/false/1/0; a flag without a value means true */
    HP_OPT_CUSTOM,   /* the option's own `set` parses the text */
} hp_opt_type_t;

/* One option. Tables are static const arrays, so every field is fixed at build time. */
typedef struct hp_option_s {
    const char *name; /* flag --name; file key name or name_with_underscores; env <prefix>NAME */
    hp_opt_type_t type;
    /* Of the field in the config struct: char * (owned, hp_strdup), int, int64_t, int64_t ms,
     * bool; unused by HP_OPT_CUSTOM. */
    size_t offset;
    long long min, max; /* INT, INT64, DURATION bounds */
    const char *help;
    /* HP_OPT_CUSTOM: parses value into cfg; on error returns HP_EINVAL with *errmsg
     * (hp_malloc'd; errmsg may be NULL). NULL for every other type. */
    int (*set)(void *cfg, const char *value, char **errmsg);
} hp_option_t;

typedef struct hp_option_table_s {
    const hp_option_t *opts;
    size_t n;
    const char *env_prefix;         /* "HOPPER_" */
    const char *const *env_renames; /* NULL or pairs {"HOPPER_REDIS","HOPPER_REDIS_URL", NULL} */
} hp_option_table_t;

/* getopt_long's `val` of table entry i is HP_CONFIG_OPT_BASE + i, above any short
 * option character a caller's `extra` entries may use. */
#define HP_CONFIG_OPT_BASE 0x1000

/* Applies one option by name ("threads", "strict_order" or "strict-order") from text.
 * Returns 0, or HP_EINVAL with a message naming the option and the value in *errmsg
 * (when errmsg is not NULL; the caller frees it with hp_free). On failure the field
 * keeps its previous value. */
int hp_config_set(const hp_option_table_t *t, void *cfg, const char *name, const char *value,
                  char **errmsg);

/* Applies a file holding one JSON object, key by key, in the file's order.
 * JSON object file: strings, numbers, booleans, arrays of strings (joined with ","), and objects
 * (passed as compact JSON text) become the text hp_config_set takes. Keys listed in skip_keys
 * (NULL-terminated, may be NULL) are left for the caller.
 * Numbers are integers: a fraction, null, or an array holding a non-string is "of the wrong
 * type". Stops at the first failure: HP_EINVAL with "<path>: ..." in *errmsg (hp_free it);
 * options applied before it stay applied. */
int hp_config_load_file(const hp_option_table_t *t, void *cfg, const char *path,
                        const char *const *skip_keys, char **errmsg);

/* Applies every option whose variable is set and not empty: env_prefix plus the name in
 * capitals with '-' as '_' (HOPPER_STRICT_ORDER), or its rename. Stops at the first
 * failure: HP_EINVAL with "<VARIABLE>: ..." in *errmsg (hp_free it). */
int hp_config_load_env(const hp_option_table_t *t, void *cfg, char **errmsg);

/* Prints "  --name V             help" for every option to stdout, for --help. */
void hp_config_print_help(const hp_option_table_t *t);

/* The option called `name` ('_' standing for '-'), or NULL. */
const hp_option_t *hp_config_find(const hp_option_table_t *t, const char *name);

/* getopt_long options: one per table entry (required_argument; for BOOL optional, so
 * --flag or --flag=false; val = 0x1000 + index) followed by `extra` (terminated by a
 * zero entry); hp_free the result. */
struct option *hp_config_getopt(const hp_option_table_t *t, const struct option *extra);

/* For HP_OPT_CUSTOM setters, so their messages read like the engine's: sets *errmsg (if
 * errmsg is not NULL) to "<name>: <why>, got \"<value>\"" and returns HP_EINVAL. */
int hp_config_bad_value(char **errmsg, const char *name, const char *why, const char *value);

/* ---- Blob store (blob.c) ----
 * A content-addressed blob store in one directory, shared by the API (uploads)
 * and the workers (plugins read and write blobs through the host API).
 *
 * A blob is named by the SHA-256 of its bytes, in 64 lowercase hex digits, and
 * lives at <dir>/<first two hex digits>/<id>, with a metadata sidecar <id>.meta
 * beside it (content type, size, creation time). Uploads stream into a private
 * temp file under <dir>/tmp while the hash is computed, and become visible only by
 * a rename once they are complete and on disk, so a reader never sees a partial
 * blob and a temp file left by a crash is never mistaken for one. Writing the
 * same bytes twice stores them once; the first upload's metadata is kept.
 *
 * The store owns the directory layout; it does not decide where the directory is
 * (the caller does), nor who may read which blob, nor when blobs are deleted.
 * A blobstore_t is immutable after blobstore_open, so any number of threads may
 * use one store at once; each blob_writer_t belongs to one thread at a time.
 */

#define BLOB_ID_LEN           64  /* SHA-256 in lowercase hex */
#define BLOB_CONTENT_TYPE_MAX 127 /* bytes, without the NUL */
#define BLOB_DEFAULT_TYPE     "application/octet-stream"

typedef struct blob_info_s {
    char id[BLOB_ID_LEN + 1];
    int64_t size;                                 /* bytes */
    char content_type[BLOB_CONTENT_TYPE_MAX + 1]; /* as given when first stored */
    int64_t created_ms;                           /* Unix ms of the first store */
} blob_info_t;

typedef struct blobstore_s blobstore_t;
typedef struct blob_writer_s blob_writer_t;

/* Opens the store in `dir`, creating it (and its parents, and dir/tmp) with mode
 * 0700 when missing, and checks that a file can be created there. Returns the
 * store, which the caller closes with blobstore_close, or NULL with the reason in
 * `err` (if not NULL). */
blobstore_t *blobstore_open(const char *dir, char *err, size_t errlen);

/* Frees the store; blobstore_close(NULL) is a no-op. Writers must be done first. */
void blobstore_close(blobstore_t *bs);

/* True when `id` is exactly 64 lowercase hex digits. Every function that takes an
 * id checks this first, so an id can never name a path outside the store. */
bool blob_id_valid(const char *id);

/* True when `ct` is "type/subtype" with optional "; name=value" parameters (value
 * a token or a quoted string), printable ASCII only and at most 127 bytes. */
bool blob_content_type_valid(const char *ct);

/* Starts a blob: creates a temp file dir/tmp/<random>.tmp (O_EXCL, mode 0600).
 * `content_type` NULL means application/octet-stream. At most `max_bytes` may be
 * written (INT64_MAX for no limit). Returns 0 and the writer in *out, which the
 * caller ends with exactly one of blob_write_commit or blob_write_abort;
 * HP_EINVAL for a bad content type or a negative limit; HP_EIO when the temp file
 * cannot be created (logged with the reason). */
int blob_write_begin(blobstore_t *bs, const char *content_type, int64_t max_bytes,
                     blob_writer_t **out);

/* Appends len bytes. Returns 0; HP_ETOOBIG when they would pass max_bytes (nothing
 * is written); HP_EIO on a write error such as a full disk. After an error the
 * writer only accepts blob_write_abort (commit returns the same error). */
int blob_write(blob_writer_t *w, const void *data, size_t len);

/* Finishes the blob: fsyncs it, writes the metadata sidecar (temp + rename) unless
 * the blob is already stored, and renames the temp file into place (or drops it
 * when the same bytes are already stored). Fills *out (if not NULL) with what is
 * stored. Frees the writer whether it succeeds or not; on failure the temp file is
 * removed. Returns 0, the writer's earlier error, or HP_EIO. */
int blob_write_commit(blob_writer_t *w, blob_info_t *out);

/* Drops the blob being written: removes the temp file and frees the writer.
 * blob_write_abort(NULL) is a no-op. */
void blob_write_abort(blob_writer_t *w);

/* Fills *out for blob `id`. Returns 0, HP_EINVAL for a malformed id, HP_ENOTFOUND
 * when no such blob is stored, or HP_EIO. A missing or damaged sidecar is not an
 * error: the type is then application/octet-stream and the time the file's mtime. */
int blob_stat(blobstore_t *bs, const char *id, blob_info_t *out);

/* Opens blob `id` for reading: *fd is a read-only descriptor the caller closes.
 * Returns like blob_stat; on error *fd is -1. */
int blob_open_read(blobstore_t *bs, const char *id, int *fd, blob_info_t *out);

/* The path of blob `id` (whether stored or not), for worker-side plugins that read
 * by path; the caller frees it with hp_free. NULL when the id is malformed. */
char *blob_path(blobstore_t *bs, const char *id);

/* Removes temp files under dir/tmp older than `age_ms` (crash leftovers), and
 * returns how many it removed. Call it at start-up, with an age longer than any
 * upload takes, since a concurrent upload's temp file lives there too. */
int blobstore_sweep_tmp(blobstore_t *bs, int64_t age_ms);

#endif
