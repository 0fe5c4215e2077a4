/*
 * plugins/email/mime.c -- builds the RFC 5322 / MIME message the email plugin sends,
 * and checks everything that goes into a header. See mime.h.
 *
 * Lines: headers are folded at spaces to stay within 78 columns where the text
 * allows, and never reach SMTP's 998; bodies are quoted-printable (76 columns) and
 * attachments base64 (76 columns), so no body line is long whatever the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "mime.h"

#define FOLD_AT      78  /* RFC 5322's recommended line length */
#define WORD_MAX     900 /* an unfoldable word longer than this is encoded instead */
#define EW_CHUNK     39  /* UTF-8 bytes per encoded-word: 52 base64 chars, 64 in all */
#define PCT_CHUNK    54  /* characters of an RFC 2231 value per continuation line */
#define SIMPLE_FNAME 50  /* longer file names use RFC 2231 continuations */

/* ---- Buffer ---- */

void mbuf_init(mbuf_t *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void mbuf_free(mbuf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void mbuf_add(mbuf_t *b, const void *data, size_t len)
{
    if (b->err)
        return;
    if (len > b->max || b->len > b->max - len) {
        b->err = -1;
        return;
    }
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->err = -1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
}

void mbuf_str(mbuf_t *b, const char *s)
{
    mbuf_add(b, s, strlen(s));
}

/* ---- Validation ---- */

static int why_set(char *why, size_t whylen, const char *msg)
{
    snprintf(why, whylen, "%s", msg);
    return -1;
}

/* RFC 5322 atext: the characters of an atom. */
static bool is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if ((p[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

int mime_check_email(const char *email, char *why, size_t whylen)
{
    size_t len = strlen(email);
    if (len == 0)
        return why_set(why, whylen, "is empty");
    if (strpbrk(email, "\r\n"))
        return why_set(why, whylen, "contains CR or LF (header injection refused)");
    if (len > 254)
        return why_set(why, whylen, "is longer than 254 bytes");
    const char *at = strrchr(email, '@');
    if (!at)
        return why_set(why, whylen, "is not an email address (no '@')");
    size_t local = (size_t)(at - email);
    if (local == 0 || local > 64)
        return why_set(why, whylen, "has an empty or over-long local part");
    for (size_t i = 0; i < local; i++) {
        unsigned char c = (unsigned char)email[i];
        if (c == '.') {
            if (i == 0 || i == local - 1 || email[i + 1] == '.')
                return why_set(why, whylen, "has a misplaced '.' in its local part");
        } else if (!is_atext(c)) {
            return why_set(why, whylen,
                           "has a character an email address cannot hold in its local part");
        }
    }
    const char *d = at + 1;
    if (!*d)
        return why_set(why, whylen, "has no domain");
    size_t label = 0;
    for (const char *p = d; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '.') {
            if (label == 0 || p[-1] == '-')
                return why_set(why, whylen, "has an invalid domain");
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            if (++label > 63)
                return why_set(why, whylen, "has a domain label longer than 63 characters");
        } else {
            return why_set(why, whylen, "has an invalid domain");
        }
    }
    if (label == 0 || d[strlen(d) - 1] == '-')
        return why_set(why, whylen, "has an invalid domain");
    return 0;
}

int mime_check_header_text(const char *s, char *why, size_t whylen)
{
    if (strpbrk(s, "\r\n"))
        return why_set(why, whylen, "contains CR or LF (header injection refused)");
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return why_set(why, whylen, "contains a control character");
        size_t n = utf8_len(p);
        if (n == 0)
            return why_set(why, whylen, "is not valid UTF-8");
        p += n;
    }
    return 0;
}

int mime_check_body_text(const char *s, char *why, size_t whylen)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_len(p);
        if (n == 0)
            return why_set(why, whylen, "is not valid UTF-8");
        p += n;
    }
    return 0;
}

int mime_check_header_name(const char *name, char *why, size_t whylen)
{
    size_t len = strlen(name);
    if (len == 0 || len > 76)
        return why_set(why, whylen, "must be 1 to 76 characters");
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p == '\r' || *p == '\n')
            return why_set(why, whylen, "contains CR or LF (header injection refused)");
        if (*p < 33 || *p > 126 || *p == ':')
            return why_set(why, whylen, "is not a header name (printable ASCII, no ':')");
    }
    return 0;
}

static bool is_token_char(unsigned char c)
{
    return c > 32 && c < 127 && !strchr("()<>@,;:\\\"/[]?=", c);
}

int mime_check_content_type(const char *ct, char *why, size_t whylen)
{
    if (strpbrk(ct, "\r\n"))
        return why_set(why, whylen, "contains CR or LF (header injection refused)");
    const char *slash = strchr(ct, '/');
    if (strlen(ct) > 127 || !slash || slash == ct || !slash[1])
        return why_set(why, whylen, "is not a content type \"type/subtype\"");
    for (const char *p = ct; *p; p++) {
        if (p != slash && !is_token_char((unsigned char)*p))
            return why_set(why, whylen, "is not a content type \"type/subtype\"");
    }
    return 0;
}

static char *dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

int mime_split_address(const char *s, char **name, char **email)
{
    *name = *email = NULL;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t len = strlen(s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    const char *lt = memchr(s, '<', len);
    if (!lt) {
        if (memchr(s, '>', len))
            return -1;
        *email = dup_range(s, len);
        return *email ? 0 : -1;
    }
    if (len == 0 || s[len - 1] != '>' || memchr(lt + 1, '<', len - (size_t)(lt + 1 - s)))
        return -1;
    size_t nlen = (size_t)(lt - s);
    while (nlen && (s[nlen - 1] == ' ' || s[nlen - 1] == '\t'))
        nlen--;
    /* "Ada Lovelace" <ada@x>: the quotes are syntax, not part of the name. */
    const char *n0 = s;
    if (nlen >= 2 && n0[0] == '"' && n0[nlen - 1] == '"') {
        n0++;
        nlen -= 2;
    }
    *email = dup_range(lt + 1, (size_t)(s + len - 1 - (lt + 1)));
    *name = nlen ? dup_range(n0, nlen) : NULL;
    if (!*email || (nlen && !*name)) {
        free(*email);
        free(*name);
        *name = *email = NULL;
        return -1;
    }
    return 0;
}

/* ---- Encodings ---- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 of data, no line breaks. */
static void base64_raw(mbuf_t *out, const unsigned char *data, size_t len)
{
    char quad[4];
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        quad[0] = b64chars[(v >> 18) & 63];
        quad[1] = b64chars[(v >> 12) & 63];
        quad[2] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
        quad[3] = i + 2 < len ? b64chars[v & 63] : '=';
        mbuf_add(out, quad, 4);
    }
}

void mime_base64_lines(mbuf_t *out, const unsigned char *data, size_t len)
{
    for (size_t off = 0; off < len; off += 57) {
        if (off)
            mbuf_add(out, "\r\n", 2);
        base64_raw(out, data + off, len - off < 57 ? len - off : 57);
    }
}

void mime_qp_encode(mbuf_t *out, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)text;
    size_t col = 0;
    while (*p) {
        if (*p == '\n' || (*p == '\r' && p[1] == '\n')) {
            mbuf_add(out, "\r\n", 2);
            col = 0;
            p += *p == '\r' ? 2 : 1;
            continue;
        }
        unsigned char c = *p;
        bool eol = p[1] == '\0' || p[1] == '\n' || (p[1] == '\r' && p[2] == '\n');
        char rep[3];
        size_t n = 1;
        if ((c == ' ' || c == '\t') && !eol) {
            rep[0] = (char)c;
        } else if (c >= 33 && c <= 126 && c != '=') {
            rep[0] = (char)c;
        } else {
            rep[0] = '=';
            rep[1] = hex[c >> 4];
            rep[2] = hex[c & 15];
            n = 3;
        }
        if (col + n > 75) { /* leave room for the soft break's '=' */
            mbuf_add(out, "=\r\n", 3);
            col = 0;
        }
        mbuf_add(out, rep, n);
        col += n;
        p++;
    }
}

/* ---- Headers ---- */

/* A header being written: tracks the column so tokens fold at FOLD_AT. */
typedef struct hdr_s {
    mbuf_t *b;
    size_t col;
    size_t start; /* column after "Name:" */
} hdr_t;

static void hdr_begin(hdr_t *h, mbuf_t *b, const char *name)
{
    h->b = b;
    mbuf_str(b, name);
    mbuf_add(b, ":", 1);
    h->col = h->start = strlen(name) + 1;
}

/* Appends a token after a space, or after a fold when the line would grow too long
 * and already holds something. */
static void hdr_token(hdr_t *h, const char *tok, size_t len)
{
    if (h->col > h->start && h->col + 1 + len > FOLD_AT) {
        mbuf_add(h->b, "\r\n ", 3);
        h->col = 1;
    } else {
        mbuf_add(h->b, " ", 1);
        h->col++;
    }
    mbuf_add(h->b, tok, len);
    h->col += len;
}

static void hdr_end(hdr_t *h)
{
    mbuf_add(h->b, "\r\n", 2);
}

/* RFC 2047 B encoded-words for s, each a token: UTF-8 is split only between
 * characters, so every word decodes on its own. */
static void hdr_encoded_words(hdr_t *h, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    while (len > 0) {
        size_t n = 0;
        while (n < len) {
            size_t c = utf8_len(p + n);
            if (c == 0)
                c = 1; /* checked before; never split a byte */
            if (n + c > EW_CHUNK)
                break;
            n += c;
        }
        mbuf_t w;
        mbuf_init(&w, 128);
        mbuf_str(&w, "=?UTF-8?B?");
        base64_raw(&w, p, n);
        mbuf_str(&w, "?=");
        if (w.err)
            h->b->err = -1;
        else
            hdr_token(h, w.p, w.len);
        mbuf_free(&w);
        p += n;
        len -= n;
    }
}

/* Unstructured text (subject, extra headers): plain words folded at spaces when it
 * is printable ASCII, encoded-words otherwise (and when it could be mistaken for
 * encoded-words, or holds a word too long to fold). */
static void hdr_unstructured(hdr_t *h, const char *s)
{
    bool plain = strstr(s, "=?") == NULL;
    size_t word = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && plain; p++) {
        if (*p < 32 || *p > 126)
            plain = false;
        word = *p == ' ' ? 0 : word + 1;
        if (word > WORD_MAX)
            plain = false;
    }
    if (!plain) {
        hdr_encoded_words(h, s);
        return;
    }
    for (const char *p = s;;) {
        const char *sp = strchr(p, ' ');
        size_t n = sp ? (size_t)(sp - p) : strlen(p);
        hdr_token(h, p, n);
        if (!sp)
            break;
        p = sp + 1;
    }
}

/* A display name: its words as they are when they are all atoms, encoded-words
 * otherwise (so no quoting rules apply). */
static void hdr_phrase(hdr_t *h, const char *name)
{
    bool atoms = strlen(name) <= WORD_MAX;
    for (const unsigned char *p = (const unsigned char *)name; *p && atoms; p++)
        atoms = *p == ' ' || is_atext(*p);
    if (!atoms) {
        hdr_encoded_words(h, name);
        return;
    }
    hdr_unstructured(h, name);
}

static void hdr_addresses(mbuf_t *b, const char *field, const mime_addr_t *a, size_t n)
{
    hdr_t h;
    hdr_begin(&h, b, field);
    for (size_t i = 0; i < n; i++) {
        const char *sep = i + 1 < n ? "," : "";
        char tok[300];
        if (a[i].name && *a[i].name) {
            hdr_phrase(&h, a[i].name);
            snprintf(tok, sizeof(tok), "<%s>%s", a[i].email, sep);
        } else {
            snprintf(tok, sizeof(tok), "%s%s", a[i].email, sep);
        }
        hdr_token(&h, tok, strlen(tok));
    }
    hdr_end(&h);
}

static void hdr_date(mbuf_t *b, time_t t)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    char line[64];
    snprintf(line, sizeof(line), "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    mbuf_str(b, line);
}

/* RFC 2231 attr-char: what a parameter value may hold without %-encoding. */
static bool is_attr_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$&+-.^_`|~", c));
}

/* ";\r\n param=value" for a file name: a quoted string when short and plain ASCII,
 * else RFC 2231 UTF-8 %-encoding in continuation lines (param*0*=, param*1*=...). */
static void param_filename(mbuf_t *b, const char *param, const char *value)
{
    bool simple = strlen(value) <= SIMPLE_FNAME;
    for (const unsigned char *p = (const unsigned char *)value; *p && simple; p++)
        simple = *p >= 32 && *p < 127 && *p != '"' && *p != '\\';
    char line[128];
    if (simple) {
        snprintf(line, sizeof(line), ";\r\n %s=\"%s\"", param, value);
        mbuf_str(b, line);
        return;
    }
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)value;
    for (int part = 0; *p || part == 0; part++) {
        snprintf(line, sizeof(line), ";\r\n %s*%d*=%s", param, part, part == 0 ? "UTF-8''" : "");
        mbuf_str(b, line);
        size_t n = 0;
        while (*p && n + 3 <= PCT_CHUNK) {
            if (is_attr_char(*p)) {
                mbuf_add(b, p, 1);
                n++;
            } else {
                char pct[3] = {'%', hex[*p >> 4], hex[*p & 15]};
                mbuf_add(b, pct, 3);
                n += 3;
            }
            p++;
        }
    }
}

/* ---- Bodies ---- */

static void text_part(mbuf_t *b, const char *subtype, const char *text)
{
    mbuf_str(b, "Content-Type: text/");
    mbuf_str(b, subtype);
    mbuf_str(b, "; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
    mime_qp_encode(b, text);
}

/* The readable content: one text part, or multipart/alternative of both. */
static void content_part(mbuf_t *b, const mime_mail_t *m, const char *alt)
{
    if (m->text && m->html) {
        mbuf_str(b, "Content-Type: multipart/alternative;\r\n boundary=\"");
        mbuf_str(b, alt);
        mbuf_str(b, "\"\r\n\r\n--");
        mbuf_str(b, alt);
        mbuf_str(b, "\r\n");
        text_part(b, "plain", m->text);
        mbuf_str(b, "\r\n--");
        mbuf_str(b, alt);
        mbuf_str(b, "\r\n");
        text_part(b, "html", m->html);
        mbuf_str(b, "\r\n--");
        mbuf_str(b, alt);
        mbuf_str(b, "--");
    } else if (m->html) {
        text_part(b, "html", m->html);
    } else {
        text_part(b, "plain", m->text ? m->text : "");
    }
}

static void attachment_part(mbuf_t *b, const mime_attachment_t *a)
{
    mbuf_str(b, "Content-Type: ");
    mbuf_str(b, a->content_type);
    param_filename(b, "name", a->filename);
    mbuf_str(b, "\r\nContent-Disposition: attachment");
    param_filename(b, "filename", a->filename);
    mbuf_str(b, "\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    mime_base64_lines(b, a->data, a->len);
}

/* 24 hex digits from the kernel's random pool (or the clock, should that fail):
 * boundaries no body can contain by chance. "=_" cannot occur in quoted-printable
 * or base64 text at all. */
static void boundary_token(char out[25])
{
    unsigned char r[12];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
        for (size_t i = 0; i < sizeof(r); i++, v = v * 6364136223846793005ULL + 1)
            r[i] = (unsigned char)(v >> 56);
    }
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

int mime_build(const mime_mail_t *m, mbuf_t *out)
{
    hdr_date(out, m->date);
    hdr_addresses(out, "From", &m->from, 1);
    if (m->nto)
        hdr_addresses(out, "To", m->to, m->nto);
    if (m->ncc)
        hdr_addresses(out, "Cc", m->cc, m->ncc);
    if (!m->nto && !m->ncc)
        mbuf_str(out, "To: undisclosed-recipients:;\r\n");
    if (m->nreply_to)
        hdr_addresses(out, "Reply-To", m->reply_to, m->nreply_to);
    if (m->subject) {
        hdr_t h;
        hdr_begin(&h, out, "Subject");
        hdr_unstructured(&h, m->subject);
        hdr_end(&h);
    }
    mbuf_str(out, "Message-ID: <");
    mbuf_str(out, m->message_id);
    mbuf_str(out, ">\r\n");
    for (size_t i = 0; i < m->nheaders; i++) {
        hdr_t h;
        hdr_begin(&h, out, m->headers[i].name);
        hdr_unstructured(&h, m->headers[i].value);
        hdr_end(&h);
    }
    mbuf_str(out, "MIME-Version: 1.0\r\n");

    char token[25];
    boundary_token(token);
    char mixed[48], alt[48];
    snprintf(mixed, sizeof(mixed), "=_hopper_mix_%s", token);
    snprintf(alt, sizeof(alt), "=_hopper_alt_%s", token);
    if (m->nattachments == 0) {
        content_part(out, m, alt);
    } else {
        mbuf_str(out, "Content-Type: multipart/mixed;\r\n boundary=\"");
        mbuf_str(out, mixed);
        mbuf_str(out, "\"\r\n\r\nThis is a multi-part message in MIME format.\r\n--");
        mbuf_str(out, mixed);
        mbuf_str(out, "\r\n");
        content_part(out, m, alt);
        for (size_t i = 0; i < m->nattachments; i++) {
            mbuf_str(out, "\r\n--");
            mbuf_str(out, mixed);
            mbuf_str(out, "\r\n");
            attachment_part(out, &m->attachments[i]);
        }
        mbuf_str(out, "\r\n--");
        mbuf_str(out, mixed);
        mbuf_str(out, "--");
    }
    mbuf_str(out, "\r\n");
    return out->err ? -1 : 0;
}
