/*
 * End to end: `hopper cron next` and `hopper cron explain`, run as a user runs
 * them. They need no broker, so HOPPER_REDIS_URL is unset (and points nowhere
 * useful in one case, to show it is not used). Checks what is printed, that
 * errors are one line on stderr, and the exit status (2 for bad input).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tests/support/test_cli.h"

enum { EXIT_OK = 0, EXIT_USAGE = 2 };

static cli_result_t res_buf;
static cli_result_t *const R = &res_buf;

#define HOP(...) hop((const char *const[]){__VA_ARGS__, NULL})

static cli_result_t *hop(const char *const *argv)
{
    test_cli_run(R, NULL, argv);
    return R;
}

static void expect_exit(const cli_result_t *r, int code)
{
    if (r->status != code)
        fail_msg("exit status %d, expected %d\n  stdout: %.2000s\n  stderr: %.2000s", r->status,
                 code, r->out, r->err);
}

/* Exit 2, nothing on stdout, one line on stderr containing `word`. */
static void expect_error(const cli_result_t *r, const char *word)
{
    expect_exit(r, EXIT_USAGE);
    if (r->out[0] || !r->err[0] || strchr(r->err, '\n') || !strstr(r->err, word))
        fail_msg("expected one stderr line with \"%s\"\n  stdout: %s\n  stderr: %s", word, r->out,
                 r->err);
}

static size_t count_lines(const char *s)
{
    size_t n = *s ? 1 : 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void next_prints_five_by_default(void **state)
{
    (void)state;
    expect_exit(HOP("cron", "next", "*/5 * * * *", "--from", "2026-01-07T00:00:00Z"), EXIT_OK);
    assert_string_equal(R->out, "2026-01-07T00:05:00Z\n2026-01-07T00:10:00Z\n"
                                "2026-01-07T00:15:00Z\n2026-01-07T00:20:00Z\n"
                                "2026-01-07T00:25:00Z");
    assert_string_equal(R->err, "");
}

static void next_count_and_leap_day(void **state)
{
    (void)state;
    expect_exit(
        HOP("cron", "next", "30 2 29 2 *", "--from", "2025-01-01T00:00:00Z", "--count", "2"),
        EXIT_OK);
    assert_string_equal(R->out, "2028-02-29T02:30:00Z\n2032-02-29T02:30:00Z");
    expect_exit(
        HOP("cron", "next", "* * * * * *", "--count", "1000", "--from", "2026-01-07T00:00:00Z"),
        EXIT_OK);
    assert_int_equal(count_lines(R->out), 1000);
    assert_non_null(strstr(R->out, "2026-01-07T00:16:40Z")); /* the 1000th second */
}

static void next_from_with_offset_and_fraction(void **state)
{
    (void)state;
    /* 01:00+01:00 is midnight UTC; strictly after it. */
    expect_exit(
        HOP("cron", "next", "@daily", "--from", "2026-01-07T01:00:00+01:00", "--count", "1"),
        EXIT_OK);
    assert_string_equal(R->out, "2026-01-08T00:00:00Z");
    expect_exit(
        HOP("cron", "next", "* * * * * *", "--from", "2026-01-07T00:00:00.500Z", "--count", "1"),
        EXIT_OK);
    assert_string_equal(R->out, "2026-01-07T00:00:01Z");
}

static void next_in_a_zone_across_dst(void **state)
{
    (void)state;
    /* Berlin springs forward on 2026-03-29: 02:30 does not exist and fires at 03:00
     * CEST (01:00Z) once. */
    expect_exit(HOP("cron", "next", "30 2 * * *", "--tz", "Europe/Berlin", "--from",
                    "2026-03-28T00:00:00Z", "--count", "3"),
                EXIT_OK);
    assert_string_equal(R->out, "2026-03-28T01:30:00Z\n2026-03-29T01:00:00Z\n"
                                "2026-03-30T00:30:00Z");
    /* New York falls back on 2026-11-01: hourly fires in both 01:00 hours. */
    expect_exit(HOP("cron", "next", "0 * * * *", "--tz", "America/New_York", "--from",
                    "2026-11-01T04:30:00Z", "--count", "3"),
                EXIT_OK);
    assert_string_equal(R->out, "2026-11-01T05:00:00Z\n2026-11-01T06:00:00Z\n"
                                "2026-11-01T07:00:00Z");
}

static void next_default_from_is_now(void **state)
{
    (void)state;
    expect_exit(HOP("cron", "next", "@yearly", "--count", "1"), EXIT_OK);
    assert_int_equal(strlen(R->out), strlen("2027-01-01T00:00:00Z"));
    assert_non_null(strstr(R->out, "-01-01T00:00:00Z"));
}

static void explain(void **state)
{
    (void)state;
    expect_exit(HOP("cron", "explain", "@daily"), EXIT_OK);
    assert_string_equal(R->out, "at 00:00 every day");
    expect_exit(HOP("cron", "explain", "30 9-17 * * MON-FRI"), EXIT_OK);
    assert_string_equal(R->out, "at minute 30 past hours 9-17 on Monday through Friday");
}

static void bad_input_exits_2(void **state)
{
    (void)state;
    expect_error(HOP("cron", "next", "0 0 32 * *"), "field 3 (day of month): 32 is out of range");
    expect_error(HOP("cron", "explain", "5-1 * * * *"), "reversed");
    expect_error(HOP("cron", "next", "0 0 30 2 *"), "never fire");
    expect_error(HOP("cron", "next", "* * * *"), "got 4");
    expect_error(HOP("cron", "next", "@reboot"), "unknown macro");
    expect_error(HOP("cron", "next", "@daily", "--tz", "Mars/Olympus_Mons"), "Mars/Olympus_Mons");
    expect_error(HOP("cron", "next", "@daily", "--tz", "../../etc/passwd"), "time zone");
    expect_error(HOP("cron", "next", "@daily", "--from", "yesterday"), "--from");
    expect_error(HOP("cron", "next", "@daily", "--count", "0"), "--count");
    expect_error(HOP("cron", "next", "@daily", "--count", "1001"), "--count");
    expect_error(HOP("cron", "next"), "expected");
    expect_error(HOP("cron", "soon", "@daily"), "soon");
    expect_error(HOP("cron", "next", "@daily", "--bogus"), "--bogus");
    expect_error(HOP("cron", "explain", "@daily", "--tz", "UTC"), "explain");
}

static void help(void **state)
{
    (void)state;
    expect_exit(HOP("cron", "--help"), EXIT_OK);
    assert_non_null(strstr(R->out, "--tz ZONE"));
    assert_non_null(strstr(R->out, "--count N"));
    assert_null(strstr(R->out, "--redis")); /* no broker involved */
    expect_exit(HOP("--help"), EXIT_OK);
    assert_non_null(strstr(R->out, "cron"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(next_prints_five_by_default),
        cmocka_unit_test(next_count_and_leap_day),
        cmocka_unit_test(next_from_with_offset_and_fraction),
        cmocka_unit_test(next_in_a_zone_across_dst),
        cmocka_unit_test(next_default_from_is_now),
        cmocka_unit_test(explain),
        cmocka_unit_test(bad_input_exits_2),
        cmocka_unit_test(help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
