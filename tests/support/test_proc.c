/* Helper processes for end-to-end tests: see test_proc.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/test_proc.h"

extern char **environ;

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The environment with `extra` applied: replaced, added, or removed ("K="). */
static char **build_env(const char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra && extra[m])
        m++;
    char **env = calloc(n + m + 1, sizeof(*env));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool overridden = false;
        for (size_t j = 0; j < m && !overridden; j++) {
            size_t klen = strcspn(extra[j], "=") + 1;
            overridden = strncmp(environ[i], extra[j], klen) == 0;
        }
        if (!overridden)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++) {
        const char *eq = strchr(extra[j], '=');
        if (eq && eq[1])
            env[k++] = (char *)extra[j];
    }
    env[k] = NULL;
    return env;
}

int test_proc_start(test_proc_t *p, const char *const *argv, const char *const *env)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->log, sizeof(p->log), "/tmp/hopper-test-proc-XXXXXX");
    int fd = mkstemp(p->log);
    if (fd < 0)
        return -1;
    char **envp = build_env(env);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        free(envp);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the test died: so does this */
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        long max = sysconf(_SC_OPEN_MAX);
        for (long i = 3; i < (max > 0 && max < 65536 ? max : 65536); i++)
            close((int)i);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(argv[0], (char *const *)argv, envp);
        dprintf(2, "test_proc: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    free(envp);
    p->pid = pid;
    return 0;
}

char *test_proc_log(const test_proc_t *p)
{
    FILE *f = fopen(p->log, "r");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    buf[0] = '\0';
    if (!f)
        return buf;
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 1024)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

static void record_status(test_proc_t *p, int st)
{
    p->reaped = true;
    p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

bool test_proc_exited(test_proc_t *p)
{
    if (p->reaped || p->pid <= 0)
        return true;
    int st;
    if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
        record_status(p, st);
        return true;
    }
    return false;
}

bool test_proc_wait_log(test_proc_t *p, const char *text, int timeout_ms)
{
    long end = now_ms() + timeout_ms;
    for (;;) {
        char *log = test_proc_log(p);
        bool found = strstr(log, text) != NULL;
        free(log);
        if (found)
            return true;
        if (test_proc_exited(p) || now_ms() > end)
            return false;
        sleep_ms(20);
    }
}

int test_proc_stop(test_proc_t *p, int timeout_ms)
{
    if (p->pid <= 0 || test_proc_exited(p))
        return p->status;
    kill(p->pid, SIGTERM);
    long end = now_ms() + timeout_ms;
    while (!test_proc_exited(p) && now_ms() < end)
        sleep_ms(20);
    if (!p->reaped) {
        kill(p->pid, SIGKILL);
        int st;
        if (waitpid(p->pid, &st, 0) == p->pid)
            record_status(p, st);
    }
    return p->status;
}

void test_proc_cleanup(test_proc_t *p)
{
    if (p->pid > 0 && !p->reaped)
        test_proc_stop(p, 5000);
    if (p->log[0])
        unlink(p->log);
    memset(p, 0, sizeof(*p));
}

int test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

bool test_wait_port(int port, int timeout_ms)
{
    long end = now_ms() + timeout_ms;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return true;
        if (now_ms() > end)
            return false;
        sleep_ms(20);
    }
}

int test_connect_local(int port, int timeout_s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

char *test_read_to_close(int fd, size_t *len_out)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (cap - len < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) { /* a timeout: the peer did not finish */
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}
