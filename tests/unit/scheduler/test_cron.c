/*
 * Unit tests for scheduler/cron.c: a table of expressions with their next five fire
 * times (UTC and four zones, DST days included), rejected expressions and their
 * messages, explanations, zones, and a randomized differential test against a
 * brute-force reference that walks the timeline minute by minute (or second by
 * second) and asks glibc for the wall-clock time.
 *
 * The table's expected times were produced by that reference, not by cron.c
 * (CRON_TEST_GENERATE=1 prints them again), and the DST rows were checked by hand
 * against the zones' transition times; comments on those rows say what they show.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "scheduler/scheduler.h"

/* ---- Helpers ---- */

static int64_t unix_of(const char *rfc3339)
{
    int64_t ms;
    if (hp_parse_rfc3339_ms(rfc3339, &ms))
        fail_msg("bad time in the test: %s", rfc3339);
    return ms / 1000;
}

static void format_time(int64_t t, char out[80])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    snprintf(out, 80, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static sched_cron_expr_t parse_ok(const char *text)
{
    sched_cron_expr_t e;
    char *msg = NULL;
    if (sched_cron_parse(text, &e, &msg))
        fail_msg("sched_cron_parse(\"%s\") failed: %s", text, msg);
    return e;
}

static sched_cron_zone_t zone_ok(const char *name)
{
    sched_cron_zone_t z;
    char *msg = NULL;
    if (sched_cron_zone_init(&z, name, &msg))
        fail_msg("sched_cron_zone_init(\"%s\") failed: %s", name, msg);
    return z;
}

/* ---- The reference ----
 * Deliberately naive: it walks real instants one step at a time, reads each one's
 * wall-clock time with localtime_r, and applies the documented DST rules literally.
 * It shares only the parsed bitsets with cron.c. */

static void set_tz(const char *zone)
{
    char value[128];
    snprintf(value, sizeof(value), ":%s/%s", SCHED_CRON_ZONEINFO_DIR, zone ? zone : "UTC");
    setenv("TZ", value, 1);
    tzset();
}

static bool ref_day(const sched_cron_expr_t *e, const struct tm *tm)
{
    if (!((e->months >> (tm->tm_mon + 1)) & 1))
        return false;
    bool dom = (e->days >> tm->tm_mday) & 1, dow = (e->weekdays >> tm->tm_wday) & 1;
    if (e->flags & (SCHED_CRON_DOM_STAR | SCHED_CRON_DOW_STAR))
        return dom && dow;
    return dom || dow;
}

static bool ref_match(const sched_cron_expr_t *e, const struct tm *tm)
{
    return ref_day(e, tm) && ((e->hours >> tm->tm_hour) & 1) && ((e->minutes >> tm->tm_min) & 1) &&
           ((e->seconds >> tm->tm_sec) & 1);
}

/* The wall time of instant t in the zone set_tz chose (zone NULL: UTC). */
static int64_t wall_of(const char *zone, int64_t t, struct tm *tm)
{
    time_t tt = (time_t)t;
    if (zone)
        localtime_r(&tt, tm);
    else
        gmtime_r(&tt, tm);
    return t + tm->tm_gmtoff;
}

/* Whether some civil time in (from, to), stepping by `step`, matches. */
static bool ref_gap_matches(const sched_cron_expr_t *e, int64_t from, int64_t to, int64_t step)
{
    for (int64_t c = from + step; c < to; c += step) {
        time_t tt = (time_t)c;
        struct tm tm;
        gmtime_r(&tt, &tm); /* civil time held as-if-UTC */
        if (ref_match(e, &tm))
            return true;
    }
    return false;
}

/* Whether an earlier instant had the same wall time as t (a repeated hour). */
static bool ref_repeated(const char *zone, int64_t t, int64_t wall)
{
    struct tm tm;
    int64_t before = wall_of(zone, t - 86400, &tm) - (t - 86400);
    wall_of(zone, t, &tm);
    if (before <= tm.tm_gmtoff)
        return false;
    int64_t earlier = t - (before - tm.tm_gmtoff);
    return wall_of(zone, earlier, &tm) == wall;
}

/* The first fire after `after` by the documented rules, or -1 within `years`. */
static int64_t ref_next(const sched_cron_expr_t *e, const char *zone, int64_t after, int years)
{
    set_tz(zone);
    bool seconds = e->seconds != 1, interval = e->hours == 0xFFFFFF;
    int64_t step = seconds ? 1 : 60, t = after + 1;
    if (!seconds)
        t = (t + 59) / 60 * 60; /* every zone used here has whole-minute offsets */
    for (int64_t end = after + (int64_t)years * 366 * 86400; t <= end; t += step) {
        struct tm tm, prev_tm;
        int64_t wall = wall_of(zone, t, &tm);
        if (!ref_day(e, &tm)) {
            /* Skip to the next local midnight, in two hops in a zone: first to 3
             * hours before it, since the zones used here change their clocks
             * between 00:00 and 03:00 and the wall-clock distance could be off. */
            int64_t to_midnight = 86400 - (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec);
            int64_t skip = to_midnight - (zone ? 3 * 3600 : 0);
            if (skip <= step)
                skip = to_midnight;
            t += skip / step * step - step;
            continue;
        }
        /* In UTC there are no gaps, so whole hours and minutes can be skipped too. */
        if (!zone && !((e->hours >> tm.tm_hour) & 1)) {
            t += 3600 - (tm.tm_min * 60 + tm.tm_sec) - step;
            continue;
        }
        if (!zone && !((e->minutes >> tm.tm_min) & 1)) {
            t += 60 - tm.tm_sec - step;
            continue;
        }
        bool match = ref_match(e, &tm);
        if (!zone && match)
            return t; /* no DST in UTC: every matching instant fires once */
        if (!zone)
            continue;
        int64_t prev_wall = wall_of(zone, t - step, &prev_tm);
        if (interval) {
            if (match)
                return t;
            continue;
        }
        if (match && !ref_repeated(zone, t, wall))
            return t;
        if (wall - prev_wall > step && ref_gap_matches(e, prev_wall, wall, step))
            return t; /* a skipped wall time fires at the first instant after the gap */
    }
    return -1;
}

/* ---- The table ---- */

typedef struct next_case_s {
    const char *expr, *zone, *from;
    const char *next[5];
} next_case_t;

static const next_case_t next_cases[] = {
#include "next_cases.inc"
};

static void next_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(next_cases) / sizeof(next_cases[0]); i++) {
        const next_case_t *c = &next_cases[i];
        sched_cron_expr_t e = parse_ok(c->expr);
        sched_cron_zone_t z = zone_ok(c->zone);
        int64_t t = unix_of(c->from);
        for (int k = 0; k < 5; k++) {
            char got[80];
            assert_int_equal(sched_cron_next(&e, &z, t, &t), 0);
            format_time(t, got);
            if (strcmp(got, c->next[k]) != 0)
                fail_msg("\"%s\" in %s from %s: fire %d is %s, expected %s", c->expr, c->zone,
                         c->from, k + 1, got, c->next[k]);
        }
    }
    print_message("checked %zu expressions x 5 fire times\n",
                  sizeof(next_cases) / sizeof(next_cases[0]));
}

/* Prints the table rows from the reference, for regenerating next_cases.inc from
 * lines "EXPR|ZONE|FROM" on stdin. */
static int generate(void)
{
    char line[256];
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\n")] = '\0';
        char *zone = strchr(line, '|'), *from = zone ? strchr(zone + 1, '|') : NULL;
        if (!from)
            continue;
        *zone++ = '\0';
        *from++ = '\0';
        sched_cron_expr_t e;
        char *msg = NULL;
        if (sched_cron_parse(line, &e, &msg)) {
            fprintf(stderr, "%s: %s\n", line, msg);
            hp_free(msg);
            continue;
        }
        printf("    {\"%s\", \"%s\", \"%s\", {", line, zone, from);
        int64_t t;
        hp_parse_rfc3339_ms(from, &t);
        t /= 1000;
        for (int k = 0; k < 5; k++) {
            char out[80];
            t = ref_next(&e, strcmp(zone, "UTC") == 0 ? NULL : zone, t, 100);
            format_time(t, out);
            printf("%s\"%s\"", k ? ", " : "", out);
        }
        printf("}},\n");
    }
    return 0;
}

/* ---- Rejected expressions ---- */

typedef struct bad_case_s {
    const char *expr;
    const char *words[3]; /* each must appear in the message */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"", {"empty"}},
    {"   ", {"empty"}},
    {"* * * *", {"expected 5 fields", "got 4"}},
    {"* * * * * * *", {"got 7"}},
    {"*", {"got 1"}},
    {"60 * * * *", {"field 1 (minute)", "60 is out of range 0-59"}},
    {"* 24 * * *", {"field 2 (hour)", "24 is out of range 0-23"}},
    {"0 0 32 * *", {"field 3 (day of month)", "32 is out of range 1-31"}},
    {"0 0 0 * *", {"field 3 (day of month)", "0 is out of range 1-31"}},
    {"0 0 * 13 *", {"field 4 (month)", "13 is out of range 1-12"}},
    {"0 0 * 0 *", {"field 4 (month)", "0 is out of range"}},
    {"0 0 * * 8", {"field 5 (day of week)", "8 is out of range 0-7"}},
    {"60 * * * * *", {"field 1 (second)", "60 is out of range 0-59"}},
    {"0 60 * * * *", {"field 2 (minute)", "60"}},
    {"0 0 0 32 * *", {"field 4 (day of month)", "32"}},
    {"0 0 0 * * 9", {"field 6 (day of week)", "9"}},
    {"5-1 * * * *", {"field 1 (minute)", "5-1", "reversed"}},
    {"* 20-4 * * *", {"field 2 (hour)", "20-4", "reversed"}},
    {"0 0 * * FRI-MON", {"field 5 (day of week)", "FRI-MON", "reversed"}},
    {"0 0 * DEC-JAN *", {"field 4 (month)", "reversed"}},
    {"*/0 * * * *", {"field 1 (minute)", "step 0"}},
    {"1-5/0 * * * *", {"field 1 (minute)", "step 0"}},
    {"*/61 * * * *", {"field 1 (minute)", "step 61"}},
    {"*/ * * * *", {"field 1 (minute)", "no step"}},
    {"*/x * * * *", {"field 1 (minute)", "\"x\" is not a number"}},
    {"0 0 * FOO *", {"field 4 (month)", "\"FOO\"", "month name"}},
    {"0 0 * * FUN", {"field 5 (day of week)", "\"FUN\""}},
    {"0 0 * * MONDAY", {"field 5 (day of week)", "\"MONDAY\""}},
    {"0 0 * JANUARY *", {"field 4 (month)", "\"JANUARY\""}},
    {"MON * * * *", {"field 1 (minute)", "\"MON\" is not a number"}},
    {"0 0 JAN * *", {"field 3 (day of month)", "\"JAN\""}},
    {"1,,2 * * * *", {"field 1 (minute)", "empty list item"}},
    {"1, * * * *", {"field 1 (minute)", "empty list item"}},
    {",1 * * * *", {"field 1 (minute)", "empty list item"}},
    {"0 0 * * 1,", {"field 5 (day of week)", "empty list item"}},
    {"1x * * * *", {"field 1 (minute)", "\"1x\""}},
    {"abc * * * *", {"field 1 (minute)", "\"abc\""}},
    {"0 0 ? * *", {"field 3 (day of month)", "\"?\""}},
    {"0 0 L * *", {"field 3 (day of month)", "\"L\""}},
    {"0 0 * * 1#2", {"field 5 (day of week)", "\"1#2\""}},
    {"- * * * *", {"field 1 (minute)", "missing"}},
    {"1- * * * *", {"field 1 (minute)", "missing"}},
    {"-1 * * * *", {"field 1 (minute)", "missing"}},
    {"1-2-3 * * * *", {"field 1 (minute)", "\"2-3\""}},
    {"** * * * *", {"field 1 (minute)", "\"**\""}},
    {"99999999999999999999 * * * *", {"field 1 (minute)", "out of range"}},
    {"0 0 30 2 *", {"can never fire"}},
    {"0 0 31 2 *", {"can never fire"}},
    {"0 0 30,31 2 *", {"can never fire"}},
    {"0 0 31 4,6,9,11 *", {"can never fire"}},
    {"0 0 31 APR,jun,SEP,nov *", {"can never fire"}},
    {"0 0 0 30 2 *", {"can never fire"}},
    {"0 0 30-31 feb */2", {"can never fire"}},
    {" 0 0 30 2 *\n", {"\"0 0 30 2 *\" can never fire"}},
    {"@reboot", {"unknown macro", "@reboot"}},
    {"@every 5m", {"takes no fields"}},
    {"@daily *", {"takes no fields"}},
    {"@", {"unknown macro"}},
    {"@dailyx", {"unknown macro"}},
};

static bool contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

static void bad_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case_t *c = &bad_cases[i];
        sched_cron_expr_t e;
        char *msg = NULL;
        int err = sched_cron_parse(c->expr, &e, &msg);
        if (err != HP_EINVAL || !msg)
            fail_msg("\"%s\" was accepted", c->expr);
        if (strncmp(msg, "cron: ", 6) != 0 || strchr(msg, '\n'))
            fail_msg("\"%s\": message \"%s\" is not one line starting with cron:", c->expr, msg);
        for (int k = 0; k < 3 && c->words[k]; k++)
            if (!contains(msg, c->words[k]))
                fail_msg("\"%s\": message \"%s\" lacks \"%s\"", c->expr, msg, c->words[k]);
        hp_free(msg);
    }
    sched_cron_expr_t e;
    assert_int_equal(sched_cron_parse("0 0 32 * *", &e, NULL), HP_EINVAL); /* errmsg is optional */
    assert_int_equal(sched_cron_parse(NULL, &e, NULL), HP_EINVAL);
}

/* Possible-but-rare and spelling variants that must be accepted. */
static void accepted(void **state)
{
    (void)state;
    const char *ok[] = {"0 0 29 2 *",    "0 0 31 1-12 *", "0 0 30 2 MON", "0 0 31 4 1-5",
                        " 0  0\t* * * ", "@DAILY",        "  @hourly  ",  "0 0 * * 7",
                        "0 0 29 2 */7",  "*/60 * * * *",  "0 0 31 */3 *", "0 0 1-31/31 * *"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        parse_ok(ok[i]);
    sched_cron_expr_t a = parse_ok("0 0 * * 7"), b = parse_ok("0 0 * * SUN");
    assert_memory_equal(&a, &b, sizeof(a));
    a = parse_ok("@weekly");
    b = parse_ok("0 0 * * 0");
    assert_memory_equal(&a, &b, sizeof(a));
    a = parse_ok("3/20 * * * *");
    assert_true(a.minutes == ((1ULL << 3) | (1ULL << 23) | (1ULL << 43)));
    a = parse_ok("0 0 0 * * *");
    assert_true(a.flags & SCHED_CRON_HAS_SECONDS);
}

/* ---- Explanations ---- */

static const struct {
    const char *expr, *words;
} explain_cases[] = {
    {"@daily", "at 00:00 every day"},
    {"* * * * *", "every minute"},
    {"*/5 * * * *", "every 5 minutes"},
    {"0 * * * *", "at minute 0 past every hour"},
    {"30 9-17 * * 1-5", "at minute 30 past hours 9-17 on Monday through Friday"},
    {"0 9,17 * * *", "at 09:00 and 17:00 every day"},
    {"0 0 1 1 *", "at 00:00 on January 1"},
    {"0 0 1 * *", "at 00:00 on day 1 of the month"},
    {"0 0 13 * FRI", "at 00:00 on day 13 of the month and on Friday"},
    {"0 0 */2 * 1", "at 00:00 on days 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29 "
                    "and 31 of the month if it falls on Monday"},
    {"0 12 * JAN-MAR,DEC SUN", "at 12:00 on Sunday in January through March and December"},
    {"0 0 * * 1,2", "at 00:00 on Monday and Tuesday"},
    {"0 0 * * 1-7", "at 00:00 every day"},
    {"0 0 1-31 * 1", "at 00:00 every day"},
    {"3/20 * * * *", "at minutes 3, 23 and 43 past every hour"},
    {"*/10 * * * * *", "every 10 seconds"},
    {"30 * * * * *", "at second 30 of every minute"},
    {"30 15 10 * * *", "at 10:15:30 every day"},
    {"*/15 9-17 * * *", "every 15 minutes during hours 9-17 every day"},
    {"0 */2 * * *", "at minute 0 past every 2 hours every day"},
    {"*/5 * * 6 *", "every 5 minutes in June"},
    {"0 0 * * * *", "at minute 0 past every hour"},
};

static void explain_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(explain_cases) / sizeof(explain_cases[0]); i++) {
        sched_cron_expr_t e = parse_ok(explain_cases[i].expr);
        char buf[SCHED_CRON_EXPLAIN_MAX];
        assert_int_equal(sched_cron_explain(&e, buf, sizeof(buf)), 0);
        if (strcmp(buf, explain_cases[i].words) != 0)
            fail_msg("\"%s\" explained as \"%s\", expected \"%s\"", explain_cases[i].expr, buf,
                     explain_cases[i].words);
    }
    /* The longest text there is still fits, and a short buffer is cut, not overrun. */
    sched_cron_expr_t e = parse_ok("0-58/2 0-58/2 0-22/2 1-29/2 1-11/2 1,3,5");
    char buf[SCHED_CRON_EXPLAIN_MAX], small[16];
    assert_int_equal(sched_cron_explain(&e, buf, sizeof(buf)), 0);
    assert_int_equal(sched_cron_explain(&e, small, sizeof(small)), HP_ETOOBIG);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

/* ---- Zones ---- */

static void zones(void **state)
{
    (void)state;
    sched_cron_zone_t z;
    char *msg = NULL;
    assert_int_equal(sched_cron_zone_init(&z, NULL, &msg), 0);
    assert_true(z.utc);
    assert_int_equal(sched_cron_zone_init(&z, "UTC", &msg), 0);
    assert_true(z.utc);
    assert_int_equal(sched_cron_zone_init(&z, "Europe/Berlin", &msg), 0);
    assert_false(z.utc);
    assert_string_equal(z.name, "Europe/Berlin");
    const char *bad[] = {"Mars/Olympus_Mons", "Europe/berlin", "../../etc/passwd",
                         "/etc/localtime",    "Europe",        "Europe/../UTC",
                         "Europe//Berlin",    "a b",           "Europe/Berlin/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        msg = NULL;
        assert_int_equal(sched_cron_zone_init(&z, bad[i], &msg), HP_EINVAL);
        assert_non_null(msg);
        assert_true(contains(msg, "time zone"));
        hp_free(msg);
    }
    /* sched_cron_next puts TZ back the way it found it. */
    setenv("TZ", "America/Chicago", 1);
    sched_cron_expr_t e = parse_ok("0 0 * * *");
    sched_cron_zone_t berlin = zone_ok("Europe/Berlin");
    int64_t t;
    assert_int_equal(sched_cron_next(&e, &berlin, 0, &t), 0);
    assert_string_equal(getenv("TZ"), "America/Chicago");
    unsetenv("TZ");
    assert_int_equal(sched_cron_next(&e, &berlin, 0, &t), 0);
    assert_null(getenv("TZ"));
}

/* Limits: instants outside years 1-9999, and no fire before year 10000. */
static void limits(void **state)
{
    (void)state;
    sched_cron_expr_t e = parse_ok("@yearly");
    int64_t t;
    assert_int_equal(sched_cron_next(&e, NULL, unix_of("9999-06-01T00:00:00Z"), &t), HP_ENOTFOUND);
    assert_int_equal(sched_cron_next(&e, NULL, INT64_MAX, &t), HP_EINVAL);
    assert_int_equal(sched_cron_next(&e, NULL, INT64_MIN, &t), HP_EINVAL);
    assert_int_equal(sched_cron_next(&e, NULL, -1, &t), 0);
    assert_int_equal(t, 0); /* 1970-01-01 is strictly after 1969-12-31T23:59:59 */
}

/* The search jumps field by field: even rare expressions take microseconds. */
static void fast(void **state)
{
    (void)state;
    const char *exprs[] = {"0 0 29 2 */7", "59 59 23 31 12 *", "* * * * *", "0 0 29 2 1"};
    sched_cron_zone_t berlin = zone_ok("Europe/Berlin");
    int64_t start = hp_mono_us();
    for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++) {
        sched_cron_expr_t e = parse_ok(exprs[i]);
        int64_t t = unix_of("2026-01-07T00:00:00Z");
        for (int k = 0; k < 200; k++) /* 200 times Feb 29th on a Sunday stays before 9999 */
            assert_int_equal(sched_cron_next(&e, NULL, t, &t), 0);
        t = unix_of("2026-01-07T00:00:00Z");
        for (int k = 0; k < 50; k++)
            assert_int_equal(sched_cron_next(&e, &berlin, t, &t), 0);
    }
    int64_t us = hp_mono_us() - start;
    print_message("800 UTC and 200 Berlin searches took %lld us\n", (long long)us);
    assert_true(us < 5 * 1000 * 1000); /* generous for sanitizer builds */
}

/* ---- Randomized differential tests ---- */

static uint64_t rng = 88172645463325252ULL;

static int rnd(int n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (int)(rng % (uint64_t)n);
}

/* One random item for a field whose values are lo..hi. */
static void random_item(char *out, size_t cap, int lo, int hi)
{
    int a = lo + rnd(hi - lo + 1), b = lo + rnd(hi - lo + 1), step = 1 + rnd(hi - lo + 1);
    if (a > b) {
        int tmp = a;
        a = b;
        b = tmp;
    }
    switch (rnd(7)) {
    case 0:
    case 1:
        snprintf(out, cap, "*");
        break;
    case 2:
        snprintf(out, cap, "%d", a);
        break;
    case 3:
        snprintf(out, cap, "%d-%d", a, b);
        break;
    case 4:
        snprintf(out, cap, "*/%d", step > 12 ? 1 + step % 12 : step);
        break;
    case 5:
        snprintf(out, cap, "%d-%d/%d", a, b, step);
        break;
    default:
        snprintf(out, cap, "%d/%d", a, step);
    }
}

static void random_field(char *out, size_t cap, int lo, int hi)
{
    int n = 1 + (rnd(4) == 0 ? rnd(3) : 0);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        char item[32];
        random_item(item, sizeof(item), lo, hi);
        if (i > 0 && (item[0] == '*' || strchr(out, '*')))
            continue; /* lists of stars are legal but say nothing new */
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s", i ? "," : "", item);
    }
}

static void random_expr(char *out, size_t cap, bool seconds)
{
    char f[6][64];
    random_field(f[0], sizeof(f[0]), 0, 59);
    random_field(f[1], sizeof(f[1]), 0, 59);
    random_field(f[2], sizeof(f[2]), 0, 23);
    random_field(f[3], sizeof(f[3]), 1, 31);
    random_field(f[4], sizeof(f[4]), 1, 12);
    random_field(f[5], sizeof(f[5]), 0, 7);
    if (seconds)
        snprintf(out, cap, "%s %s %s %s %s %s", f[0], f[1], f[2], f[3], f[4], f[5]);
    else
        snprintf(out, cap, "%s %s %s %s %s", f[1], f[2], f[3], f[4], f[5]);
}

/* Compares sched_cron_next with the reference for `n` random expressions. */
static void differential(const char *zone, int n, int fires, int64_t from_lo, int64_t span)
{
    sched_cron_zone_t z = zone_ok(zone);
    int checked = 0, rejected = 0;
    for (int i = 0; i < n; i++) {
        char text[1024];
        /* Six-field expressions walk second by second in the reference: keep few. */
        random_expr(text, sizeof(text), zone == NULL && rnd(8) == 0);
        sched_cron_expr_t e;
        char *msg = NULL;
        if (sched_cron_parse(text, &e, &msg)) {
            hp_free(msg);
            rejected++;
            continue;
        }
        int64_t t = from_lo + (int64_t)rnd((int)(span / 60)) * 60 + rnd(60), r = t;
        for (int k = 0; k < fires; k++) {
            int err = sched_cron_next(&e, &z, t, &t);
            r = ref_next(&e, zone, r, 9);
            if (r < 0)
                break; /* too rare to walk to; the table covers rare ones */
            char got[80], want[80];
            format_time(t, got);
            format_time(r, want);
            if (err || t != r)
                fail_msg("\"%s\" in %s: sched_cron_next gave %s (err %d), reference %s", text,
                         zone ? zone : "UTC", got, err, want);
        }
        checked++;
    }
    unsetenv("TZ");
    print_message("%s: %d random expressions agree with the reference (%d were refused)\n",
                  zone ? zone : "UTC", checked, rejected);
    assert_true(checked > n / 2);
}

static void random_utc(void **state)
{
    (void)state;
    differential(NULL, 5000, 5, unix_of("2000-01-01T00:00:00Z"), 100LL * 365 * 86400);
}

/* Around DST changes: start within a few days of late March / late October
 * (Berlin), early March / early November (New York), early April / early October
 * (Sydney). */
static void random_zones(void **state)
{
    (void)state;
    differential("Europe/Berlin", 500, 5, unix_of("2026-03-27T00:00:00Z"), 3 * 86400);
    differential("Europe/Berlin", 500, 5, unix_of("2026-10-23T00:00:00Z"), 3 * 86400);
    differential("America/New_York", 500, 5, unix_of("2026-03-06T00:00:00Z"), 3 * 86400);
    differential("America/New_York", 500, 5, unix_of("2026-10-30T00:00:00Z"), 3 * 86400);
    differential("Australia/Sydney", 500, 5, unix_of("2026-04-02T00:00:00Z"), 3 * 86400);
    differential("Australia/Sydney", 500, 5, unix_of("2026-10-01T00:00:00Z"), 3 * 86400);
}

int main(void)
{
    if (getenv("CRON_TEST_GENERATE"))
        return generate();
    if (getenv("CRON_TEST_FILTER")) /* e.g. CRON_TEST_FILTER=random_zones */
        cmocka_set_test_filter(getenv("CRON_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(next_table),   cmocka_unit_test(bad_table),
        cmocka_unit_test(accepted),     cmocka_unit_test(explain_table),
        cmocka_unit_test(zones),        cmocka_unit_test(limits),
        cmocka_unit_test(fast),         cmocka_unit_test(random_utc),
        cmocka_unit_test(random_zones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
