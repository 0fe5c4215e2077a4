/*
 * libFuzzer harness for api/multipart.c. Build with Clang:
 *   CC=clang cmake -S . -B build-fuzz -DHOPPER_FUZZ=ON && cmake --build build-fuzz \
 *       --target fuzz_multipart && build-fuzz/tests/fuzz_multipart
 * Besides the sanitizers' checks, it asserts the parser's central promise: the
 * same body gives the same parts and the same verdict however it is split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_begin(void *ctx, const char *name, const char *filename, const char *ctype)
{
    return hp_strbuf_printf(ctx, "<%s|%s|%s>", name, filename ? filename : "-",
                            ctype ? ctype : "-");
}

static int on_data(void *ctx, const char *data, size_t len)
{
    return hp_strbuf_append(ctx, data, len);
}

static int on_end(void *ctx)
{
    return hp_strbuf_appends(ctx, "<end>");
}

static const mp_callbacks_t callbacks = {on_begin, on_data, on_end};

/* Feeds body in pieces of `step` bytes; returns the verdict, transcript in out. */
static int run(const char *body, size_t len, size_t step, hp_strbuf_t *out)
{
    hp_strbuf_init(out, 1 << 20);
    mp_parser_t *p = mp_new("multipart/form-data; boundary=\"XyZ\"", &callbacks, out, NULL, 0);
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < len; off += step)
        rc = mp_feed(p, body + off, len - off < step ? len - off : step);
    if (rc == 0)
        rc = mp_finish(p);
    mp_free(p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 17 + 1; /* the first byte picks the split */
    const char *body = (const char *)data + 1;
    hp_strbuf_t whole, split;
    int a = run(body, size - 1, size, &whole);
    int b = run(body, size - 1, step, &split);
    /* An error may stop the two runs at different points, so compare outputs only
     * when both succeed. */
    if ((a == 0) != (b == 0))
        abort();
    if (a == 0 && (whole.len != split.len || memcmp(whole.data, split.data, whole.len) != 0))
        abort();
    hp_strbuf_cleanup(&whole);
    hp_strbuf_cleanup(&split);
    return 0;
}
