/*
 * scheduler/ -- when recurring jobs fire: cron expressions (cron.c: parsing into
 * bitsets, the next fire time in a time zone, the expression in words), schedules
 * as JSON for the API, the CLI and the config file (schedule.c), and the firing
 * loop that `hopper server` runs (sched.c). The broker stores schedules and fires
 * them atomically (broker.h, "Schedules"); this module decides when. This header is
 * the module's only door.
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

#include "broker/broker.h"
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
    bool utc;                            /* no conversion needed */
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

/* ---- Schedules as JSON (schedule.c) ----
 * The definition a client writes (PUT /v1/schedules/{name}, the config file):
 *   {"cron": "*\/5 * * * *", "tz": "Europe/Berlin", "job": {<as POST /v1/jobs>},
 *    "paused": false, "misfire": "skip"|"once", "overlap": "allow"|"skip",
 *    "jitter_ms": 0}
 * cron and job are required. */

/* Parses and checks a definition (the cron expression, the zone, the job template)
 * into *out (schedule_free), with next_fire_ms the first tick after now_ms. On
 * failure HP_EINVAL and a message naming the field in err. */
int sched_schedule_from_json(const char *name, const char *text, size_t len, int64_t now_ms,
                             schedule_t **out, char *err, size_t errlen);
/* A definition from a JSON object the caller already holds (a config file). */
int sched_schedule_from_object(const char *name, void *json_object, int64_t now_ms,
                               schedule_t **out, char *err, size_t errlen);
/* The schedule as the API shows it: the definition, "explain" (in words),
 * next_fire and the next five fires (RFC 3339 UTC), last fire, last job, history.
 * hp_free the result. */
char *sched_schedule_to_json(const schedule_t *s);
/* Whether two schedules have the same definition (not counting fire times). */
bool sched_same_definition(const schedule_t *a, const schedule_t *b);
/* The first tick of s strictly after after_ms (0 when it never fires again). */
int64_t sched_next_tick(const schedule_t *s, int64_t after_ms);

/* Applies the "schedules" of a config file: a JSON object name -> definition.
 * Each is created, or updated when its definition changed (an unchanged one keeps
 * its next fire, so a restart neither skips nor repeats a tick); none is ever
 * duplicated. Returns 0 or the first error, with a message. */
int sched_apply_config(broker_t *b, void *schedules_object, char *err, size_t errlen);

/* ---- The firing loop (sched.c) ----
 * A thread with its own broker_t that sleeps until the earliest next fire of any
 * schedule, fires what is due through broker_schedule_fire (the compare-and-set:
 * any number of servers fire each tick once), and reloads the schedules when the
 * broker's schedule version moves (looked at once a second at most) or when
 * sched_poke says one changed here. A tick found more than SCHED_MISFIRE_GRACE_MS
 * late (the server was down) follows the schedule's misfire policy. */
#define SCHED_MISFIRE_GRACE_MS 1000

typedef struct sched_s sched_t;
/* config_schedules: a JSON object of definitions (a config file's "schedules") to
 * apply (sched_apply_config) once the broker answers, or NULL. */
sched_t *sched_start(const broker_config_t *cfg, const char *config_schedules);
void sched_poke(sched_t *s);
void sched_stop(sched_t *s);

#endif
