/* Starting and stopping private redis-servers for tests. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "broker/broker.h"
#include "tests/support/test_redis.h"

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* True when the server on `port` answers and is the one we started (its process_id
 * is `pid`): a port found free a moment ago may have been taken by another test's
 * server in between, and talking to that one would mix two tests' data. */
static bool answers_ping(int port, pid_t pid)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool ok = false;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "INFO server");
        if (r && r->type == REDIS_REPLY_STRING) {
            const char *at = strstr(r->str, "process_id:");
            ok = at && atol(at + strlen("process_id:")) == (long)pid;
        }
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

static pid_t spawn(int port, const char *const *extra)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    char sport[16];
    snprintf(sport, sizeof(sport), "%d", port);
    const char *argv[64] = {"redis-server", "--port",      sport,  "--bind",
                            "127.0.0.1",    "--save",      "",     "--appendonly",
                            "no",           "--dir",       "/tmp", "--loglevel",
                            "warning",      "--daemonize", "no"};
    int argc = 15;
    for (int i = 0; extra && extra[i] && argc < 62; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    execvp("redis-server", (char *const *)argv);
    fprintf(stderr, "test_redis: cannot run redis-server: %s\n", strerror(errno));
    _exit(127);
}

static int start_on(test_redis_t *r, int port, const char *const *extra)
{
    r->port = port;
    r->extra = extra;
    r->pid = spawn(port, extra);
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", port);
    for (int i = 0; i < 500; i++) {
        if (answers_ping(port, r->pid))
            return 0;
        int status;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            r->pid = 0;
            return -1; /* exited: the port was taken, or no redis-server */
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    test_redis_stop(r);
    return -1;
}

int test_redis_start(test_redis_t *r, const char *const *extra)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = free_port();
        if (port > 0 && start_on(r, port, extra) == 0)
            return 0;
    }
    fprintf(stderr, "test_redis: could not start redis-server\n");
    return -1;
}

void test_redis_stop(test_redis_t *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

int test_redis_restart(test_redis_t *r)
{
    test_redis_stop(r);
    for (int attempt = 0; attempt < 50; attempt++) {
        if (start_on(r, r->port, r->extra) == 0)
            return 0;
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

int test_redis_cli(const test_redis_t *r, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "redis-cli -p %d %s >/dev/null 2>&1", r->port, args);
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char *test_queue_name(const char *prefix)
{
    static char names[64][80];
    static int next;
    char *out = names[next++ % 64];
    snprintf(out, 80, "%s-%d-%d", prefix, (int)getpid(), next);
    return out;
}

long long test_redis_int(const test_redis_t *r, const char *fmt, ...)
{
    redisContext *c = redisConnect("127.0.0.1", r->port);
    va_list ap;
    va_start(ap, fmt);
    redisReply *reply = c && !c->err ? redisvCommand(c, fmt, ap) : NULL;
    va_end(ap);
    if (c)
        redisFree(c);
    assert_non_null(reply);
    long long v = reply->type == REDIS_REPLY_INTEGER  ? reply->integer
                  : reply->type == REDIS_REPLY_STRING ? atoll(reply->str)
                                                      : -1;
    freeReplyObject(reply);
    return v;
}

broker_t *test_redis_broker(const test_redis_t *r, size_t max_payload)
{
    broker_t *b = NULL;
    char *msg = NULL;
    broker_config_t cfg = {.url = r->url, .max_payload = max_payload};
    if (broker_open(&cfg, &b, &msg))
        fail_msg("broker_open %s: %s", r->url, msg);
    return b;
}
