/*
 * plugins/email/mime.h -- the message the email plugin sends, built by hand: RFC 5322
 * headers (RFC 2047 encoded-words for UTF-8 text, folded to 78 columns), MIME
 * bodies (quoted-printable text, base64 attachments in 76-column lines, RFC 2231
 * file names), CRLF line endings throughout.
 *
 * This file owns the validation of everything that becomes a header (addresses,
 * names, subject, extra headers: no CR, LF or other control characters, valid
 * UTF-8) and the layout of the message. It knows nothing of JSON, blobs or SMTP:
 * the caller fills a mime_mail_t and sends the bytes.
 */
#ifndef HOPPER_PLUGINS_EMAIL_MIME_H
#define HOPPER_PLUGINS_EMAIL_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* ---- Buffer ---- */

/* A byte buffer that grows up to `max` bytes. Past that (or out of memory) it stops
 * growing and sets `err`; appends after that are no-ops, so a builder appends freely
 * and checks once at the end. The data is NUL-terminated when err is 0. */
typedef struct mbuf_s {
    char *p;
    size_t len, cap, max;
    int err; /* 0, or -1: too large or out of memory */
} mbuf_t;

void mbuf_init(mbuf_t *b, size_t max);
void mbuf_free(mbuf_t *b); /* frees the data; the struct may be reused after mbuf_init */
void mbuf_add(mbuf_t *b, const void *data, size_t len);
void mbuf_str(mbuf_t *b, const char *s);

/* ---- Validation ----
 * Each returns 0, or -1 with a reason (no field name: the caller adds it) in why. */

/* An addr-spec as SMTP takes it: local@domain, ASCII, dot-atom local part and a
 * domain of letters, digits, hyphens and dots; at most 254 bytes. */
int mime_check_email(const char *email, char *why, size_t whylen);
/* Text for a header: valid UTF-8 without CR, LF or other control characters (a tab
 * is allowed). A CR or LF is reported as header injection. */
int mime_check_header_text(const char *s, char *why, size_t whylen);
/* Body text: valid UTF-8 without NUL (newlines of any kind are fine). */
int mime_check_body_text(const char *s, char *why, size_t whylen);
/* A header field name: 1-76 printable ASCII characters but ':'. */
int mime_check_header_name(const char *name, char *why, size_t whylen);
/* A content type "type/subtype" of RFC 2045 token characters, at most 127 bytes. */
int mime_check_content_type(const char *ct, char *why, size_t whylen);

/* Splits "Name <user@host>" or "user@host" (surrounding spaces ignored) into a
 * malloc'd name (NULL when there is none) and email, which the caller frees. Does not
 * validate either part. Returns 0, or -1 when the angle brackets do not match. */
int mime_split_address(const char *s, char **name, char **email);

/* ---- The message ---- */

typedef struct mime_addr_s {
    const char *name;  /* display name, UTF-8, or NULL */
    const char *email; /* a checked addr-spec */
} mime_addr_t;

typedef struct mime_attachment_s {
    const char *filename;     /* UTF-8 */
    const char *content_type; /* checked */
    const unsigned char *data;
    size_t len;
} mime_attachment_t;

typedef struct mime_header_s {
    const char *name, *value; /* checked */
} mime_header_t;

/* Everything borrowed: the caller keeps it alive while mime_build runs. */
typedef struct mime_mail_s {
    mime_addr_t from;
    const mime_addr_t *to, *cc, *reply_to; /* bcc never appears in the message */
    size_t nto, ncc, nreply_to;
    const char *subject; /* may be NULL */
    const char *text;    /* text/plain body, or NULL */
    const char *html;    /* text/html body, or NULL */
    const mime_header_t *headers;
    size_t nheaders;
    const mime_attachment_t *attachments;
    size_t nattachments;
    const char *message_id; /* without the angle brackets */
    time_t date;
} mime_mail_t;

/* Appends the whole message (headers, blank line, body) to out. Returns 0, or -1
 * when out overflowed its max (out->err set). */
int mime_build(const mime_mail_t *m, mbuf_t *out);

/* Exposed for tests of the encodings. */
void mime_qp_encode(mbuf_t *out, const char *text);
void mime_base64_lines(mbuf_t *out, const unsigned char *data, size_t len);

#endif
