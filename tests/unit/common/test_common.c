/* Unit tests for common/: ids, durations, timestamps, the capped buffer, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"

static void ulids_are_valid_and_increase(void **state)
{
    (void)state;
    char prev[HP_ULID_LEN + 1] = "";
    for (int i = 0; i < 10000; i++) {
        char id[HP_ULID_LEN + 1];
        hp_ulid_new(id);
        assert_int_equal(strlen(id), HP_ULID_LEN);
        assert_true(hp_ulid_valid(id, HP_ULID_LEN));
        assert_true(strcmp(prev, id) < 0); /* monotonic, even within one ms */
        memcpy(prev, id, sizeof(id));
    }
}

static void ulid_carries_its_time(void **state)
{
    (void)state;
    int64_t before = hp_now_ms();
    char id[HP_ULID_LEN + 1];
    hp_ulid_new(id);
    int64_t t = hp_ulid_time_ms(id);
    assert_true(t >= before && t <= hp_now_ms() + 1);
    assert_int_equal(hp_ulid_time_ms("01ARZ3NDEKTSV4RRFFQ69G5FAV"), 1469922850259LL);
    assert_int_equal(hp_ulid_time_ms("not-a-ulid"), -1);
    assert_false(hp_ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAU", 25));
    assert_false(hp_ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAI", 26)); /* I is not Crockford */
    assert_false(hp_ulid_valid("81ARZ3NDEKTSV4RRFFQ69G5FAV", 26)); /* past 48 bits */
}

static void durations_parse(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(hp_parse_duration_ms("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(hp_parse_duration_ms("10s", &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(hp_parse_duration_ms("5m", &ms), 0);
    assert_int_equal(ms, 300000);
    assert_int_equal(hp_parse_duration_ms("2h", &ms), 0);
    assert_int_equal(ms, 7200000);
    assert_int_equal(hp_parse_duration_ms("1d", &ms), 0);
    assert_int_equal(ms, 86400000);
    assert_int_equal(hp_parse_duration_ms("7", &ms), 0);
    assert_int_equal(ms, 7000);
    const char *bad[] = {"", "-5s", "abc", "5x", "s", "99999999999999999999d", "1.5s", " 5s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(hp_parse_duration_ms(bad[i], &ms), HP_EINVAL);
    assert_int_equal(hp_parse_duration_ms(NULL, &ms), HP_EINVAL);
}

static void rfc3339_round_trips(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(hp_parse_rfc3339_ms("2026-01-07T00:00:00Z", &ms), 0);
    assert_int_equal(ms, 1767744000000LL);
    assert_int_equal(hp_parse_rfc3339_ms("2026-01-07T01:00:00.5+01:00", &ms), 0);
    assert_int_equal(ms, 1767744000500LL);
    char out[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(1767744000123LL, out);
    assert_string_equal(out, "2026-01-07T00:00:00.123Z");
    const char *bad[] = {"2026-02-30T00:00:00Z",     "2026-01-07",
                         "2026-01-07T25:00:00Z",     "2026-01-07T00:00:00",
                         "2026-01-07T00:00:00Zjunk", "yesterday"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(hp_parse_rfc3339_ms(bad[i], &ms), HP_EINVAL);
}

static void strbuf_respects_its_cap(void **state)
{
    (void)state;
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 10);
    assert_int_equal(hp_strbuf_appends(&sb, "hello"), 0);
    assert_int_equal(hp_strbuf_appends(&sb, "world"), 0);
    assert_int_equal(hp_strbuf_appends(&sb, "!"), HP_ETOOBIG);
    assert_string_equal(sb.data, "helloworld"); /* kept what it had */
    size_t len;
    char *s = hp_strbuf_steal(&sb, &len);
    assert_int_equal(len, 10);
    assert_null(sb.data);
    hp_free(s);
    hp_strbuf_cleanup(&sb);
}

static void errors_have_names_and_text(void **state)
{
    (void)state;
    assert_string_equal(hp_err_name(HP_EFULL), "EFULL");
    assert_string_equal(hp_strerror(HP_EFULL), "queue full");
    assert_string_equal(hp_strerror(0), "success");
    assert_string_equal(hp_err_name(-999), "EUNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ulids_are_valid_and_increase),
        cmocka_unit_test(ulid_carries_its_time),
        cmocka_unit_test(durations_parse),
        cmocka_unit_test(rfc3339_round_trips),
        cmocka_unit_test(strbuf_respects_its_cap),
        cmocka_unit_test(errors_have_names_and_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
