/*
 * plugins/pdf/render.h -- lays out a JSON document (the pdf.render payload) into a
 * PDF with libharu.
 *
 * The renderer knows nothing of Hopper: it reads blobs, reports progress, asks
 * whether to stop and writes the finished PDF through the callbacks in render_io_t,
 * which plugins/pdf/pdf.c implements with the host API. What the document may
 * contain is specified in docs/plugins.md ("pdf"); every way it can be wrong is a
 * RENDER_BAD_INPUT with a message that names the element ("body[3].image: ...").
 */
#ifndef HOPPER_PLUGINS_PDF_RENDER_H
#define HOPPER_PLUGINS_PDF_RENDER_H

#include <stddef.h>

#include <jansson.h>

/* How a render ended. The plugin maps BAD_INPUT to a permanent failure, TRANSIENT
 * and CANCELED to retryable ones. */
typedef enum {
    RENDER_OK = 0,
    RENDER_BAD_INPUT = 1, /* the document is wrong: the same input always fails */
    RENDER_TRANSIENT = 2, /* I/O, memory, a font that cannot be read: may pass later */
    RENDER_CANCELED = 3,  /* io->canceled said stop */
} render_status_t;

/* Read-only during a render; any number of renders may share one. */
typedef struct render_config_s {
    const char *font_path;      /* a TrueType font, embedded for all regular text */
    const char *bold_font_path; /* for headings and table headers */
    int max_pages;              /* a document that needs more is BAD_INPUT */
    long long max_image_bytes;  /* per image blob */
    long long max_image_pixels; /* width * height of a PNG, checked before decoding */
    int memory_limited;         /* nonzero: out of memory is the document's fault */
} render_config_t;

typedef struct render_io_s {
    void *ctx; /* passed to every callback */
    /* Nonzero once the render should stop. */
    int (*canceled)(void *ctx);
    /* percent 0-100 and a short message; called now and then, not per line. */
    void (*progress)(void *ctx, int percent, const char *message);
    /* Reads the whole blob `id` (at most `max` bytes) into *data, a malloc'd buffer
     * the renderer frees, and its length into *len. Returns RENDER_OK, or
     * RENDER_BAD_INPUT (no such blob, too large) or RENDER_TRANSIENT (read error),
     * with a message in err that the renderer prefixes with the element's path. */
    render_status_t (*read_blob)(void *ctx, const char *id, long long max, unsigned char **data,
                                 size_t *len, char *err, size_t errlen);
    /* Appends PDF bytes to the output; 0, or -1 (the render ends RENDER_TRANSIENT). */
    int (*write)(void *ctx, const void *data, size_t len);
} render_io_t;

/* Renders `doc` (a JSON object) and writes the PDF through io->write. Returns
 * RENDER_OK with the number of pages in *pages, or another status with the reason
 * in err (always NUL-terminated). Frees everything it allocated, on every path; what
 * io->write received is the caller's to keep or throw away. */
render_status_t render_pdf(const json_t *doc, const render_config_t *cfg, const render_io_t *io,
                           int *pages, char *err, size_t errlen);

#endif
