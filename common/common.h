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

#endif
