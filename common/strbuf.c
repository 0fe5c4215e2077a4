/* A growable, capped, always NUL-terminated byte buffer. */
#include <stdio.h>
#include <string.h>

#include "common/common.h"

void hp_strbuf_init(hp_strbuf_t *sb, size_t limit)
{
    sb->data = NULL;
    sb->len = 0;
    sb->cap = 0;
    sb->limit = limit ? limit : SIZE_MAX / 2;
}

static int reserve(hp_strbuf_t *sb, size_t extra)
{
    if (extra > sb->limit - sb->len)
        return HP_ETOOBIG;
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap)
        return 0;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need)
        cap *= 2;
    sb->data = hp_realloc(sb->data, cap);
    sb->cap = cap;
    return 0;
}

int hp_strbuf_append(hp_strbuf_t *sb, const void *data, size_t len)
{
    int err = reserve(sb, len);
    if (err)
        return err;
    if (len)
        memcpy(sb->data + sb->len, data, len);
    sb->len += len;
    sb->data[sb->len] = '\0';
    return 0;
}

int hp_strbuf_appends(hp_strbuf_t *sb, const char *s)
{
    return hp_strbuf_append(sb, s, strlen(s));
}

int hp_strbuf_printf(hp_strbuf_t *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = hp_vsprintf(fmt, ap);
    va_end(ap);
    int err = hp_strbuf_appends(sb, s);
    hp_free(s);
    return err;
}

char *hp_strbuf_steal(hp_strbuf_t *sb, size_t *len)
{
    if (!sb->data)
        hp_strbuf_append(sb, "", 0);
    char *p = sb->data;
    if (len)
        *len = sb->len;
    sb->data = NULL;
    sb->len = sb->cap = 0;
    return p;
}

void hp_strbuf_reset(hp_strbuf_t *sb)
{
    sb->len = 0;
    if (sb->data)
        sb->data[0] = '\0';
}

void hp_strbuf_cleanup(hp_strbuf_t *sb)
{
    hp_free(sb->data);
    sb->data = NULL;
    sb->len = sb->cap = 0;
}
