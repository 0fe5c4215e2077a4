/*
 * The multipart/form-data push parser (see multipart.h for the contract).
 *
 * The body is a preamble, then parts separated by the delimiter D = CRLF "--"
 * boundary, then "--" and an epilogue. Each delimiter is followed by optional
 * transport padding (spaces and tabs) and CRLF, then the part's headers, a blank
 * line and the content. We scan for D with a match counter: the bytes matched so
 * far are D[0..match), so when a match breaks off they are released from D itself
 * and no input is ever held. Because D starts with CR and a boundary may not hold a
 * CR, a broken match can never hide the start of another one: the KMP failure
 * function of D is all zeros, and one counter is enough.
 *
 * The body may start with "--boundary" and no CRLF before it, so the preamble
 * starts with the CRLF already matched.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/multipart.h"

typedef enum {
    MP_PREAMBLE,    /* skipping text before the first delimiter */
    MP_AFTER_DELIM, /* just after a delimiter: "--", padding or CRLF */
    MP_PADDING,     /* transport padding before CRLF */
    MP_CLOSE_DASH,  /* saw the first '-' of the closing "--" */
    MP_DELIM_LF,    /* saw CR after the delimiter, expecting LF */
    MP_HEADERS,     /* collecting a part's header lines */
    MP_DATA,        /* streaming a part's content */
    MP_EPILOGUE,    /* after the closing delimiter: ignored */
    MP_ERROR,       /* sticky: every call returns `err` */
} mp_state_t;

/*
 * One parser per request body. It owns `hdr` (MP_HEADER_MAX bytes, reused for
 * every part) and the decoded name, filename and content type of the part whose
 * headers are being handed to on_part_begin; those are freed as soon as it returns.
 */
struct mp_parser_s {
    mp_callbacks_t cb;
    void *ctx;
    mp_state_t state;
    int err;                             /* the code every call returns in MP_ERROR */
    char delim[4 + MP_BOUNDARY_MAX + 1]; /* "\r\n--" boundary */
    size_t delim_len;
    size_t match;      /* delim[0..match) seen, not yet released */
    size_t hdr_len;    /* bytes of hdr used (also counts padding) */
    size_t line_start; /* where the current header line begins */
    char *hdr;
    char *name, *filename, *ctype; /* the part being begun */
    char errmsg[MP_ERRMSG_MAX];
};

/* ---- Errors ---- */

static int fail(mp_parser_t *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(mp_parser_t *p, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
    va_end(ap);
    p->state = MP_ERROR;
    p->err = code;
    return code;
}

/* A callback stopped us: keep its code, and say so. */
static int stopped(mp_parser_t *p, int code)
{
    return fail(p, code, "stopped by the caller (%s)", hp_strerror(code));
}

/* ---- Header values: tokens, quoted strings, parameters ---- */

static bool is_tchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", c);
}

/* RFC 2046 bchars; a space may not be last (checked by the caller). */
static bool is_bchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("'()+_,-./:=? ", c));
}

/* Control characters other than tab never belong in a header value. */
static bool is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

typedef struct cursor_s {
    const char *p, *end;
} cursor_t;

static void skip_ows(cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

static size_t take_token(cursor_t *c)
{
    const char *start = c->p;
    while (c->p < c->end && is_tchar((unsigned char)*c->p))
        c->p++;
    return (size_t)(c->p - start);
}

/*
 * Reads a token or a quoted string into `out` (decoded). A backslash escapes only
 * a following '"' or '\': browsers send file names such as C:\dir\a.txt without
 * escaping them (the WHATWG form encoding percent-encodes quotes instead), and
 * Go's mime package reads them the same way.
 */
static int take_value(cursor_t *c, hp_strbuf_t *out)
{
    if (c->p < c->end && *c->p != '"') {
        const char *start = c->p;
        size_t n = take_token(c);
        return n ? hp_strbuf_append(out, start, n) : HP_EINVAL;
    }
    for (c->p++; c->p < c->end; c->p++) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            c->p++;
            return 0;
        }
        if (ch == '\\' && c->end - c->p > 1 && (c->p[1] == '"' || c->p[1] == '\\'))
            ch = (unsigned char)*++c->p;
        else if (is_ctl(ch))
            return HP_EINVAL;
        int err = hp_strbuf_append(out, &ch, 1);
        if (err)
            return err;
    }
    return HP_EINVAL; /* no closing quote */
}

typedef int (*param_fn)(void *arg, const char *name, size_t nlen, const char *value);

/* Parses `*( OWS ";" OWS name "=" value ) OWS` up to c->end, calling fn for each
 * parameter with its decoded value. Returns 0, HP_EINVAL, or fn's code. */
static int parse_params(cursor_t *c, param_fn fn, void *arg)
{
    hp_strbuf_t val;
    hp_strbuf_init(&val, MP_HEADER_MAX);
    int err = 0;
    for (skip_ows(c); !err && c->p < c->end; skip_ows(c)) {
        if (*c->p++ != ';') {
            err = HP_EINVAL;
            break;
        }
        skip_ows(c);
        if (c->p == c->end)
            break; /* a trailing ';' is common enough to forgive */
        const char *name = c->p;
        size_t nlen = take_token(c);
        skip_ows(c);
        if (!nlen || c->p == c->end || *c->p++ != '=')
            err = HP_EINVAL;
        skip_ows(c);
        hp_strbuf_reset(&val);
        if (!err)
            err = take_value(c, &val);
        if (!err)
            err = fn(arg, name, nlen, val.data ? val.data : "");
    }
    hp_strbuf_cleanup(&val);
    return err;
}

static bool name_is(const char *name, size_t nlen, const char *want)
{
    return nlen == strlen(want) && strncasecmp(name, want, nlen) == 0;
}

/* Sets *slot to a copy of value, refusing a second one: a repeated name or
 * filename would let two readers of one body disagree about what it holds. */
static int set_once(char **slot, const char *value)
{
    if (*slot)
        return HP_EINVAL;
    *slot = hp_strdup(value);
    return 0;
}

/* ---- Creation ---- */

static int boundary_param(void *arg, const char *name, size_t nlen, const char *value)
{
    return name_is(name, nlen, "boundary") ? set_once((char **)arg, value) : 0;
}

/* Checks the media type and returns the boundary (hp_malloc'd) or NULL + message. */
static char *parse_content_type(const char *header, char *err, size_t errlen)
{
    cursor_t c = {header, header + strlen(header)};
    skip_ows(&c);
    const char *type = c.p;
    size_t tlen = take_token(&c);
    if (c.p < c.end && *c.p == '/') {
        c.p++;
        tlen += 1 + take_token(&c);
    }
    if (!name_is(type, tlen, "multipart/form-data")) {
        snprintf(err, errlen, "Content-Type is not multipart/form-data");
        return NULL;
    }
    char *boundary = NULL;
    if (parse_params(&c, boundary_param, &boundary) != 0) {
        hp_free(boundary);
        snprintf(err, errlen, "malformed Content-Type parameters");
        return NULL;
    }
    if (!boundary)
        snprintf(err, errlen, "Content-Type has no boundary parameter");
    return boundary;
}

static bool boundary_valid(const char *b, char *err, size_t errlen)
{
    size_t n = strlen(b);
    if (n == 0 || n > MP_BOUNDARY_MAX) {
        snprintf(err, errlen, "boundary must be 1 to %d characters, not %zu", MP_BOUNDARY_MAX, n);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_bchar((unsigned char)b[i])) {
            snprintf(err, errlen, "boundary holds a character RFC 2046 does not allow");
            return false;
        }
    }
    if (b[n - 1] == ' ') {
        snprintf(err, errlen, "boundary may not end with a space");
        return false;
    }
    return true;
}

mp_parser_t *mp_new(const char *content_type_header, const mp_callbacks_t *cb, void *ctx, char *err,
                    size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (!content_type_header) {
        snprintf(err, errlen, "no Content-Type");
        return NULL;
    }
    char *boundary = parse_content_type(content_type_header, err, errlen);
    if (!boundary)
        return NULL;
    if (!boundary_valid(boundary, err, errlen)) {
        hp_free(boundary);
        return NULL;
    }
    mp_parser_t *p = hp_calloc(1, sizeof(*p));
    if (cb)
        p->cb = *cb;
    p->ctx = ctx;
    p->state = MP_PREAMBLE;
    p->delim_len = (size_t)snprintf(p->delim, sizeof(p->delim), "\r\n--%s", boundary);
    p->match = 2; /* the body may open with "--boundary" */
    p->hdr = hp_malloc(MP_HEADER_MAX);
    hp_free(boundary);
    return p;
}

static void clear_part(mp_parser_t *p)
{
    hp_free(p->name);
    hp_free(p->filename);
    hp_free(p->ctype);
    p->name = p->filename = p->ctype = NULL;
}

void mp_free(mp_parser_t *p)
{
    if (!p)
        return;
    clear_part(p);
    hp_free(p->hdr);
    hp_free(p);
}

const char *mp_errmsg(const mp_parser_t *p)
{
    return p->errmsg;
}

/* ---- Part headers ---- */

static int disposition_param(void *arg, const char *name, size_t nlen, const char *value)
{
    mp_parser_t *p = arg;
    if (name_is(name, nlen, "name"))
        return set_once(&p->name, value);
    if (name_is(name, nlen, "filename"))
        return set_once(&p->filename, value);
    return 0; /* filename* and others: RFC 7578 section 4.2 says not to use them */
}

static int parse_disposition(mp_parser_t *p, const char *v, size_t len)
{
    cursor_t c = {v, v + len};
    const char *type = c.p;
    size_t tlen = take_token(&c);
    if (!name_is(type, tlen, "form-data"))
        return fail(p, HP_EINVAL, "part's Content-Disposition is not form-data");
    if (parse_params(&c, disposition_param, p) != 0)
        return fail(p, HP_EINVAL, "malformed or repeated Content-Disposition parameters");
    return 0;
}

/* One header line, CRLF stripped. Headers other than the two we need are ignored
 * (Content-Transfer-Encoding is deprecated by RFC 7578 section 4.7). */
static int parse_header_line(mp_parser_t *p, const char *line, size_t len, bool *seen_cd)
{
    if (line[0] == ' ' || line[0] == '\t')
        return fail(p, HP_EINVAL, "obsolete header line folding in a part");
    const char *colon = memchr(line, ':', len);
    cursor_t c = {line, colon ? colon : line};
    size_t nlen = take_token(&c);
    if (!colon || !nlen || c.p != colon)
        return fail(p, HP_EINVAL, "malformed header line in a part");
    c = (cursor_t){colon + 1, line + len};
    skip_ows(&c);
    while (c.end > c.p && (c.end[-1] == ' ' || c.end[-1] == '\t'))
        c.end--;
    for (const char *q = c.p; q < c.end; q++) {
        if (is_ctl((unsigned char)*q))
            return fail(p, HP_EINVAL, "control character in a part's header");
    }
    if (name_is(line, nlen, "content-disposition")) {
        if (*seen_cd)
            return fail(p, HP_EINVAL, "part has two Content-Disposition headers");
        *seen_cd = true;
        return parse_disposition(p, c.p, (size_t)(c.end - c.p));
    }
    if (name_is(line, nlen, "content-type")) {
        if (p->ctype)
            return fail(p, HP_EINVAL, "part has two Content-Type headers");
        p->ctype = hp_strndup(c.p, (size_t)(c.end - c.p));
    }
    return 0;
}

/* hdr[0..line_start) holds the part's header lines; hand them to on_part_begin. */
static int begin_part(mp_parser_t *p)
{
    bool seen_cd = false;
    size_t pos = 0;
    while (pos < p->line_start) {
        const char *line = p->hdr + pos;
        const char *nl = memchr(line, '\n', p->line_start - pos);
        size_t len = (size_t)(nl - line);
        pos += len + 1;
        if (len && line[len - 1] == '\r')
            len--;
        int err = parse_header_line(p, line, len, &seen_cd);
        if (err) {
            clear_part(p);
            return err;
        }
    }
    if (!p->name) {
        clear_part(p);
        return fail(p, HP_EINVAL, "part has no Content-Disposition name");
    }
    int err = 0;
    if (p->cb.on_part_begin)
        err = p->cb.on_part_begin(p->ctx, p->name, p->filename, p->ctype);
    clear_part(p);
    if (err)
        return stopped(p, err);
    p->state = MP_DATA;
    p->match = 0;
    return 0;
}

/* Takes one header byte; a line that is empty (LF or CRLF alone) ends the headers. */
static int header_byte(mp_parser_t *p, char c)
{
    if (p->hdr_len == MP_HEADER_MAX)
        return fail(p, HP_EINVAL, "part headers exceed %d bytes", MP_HEADER_MAX);
    if (c == '\0')
        return fail(p, HP_EINVAL, "NUL byte in a part's headers");
    p->hdr[p->hdr_len++] = c;
    if (c != '\n')
        return 0;
    size_t line_len = p->hdr_len - p->line_start;
    if (line_len == 1 || (line_len == 2 && p->hdr[p->line_start] == '\r'))
        return begin_part(p);
    p->line_start = p->hdr_len;
    return 0;
}

/* ---- Scanning for the delimiter ---- */

static int emit(mp_parser_t *p, const char *data, size_t len)
{
    if (!len || !p->cb.on_part_data)
        return 0;
    int err = p->cb.on_part_data(p->ctx, data, len);
    return err ? stopped(p, err) : 0;
}

/*
 * Scans data[0..len) for the rest of the delimiter, emitting content when `emit_data`
 * (in a part) and dropping it otherwise (preamble). Returns 0 with *used set to the
 * bytes consumed, which stop just after the delimiter when *found.
 */
static int scan(mp_parser_t *p, const char *data, size_t len, bool emit_data, size_t *used,
                bool *found)
{
    size_t i = 0, start = 0; /* data[start..i) is content not yet emitted */
    int err = 0;
    *found = false;
    while (i < len && !err) {
        if (p->match == 0) {
            const char *cr = memchr(data + i, '\r', len - i);
            if (!cr) {
                i = len;
                break;
            }
            i = (size_t)(cr - data);
            if (emit_data)
                err = emit(p, data + start, i - start);
            p->match = 1;
            start = ++i;
        } else if (data[i] == p->delim[p->match]) {
            start = ++i;
            if (++p->match == p->delim_len) {
                *found = true;
                break;
            }
        } else {
            /* The match broke off: what it held was content after all. */
            if (emit_data)
                err = emit(p, p->delim, p->match);
            p->match = 0;
            start = i;
        }
    }
    if (!err && !*found && emit_data)
        err = emit(p, data + start, i - start);
    *used = i;
    return err;
}

static int end_of_delimiter(mp_parser_t *p, bool in_part)
{
    p->match = 0;
    p->hdr_len = p->line_start = 0;
    p->state = MP_AFTER_DELIM;
    if (in_part && p->cb.on_part_end) {
        int err = p->cb.on_part_end(p->ctx);
        if (err)
            return stopped(p, err);
    }
    return 0;
}

/* ---- Feeding ---- */

/* One byte in the small states between a delimiter and the part's headers. */
static int delimiter_tail_byte(mp_parser_t *p, char c)
{
    if (++p->hdr_len > MP_HEADER_MAX)
        return fail(p, HP_EINVAL, "transport padding exceeds %d bytes", MP_HEADER_MAX);
    if (p->state == MP_AFTER_DELIM && c == '-') {
        p->state = MP_CLOSE_DASH;
        return 0;
    }
    if (p->state == MP_CLOSE_DASH && c == '-') {
        p->state = MP_EPILOGUE;
        return 0;
    }
    if (p->state == MP_DELIM_LF && c == '\n') {
        p->hdr_len = 0;
        p->state = MP_HEADERS;
        return 0;
    }
    bool padding_ok = p->state == MP_AFTER_DELIM || p->state == MP_PADDING;
    if (padding_ok && (c == ' ' || c == '\t')) {
        p->state = MP_PADDING;
        return 0;
    }
    if (padding_ok && c == '\r') {
        p->state = MP_DELIM_LF;
        return 0;
    }
    return fail(p, HP_EINVAL, "malformed delimiter line: boundary followed by 0x%02x",
                (unsigned char)c);
}

int mp_feed(mp_parser_t *p, const char *data, size_t len)
{
    size_t i = 0;
    int err = 0;
    while (i < len && !err) {
        size_t used = 0;
        bool found;
        switch (p->state) {
        case MP_PREAMBLE:
        case MP_DATA:
            err = scan(p, data + i, len - i, p->state == MP_DATA, &used, &found);
            if (!err && found)
                err = end_of_delimiter(p, p->state == MP_DATA);
            i += used;
            break;
        case MP_HEADERS:
            err = header_byte(p, data[i++]);
            break;
        case MP_EPILOGUE:
            return 0;
        case MP_ERROR:
            return p->err;
        default:
            err = delimiter_tail_byte(p, data[i++]);
            break;
        }
    }
    return p->state == MP_ERROR ? p->err : err;
}

int mp_finish(mp_parser_t *p)
{
    if (p->state == MP_ERROR)
        return p->err;
    if (p->state != MP_EPILOGUE)
        return fail(p, HP_EINVAL, "truncated body: the closing boundary was not seen");
    return 0;
}
