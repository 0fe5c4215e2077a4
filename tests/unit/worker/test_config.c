/* Unit tests for worker/config.c: options from text, and the queue order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "worker/internal.h"

static void options_parse_and_refuse(void **state)
{
    (void)state;
    worker_config_t cfg;
    worker_config_init(&cfg);
    char *msg = NULL;
    assert_int_equal(worker_config_set(&cfg, "queues", "email,pdf:2,default", &msg), 0);
    assert_int_equal(cfg.nqueues, 3);
    assert_string_equal(cfg.queues[1].name, "pdf");
    assert_int_equal(cfg.queues[1].weight, 2);
    assert_int_equal(cfg.queues[0].weight, 1);
    assert_int_equal(worker_config_set(&cfg, "lease", "10s", &msg), 0);
    assert_int_equal(cfg.lease_ms, 10000);
    assert_int_equal(worker_config_set(&cfg, "strict_order", "true", &msg), 0);
    assert_true(cfg.strict_order);
    const char *bad[][2] = {{"threads", "0"},    {"threads", "lots"},      {"queues", "a:0"},
                            {"queues", "a:x"},   {"lease", "1ms"},         {"nonsense", "1"},
                            {"processes", "-1"}, {"strict-order", "maybe"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        msg = NULL;
        assert_int_equal(worker_config_set(&cfg, bad[i][0], bad[i][1], &msg), HP_EINVAL);
        assert_non_null(msg);
        hp_free(msg);
    }
    /* The whole is checked too: a process may hold at most 4096 jobs. */
    assert_int_equal(worker_config_set(&cfg, "plugins", "x.so", &msg), 0);
    assert_int_equal(worker_config_check(&cfg, &msg), 0);
    assert_int_equal(worker_config_set(&cfg, "threads", "1024", &msg), 0);
    assert_int_equal(worker_config_set(&cfg, "prefetch", "64", &msg), 0);
    msg = NULL;
    assert_int_equal(worker_config_check(&cfg, &msg), HP_EINVAL);
    assert_non_null(strstr(msg, "threads x prefetch"));
    hp_free(msg);
    worker_config_cleanup(&cfg);
}

/* Weight 2 against weight 1: the heavier queue comes first about 2/3 of the time;
 * strict order never reorders. The seed is fixed, so this is deterministic. */
static void queue_order_follows_weights(void **state)
{
    (void)state;
    worker_config_t cfg;
    worker_config_init(&cfg);
    char *msg = NULL;
    assert_int_equal(worker_config_set(&cfg, "queues", "light,heavy:2", &msg), 0);
    unsigned seed = 42;
    size_t order[WORKER_QUEUES_MAX];
    int heavy_first = 0, rounds = 30000;
    for (int i = 0; i < rounds; i++) {
        worker__queue_order(&cfg, &seed, order);
        assert_true(order[0] != order[1]); /* a permutation */
        heavy_first += order[0] == 1;
    }
    double share = (double)heavy_first / rounds;
    if (share < 0.63 || share > 0.70)
        fail_msg("heavy queue first %.3f of the time, expected about 0.667", share);
    cfg.strict_order = true;
    for (int i = 0; i < 100; i++) {
        worker__queue_order(&cfg, &seed, order);
        assert_int_equal(order[0], 0);
        assert_int_equal(order[1], 1);
    }
    worker_config_cleanup(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(options_parse_and_refuse),
        cmocka_unit_test(queue_order_follows_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
