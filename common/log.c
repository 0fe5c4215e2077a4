/* Logging to stderr with a UTC timestamp, one write per line so lines from
 * several threads never interleave. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static hp_log_level_t threshold = HP_LOG_INFO;
static pthread_once_t threshold_once = PTHREAD_ONCE_INIT;

static void read_env_level(void)
{
    const char *env = getenv("HOPPER_LOG_LEVEL");
    if (!env)
        return;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(env, level_names[i]) == 0)
            threshold = (hp_log_level_t)i;
    }
    if (strcasecmp(env, "warning") == 0)
        threshold = HP_LOG_WARN;
}

void hp_log_set_level(hp_log_level_t level)
{
    pthread_once(&threshold_once, read_env_level);
    threshold = level;
}

void hp_log(hp_log_level_t level, const char *fmt, ...)
{
    pthread_once(&threshold_once, read_env_level);
    if (level < threshold)
        return;
    char line[2048];
    char ts[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(hp_now_ms(), ts);
    int n = snprintf(line, sizeof(line), "%s %-5s ", ts, level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
