/*
 * plugins/pdf/png_check.c -- see png_check.h. Owns nothing past the call: the
 * libpng structures and the row buffer are freed on every path, the error path
 * (a longjmp from the error callback) included.
 */
#include "png_check.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

typedef struct check_s {
    const unsigned char *data;
    size_t len, off;
    char *err;
    size_t errlen;
} check_t;

static void read_mem(png_structp png, png_bytep out, size_t n)
{
    check_t *c = png_get_io_ptr(png);
    if (n > c->len - c->off)
        png_error(png, "the file ends early");
    memcpy(out, c->data + c->off, n);
    c->off += n;
}

static void on_error(png_structp png, png_const_charp msg)
{
    check_t *c = png_get_error_ptr(png);
    snprintf(c->err, c->errlen, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* ancillary trouble: libharu copes, and so do we */
}

int png_check(const unsigned char *data, size_t len, long long max_pixels, unsigned max_side,
              char *err, size_t errlen)
{
    check_t c = {.data = data, .len = len, .err = err, .errlen = errlen};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    unsigned char *volatile row = NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(row);
        return -1;
    }
    png_set_read_fn(png, &c, read_mem);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (w > max_side || h > max_side || (long long)w * h > max_pixels) {
        snprintf(err, errlen, "%ux%u pixels, more than the limit (%lld pixels, %u each way)",
                 (unsigned)w, (unsigned)h, max_pixels, max_side);
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    row = malloc(png_get_rowbytes(png, info) + 1);
    if (!row)
        png_error(png, "out of memory");
    for (int pass = 0; pass < passes; pass++)
        for (png_uint_32 y = 0; y < h; y++)
            png_read_row(png, row, NULL);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(row);
    return 0;
}
