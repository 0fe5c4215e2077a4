/*
 * scheduler/ -- when recurring jobs fire. For now this is the cron part: parsing
 * cron expressions into bitsets, finding the next fire time in a time zone, and
 * saying in words when an expression fires. Schedule storage and the firing loop
 * come later and will live beside it. This header is the module's only door.
 *
 * Syntax (docs/scheduling.md has the full table): five fields, minute hour
 * day-of-month month day-of-week, or six with a leading seconds field; `*`, lists,
 * ranges, steps (`*\/5`, `1-59/7`, `3/20`), JAN-DEC and SUN-SAT in any case, 0 and 7
 * both Sunday, and the macros @yearly @annually @monthly @weekly @daily @midnight
 * @hourly.
 */
#ifndef HP_SCHEDULER_H
#define HP_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* Flags of a parsed expression. */
#define SCHED_CRON_DOM_STAR      0x01 /* the day-of-month field starts with `*` */
#define SCHED_CRON_DOW_STAR      0x02 /* the day-of-week field starts with `*` */
#define SCHED_CRON_HAS_SECONDS   0x04 /* six fields were given */
#define SCHED_CRON_EXPLAIN_MAX   2048 /* sched_cron_explain never needs more, NUL included */
#define SCHED_CRON_ZONE_NAME_MAX 64
#define SCHED_CRON_ZONEINFO_DIR  "/usr/share/zoneinfo"

/*
 * A parsed cron expression: one bitset per field, bit n set when value n matches.
 * It is a plain value (no pointers, nothing to free), so schedules can embed and
 * copy it. Days match by the classic rule: when both day fields are restricted
 * (neither starts with `*`), a day matches if EITHER matches; otherwise it must
 * match both (one of which then usually allows every day). Every expression that
 * sched_cron_parse accepts can fire: impossible dates such as February 30th are refused.
 */
typedef struct sched_cron_expr_s {
    uint64_t seconds; /* bits 0-59; just bit 0 for a five-field expression */
    uint64_t minutes; /* bits 0-59 */
    uint32_t hours;   /* bits 0-23 */
    uint32_t days;    /* bits 1-31, day of month */
    uint16_t months;  /* bits 1-12 */
    uint8_t weekdays; /* bits 0-6, Sunday is 0 (7 in the text is folded into 0) */
    uint8_t flags;    /* SCHED_CRON_DOM_STAR | SCHED_CRON_DOW_STAR | SCHED_CRON_HAS_SECONDS */
} sched_cron_expr_t;

/*
 * The time zone an expression's wall-clock fields are read in. A plain value the
 * caller owns (no cleanup). UTC is the default and the fast path: it never touches
 * the process's TZ. Any other zone is an IANA name whose file must exist under
 * SCHED_CRON_ZONEINFO_DIR; see cron.c for how it is read and what that costs.
 */
typedef struct sched_cron_zone_s {
    char name[SCHED_CRON_ZONE_NAME_MAX]; /* "UTC", "Europe/Berlin", ... */
    bool utc;                      /* no conversion needed */
} sched_cron_zone_t;

/* Parses `text` into *out. Returns 0, or HP_EINVAL with *errmsg (when errmsg is not
 * NULL) set to one line such as "cron: field 3 (day of month): 32 is out of range
 * 1-31"; the caller frees *errmsg with hp_free. *out is unspecified on failure. */
int sched_cron_parse(const char *text, sched_cron_expr_t *out, char **errmsg);

/* Sets *zone to the IANA zone `name`; NULL, "" and "UTC" mean UTC. Returns 0, or
 * HP_EINVAL with *errmsg (caller frees with hp_free) for a name that is malformed or
 * has no file in SCHED_CRON_ZONEINFO_DIR (glibc would silently treat it as UTC). */
int sched_cron_zone_init(sched_cron_zone_t *zone, const char *name, char **errmsg);

/*
 * The first fire time strictly after `after_unix_s`, in Unix seconds, into
 * *next_unix_s. `zone` NULL means UTC. Daylight saving time, in short (the long
 * form is in docs/scheduling.md):
 *  - an expression whose hour field allows every hour follows the real clock: it
 *    fires at every instant whose local time matches, so a repeated hour fires
 *    twice and a skipped hour not at all;
 *  - any other expression fires once per matching wall-clock time: a time the
 *    clocks skip fires at the first instant after the gap (02:30 becomes 03:00), and
 *    a time that repeats fires at its first occurrence only.
 * Returns 0; HP_EINVAL for an instant outside years 1-9999; HP_ENOTFOUND when there
 * is no fire time within 100 years or before year 10000. Thread-safe.
 */
int sched_cron_next(const sched_cron_expr_t *e, const sched_cron_zone_t *zone, int64_t after_unix_s,
              int64_t *next_unix_s);

/* Writes into buf (`len` bytes, NUL-terminated) when `e` fires, in English, e.g.
 * "at 00:00 every day" or "every 5 minutes". Returns 0, or HP_ETOOBIG when the text
 * was cut to fit (SCHED_CRON_EXPLAIN_MAX bytes always suffice). */
int sched_cron_explain(const sched_cron_expr_t *e, char *buf, size_t len);

#endif
