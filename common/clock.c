/* Clocks, durations and RFC 3339 timestamps. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"

int64_t hp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t hp_mono_ms(void)
{
    return hp_mono_us() / 1000;
}

int64_t hp_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void hp_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Units a duration may carry; a bare number means seconds. */
static const struct {
    const char *suffix;
    int64_t ms;
} duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1000},
};

int hp_parse_duration_ms(const char *text, int64_t *out_ms)
{
    if (!text || !isdigit((unsigned char)text[0]))
        return HP_EINVAL;
    errno = 0;
    char *end;
    long long n = strtoll(text, &end, 10);
    if (errno)
        return HP_EINVAL;
    for (size_t i = 0; i < sizeof(duration_units) / sizeof(duration_units[0]); i++) {
        if (strcmp(end, duration_units[i].suffix) != 0)
            continue;
        if (n > INT64_MAX / duration_units[i].ms)
            return HP_EINVAL;
        *out_ms = n * duration_units[i].ms;
        return 0;
    }
    return HP_EINVAL;
}

static int parse_digits(const char **p, int count, int *out)
{
    int v = 0;
    for (int i = 0; i < count; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return HP_EINVAL;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += count;
    *out = v;
    return 0;
}

static int expect(const char **p, const char *chars)
{
    if (!**p || !strchr(chars, **p))
        return HP_EINVAL;
    (*p)++;
    return 0;
}

int hp_parse_rfc3339_ms(const char *text, int64_t *out_ms)
{
    if (!text)
        return HP_EINVAL;
    const char *p = text;
    int year, mon, day, hour, min, sec;
    if (parse_digits(&p, 4, &year) || expect(&p, "-") || parse_digits(&p, 2, &mon) ||
        expect(&p, "-") || parse_digits(&p, 2, &day) || expect(&p, "Tt ") ||
        parse_digits(&p, 2, &hour) || expect(&p, ":") || parse_digits(&p, 2, &min) ||
        expect(&p, ":") || parse_digits(&p, 2, &sec))
        return HP_EINVAL;
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
        return HP_EINVAL;
    int ms = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (isdigit((unsigned char)*p)) {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return HP_EINVAL;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        p++;
        int oh, om;
        if (parse_digits(&p, 2, &oh) || expect(&p, ":") || parse_digits(&p, 2, &om) || oh > 23 ||
            om > 59)
            return HP_EINVAL;
        offset_min = sign * (oh * 60 + om);
    } else {
        return HP_EINVAL;
    }
    if (*p)
        return HP_EINVAL;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = mon - 1,
                    .tm_mday = day,
                    .tm_hour = hour,
                    .tm_min = min,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (tm.tm_mday != day) /* e.g. February 30th normalised into March */
        return HP_EINVAL;
    *out_ms = ((int64_t)t - (int64_t)offset_min * 60) * 1000 + ms;
    return 0;
}

void hp_format_rfc3339_ms(int64_t ms, char out[HP_RFC3339_MAX])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, HP_RFC3339_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}
