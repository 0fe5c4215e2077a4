/*
 * Cron expressions: the parser (text to bitsets, with errors that name the field),
 * the next-fire search, time zones, and the plain-English explanation. This file
 * owns no state except the lock that serialises time-zone switches; it knows
 * nothing about schedules, storage or firing.
 *
 * The search works on civil (wall-clock) time held as seconds since 1970 "as if
 * UTC", and jumps field by field: year, month, day, hour, minute, second. It never
 * steps minute by minute, so even a once-in-28-years expression costs a few dozen
 * steps.
 *
 * Time zones come from the system's zoneinfo through glibc (localtime_r with TZ
 * set to the zone's file). We chose glibc over a second library because it is
 * already there and reads the same files the OS uses: ICU carries its own copy of
 * the tz database, and GLib's GTimeZone would add a large dependency for three
 * calls. The price is that TZ is process-global, so a call in a non-UTC zone takes
 * a mutex, sets TZ, calls tzset (which reads the zone file, tens of microseconds),
 * works, then puts TZ back. Nothing else in Hopper uses local time (it formats with
 * gmtime_r and parses with timegm), so no other code observes the switch. UTC never
 * takes the lock. The zone is only asked "what is the UTC offset at instant t";
 * turning a wall-clock time back into an instant is done here, which is what lets
 * us decide the DST rules ourselves instead of inheriting mktime's guesses.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "scheduler/scheduler.h"

/* Searches give up after this many years: long enough for the rarest expression
 * that can fire (February 29th on a given weekday, which can take 40 years across
 * 2100), short enough to bound the work. */
#define SEARCH_YEARS 100
#define MIN_UNIX     (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define MAX_UNIX     253402300799LL   /* 9999-12-31T23:59:59Z */
#define DAY          86400
/* No zone's UTC offset reaches this; used to bound where a wall time can fall. */
#define OFFSET_BOUND (26 * 3600)

/* ---- Fields ---- */

typedef struct field_s {
    const char *name;         /* for messages: "day of month" */
    int lo, hi;               /* the values `*` covers */
    int max;                  /* the largest value accepted (7 for day of week) */
    const char *const *names; /* 3-letter names for lo.., or NULL */
} field_t;

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const weekday_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

enum { F_SEC, F_MIN, F_HOUR, F_DOM, F_MON, F_DOW, F_COUNT };

static const field_t fields[F_COUNT] = {
    {"second", 0, 59, 59, NULL},       {"minute", 0, 59, 59, NULL},
    {"hour", 0, 23, 23, NULL},         {"day of month", 1, 31, 31, NULL},
    {"month", 1, 12, 12, month_names}, {"day of week", 0, 6, 7, weekday_names},
};

/* The macros, as the five-field expressions they stand for. */
static const struct {
    const char *name;
    const char *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* A parse in progress: where errors go and which field we are in. */
typedef struct parser_s {
    char **errmsg;
    int field;    /* F_* */
    int position; /* 1-based, as the user counts the fields */
} parser_t;

static int parse_fail(parser_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int parse_fail(parser_t *p, const char *fmt, ...)
{
    if (!p->errmsg)
        return HP_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    char *detail = hp_vsprintf(fmt, ap);
    va_end(ap);
    *p->errmsg = hp_sprintf("cron: field %d (%s): %s", p->position, fields[p->field].name, detail);
    hp_free(detail);
    return HP_EINVAL;
}

static int whole_fail(char **errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int whole_fail(char **errmsg, const char *fmt, ...)
{
    if (!errmsg)
        return HP_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    char *detail = hp_vsprintf(fmt, ap);
    va_end(ap);
    *errmsg = hp_sprintf("cron: %s", detail);
    hp_free(detail);
    return HP_EINVAL;
}

/* ---- Parsing ---- */

/* Reads one value (a number, or a name where the field has names) from s[0..n). */
static int parse_value(parser_t *p, const char *s, size_t n, int *out)
{
    const field_t *f = &fields[p->field];
    if (n == 0)
        return parse_fail(p, "a value is missing");
    if (isdigit((unsigned char)s[0])) {
        long v = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)s[i]))
                return parse_fail(p, "\"%.*s\" is not a number", (int)n, s);
            if (v < 100000)
                v = v * 10 + (s[i] - '0');
        }
        if (v < f->lo || v > f->max)
            return parse_fail(p, "%.*s is out of range %d-%d", (int)n, s, f->lo, f->max);
        *out = (int)v;
        return 0;
    }
    if (f->names && n == 3) {
        for (int i = 0; i <= f->hi - f->lo; i++) {
            if (strncasecmp(s, f->names[i], 3) == 0) {
                *out = f->lo + i;
                return 0;
            }
        }
    }
    if (f->names)
        return parse_fail(p, "\"%.*s\" is not a %s name or number", (int)n, s, f->name);
    return parse_fail(p, "\"%.*s\" is not a number", (int)n, s);
}

/* Parses one list item, s[0..n): `*`, V, V-V, each optionally /STEP; sets bits. */
static int parse_item(parser_t *p, const char *s, size_t n, uint64_t *bits)
{
    const field_t *f = &fields[p->field];
    if (n == 0)
        return parse_fail(p, "empty list item");
    const char *slash = memchr(s, '/', n);
    size_t base_len = slash ? (size_t)(slash - s) : n;
    int lo = f->lo, hi = f->hi, step = 1, err;
    if (base_len == 1 && s[0] == '*') {
        /* every value */
    } else {
        const char *dash = memchr(s, '-', base_len);
        size_t first_len = dash ? (size_t)(dash - s) : base_len;
        err = parse_value(p, s, first_len, &lo);
        if (err)
            return err;
        if (dash) {
            err = parse_value(p, dash + 1, base_len - first_len - 1, &hi);
            if (err)
                return err;
            if (hi < lo)
                return parse_fail(p, "%.*s is a reversed range (write the smaller value first)",
                                  (int)base_len, s);
        } else if (slash) {
            hi = f->max == 7 ? 7 : f->hi; /* `3/20` means 3-59/20 */
        } else {
            hi = lo;
        }
    }
    if (slash) {
        const char *st = slash + 1;
        size_t st_len = n - base_len - 1;
        long v = 0;
        if (st_len == 0)
            return parse_fail(p, "\"%.*s\" has no step after the /", (int)n, s);
        for (size_t i = 0; i < st_len; i++) {
            if (!isdigit((unsigned char)st[i]))
                return parse_fail(p, "step \"%.*s\" is not a number", (int)st_len, st);
            if (v < 100000)
                v = v * 10 + (st[i] - '0');
        }
        int span = f->hi - f->lo + 1;
        if (v == 0)
            return parse_fail(p, "step 0 in \"%.*s\" would never move", (int)n, s);
        if (v > span)
            return parse_fail(p, "step %ld is larger than the field's range %d-%d", v, f->lo,
                              f->hi);
        step = (int)v;
    }
    for (int v = lo; v <= hi; v += step)
        *bits |= 1ULL << (v == 7 && f->max == 7 ? 0 : v);
    return 0;
}

/* Parses one field, s[0..n), a comma-separated list of items. */
static int parse_field(parser_t *p, const char *s, size_t n, uint64_t *bits)
{
    *bits = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ',')
            continue;
        int err = parse_item(p, s + start, i - start, bits);
        if (err)
            return err;
        start = i + 1;
    }
    return 0;
}

static bool bit(uint64_t bits, int n)
{
    return (bits >> n) & 1;
}

/* Days in each month of a leap year: the most any year offers. */
static const int max_month_days[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

/* Whether some allowed month has some allowed day of month. Weekdays need no check:
 * over the 400-year Gregorian cycle every date, February 29th included, falls on
 * every weekday, and in the OR rule any weekday alone is enough. */
static bool can_fire(const sched_cron_expr_t *e)
{
    if (!(e->flags & (SCHED_CRON_DOM_STAR | SCHED_CRON_DOW_STAR)))
        return true;
    for (int m = 1; m <= 12; m++) {
        if (!bit(e->months, m))
            continue;
        for (int d = 1; d <= max_month_days[m]; d++)
            if (bit(e->days, d))
                return true;
    }
    return false;
}

/* Splits text into at most 7 whitespace-separated fields; returns how many. */
static int split_fields(const char *text, const char *starts[7], size_t lens[7])
{
    int count = 0;
    const char *s = text;
    while (*s) {
        while (isspace((unsigned char)*s))
            s++;
        if (!*s)
            break;
        const char *start = s;
        while (*s && !isspace((unsigned char)*s))
            s++;
        if (count < 7) {
            starts[count] = start;
            lens[count] = (size_t)(s - start);
        }
        count++;
    }
    return count;
}

static int parse_macro(const char *text, sched_cron_expr_t *out, char **errmsg)
{
    const char *s = text;
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strcspn(s, " \t\r\n\v\f");
    for (const char *rest = s + n; *rest; rest++)
        if (!isspace((unsigned char)*rest))
            return whole_fail(errmsg, "a macro such as %.*s takes no fields after it", (int)n, s);
    for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
        if (strlen(macros[i].name) == n && strncasecmp(s, macros[i].name, n) == 0)
            return sched_cron_parse(macros[i].expr, out, errmsg);
    return whole_fail(errmsg,
                      "unknown macro \"%.*s\" (known: @yearly @annually @monthly @weekly "
                      "@daily @midnight @hourly)",
                      (int)n, s);
}

int sched_cron_parse(const char *text, sched_cron_expr_t *out, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!text)
        return whole_fail(errmsg, "empty expression");
    memset(out, 0, sizeof(*out));
    const char *first = text;
    while (isspace((unsigned char)*first))
        first++;
    if (*first == '@')
        return parse_macro(text, out, errmsg);
    const char *starts[7];
    size_t lens[7];
    int count = split_fields(text, starts, lens);
    if (count == 0)
        return whole_fail(errmsg, "empty expression");
    if (count != 5 && count != 6)
        return whole_fail(errmsg,
                          "expected 5 fields (minute hour day-of-month month day-of-week) "
                          "or 6 with seconds first, got %d",
                          count);
    int skip = count == 5 ? 1 : 0; /* a five-field expression has no seconds */
    uint64_t bits[F_COUNT] = {1};  /* seconds default to :00 */
    for (int i = 0; i < count; i++) {
        parser_t p = {errmsg, i + skip, i + 1};
        int err = parse_field(&p, starts[i], lens[i], &bits[i + skip]);
        if (err)
            return err;
    }
    out->seconds = bits[F_SEC];
    out->minutes = bits[F_MIN];
    out->hours = (uint32_t)bits[F_HOUR];
    out->days = (uint32_t)bits[F_DOM];
    out->months = (uint16_t)bits[F_MON];
    out->weekdays = (uint8_t)bits[F_DOW];
    out->flags = (uint8_t)((count == 6 ? SCHED_CRON_HAS_SECONDS : 0) |
                           (starts[F_DOM - skip][0] == '*' ? SCHED_CRON_DOM_STAR : 0) |
                           (starts[F_DOW - skip][0] == '*' ? SCHED_CRON_DOW_STAR : 0));
    if (!can_fire(out)) {
        int len = (int)(starts[count - 1] + lens[count - 1] - first); /* without trailing blanks */
        return whole_fail(errmsg, "\"%.*s\" can never fire: no allowed month has that day of month",
                          len, first);
    }
    return 0;
}

/* ---- Civil time ---- */

/* Civil date to days since 1970-01-01, proleptic Gregorian (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

typedef struct civil_s {
    int64_t year;
    int mon, day, hour, min, sec;
} civil_t;

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

static civil_t civil_from_seconds(int64_t s)
{
    int64_t z = floor_div(s, DAY);
    int64_t rem = s - z * DAY;
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    civil_t c;
    c.day = (int)(doy - (153 * mp + 2) / 5 + 1);
    c.mon = (int)(mp < 10 ? mp + 3 : mp - 9);
    c.year = yoe + era * 400 + (c.mon <= 2);
    c.hour = (int)(rem / 3600);
    c.min = (int)(rem / 60 % 60);
    c.sec = (int)(rem % 60);
    return c;
}

static int64_t civil_to_seconds(const civil_t *c)
{
    return days_from_civil(c->year, c->mon, c->day) * DAY + c->hour * 3600 + c->min * 60 + c->sec;
}

static bool leap_year(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
    return m == 2 && !leap_year(y) ? 28 : max_month_days[m];
}

static bool day_matches(const sched_cron_expr_t *e, int64_t y, int m, int d)
{
    int64_t days = days_from_civil(y, m, d);
    int wday = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
    bool dom = bit(e->days, d), dow = bit(e->weekdays, wday);
    if (e->flags & (SCHED_CRON_DOM_STAR | SCHED_CRON_DOW_STAR))
        return dom && dow;
    return dom || dow;
}

/* The smallest set bit >= from, or -1. */
static int next_bit(uint64_t bits, int from)
{
    if (from > 63)
        return -1;
    uint64_t rest = bits & (~0ULL << from);
    return rest ? __builtin_ctzll(rest) : -1;
}

/* Moves *c to the start of the next unit, carrying upward. unit: F_MON..F_MIN. */
static void carry(civil_t *c, int unit)
{
    switch (unit) {
    case F_MIN:
        c->sec = 0;
        if (++c->min < 60)
            return;
        c->min = 0;
        /* fall through */
    case F_HOUR:
        c->min = c->sec = 0;
        if (++c->hour < 24)
            return;
        c->hour = 0;
        /* fall through */
    case F_DOM:
        c->hour = c->min = c->sec = 0;
        if (++c->day <= month_days(c->year, c->mon))
            return;
        c->day = 1;
        /* fall through */
    default: /* F_MON */
        c->day = 1;
        c->hour = c->min = c->sec = 0;
        if (++c->mon <= 12)
            return;
        c->mon = 1;
        c->year++;
    }
}

/* The first day >= c->day in c's month that matches, or -1. */
static int next_day(const sched_cron_expr_t *e, const civil_t *c)
{
    int last = month_days(c->year, c->mon);
    for (int d = c->day; d <= last; d++)
        if (day_matches(e, c->year, c->mon, d))
            return d;
    return -1;
}

/*
 * Moves *c forward to the smallest civil time >= *c that matches, one field at a
 * time from the year down: each field jumps to its next allowed value, and when a
 * field has none left the next larger unit is advanced and the smaller ones reset.
 * Returns 0, or HP_ENOTFOUND past SEARCH_YEARS or year 9999.
 */
static int next_civil(const sched_cron_expr_t *e, civil_t *c)
{
    int64_t year_limit = c->year + SEARCH_YEARS;
    for (;;) {
        if (c->year > year_limit || c->year > 9999)
            return HP_ENOTFOUND;
        int v = next_bit(e->months, c->mon);
        if (v < 0) {
            c->mon = 12;
            carry(c, F_MON);
            continue;
        }
        if (v != c->mon) {
            *c = (civil_t){c->year, v, 1, 0, 0, 0};
        }
        v = next_day(e, c);
        if (v < 0) {
            carry(c, F_MON);
            continue;
        }
        if (v != c->day) {
            c->day = v;
            c->hour = c->min = c->sec = 0;
        }
        v = next_bit(e->hours, c->hour);
        if (v < 0) {
            carry(c, F_DOM);
            continue;
        }
        if (v != c->hour) {
            c->hour = v;
            c->min = c->sec = 0;
        }
        v = next_bit(e->minutes, c->min);
        if (v < 0) {
            carry(c, F_HOUR);
            continue;
        }
        if (v != c->min) {
            c->min = v;
            c->sec = 0;
        }
        v = next_bit(e->seconds, c->sec);
        if (v < 0) {
            carry(c, F_MIN);
            continue;
        }
        c->sec = v;
        return 0;
    }
}

/* next_civil on seconds-as-if-UTC. */
static int next_wall(const sched_cron_expr_t *e, int64_t from, int64_t *out)
{
    if (from < MIN_UNIX)
        from = MIN_UNIX;
    civil_t c = civil_from_seconds(from);
    int err = next_civil(e, &c);
    if (err)
        return err;
    *out = civil_to_seconds(&c);
    return 0;
}

/* ---- Time zones ---- */

static pthread_mutex_t tz_lock = PTHREAD_MUTEX_INITIALIZER;

/* Names look like Area/Location[/More]: letters, digits, _ + -, no empty or dot
 * components, so a name can never climb out of the zoneinfo directory. */
static bool zone_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= SCHED_CRON_ZONE_NAME_MAX || name[0] == '/' || name[n - 1] == '/' ||
        strstr(name, "//") || strstr(name, ".."))
        return false;
    for (const char *s = name; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("/_+-", *s))
            return false;
    return true;
}

/* Whether path is a regular file that starts like a TZif file. */
static bool is_tzif(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char magic[4];
    ssize_t got = read(fd, magic, sizeof(magic));
    close(fd);
    return got == 4 && memcmp(magic, "TZif", 4) == 0;
}

int sched_cron_zone_init(sched_cron_zone_t *zone, const char *name, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    memset(zone, 0, sizeof(*zone));
    if (!name || !name[0] || strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0) {
        snprintf(zone->name, sizeof(zone->name), "UTC");
        zone->utc = true;
        return 0;
    }
    if (!zone_name_ok(name))
        return whole_fail(errmsg, "\"%s\" is not a time zone name like Europe/Berlin", name);
    char path[sizeof(SCHED_CRON_ZONEINFO_DIR) + SCHED_CRON_ZONE_NAME_MAX + 1];
    snprintf(path, sizeof(path), "%s/%s", SCHED_CRON_ZONEINFO_DIR, name);
    if (!is_tzif(path))
        return whole_fail(errmsg, "unknown time zone \"%s\" (no such zone in %s)", name,
                          SCHED_CRON_ZONEINFO_DIR);
    snprintf(zone->name, sizeof(zone->name), "%s", name);
    return 0;
}

/* Holds the lock with TZ set to a zone; restores the old TZ on leave. */
typedef struct tz_switch_s {
    char *saved; /* the previous TZ, hp_strdup'd, or NULL when it was unset */
} tz_switch_t;

static void tz_enter(tz_switch_t *sw, const sched_cron_zone_t *zone)
{
    pthread_mutex_lock(&tz_lock);
    const char *old = getenv("TZ");
    sw->saved = old ? hp_strdup(old) : NULL;
    /* ":" plus an absolute path makes glibc load exactly the file we checked. */
    char value[sizeof(SCHED_CRON_ZONEINFO_DIR) + SCHED_CRON_ZONE_NAME_MAX + 2];
    snprintf(value, sizeof(value), ":%s/%s", SCHED_CRON_ZONEINFO_DIR, zone->name);
    setenv("TZ", value, 1);
    tzset();
}

static void tz_leave(tz_switch_t *sw)
{
    if (sw->saved)
        setenv("TZ", sw->saved, 1);
    else
        unsetenv("TZ");
    tzset();
    hp_free(sw->saved);
    pthread_mutex_unlock(&tz_lock);
}

/* The zone's UTC offset at instant t, in seconds (east positive). TZ must be set. */
static int64_t offset_at(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm))
        return 0;
    return tm.tm_gmtoff;
}

/* The first instant in (lo, hi] whose offset differs from lo's; the caller knows
 * one exists. Bisection: about 17 steps for a day. */
static int64_t find_transition(int64_t lo, int64_t hi)
{
    int64_t off = offset_at(lo);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (offset_at(mid) == off)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/*
 * The instant a fixed-time expression fires for wall time `wall`: its first
 * occurrence, or, for a wall time the clocks skip, the first instant after the gap.
 * Assumes at most one offset change within a day either side, true of every zone
 * in use: the offsets a day before and after are the only candidates.
 */
static int64_t first_instant(int64_t wall)
{
    int64_t before = offset_at(wall - DAY), after = offset_at(wall + DAY);
    int64_t t1 = wall - before, t2 = wall - after;
    bool ok1 = offset_at(t1) == before, ok2 = offset_at(t2) == after;
    if (ok1 && ok2)
        return t1 < t2 ? t1 : t2;
    if (ok1)
        return t1;
    if (ok2 || t2 >= t1)
        return t2;
    return find_transition(t2, t1); /* a gap: t2 is before it, t1 after */
}

/* Fixed-time expressions in a zone: walk matching wall times in order. The map from
 * wall time to fire instant is non-decreasing, so the first one past `after` wins;
 * each miss jumps to the wall time of after+1 as seen at the missed instant. */
static int next_fixed(const sched_cron_expr_t *e, int64_t after, int64_t *out)
{
    int64_t from = after + offset_at(after) + 1;
    for (int i = 0; i < 64; i++) {
        int64_t wall;
        int err = next_wall(e, from, &wall);
        if (err)
            return err;
        int64_t t = first_instant(wall);
        if (t > after) {
            *out = t;
            return 0;
        }
        int64_t jump = after + 1 + offset_at(t);
        from = jump > wall + 1 ? jump : wall + 1;
    }
    return HP_ENOTFOUND;
}

/* The first instant in [s, x) whose wall time, read with offset `off`, matches. */
static int segment_next(const sched_cron_expr_t *e, int64_t s, int64_t x, int64_t off, int64_t *out)
{
    int64_t wall;
    int err = next_wall(e, s + off, &wall);
    if (err)
        return err;
    if (wall - off >= x)
        return HP_ENOTFOUND;
    *out = wall - off;
    return 0;
}

/*
 * Expressions that allow every hour follow the real clock: the first instant after
 * `after` whose wall time matches. Walk the UTC timeline a day at a time, splitting
 * a day at its offset change (found by bisection), and jump over stretches where
 * no wall time can match. Assumes at most one offset change per day.
 */
static int next_interval(const sched_cron_expr_t *e, int64_t after, int64_t *out)
{
    int64_t a = after + 1, limit = after + (int64_t)SEARCH_YEARS * 366 * DAY;
    while (a <= limit && a <= MAX_UNIX) {
        int64_t wall;
        int err = next_wall(e, a - OFFSET_BOUND, &wall);
        if (err)
            return err;
        if (wall - OFFSET_BOUND > a)
            a = wall - OFFSET_BOUND; /* nothing before can have a matching wall time */
        int64_t end = a + DAY, off = offset_at(a), split = end;
        if (offset_at(end) != off)
            split = find_transition(a, end);
        if (segment_next(e, a, split, off, out) == 0)
            return 0;
        if (split < end && segment_next(e, split, end, offset_at(split), out) == 0)
            return 0;
        a = end;
    }
    return HP_ENOTFOUND;
}

/* ---- Next fire ---- */

int sched_cron_next(const sched_cron_expr_t *e, const sched_cron_zone_t *zone, int64_t after_unix_s,
                    int64_t *next_unix_s)
{
    if (after_unix_s < MIN_UNIX || after_unix_s > MAX_UNIX)
        return HP_EINVAL;
    int64_t next;
    int err;
    if (!zone || zone->utc) {
        err = next_wall(e, after_unix_s + 1, &next);
    } else {
        tz_switch_t sw;
        tz_enter(&sw, zone);
        if (e->hours == 0xFFFFFF)
            err = next_interval(e, after_unix_s, &next);
        else
            err = next_fixed(e, after_unix_s, &next);
        tz_leave(&sw);
    }
    if (err)
        return err;
    if (next > MAX_UNIX)
        return HP_ENOTFOUND;
    *next_unix_s = next;
    return 0;
}

/* ---- Explanation ----
 * Built from the bitsets alone, so the words describe exactly what the search
 * matches, whatever the expression's spelling was. */

typedef struct out_s {
    char *buf;
    size_t len, used;
    bool cut; /* something did not fit */
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out_t *o, const char *fmt, ...)
{
    if (o->used + 1 >= o->len) {
        o->cut = true;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->used, o->len - o->used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->len - o->used) {
        o->cut = true;
        o->used = o->len - 1;
        return;
    }
    o->used += (size_t)n;
}

static const char *const weekday_words[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                            "Thursday", "Friday", "Saturday"};
static const char *const month_words[] = {"",        "January",  "February", "March",  "April",
                                          "May",     "June",     "July",     "August", "September",
                                          "October", "November", "December"};

static int count_bits(uint64_t bits)
{
    return __builtin_popcountll(bits);
}

static uint64_t full_set(int lo, int hi)
{
    uint64_t all = hi >= 63 ? ~0ULL : (1ULL << (hi + 1)) - 1;
    return all & ~((1ULL << lo) - 1);
}

/* Writes a set as "1, 5 and 9-17", or with names "Monday through Friday". Runs of
 * three or more consecutive values become one item. */
static void put_set(out_t *o, uint64_t bits, int lo, int hi, const char *const *words)
{
    int first[64], last[64], n = 0;
    for (int v = lo; v <= hi; v++) {
        if (!bit(bits, v))
            continue;
        int end = v;
        while (end < hi && bit(bits, end + 1))
            end++;
        if (end - v >= 2) {
            first[n] = v;
            last[n++] = end;
            v = end;
        } else {
            first[n] = last[n] = v; /* a pair stays two items: "5 and 6" */
            n++;
        }
    }
    for (int i = 0; i < n; i++) {
        put(o, "%s", i == 0 ? "" : i == n - 1 ? " and " : ", ");
        if (words)
            put(o, first[i] == last[i] ? "%s" : "%s through %s", words[first[i]], words[last[i]]);
        else
            put(o, first[i] == last[i] ? "%d" : "%d-%d", first[i], last[i]);
    }
}

/* A time field's shape: every value, every k-th value from the start, or a list. */
typedef enum { SHAPE_FULL, SHAPE_STEP, SHAPE_LIST } shape_t;

static shape_t shape_of(uint64_t bits, int lo, int hi, int *step)
{
    if (bits == full_set(lo, hi))
        return SHAPE_FULL;
    int n = count_bits(bits), span = hi - lo + 1;
    for (int k = 2; k <= span / 2; k++) {
        if (span % k || n != span / k)
            continue;
        uint64_t want = 0;
        for (int v = lo; v <= hi; v += k)
            want |= 1ULL << v;
        if (want == bits) {
            *step = k;
            return SHAPE_STEP;
        }
    }
    return SHAPE_LIST;
}

/* "every minute", "every 5 minutes", "minute 30", "minutes 0 and 30". */
static void put_unit(out_t *o, uint64_t bits, int lo, int hi, const char *unit, bool at)
{
    int step = 0;
    switch (shape_of(bits, lo, hi, &step)) {
    case SHAPE_FULL:
        put(o, "every %s", unit);
        return;
    case SHAPE_STEP:
        put(o, "every %d %ss", step, unit);
        return;
    default:
        put(o, "%s%s%s ", at ? "at " : "", unit, count_bits(bits) > 1 ? "s" : "");
        put_set(o, bits, lo, hi, NULL);
    }
}

/* "at 09:00 and 17:30" when there are few enough times to list; false otherwise. */
static bool put_clock_times(out_t *o, const sched_cron_expr_t *e)
{
    int ns = count_bits(e->seconds), nm = count_bits(e->minutes), nh = count_bits(e->hours);
    if (ns != 1 || nm * nh > 6)
        return false;
    int sec = __builtin_ctzll(e->seconds), n = 0, total = nm * nh;
    put(o, "at ");
    for (int h = 0; h < 24; h++) {
        for (int m = 0; m < 60 && bit(e->hours, h); m++) {
            if (!bit(e->minutes, m))
                continue;
            put(o, "%s%02d:%02d", n == 0 ? "" : n == total - 1 ? " and " : ", ", h, m);
            if (sec)
                put(o, ":%02d", sec);
            n++;
        }
    }
    return true;
}

/* The time of day: "every 5 minutes", "at 00:00", "at minute 30 past hours 9-17". */
static void put_time(out_t *o, const sched_cron_expr_t *e)
{
    int step;
    if (put_clock_times(o, e))
        return;
    struct {
        uint64_t bits;
        int hi;
        const char *unit, *joiner; /* joiner: how a list of this unit links upward */
    } units[3] = {{e->seconds, 59, "second", " of "},
                  {e->minutes, 59, "minute", " past "},
                  {e->hours, 23, "hour", ""}};
    int lead = e->seconds == 1 ? 1 : 0; /* :00 seconds go without saying */
    put_unit(o, units[lead].bits, 0, units[lead].hi, units[lead].unit, true);
    bool listed = shape_of(units[lead].bits, 0, units[lead].hi, &step) == SHAPE_LIST;
    for (int u = lead + 1; u < 3; u++) {
        shape_t sh = shape_of(units[u].bits, 0, units[u].hi, &step);
        bool rest_full = true;
        for (int v = u; v < 3; v++)
            rest_full = rest_full && units[v].bits == full_set(0, units[v].hi);
        if (rest_full && !listed)
            return;
        put(o, "%s", listed ? units[u - 1].joiner : " during ");
        put_unit(o, units[u].bits, 0, units[u].hi, units[u].unit, false);
        if (rest_full)
            return;
        listed = sh == SHAPE_LIST;
    }
}

/* The days: "on Monday through Friday", "on day 1 of the month", "on January 1".
 * Writes nothing and returns false for every day. Sets *named_month when the
 * month was part of the words. */
static bool put_days(out_t *o, const sched_cron_expr_t *e, bool *named_month)
{
    bool dom_full = e->days == full_set(1, 31), dow_full = e->weekdays == 0x7F;
    bool and_rule = e->flags & (SCHED_CRON_DOM_STAR | SCHED_CRON_DOW_STAR);
    *named_month = false;
    if ((and_rule && dom_full && dow_full) || (!and_rule && (dom_full || dow_full)))
        return false;
    if (and_rule && dow_full && count_bits(e->months) == 1 && count_bits(e->days) == 1) {
        put(o, " on %s %d", month_words[__builtin_ctz(e->months)], __builtin_ctz(e->days));
        *named_month = true;
        return true;
    }
    put(o, " on ");
    if (!dom_full) {
        put(o, "day%s ", count_bits(e->days) > 1 ? "s" : "");
        put_set(o, e->days, 1, 31, NULL);
        put(o, " of the month");
    }
    if (!dow_full) {
        put(o, "%s", dom_full ? "" : and_rule ? " if it falls on " : " and on ");
        put_set(o, e->weekdays, 0, 6, weekday_words);
    }
    return true;
}

int sched_cron_explain(const sched_cron_expr_t *e, char *buf, size_t len)
{
    if (!buf || len == 0)
        return HP_ETOOBIG;
    out_t o = {buf, len, 0, false};
    buf[0] = '\0';
    put_time(&o, e);
    bool named_month;
    bool days = put_days(&o, e, &named_month);
    bool all_months = e->months == full_set(1, 12);
    /* "every 5 minutes" needs no "every day"; "at 00:00" does. */
    if (!days && e->hours != 0xFFFFFF)
        put(&o, " every day");
    if (!all_months && !named_month) {
        put(&o, " in ");
        put_set(&o, e->months, 1, 12, month_words);
    }
    return o.cut ? HP_ETOOBIG : 0;
}
