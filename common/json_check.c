/*
 * Checking that text is one JSON value (RFC 8259), without building it.
 *
 * Written here rather than taken from a library because the libraries in Debian
 * (jansson, json-c) only check by parsing into a tree: for every payload Hopper
 * accepts, that is an allocation per value, freed at once, and it was a third of
 * the enqueue path's CPU. This is a single pass with a small fixed stack and no
 * allocation. What it accepts, jansson (JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL)
 * accepts too, so a payload that passes here can be read by jansson later (in
 * plugins, in the API): it refuses \u0000 and lone surrogates like jansson does,
 * invalid UTF-8, and nesting deeper than HP_JSON_MAX_DEPTH. One difference: a
 * number too large for a double (1e400) passes here, where jansson says overflow.
 */
#include <stdio.h>
#include <string.h>

#include "common/common.h"

typedef struct cursor_s {
    const unsigned char *p;
    const unsigned char *end;
    const unsigned char *start;
    char *errbuf;
    size_t errlen;
} cursor_t;

/* Writes "<what> at line L column C" and returns HP_EINVAL. */
static int refuse(cursor_t *c, const char *what)
{
    int line = 1, col = 1;
    for (const unsigned char *q = c->start; q < c->p && q < c->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    if (c->errbuf)
        snprintf(c->errbuf, c->errlen, "%s at line %d column %d", what, line, col);
    return HP_EINVAL;
}

static void skip_space(cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hex_value(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Reads the 4 hex digits after "\u"; -1 if they are not. */
static long read_hex4(cursor_t *c)
{
    if (c->end - c->p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(c->p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    c->p += 4;
    return v;
}

/* After a backslash. */
static int check_escape(cursor_t *c)
{
    if (c->p >= c->end)
        return refuse(c, "unfinished escape");
    unsigned char e = *c->p++;
    if (e && strchr("\"\\/bfnrt", e))
        return 0;
    if (e != 'u')
        return refuse(c, "invalid escape");
    long u = read_hex4(c);
    if (u < 0)
        return refuse(c, "invalid \\u escape");
    if (u == 0)
        return refuse(c, "\\u0000 is not allowed");
    if (u >= 0xDC00 && u <= 0xDFFF)
        return refuse(c, "lone low surrogate");
    if (u >= 0xD800 && u <= 0xDBFF) {
        if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u')
            return refuse(c, "lone high surrogate");
        c->p += 2;
        long lo = read_hex4(c);
        if (lo < 0xDC00 || lo > 0xDFFF)
            return refuse(c, "lone high surrogate");
    }
    return 0;
}

/* One multi-byte UTF-8 sequence starting at c->p (its first byte is >= 0x80). */
static int check_utf8(cursor_t *c)
{
    const unsigned char *s = c->p;
    size_t left = (size_t)(c->end - s);
    unsigned char b0 = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        n = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        n = 3;
        if (b0 == 0xE0)
            lo = 0xA0; /* no overlong forms */
        else if (b0 == 0xED)
            hi = 0x9F; /* no UTF-16 surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        n = 4;
        if (b0 == 0xF0)
            lo = 0x90;
        else if (b0 == 0xF4)
            hi = 0x8F; /* nothing past U+10FFFF */
    } else {
        return refuse(c, "invalid UTF-8");
    }
    if (left < n || s[1] < lo || s[1] > hi)
        return refuse(c, "invalid UTF-8");
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return refuse(c, "invalid UTF-8");
    }
    c->p += n;
    return 0;
}

/* After the opening quote; leaves c->p after the closing one. */
static int check_string(cursor_t *c)
{
    for (;;) {
        /* Plain ASCII runs are the common case. */
        while (c->p < c->end && *c->p >= 0x20 && *c->p < 0x80 && *c->p != '"' && *c->p != '\\')
            c->p++;
        if (c->p >= c->end)
            return refuse(c, "unfinished string");
        unsigned char ch = *c->p;
        if (ch == '"') {
            c->p++;
            return 0;
        }
        if (ch < 0x20)
            return refuse(c, "control character in a string");
        int err;
        if (ch == '\\') {
            c->p++;
            err = check_escape(c);
        } else {
            err = check_utf8(c);
        }
        if (err)
            return err;
    }
}

static bool digit_at(const cursor_t *c)
{
    return c->p < c->end && *c->p >= '0' && *c->p <= '9';
}

static void skip_digits(cursor_t *c)
{
    while (digit_at(c))
        c->p++;
}

static int check_number(cursor_t *c)
{
    if (*c->p == '-')
        c->p++;
    if (!digit_at(c))
        return refuse(c, "invalid number");
    if (*c->p == '0')
        c->p++;
    else
        skip_digits(c);
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digit_at(c))
            return refuse(c, "invalid number");
        skip_digits(c);
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (!digit_at(c))
            return refuse(c, "invalid number");
        skip_digits(c);
    }
    return 0;
}

static int check_literal(cursor_t *c)
{
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(c->end - c->p) >= n && memcmp(c->p, words[i], n) == 0) {
            c->p += n;
            return 0;
        }
    }
    return refuse(c, "expected a JSON value");
}

/* A key and its colon, at a point where an object member must start. */
static int check_key(cursor_t *c)
{
    skip_space(c);
    if (c->p >= c->end || *c->p != '"')
        return refuse(c, "expected a string key");
    c->p++;
    int err = check_string(c);
    if (err)
        return err;
    skip_space(c);
    if (c->p >= c->end || *c->p != ':')
        return refuse(c, "expected ':'");
    c->p++;
    return 0;
}

int hp_json_check(const char *text, size_t len, char *errbuf, size_t errlen)
{
    cursor_t c = {(const unsigned char *)text, (const unsigned char *)text + len,
                  (const unsigned char *)text, errbuf, errlen};
    char open[HP_JSON_MAX_DEPTH]; /* '{' or '[' per level */
    int depth = 0, err = 0;
    bool want_value = true;
    while (!err) {
        skip_space(&c);
        if (want_value) {
            if (c.p >= c.end)
                return refuse(&c, "expected a JSON value");
            unsigned char ch = *c.p;
            if (ch == '{' || ch == '[') {
                if (depth == HP_JSON_MAX_DEPTH)
                    return refuse(&c, "nested too deep");
                open[depth++] = (char)ch;
                c.p++;
                skip_space(&c);
                if (c.p < c.end && *c.p == (ch == '{' ? '}' : ']')) {
                    c.p++;
                    depth--;
                    want_value = false;
                } else if (ch == '{') {
                    err = check_key(&c);
                }
                continue;
            }
            if (ch == '"') {
                c.p++;
                err = check_string(&c);
            } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
                err = check_number(&c);
            } else {
                err = check_literal(&c);
            }
            want_value = false;
            continue;
        }
        if (depth == 0)
            return c.p == c.end ? 0 : refuse(&c, "unexpected text after the JSON value");
        if (c.p >= c.end)
            return refuse(&c, open[depth - 1] == '{' ? "unfinished object" : "unfinished array");
        unsigned char ch = *c.p++;
        if (ch == ',') {
            want_value = true;
            if (open[depth - 1] == '{')
                err = check_key(&c);
        } else if (ch == (open[depth - 1] == '{' ? '}' : ']')) {
            depth--;
        } else {
            c.p--;
            return refuse(&c,
                          open[depth - 1] == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    return err;
}

int hp_strbuf_append_json_string(hp_strbuf_t *sb, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    int err = hp_strbuf_append(sb, "\"", 1);
    const char *run = s;
    for (const char *p = s; !err && *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        err = hp_strbuf_append(sb, run, (size_t)(p - run));
        char esc[7] = {'\\', (char)ch, 0};
        if (ch < 0x20)
            snprintf(esc, sizeof(esc), "\\u00%c%c", hex[ch >> 4], hex[ch & 15]);
        if (!err)
            err = hp_strbuf_appends(sb, esc);
        run = p + 1;
    }
    if (!err)
        err = hp_strbuf_appends(sb, run);
    if (!err)
        err = hp_strbuf_append(sb, "\"", 1);
    return err;
}
