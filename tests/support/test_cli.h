/* Running the real `hopper` binary from tests and capturing what it prints. */
#ifndef HP_TEST_CLI_H
#define HP_TEST_CLI_H

typedef struct cli_result_s {
    int status; /* exit status, or -1 if it did not exit normally */
    char out[65536];
    char err[8192];
} cli_result_t;

/* Runs HOPPER_BIN with argv (NULL-terminated), HOPPER_REDIS_URL=redis_url (NULL:
 * unset), and stdin from /dev/null. Stdout and stderr are captured (cut at the
 * buffer size) with trailing newlines removed. */
void test_cli_run(cli_result_t *res, const char *redis_url, const char *const *argv);

#endif
