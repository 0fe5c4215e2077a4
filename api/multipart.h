/*
 * api/multipart.h -- a streaming (push) parser for multipart/form-data bodies
 * (RFC 7578 on top of RFC 2046 section 5.1).
 *
 * The HTTP server pushes the request body in whatever pieces the socket delivers
 * (one byte at a time works) and the parser calls back: on_part_begin once a part's
 * headers are complete, on_part_data with the part's bytes as they stream past, and
 * on_part_end when its closing delimiter has been seen. A part is never buffered:
 * the only lookbehind is the partly matched delimiter, and those bytes are always a
 * prefix of the delimiter itself, so no copy is kept. The preamble and the epilogue
 * are ignored.
 *
 * This module owns the wire format only. It knows nothing of the server, of libuv
 * or of where the parts go (the blob store, usually).
 *
 * Why not a library: Debian ships no C multipart parser that streams with
 * callbacks and is packaged as a -dev library (libmultipart-parser-c is not in
 * Debian; GMime and libsoup parse whole messages in memory and bring GLib).
 */
#ifndef HP_API_MULTIPART_H
#define HP_API_MULTIPART_H

#include <stddef.h>

#include "common/common.h"

#define MP_BOUNDARY_MAX 70   /* RFC 2046: 1 to 70 characters */
#define MP_HEADER_MAX   8192 /* bytes of headers per part, blank line included */
#define MP_ERRMSG_MAX   160

/* Callbacks; any may be NULL. Each returns 0 to go on, or a nonzero code that stops
 * the parser: mp_feed then returns that code (e.g. HP_ETOOBIG from the blob store)
 * and the parser refuses all further input. Strings and data are borrowed: valid
 * only during the call, so copy what you keep.
 *   on_part_begin: `name` is never NULL; `filename` and `content_type` are NULL when
 *                  the part does not carry them (RFC 7578 then means text/plain).
 *   on_part_data:  a piece of the current part's content, never empty.
 *   on_part_end:   the current part is complete.
 * A body that ends early gets no on_part_end for the part it cut off: mp_finish
 * says so, and the caller drops what it was writing. */
typedef struct mp_callbacks_s {
    int (*on_part_begin)(void *ctx, const char *name, const char *filename,
                         const char *content_type);
    int (*on_part_data)(void *ctx, const char *data, size_t len);
    int (*on_part_end)(void *ctx);
} mp_callbacks_t;

typedef struct mp_parser_s mp_parser_t;

/* Creates a parser for a body whose Content-Type header value is
 * `content_type_header`, e.g. `multipart/form-data; boundary="abc"`. `cb` is copied;
 * `ctx` is handed to every callback. Returns NULL when the header is not
 * multipart/form-data or its boundary is missing, empty, longer than 70 characters
 * or holds characters RFC 2046 does not allow; the reason is then written to
 * `err` (if not NULL). The caller frees the parser with mp_free. */
mp_parser_t *mp_new(const char *content_type_header, const mp_callbacks_t *cb, void *ctx, char *err,
                    size_t errlen);

/* Pushes the next `len` bytes of the body. Returns 0; HP_EINVAL when the body is
 * malformed (mp_errmsg says where); or a callback's nonzero code. After an error
 * every further call returns the same code and no callback runs again. */
int mp_feed(mp_parser_t *p, const char *data, size_t len);

/* Call at the end of the body. Returns 0 when the closing delimiter ("--boundary--")
 * was seen, else HP_EINVAL ("truncated body") or the earlier error. */
int mp_finish(mp_parser_t *p);

/* Why the parser failed, in words, or "" when it has not. Owned by the parser. */
const char *mp_errmsg(const mp_parser_t *p);

/* Frees the parser; mp_free(NULL) is a no-op. No callback runs. */
void mp_free(mp_parser_t *p);

#endif
