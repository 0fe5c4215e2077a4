/*
 * plugins/pdf/png_check.h -- decodes a PNG once, row by row, to prove it whole
 * before libharu loads it.
 *
 * libharu 2.3.0 installs a libpng error callback that returns instead of jumping,
 * so libpng calls abort() on the first corrupt byte: a bad upload would kill the
 * process. This check reads the same bytes with libpng under setjmp, keeping one
 * row in memory, so a damaged PNG becomes a message ("IDAT: incorrect header
 * check") and never reaches libharu.
 */
#ifndef HOPPER_PLUGINS_PDF_PNG_CHECK_H
#define HOPPER_PLUGINS_PDF_PNG_CHECK_H

#include <stddef.h>

/* 0 when `data` is a complete PNG of at most max_pixels pixels (and at most
 * max_side pixels each way); -1 with the reason in err otherwise. */
int png_check(const unsigned char *data, size_t len, long long max_pixels, unsigned max_side,
              char *err, size_t errlen);

#endif
