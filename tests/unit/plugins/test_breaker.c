/* The plugins' circuit breaker, on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plugins/common/breaker.h"

static int64_t fake_now;
static int64_t fake_clock(void)
{
    return fake_now;
}

static breaker_t *make(int threshold, int64_t open_ms)
{
    breaker_t *b = breaker_new(threshold, open_ms);
    assert_non_null(b);
    breaker_set_clock(b, fake_clock);
    fake_now = 1000;
    return b;
}

static void opens_after_threshold_failures_in_a_row(void **state)
{
    (void)state;
    breaker_t *b = make(3, 30000);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(breaker_acquire(b, "smtp.example:587", NULL), 0);
        breaker_report(b, "smtp.example:587", true);
    }
    assert_int_equal(breaker_acquire(b, "smtp.example:587", NULL), 0); /* still closed */
    breaker_report(b, "smtp.example:587", true);
    int64_t left = 0;
    assert_int_equal(breaker_acquire(b, "smtp.example:587", &left), -1);
    assert_int_equal(left, 30000);
    assert_int_equal(breaker_acquire(b, "other.example:25", NULL), 0); /* per host */
    breaker_free(b);
}

static void a_success_resets_the_count(void **state)
{
    (void)state;
    breaker_t *b = make(2, 1000);
    breaker_report(b, "h", true);
    breaker_report(b, "h", false);
    breaker_report(b, "h", true);
    assert_int_equal(breaker_acquire(b, "h", NULL), 0);
    breaker_free(b);
}

static void half_open_lets_one_trial_through(void **state)
{
    (void)state;
    breaker_t *b = make(1, 5000);
    breaker_report(b, "h", true);
    assert_int_equal(breaker_acquire(b, "h", NULL), -1);
    fake_now += 5000;
    assert_int_equal(breaker_acquire(b, "h", NULL), 0); /* the trial */
    int64_t left = 7;
    assert_int_equal(breaker_acquire(b, "h", &left), -1); /* others wait for it */
    assert_int_equal(left, 0);
    breaker_report(b, "h", false); /* the trial worked: closed */
    assert_int_equal(breaker_acquire(b, "h", NULL), 0);
    assert_int_equal(breaker_acquire(b, "h", NULL), 0);
    breaker_free(b);
}

static void a_failed_trial_opens_again(void **state)
{
    (void)state;
    breaker_t *b = make(3, 5000);
    for (int i = 0; i < 3; i++)
        breaker_report(b, "h", true);
    fake_now += 5001;
    assert_int_equal(breaker_acquire(b, "h", NULL), 0);
    breaker_report(b, "h", true); /* one failure is enough in half-open */
    int64_t left = 0;
    assert_int_equal(breaker_acquire(b, "h", &left), -1);
    assert_int_equal(left, 5000);
    breaker_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(opens_after_threshold_failures_in_a_row),
        cmocka_unit_test(a_success_resets_the_count),
        cmocka_unit_test(half_open_lets_one_trial_through),
        cmocka_unit_test(a_failed_trial_opens_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
