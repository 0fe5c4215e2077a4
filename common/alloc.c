/* The hp_malloc family: one place that allocates, and aborts loudly when the
 * system has no memory left (after Redis's zmalloc). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

static void oom(size_t size)
{
    fprintf(stderr, "hopper: out of memory allocating %zu bytes\n", size);
    fflush(stderr);
    abort();
}

void *hp_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        oom(size);
    return p;
}

void *hp_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *hp_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p)
        oom(size);
    return p;
}

char *hp_strdup(const char *s)
{
    return hp_strndup(s, strlen(s));
}

char *hp_strndup(const char *s, size_t n)
{
    char *p = hp_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void hp_free(void *ptr)
{
    free(ptr);
}

char *hp_vsprintf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        n = 0;
    char *p = hp_malloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *hp_sprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = hp_vsprintf(fmt, ap);
    va_end(ap);
    return p;
}
