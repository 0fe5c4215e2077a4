/* Runs the hopper binary as a user would and captures its output. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/test_cli.h"

#ifndef HOPPER_BIN
#define HOPPER_BIN "hopper"
#endif

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '\n')
        s[--n] = '\0';
}

void test_cli_run(cli_result_t *res, const char *redis_url, const char *const *argv)
{
    memset(res, 0, sizeof(*res));
    int out[2], err[2];
    if (pipe(out) || pipe(err)) {
        res->status = -1;
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        if (redis_url)
            setenv("HOPPER_REDIS_URL", redis_url, 1);
        else
            unsetenv("HOPPER_REDIS_URL");
        const char *args[64] = {HOPPER_BIN};
        int n = 1;
        for (int i = 0; argv[i] && n < 63; i++)
            args[n++] = argv[i];
        args[n] = NULL;
        execv(HOPPER_BIN, (char *const *)args);
        fprintf(stderr, "test_cli: cannot run %s: %s\n", HOPPER_BIN, strerror(errno));
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    size_t used[2] = {0, 0};
    char *bufs[2] = {res->out, res->err};
    size_t caps[2] = {sizeof(res->out) - 1, sizeof(res->err) - 1};
    struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0 && poll(fds, 2, -1) > 0) {
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
                continue;
            char tmp[4096];
            ssize_t got = read(fds[i].fd, tmp, sizeof(tmp));
            if (got <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
                continue;
            }
            size_t take = (size_t)got < caps[i] - used[i] ? (size_t)got : caps[i] - used[i];
            memcpy(bufs[i] + used[i], tmp, take);
            used[i] += take;
        }
    }
    int status;
    waitpid(pid, &status, 0);
    res->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    chomp(res->out);
    chomp(res->err);
}
