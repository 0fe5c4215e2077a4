/*
 * The outside world failing on purpose: Redis absent, killed, restarted, flushed of
 * its scripts, configured to evict, or holding a newer key layout. Every failure is
 * reported clearly and nothing acknowledged is lost.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/broker.h"
#include "tests/support/test_redis.h"

static broker_t *open_ok(const char *url)
{
    broker_t *b = NULL;
    char *msg = NULL;
    broker_config_t cfg = {.url = url, .connect_timeout_ms = 500, .command_timeout_ms = 2000};
    if (broker_open(&cfg, &b, &msg))
        fail_msg("broker_open(%s): %s", url, msg);
    return b;
}

static void unreachable_redis_is_a_clear_error(void **state)
{
    (void)state;
    broker_t *b = NULL;
    char *msg = NULL;
    broker_config_t cfg = {.url = "redis://127.0.0.1:1"};
    int64_t t0 = hp_mono_ms();
    assert_int_equal(broker_open(&cfg, &b, &msg), HP_EUNAVAIL);
    assert_null(b);
    assert_non_null(strstr(msg, "unreachable"));
    assert_non_null(strstr(msg, "127.0.0.1:1"));
    assert_true(hp_mono_ms() - t0 < 1500); /* refused at once, not after a long hang */
    hp_free(msg);
    const char *bad[] = {"http://x", "redis://", "redis://host:99999", "redis://h:1/x",
                         "unix://relative.sock"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.url = bad[i];
        assert_int_equal(broker_open(&cfg, &b, &msg), HP_EINVAL);
        assert_non_null(msg);
        hp_free(msg);
        msg = NULL;
    }
}

/* Redis goes away: calls fail fast with HP_EUNAVAIL; when it returns, the same
 * handle works again without help. */
static void reconnects_after_redis_restarts(void **state)
{
    (void)state;
    test_redis_t server;
    assert_int_equal(test_redis_start(&server, NULL), 0);
    broker_t *b = open_ok(server.url);
    const char *q = test_queue_name("outage");
    enqueue_result_t res;
    job_spec_t spec = {.queue = q, .type = "t"};
    assert_int_equal(broker_enqueue(b, &spec, 1, &res), 0);
    test_redis_stop(&server);
    assert_int_equal(broker_enqueue(b, &spec, 1, &res), HP_EUNAVAIL);
    assert_int_equal(res.err, HP_EUNAVAIL);
    assert_non_null(strstr(broker_errmsg(b), "redis at"));
    job_t *job;
    assert_int_equal(broker_get(b, res.id[0] ? res.id : "01ARZ3NDEKTSV4RRFFQ69G5FAV-x", &job),
                     HP_EUNAVAIL);
    assert_int_equal(test_redis_restart(&server), 0);
    int err = HP_EUNAVAIL;
    for (int i = 0; i < 50 && err == HP_EUNAVAIL; i++) {
        err = broker_enqueue(b, &spec, 1, &res);
        if (err)
            hp_sleep_ms(50);
    }
    assert_int_equal(err, 0);
    assert_int_equal(broker_get(b, res.id, &job), 0);
    job_free(job);
    broker_close(b);
    test_redis_stop(&server);
}

/* A connection left idle while Redis restarted: the next call notices the old
 * socket is closed and reconnects first, rather than failing with "may or may not
 * have run" (it had not run: the server that could have run it was gone). */
static void idle_connection_survives_a_redis_restart(void **state)
{
    (void)state;
    test_redis_t server;
    assert_int_equal(test_redis_start(&server, NULL), 0);
    broker_t *b = open_ok(server.url);
    assert_int_equal(broker_ping(b), 0);
    assert_int_equal(test_redis_restart(&server), 0);
    hp_sleep_ms(1100); /* idle past the check's threshold */
    const char *q = test_queue_name("idle");
    enqueue_result_t res;
    job_spec_t spec = {.queue = q, .type = "t"};
    assert_int_equal(broker_enqueue(b, &spec, 1, &res), 0);
    job_t *job;
    assert_int_equal(broker_get(b, res.id, &job), 0);
    job_free(job);
    broker_close(b);
    test_redis_stop(&server);
}

/* With Redis's own durability on (appendfsync always), every job whose enqueue
 * returned 0 is there after Redis is killed with SIGKILL and started again. */
static void acknowledged_jobs_survive_a_redis_crash(void **state)
{
    (void)state;
    char dir[] = "/tmp/hopper-aof-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *extra[] = {"--appendonly", "yes", "--appendfsync", "always", "--dir", dir, NULL};
    test_redis_t server;
    assert_int_equal(test_redis_start(&server, extra), 0);
    broker_t *b = open_ok(server.url);
    const char *q = test_queue_name("durable");
    char ids[200][JOB_ID_MAX];
    for (int i = 0; i < 200; i++) {
        enqueue_result_t res;
        assert_int_equal(broker_enqueue(b, &(job_spec_t){.queue = q, .type = "t"}, 1, &res), 0);
        strcpy(ids[i], res.id);
    }
    assert_int_equal(test_redis_restart(&server), 0); /* SIGKILL, then start on the AOF */
    int err = HP_EUNAVAIL;
    for (int i = 0; i < 50 && err == HP_EUNAVAIL; i++) {
        err = broker_ping(b);
        if (err)
            hp_sleep_ms(50);
    }
    assert_int_equal(err, 0);
    for (int i = 0; i < 200; i++) {
        job_t *job;
        if (broker_get(b, ids[i], &job))
            fail_msg("job %d (%s) lost: %s", i, ids[i], broker_errmsg(b));
        assert_int_equal(job->state, JOB_STATE_WAITING);
        job_free(job);
    }
    queue_stats_t s;
    assert_int_equal(broker_queue_stats(b, q, &s), 0);
    assert_int_equal(s.counts[JOB_STATE_WAITING], 200);
    broker_close(b);
    test_redis_stop(&server);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* SCRIPT FLUSH (or a restart) empties Redis's script cache: NOSCRIPT is handled by
 * loading the script and running the call again. */
static void flushed_scripts_are_reloaded(void **state)
{
    (void)state;
    test_redis_t server;
    assert_int_equal(test_redis_start(&server, NULL), 0);
    broker_t *b = open_ok(server.url);
    const char *q = test_queue_name("noscript");
    job_spec_t specs[2] = {{.queue = q, .type = "t"},
                           {.queue = test_queue_name("ns2"), .type = "t"}};
    enqueue_result_t res[2];
    assert_int_equal(broker_enqueue(b, specs, 2, res), 0);
    assert_int_equal(test_redis_cli(&server, "SCRIPT FLUSH"), 0);
    assert_int_equal(broker_enqueue(b, specs, 2, res), 0); /* a pipeline of two NOSCRIPTs */
    queue_stats_t s;
    assert_int_equal(broker_queue_stats(b, q, &s), 0);
    assert_int_equal(s.counts[JOB_STATE_WAITING], 2);
    broker_close(b);
    test_redis_stop(&server);
}

static void evicting_redis_warns_or_is_refused(void **state)
{
    (void)state;
    const char *extra[] = {"--maxmemory-policy", "allkeys-lru", NULL};
    test_redis_t server;
    assert_int_equal(test_redis_start(&server, extra), 0);
    broker_t *b = NULL;
    char *msg = NULL;
    broker_config_t cfg = {.url = server.url};
    assert_int_equal(broker_open(&cfg, &b, &msg), 0); /* a loud warning, then works */
    broker_close(b);
    cfg.strict = true;
    assert_int_equal(broker_open(&cfg, &b, &msg), HP_EUNSAFE);
    assert_null(b);
    assert_non_null(strstr(msg, "allkeys-lru"));
    assert_non_null(strstr(msg, "noeviction"));
    hp_free(msg);
    test_redis_stop(&server);
}

static void newer_key_layout_is_refused(void **state)
{
    (void)state;
    test_redis_t server;
    assert_int_equal(test_redis_start(&server, NULL), 0);
    assert_int_equal(test_redis_cli(&server, "SET hopper:schema 2"), 0);
    broker_t *b = NULL;
    char *msg = NULL;
    broker_config_t cfg = {.url = server.url};
    assert_int_equal(broker_open(&cfg, &b, &msg), HP_EUNSAFE);
    assert_non_null(strstr(msg, "layout version 2"));
    hp_free(msg);
    test_redis_stop(&server);
}

/* Redis dies under a worker blocked in wait: the wait fails, it does not hang. */
static void redis_dying_under_a_blocked_wait(void **state)
{
    (void)state;
    test_redis_t server;
    assert_int_equal(test_redis_start(&server, NULL), 0);
    broker_t *b = open_ok(server.url);
    pid_t pid = fork();
    if (pid == 0) {
        hp_sleep_ms(200);
        kill(server.pid, SIGKILL);
        _exit(0);
    }
    const char *qs[1] = {test_queue_name("blocked")};
    assert_int_equal(broker_wait(b, qs, 1, 10000), HP_EUNAVAIL);
    waitpid(pid, NULL, 0);
    broker_close(b);
    test_redis_stop(&server);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unreachable_redis_is_a_clear_error),
        cmocka_unit_test(reconnects_after_redis_restarts),
        cmocka_unit_test(idle_connection_survives_a_redis_restart),
        cmocka_unit_test(acknowledged_jobs_survive_a_redis_crash),
        cmocka_unit_test(flushed_scripts_are_reloaded),
        cmocka_unit_test(evicting_redis_warns_or_is_refused),
        cmocka_unit_test(newer_key_layout_is_refused),
        cmocka_unit_test(redis_dying_under_a_blocked_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
