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
static bool json_lines;
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

static void read_env(void)
{
    read_env_level();
    const char *format = getenv("HOPPER_LOG_FORMAT");
    if (format && strcmp(format, "json") == 0)
        json_lines = true;
}

void hp_log_set_json(bool json)
{
    pthread_once(&threshold_once, read_env);
    const char *format = getenv("HOPPER_LOG_FORMAT");
    json_lines = format ? strcmp(format, "json") == 0 : json;
}

bool hp_log_enabled(hp_log_level_t level)
{
    pthread_once(&threshold_once, read_env);
    return level >= threshold;
}

bool hp_log_is_json(void)
{
    pthread_once(&threshold_once, read_env);
    return json_lines;
}

void hp_log_write(const char *lines, size_t len)
{
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, lines, len);
        if (w <= 0)
            return;
        lines += w;
        len -= (size_t)w;
    }
}

/* {"time":"...","level":"info","msg":"..."}: the message escaped as a JSON string. */
static size_t format_json(char *line, size_t cap, const char *ts, hp_log_level_t level,
                          const char *msg)
{
    static const char *const lower[] = {"debug", "info", "warn", "error"};
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, cap - 2);
    hp_strbuf_printf(&sb, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":", ts, lower[level]);
    if (hp_strbuf_append_json_string(&sb, msg) != 0)
        hp_strbuf_appends(&sb, "\"(message too long)\"");
    hp_strbuf_appends(&sb, "}");
    size_t len = sb.len < cap - 2 ? sb.len : cap - 2;
    memcpy(line, sb.data, len);
    hp_strbuf_cleanup(&sb);
    return len;
}

void hp_log_set_level(hp_log_level_t level)
{
    pthread_once(&threshold_once, read_env);
    threshold = level;
}

void hp_log(hp_log_level_t level, const char *fmt, ...)
{
    pthread_once(&threshold_once, read_env);
    if (level < threshold)
        return;
    char line[2048];
    char ts[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(hp_now_ms(), ts);
    va_list ap;
    va_start(ap, fmt);
    size_t len;
    if (json_lines) {
        char msg[1800];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        len = format_json(line, sizeof(line), ts, level, msg);
    } else {
        int n = snprintf(line, sizeof(line), "%s %-5s ", ts, level_names[level]);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
        len = (size_t)n + (m < 0 ? 0 : (size_t)m);
        if (len > sizeof(line) - 2)
            len = sizeof(line) - 2;
    }
    va_end(ap);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
