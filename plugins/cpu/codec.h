/*
 * codec.h -- streaming zstd and gzip, compressing or decompressing, one chunk at a
 * time, for the cpu plugin.
 *
 * A codec_t turns input chunks into output bytes that it hands to a sink callback
 * as they are produced, from one output buffer of its own, so neither the input nor
 * the output is ever held whole in memory. The codec knows nothing of jobs, blobs or
 * the host API: the handler reads the blob, feeds the codec and writes what the sink
 * gets to the new blob.
 */
#ifndef HOPPER_CPU_CODEC_H
#define HOPPER_CPU_CODEC_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    CODEC_ZSTD = 0,
    CODEC_GZIP = 1,
} codec_alg_t;

/* Results of codec_feed and codec_finish. */
enum {
    CODEC_OK = 0,
    CODEC_ECORRUPT = -1,  /* decompressing: the input is not valid data of the format */
    CODEC_ESINK = -2,     /* the sink returned nonzero: its owner knows why */
    CODEC_ENOMEM = -3,    /* the library could not allocate */
    CODEC_EINTERNAL = -4, /* the library refused a call that should work: a bug */
};

typedef struct codec_s codec_t;

/* Receives len (> 0) output bytes, valid only during the call. Returns 0, or
 * nonzero to stop: the codec call then returns CODEC_ESINK. */
typedef int (*codec_sink_fn)(void *arg, const void *data, size_t len);

/* The algorithm named `name` ("zstd", "gzip"): 0 and *out, or -1. */
int codec_alg_parse(const char *name, codec_alg_t *out);
const char *codec_alg_name(codec_alg_t alg);

/* The algorithm whose magic number starts `data` (len bytes): 0 and *out, or -1
 * when it is neither zstd (including skippable frames) nor gzip. */
int codec_detect(const void *data, size_t len, codec_alg_t *out);

/* The compression levels `alg` accepts, and its default. */
void codec_levels(codec_alg_t alg, int *min, int *max, int *def);

/* A new codec. compress: with `level` (in codec_levels' range), `workers` extra
 * zstd threads (0: none; ignored for gzip or when libzstd has no threads) and
 * `size_hint` the input's length (-1: unknown; zstd records it in the frame).
 * Returns 0 and *out, which the caller frees with codec_free; CODEC_ENOMEM or
 * CODEC_EINTERNAL. */
int codec_new(codec_alg_t alg, bool compress, int level, int workers, long long size_hint,
              codec_t **out);

/* Passes len input bytes through, handing every output byte to sink(arg, ...).
 * Returns CODEC_OK or an error above; after an error only codec_free is valid. */
int codec_feed(codec_t *c, const void *in, size_t len, codec_sink_fn sink, void *arg);

/* Ends the stream: compressing, writes the rest and the trailer; decompressing,
 * checks that the input ended at the end of a frame (CODEC_ECORRUPT if it was
 * truncated or empty). Returns as codec_feed. */
int codec_finish(codec_t *c, codec_sink_fn sink, void *arg);

/* Why the last call failed, from the library ("incorrect header check"), or "". */
const char *codec_error(const codec_t *c);

/* Frees the codec; codec_free(NULL) is a no-op. */
void codec_free(codec_t *c);

#endif
