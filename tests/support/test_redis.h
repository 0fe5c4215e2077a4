/*
 * A private redis-server for one test process: a free port on 127.0.0.1, no
 * persistence, killed by the kernel if the test dies (PR_SET_PDEATHSIG), so no
 * test run ever leaves one behind, whatever way the test ends.
 */
#ifndef HP_TEST_REDIS_H
#define HP_TEST_REDIS_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct test_redis_s {
    pid_t pid;
    int port;
    char url[64];
    const char *const *extra; /* kept for restarts */
} test_redis_t;

/* Starts a server and waits until it answers PING. Returns 0, or -1 with a message
 * on stderr. Extra "--name value" pairs may be passed in extra (NULL-terminated). */
int test_redis_start(test_redis_t *r, const char *const *extra);
void test_redis_stop(test_redis_t *r);
/* Stops and starts again on the same port (data is gone: persistence is off). */
int test_redis_restart(test_redis_t *r);
/* A command (hiredis format) on a connection of its own: an integer reply, or a
 * string reply read as one; -1 for anything else. Fails the test when Redis does
 * not answer. */
long long test_redis_int(const test_redis_t *r, const char *fmt, ...);
/* Runs redis-cli against it; returns its exit status. */
int test_redis_cli(const test_redis_t *r, const char *args);

/* A broker connection to it (payloads up to max_payload; 0: the default). Fails
 * the test when it cannot open one. */
struct broker_s *test_redis_broker(const test_redis_t *r, size_t max_payload);

/* A queue name unique to this process and call, so tests never share state. */
const char *test_queue_name(const char *prefix);

#endif
