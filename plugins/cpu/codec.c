/*
 * codec.c -- streaming zstd (libzstd) and gzip (zlib) for the cpu plugin.
 *
 * Owns the compression libraries' stream state and one output buffer per codec.
 * Does not own the input, the sink's destination or anything about jobs: see
 * codec.h. Decompression accepts what the command-line tools write: zstd streams
 * of several frames (skippable ones too) and gzip files of several members.
 */
#include "codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define OUT_CAP         (256 * 1024) /* bytes handed to the sink at a time, at most */
#define GZIP_WINDOW     (15 + 16)    /* zlib: 32 KiB window, gzip wrapper */
#define GZIP_MEM_LEVEL  8
#define ZSTD_LEVEL_MAX  19 /* 20-22 ("ultra") need hundreds of MiB per job */
#define ZSTD_LEVEL_DEF  3
#define GZIP_LEVEL_DEF  6
#define ZSTD_WINDOW_MAX 27 /* decompression: refuse frames that need > 128 MiB */

/* One stream in one direction. Exactly one of zc, zd, gz is in use, as alg and
 * compress say. */
struct codec_s {
    codec_alg_t alg;
    bool compress;
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
    z_stream gz;
    bool gz_ready;      /* inflateInit2/deflateInit2 succeeded: End it when freeing */
    bool gz_ended;      /* inflate: the last member ended exactly where the input did */
    bool got_input;     /* decompression: any byte fed at all */
    size_t zstd_left;   /* decompression: ZSTD_decompressStream's last return (0: a
                         * frame ended and was flushed) */
    unsigned char *out; /* OUT_CAP bytes */
    char err[160];
};

static const struct {
    const char *name;
    codec_alg_t alg;
} algs[] = {
    {"zstd", CODEC_ZSTD},
    {"gzip", CODEC_GZIP},
};

/* ---- Names and formats ---- */

int codec_alg_parse(const char *name, codec_alg_t *out)
{
    for (size_t i = 0; name && i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (strcmp(name, algs[i].name) == 0) {
            *out = algs[i].alg;
            return 0;
        }
    }
    return -1;
}

const char *codec_alg_name(codec_alg_t alg)
{
    return alg == CODEC_GZIP ? "gzip" : "zstd";
}

int codec_detect(const void *data, size_t len, codec_alg_t *out)
{
    const unsigned char *p = data;
    if (len >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
        *out = CODEC_GZIP;
        return 0;
    }
    if (len >= 4) {
        uint32_t magic =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        if (magic == ZSTD_MAGICNUMBER ||
            (magic & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START) {
            *out = CODEC_ZSTD;
            return 0;
        }
    }
    return -1;
}

void codec_levels(codec_alg_t alg, int *min, int *max, int *def)
{
    *min = 1;
    *max = alg == CODEC_GZIP ? 9 : ZSTD_LEVEL_MAX;
    *def = alg == CODEC_GZIP ? GZIP_LEVEL_DEF : ZSTD_LEVEL_DEF;
}

/* ---- Life cycle ---- */

static int zstd_setup(codec_t *c, int level, int workers, long long size_hint)
{
    if (c->compress) {
        c->zc = ZSTD_createCCtx();
        if (!c->zc)
            return CODEC_ENOMEM;
        if (ZSTD_isError(ZSTD_CCtx_setParameter(c->zc, ZSTD_c_compressionLevel, level)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(c->zc, ZSTD_c_checksumFlag, 1)))
            return CODEC_EINTERNAL;
        /* Only a libzstd built with threads accepts this; without, stay single. */
        if (workers > 0)
            (void)ZSTD_CCtx_setParameter(c->zc, ZSTD_c_nbWorkers, workers);
        if (size_hint >= 0 &&
            ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(c->zc, (unsigned long long)size_hint)))
            return CODEC_EINTERNAL;
        return CODEC_OK;
    }
    c->zd = ZSTD_createDCtx();
    if (!c->zd)
        return CODEC_ENOMEM;
    if (ZSTD_isError(ZSTD_DCtx_setParameter(c->zd, ZSTD_d_windowLogMax, ZSTD_WINDOW_MAX)))
        return CODEC_EINTERNAL;
    return CODEC_OK;
}

static int gzip_setup(codec_t *c, int level)
{
    int zr = c->compress ? deflateInit2(&c->gz, level, Z_DEFLATED, GZIP_WINDOW, GZIP_MEM_LEVEL,
                                        Z_DEFAULT_STRATEGY)
                         : inflateInit2(&c->gz, GZIP_WINDOW);
    if (zr != Z_OK)
        return zr == Z_MEM_ERROR ? CODEC_ENOMEM : CODEC_EINTERNAL;
    c->gz_ready = true;
    return CODEC_OK;
}

int codec_new(codec_alg_t alg, bool compress, int level, int workers, long long size_hint,
              codec_t **out)
{
    *out = NULL;
    codec_t *c = calloc(1, sizeof(*c));
    if (!c)
        return CODEC_ENOMEM;
    c->alg = alg;
    c->compress = compress;
    c->out = malloc(OUT_CAP);
    int err = c->out ? CODEC_OK : CODEC_ENOMEM;
    if (!err)
        err = alg == CODEC_ZSTD ? zstd_setup(c, level, workers, size_hint) : gzip_setup(c, level);
    if (err) {
        codec_free(c);
        return err;
    }
    *out = c;
    return CODEC_OK;
}

void codec_free(codec_t *c)
{
    if (!c)
        return;
    ZSTD_freeCCtx(c->zc);
    ZSTD_freeDCtx(c->zd);
    if (c->gz_ready) {
        if (c->compress)
            deflateEnd(&c->gz);
        else
            inflateEnd(&c->gz);
    }
    free(c->out);
    free(c);
}

const char *codec_error(const codec_t *c)
{
    return c->err;
}

/* ---- Streaming ---- */

static int emit(const codec_t *c, size_t n, codec_sink_fn sink, void *arg)
{
    if (n == 0)
        return CODEC_OK;
    return sink(arg, c->out, n) == 0 ? CODEC_OK : CODEC_ESINK;
}

static int zstd_fail(codec_t *c, size_t code)
{
    snprintf(c->err, sizeof(c->err), "%s", ZSTD_getErrorName(code));
    if (ZSTD_getErrorCode(code) == ZSTD_error_memory_allocation)
        return CODEC_ENOMEM;
    return c->compress ? CODEC_EINTERNAL : CODEC_ECORRUPT;
}

/* Compresses `in`; with end, also ends the frame. */
static int zstd_compress(codec_t *c, const void *data, size_t len, bool end, codec_sink_fn sink,
                         void *arg)
{
    ZSTD_inBuffer in = {data, len, 0};
    for (;;) {
        ZSTD_outBuffer out = {c->out, OUT_CAP, 0};
        size_t r = ZSTD_compressStream2(c->zc, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
        if (ZSTD_isError(r))
            return zstd_fail(c, r);
        int err = emit(c, out.pos, sink, arg);
        if (err)
            return err;
        if (end ? r == 0 : in.pos == in.size)
            return CODEC_OK;
    }
}

/* Decompresses `in`. zstd does not take in the last byte of a frame before it
 * has handed out all of the frame's output, so "all input taken" is the loop's end
 * (as in zstd's examples/streaming_decompression.c). Calling again with no input
 * after a frame ended would start the next frame and make zstd_left nonzero: a
 * complete stream whose output filled the buffer exactly would look truncated. */
static int zstd_decompress(codec_t *c, const void *data, size_t len, codec_sink_fn sink, void *arg)
{
    ZSTD_inBuffer in = {data, len, 0};
    while (in.pos < in.size) {
        ZSTD_outBuffer out = {c->out, OUT_CAP, 0};
        size_t r = ZSTD_decompressStream(c->zd, &out, &in);
        if (ZSTD_isError(r))
            return zstd_fail(c, r);
        c->zstd_left = r;
        int err = emit(c, out.pos, sink, arg);
        if (err)
            return err;
    }
    return CODEC_OK;
}

static int gzip_fail(codec_t *c, int zr)
{
    snprintf(c->err, sizeof(c->err), "%s",
             c->gz.msg           ? c->gz.msg
             : zr == Z_NEED_DICT ? "needs a preset dictionary"
                                 : zError(zr));
    if (zr == Z_MEM_ERROR)
        return CODEC_ENOMEM;
    return c->compress ? CODEC_EINTERNAL : CODEC_ECORRUPT;
}

static int gzip_compress(codec_t *c, const void *data, size_t len, bool end, codec_sink_fn sink,
                         void *arg)
{
    c->gz.next_in = (Bytef *)(uintptr_t)data; /* zlib's API is not const */
    c->gz.avail_in = (uInt)len;
    for (;;) {
        c->gz.next_out = c->out;
        c->gz.avail_out = OUT_CAP;
        int zr = deflate(&c->gz, end ? Z_FINISH : Z_NO_FLUSH);
        if (zr == Z_STREAM_ERROR)
            return gzip_fail(c, zr);
        bool full = c->gz.avail_out == 0;
        int err = emit(c, OUT_CAP - c->gz.avail_out, sink, arg);
        if (err)
            return err;
        if (end ? zr == Z_STREAM_END : c->gz.avail_in == 0 && !full)
            return CODEC_OK;
    }
}

/* Inflates `in` (possibly empty: then only drains), member after member. */
static int gzip_decompress(codec_t *c, const void *data, size_t len, codec_sink_fn sink, void *arg)
{
    c->gz.next_in = (Bytef *)(uintptr_t)data;
    c->gz.avail_in = (uInt)len;
    for (;;) {
        if (c->gz_ended) {
            if (c->gz.avail_in == 0)
                return CODEC_OK;
            if (inflateReset(&c->gz) != Z_OK) /* another member follows */
                return gzip_fail(c, Z_STREAM_ERROR);
            c->gz_ended = false;
        }
        c->gz.next_out = c->out;
        c->gz.avail_out = OUT_CAP;
        int zr = inflate(&c->gz, Z_NO_FLUSH);
        size_t produced = OUT_CAP - c->gz.avail_out;
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
            return gzip_fail(c, zr);
        int err = emit(c, produced, sink, arg);
        if (err)
            return err;
        if (zr == Z_STREAM_END)
            c->gz_ended = true;
        else if (c->gz.avail_in == 0 && c->gz.avail_out > 0)
            return CODEC_OK; /* all taken in, nothing held back: wants more input */
        else if (zr == Z_BUF_ERROR && produced == 0)
            return CODEC_OK;
    }
}

int codec_feed(codec_t *c, const void *in, size_t len, codec_sink_fn sink, void *arg)
{
    if (len == 0)
        return CODEC_OK;
    if (!c->compress)
        c->got_input = true;
    if (c->alg == CODEC_ZSTD)
        return c->compress ? zstd_compress(c, in, len, false, sink, arg)
                           : zstd_decompress(c, in, len, sink, arg);
    int err = CODEC_OK;
    /* zlib counts in uInt: feed very large buffers in slices. */
    for (size_t off = 0; !err && off < len;) {
        size_t n = len - off > (1u << 30) ? (1u << 30) : len - off;
        const char *p = (const char *)in + off;
        err = c->compress ? gzip_compress(c, p, n, false, sink, arg)
                          : gzip_decompress(c, p, n, sink, arg);
        off += n;
    }
    return err;
}

int codec_finish(codec_t *c, codec_sink_fn sink, void *arg)
{
    if (c->compress)
        return c->alg == CODEC_ZSTD ? zstd_compress(c, NULL, 0, true, sink, arg)
                                    : gzip_compress(c, NULL, 0, true, sink, arg);
    /* Nothing to drain: zlib's loop ends only once inflate holds no output back, and
     * zstd keeps the last byte of a frame until it has handed out the frame's output.
     * Only the question is left whether the input ended where a frame did. */
    bool complete = c->alg == CODEC_ZSTD ? c->zstd_left == 0 : c->gz_ended;
    if (!c->got_input || !complete) {
        snprintf(c->err, sizeof(c->err), "%s",
                 c->got_input ? "truncated: the data ends inside a frame" : "the input is empty");
        return CODEC_ECORRUPT;
    }
    return CODEC_OK;
}
