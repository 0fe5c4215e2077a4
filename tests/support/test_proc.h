/*
 * Helper processes for end-to-end tests: the hopper worker or server, an SMTP
 * server, nginx. Each runs with its output in a log file of its own, dies with
 * the test process (PR_SET_PDEATHSIG), and is stopped by the test.
 */
#ifndef HP_TEST_PROC_H
#define HP_TEST_PROC_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct test_proc_s {
    pid_t pid;
    char log[256]; /* stdout and stderr */
    int status;    /* exit status once reaped; 128 + signal when killed by one */
    bool reaped;
} test_proc_t;

/* Starts argv[0] (a path) with argv and the test's environment plus `env` ("K=V"
 * entries, NULL-terminated, may be NULL; an entry "K=" removes K). stdin is
 * /dev/null. Returns 0, or -1 (and the test should fail). */
int test_proc_start(test_proc_t *p, const char *const *argv, const char *const *env);
/* The log so far (free() it). */
char *test_proc_log(const test_proc_t *p);
/* Waits until the log contains `text`: true; false when the process exited or
 * timeout_ms passed first. */
bool test_proc_wait_log(test_proc_t *p, const char *text, int timeout_ms);
/* Whether it has exited (reaping it). */
bool test_proc_exited(test_proc_t *p);
/* SIGTERM, up to timeout_ms for it to exit, then SIGKILL. Returns p->status. */
int test_proc_stop(test_proc_t *p, int timeout_ms);
/* Stops it if running and removes the log. */
void test_proc_cleanup(test_proc_t *p);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int test_free_port(void);
/* Waits until 127.0.0.1:port accepts a connection; false after timeout_ms. */
bool test_wait_port(int port, int timeout_ms);
/* A connection to 127.0.0.1:port whose reads give up after timeout_s; -1 if refused. */
int test_connect_local(int port, int timeout_s);
/* Everything fd receives until the peer closes, NUL-terminated (free), its length in
 * *len (may be NULL); NULL when a read fails or times out. fd stays open. */
char *test_read_to_close(int fd, size_t *len);

#endif
