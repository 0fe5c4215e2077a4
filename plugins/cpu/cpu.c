/*
 * cpu.c -- the cpu plugin: CPU-bound work on blobs, streamed in chunks.
 *
 *   cpu.compress    {"blob": id, "algorithm": "zstd"|"gzip", "level": n} -> a new blob
 *   cpu.decompress  {"blob": id, "algorithm": "auto"|"zstd"|"gzip"}      -> a new blob
 *   cpu.digest      {"blob": id, "algorithms": ["sha256", "blake2b512"]} -> hex digests
 *
 * Every handler reads its input blob one chunk at a time (config chunk_kib, 1 MiB by
 * default) into one buffer, passes the chunk on (to a codec from codec.c, or to
 * OpenSSL's digests) and writes what comes out straight to the new blob, so no blob
 * is ever held whole in memory. Between chunks it checks hopper_job_canceled, and
 * reports progress as the share of the input read. A job that stops early aborts
 * the blob it was writing, so no partial output is ever stored.
 *
 * This file owns payload checking, the read loop, failure classification and the
 * results; codec.c owns compression. docs/plugins.md documents payloads and results.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <hopper/plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "codec.h"

/* The entry point, declared for -Wmissing-prototypes. */
HOPPER_EXPORT int hopper_plugin_init(const hopper_host_api_t *api, hopper_plugin_t *plugin,
                                     char **errmsg);

#define PLUGIN_NAME       "cpu"
#define PLUGIN_VERSION    "1.0.0"
#define PROGRESS_EVERY_MS 250 /* at most this often, so a fast job does not flood Redis */
#define MAX_DIGESTS       4
#define RESULT_MAX        1024
#define MIB               (1024.0 * 1024.0)
#define BLOB_ID_HEX       64
#define ID_SHOWN          80 /* of a malformed id, in messages */
#define DEFAULT_DIGEST    "sha256"

/* ---- Configuration ---- */

/* Settings from the worker's plugin_config {"cpu": {...}}, read once in init and
 * never written after, so every handler thread may read them without a lock. */
typedef struct cpu_conf_s {
    long long chunk_kib;      /* input read per step */
    long long zstd_workers;   /* extra zstd threads per compress job: 0 keeps one core */
    long long max_output_mib; /* largest blob compress or decompress may write */
} cpu_conf_t;

static cpu_conf_t conf;

static const struct {
    const char *key;
    long long min, max, def;
    size_t offset;
} conf_keys[] = {
    {"chunk_kib", 4, 64 * 1024, 1024, offsetof(cpu_conf_t, chunk_kib)},
    {"zstd_workers", 0, 64, 0, offsetof(cpu_conf_t, zstd_workers)},
    {"max_output_mib", 1, 1 << 20, 1024, offsetof(cpu_conf_t, max_output_mib)},
};

/* ---- Digests ---- */

static const struct {
    const char *name; /* in the payload and the result */
    const EVP_MD *(*md)(void);
} digests[] = {
    {"sha256", EVP_sha256},
    {"sha512", EVP_sha512},
    {"sha3-256", EVP_sha3_256},
    {"blake2b512", EVP_blake2b512},
};
#define NDIGESTS (sizeof(digests) / sizeof(digests[0]))

/* ---- One job ---- */

/* The state of one handler call: the input it reads, the blob it writes and what
 * it has reported. Lives on the handler's stack; run_cleanup releases everything
 * it still holds (closing the input, aborting an uncommitted blob), whatever way
 * the handler ends. */
typedef struct run_s {
    hopper_job_t *job;
    const char *type; /* "cpu.compress": starts every message */
    json_t *payload;  /* parsed once; owned */
    const char *blob; /* the input id, inside payload */
    int fd;           /* the input, or -1 */
    long long in_size, in_done;
    long long chunk_len; /* the chunk being passed on; 0 once the input has ended */
    unsigned char *buf;  /* conf.chunk_kib KiB; owned */
    size_t buf_len;
    hopper_blob_writer_t *w; /* the output until committed, or NULL */
    long long out_bytes, out_max;
    bool out_too_big;  /* the sink stopped: out_max reached */
    bool write_failed; /* the sink stopped: hopper_blob_write failed */
    codec_t *codec;    /* owned, or NULL */
    int last_percent;
    int64_t last_report_ms, start_ms;
} run_t;

/* A step consumes one chunk: HOPPER_OK to go on, or the status of a failure it
 * has already set with hopper_fail. */
typedef hopper_status_t (*step_fn)(run_t *r, const unsigned char *data, size_t len, void *arg);

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_init(run_t *r, hopper_job_t *job, const char *type)
{
    memset(r, 0, sizeof(*r));
    r->job = job;
    r->type = type;
    r->fd = -1;
    r->last_percent = -1;
    r->start_ms = mono_ms();
    r->out_max = conf.max_output_mib * 1024 * 1024;
}

static void run_cleanup(run_t *r)
{
    if (r->fd >= 0)
        close(r->fd);
    if (r->w)
        hopper_blob_abort(r->w);
    codec_free(r->codec);
    free(r->buf);
    json_decref(r->payload);
}

/* ---- Payload ---- */

/* What a member must be: 's' a string, 'i' an integer, 'l' a string or an array of
 * strings. */
typedef struct member_spec_s {
    const char *name;
    char kind;
} member_spec_t;

static const member_spec_t compress_members[] = {
    {"blob", 's'}, {"algorithm", 's'}, {"level", 'i'}, {NULL, 0}};
static const member_spec_t decompress_members[] = {{"blob", 's'}, {"algorithm", 's'}, {NULL, 0}};
static const member_spec_t digest_members[] = {{"blob", 's'}, {"algorithms", 'l'}, {NULL, 0}};

/* Parses the payload into r->payload and checks it against `spec`: an object whose
 * members are all in spec, each of its kind, with a "blob". HOPPER_OK, or a
 * permanent failure naming the member. */
static hopper_status_t parse_payload(run_t *r, const member_spec_t *spec)
{
    size_t len = 0;
    const char *text = hopper_job_payload(r->job, &len);
    r->payload = text ? json_loadb(text, len, 0, NULL) : NULL;
    if (!json_is_object(r->payload))
        return hopper_fail(r->job, HOPPER_FAIL_PERMANENT, "%s: the payload must be a JSON object",
                           r->type);
    const char *key;
    json_t *value;
    json_object_foreach(r->payload, key, value)
    {
        const member_spec_t *m = spec;
        while (m->name && strcmp(m->name, key) != 0)
            m++;
        if (!m->name)
            return hopper_fail(r->job, HOPPER_FAIL_PERMANENT,
                               "%s: unknown payload member \"%.64s\"", r->type, key);
        bool ok = m->kind == 's'   ? json_is_string(value)
                  : m->kind == 'i' ? json_is_integer(value)
                                   : json_is_string(value) || json_is_array(value);
        if (!ok)
            return hopper_fail(r->job, HOPPER_FAIL_PERMANENT, "%s: \"%s\" must be %s", r->type, key,
                               m->kind == 's'   ? "a string"
                               : m->kind == 'i' ? "an integer"
                                                : "a string or an array of strings");
    }
    r->blob = json_string_value(json_object_get(r->payload, "blob"));
    if (!r->blob)
        return hopper_fail(r->job, HOPPER_FAIL_PERMANENT,
                           "%s: the payload needs \"blob\", the id of the input blob", r->type);
    return HOPPER_OK;
}

static bool id_well_formed(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++)
        if (!((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'a' && id[n] <= 'f')))
            return false;
    return n == BLOB_ID_HEX;
}

/* ---- Input and output ---- */

/* Opens the input blob and the read buffer. A malformed id or a blob the store
 * does not have is permanent; any other trouble opening it is the store's, and
 * retryable. */
static hopper_status_t open_input(run_t *r)
{
    errno = 0;
    r->fd = hopper_blob_open(r->job, r->blob, &r->in_size, NULL);
    if (r->fd < 0) {
        int e = errno;
        if (!id_well_formed(r->blob))
            return hopper_fail(r->job, HOPPER_FAIL_PERMANENT,
                               "%s: \"blob\": \"%.*s\" is not a blob id (64 lowercase hex digits)",
                               r->type, ID_SHOWN, r->blob);
        if (e == ENOENT || e == ENOTDIR)
            return hopper_fail(r->job, HOPPER_FAIL_PERMANENT, "%s: \"blob\": no blob %s", r->type,
                               r->blob);
        return hopper_fail(r->job, HOPPER_FAIL_RETRYABLE,
                           "%s: \"blob\": cannot open %s: the blob store is unavailable (%s)",
                           r->type, r->blob, e ? strerror(e) : "see the worker's log");
    }
    r->buf_len = (size_t)conf.chunk_kib * 1024;
    r->buf = malloc(r->buf_len);
    if (!r->buf)
        return hopper_fail(r->job, HOPPER_FAIL_RETRYABLE, "%s: out of memory", r->type);
    return HOPPER_OK;
}

static hopper_status_t open_output(run_t *r, const char *content_type)
{
    r->w = hopper_blob_create(r->job, content_type);
    if (!r->w)
        return hopper_fail(r->job, HOPPER_FAIL_RETRYABLE,
                           "%s: cannot create the output blob: the blob store is unavailable "
                           "(see the worker's log)",
                           r->type);
    return HOPPER_OK;
}

/* The codec's sink: appends to the output blob, within out_max. */
static int out_sink(void *arg, const void *data, size_t len)
{
    run_t *r = arg;
    if (r->out_bytes + (long long)len > r->out_max) {
        r->out_too_big = true;
        return -1;
    }
    if (hopper_blob_write(r->w, data, len) != 0) {
        r->write_failed = true;
        return -1;
    }
    r->out_bytes += (long long)len;
    return 0;
}

/* Commits the output blob into id (65 bytes); the writer is gone either way. */
static hopper_status_t commit_output(run_t *r, char id[65])
{
    hopper_blob_writer_t *w = r->w;
    r->w = NULL;
    long long size = 0;
    if (hopper_blob_commit(w, id, &size) != 0)
        return hopper_fail(r->job, HOPPER_FAIL_RETRYABLE,
                           "%s: cannot store the output blob (disk full or the store "
                           "unavailable: see the worker's log)",
                           r->type);
    return HOPPER_OK;
}

/* Classifies a codec error: corrupt input and an output past the limit are
 * permanent; a failed write or memory is retryable; the library refusing a call
 * that should work is a bug, permanent so it does not loop. */
static hopper_status_t codec_failure(run_t *r, int err, codec_alg_t alg)
{
    const char *name = codec_alg_name(alg);
    switch (err) {
    case CODEC_ECORRUPT:
        if (r->chunk_len == 0)
            return hopper_fail(r->job, HOPPER_FAIL_PERMANENT,
                               "%s: \"blob\" %s is not valid %s data: %s (at its end, byte %lld)",
                               r->type, r->blob, name, codec_error(r->codec), r->in_done);
        return hopper_fail(r->job, HOPPER_FAIL_PERMANENT,
                           "%s: \"blob\" %s is not valid %s data: %s (in input bytes %lld-%lld)",
                           r->type, r->blob, name, codec_error(r->codec), r->in_done,
                           r->in_done + r->chunk_len - 1);
    case CODEC_ESINK:
        if (r->out_too_big)
            return hopper_fail(r->job, HOPPER_FAIL_PERMANENT,
                               "%s: the output would pass %lld MiB (config max_output_mib)",
                               r->type, conf.max_output_mib);
        return hopper_fail(r->job, HOPPER_FAIL_RETRYABLE,
                           "%s: cannot write the output blob after %lld bytes (disk full, or "
                           "past the worker's --max-blob)",
                           r->type, r->out_bytes);
    case CODEC_ENOMEM:
        return hopper_fail(r->job, HOPPER_FAIL_RETRYABLE, "%s: %s is out of memory", r->type, name);
    default:
        return hopper_fail(r->job, HOPPER_FAIL_PERMANENT, "%s: %s failed: %s", r->type, name,
                           codec_error(r->codec));
    }
}

/* ---- The read loop ---- */

static ssize_t read_full(int fd, unsigned char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Reports the share of the input read, at most every PROGRESS_EVERY_MS unless
 * `last` (the input has ended: 100%). */
static void report_progress(run_t *r, const char *verb, bool last)
{
    int percent = r->in_size > 0 ? (int)(r->in_done * 100 / r->in_size) : 100;
    percent = percent > 100 ? 100 : percent;
    int64_t now = mono_ms();
    if (!last && (percent <= r->last_percent || now - r->last_report_ms < PROGRESS_EVERY_MS))
        return;
    char msg[96];
    snprintf(msg, sizeof(msg), "%s %.1f of %.1f MiB", verb, (double)r->in_done / MIB,
             (double)r->in_size / MIB);
    hopper_progress(r->job, percent, msg);
    r->last_percent = percent;
    r->last_report_ms = now;
}

/* Reads the input to its end, one chunk at a time, handing each to step. Stops with
 * a retryable failure when the job is canceled (checked before every chunk). */
static hopper_status_t stream(run_t *r, const char *verb, step_fn step, void *arg)
{
    r->last_report_ms = mono_ms();
    for (;;) {
        if (hopper_job_canceled(r->job))
            return hopper_fail(r->job, HOPPER_FAIL_RETRYABLE,
                               "%s: canceled after %lld of %lld input bytes", r->type, r->in_done,
                               r->in_size);
        ssize_t n = read_full(r->fd, r->buf, r->buf_len);
        if (n < 0)
            return hopper_fail(r->job, HOPPER_FAIL_RETRYABLE, "%s: reading blob %s: %s", r->type,
                               r->blob, strerror(errno));
        r->chunk_len = n;
        if (n == 0) {
            report_progress(r, verb, true);
            return HOPPER_OK;
        }
        hopper_status_t st = step(r, r->buf, (size_t)n, arg);
        if (st != HOPPER_OK)
            return st;
        r->in_done += n;
        report_progress(r, verb, false);
    }
}

/* Logs what the job did and how fast: "compressed N -> M bytes in T ms (R MiB/s)";
 * without an output blob, "digested N bytes ...". */
static void log_done(run_t *r, const char *what, bool has_output)
{
    int64_t ms = mono_ms() - r->start_ms;
    double rate = ms > 0 ? (double)r->in_done / MIB * 1000.0 / (double)ms : 0.0;
    if (has_output)
        hopper_log(r->job, HOPPER_LOG_INFO, "%s %lld -> %lld bytes in %" PRId64 " ms (%.1f MiB/s)",
                   what, r->in_done, r->out_bytes, ms, rate);
    else
        hopper_log(r->job, HOPPER_LOG_INFO, "%s %lld bytes in %" PRId64 " ms (%.1f MiB/s)", what,
                   r->in_done, ms, rate);
}

/* ---- cpu.compress ---- */

static hopper_status_t codec_step(run_t *r, const unsigned char *data, size_t len, void *arg)
{
    codec_alg_t alg = *(const codec_alg_t *)arg;
    int err = codec_feed(r->codec, data, len, out_sink, r);
    return err ? codec_failure(r, err, alg) : HOPPER_OK;
}

/* The "algorithm" member: *alg, or a permanent failure naming it. `dflt` is used
 * when it is absent; `allow_auto` lets "auto" through as *is_auto. */
static hopper_status_t parse_algorithm(run_t *r, const char *dflt, bool allow_auto,
                                       codec_alg_t *alg, bool *is_auto)
{
    const char *name = json_string_value(json_object_get(r->payload, "algorithm"));
    name = name ? name : dflt;
    if (allow_auto && strcmp(name, "auto") == 0) {
        *is_auto = true;
        return HOPPER_OK;
    }
    if (codec_alg_parse(name, alg) != 0)
        return hopper_fail(r->job, HOPPER_FAIL_PERMANENT,
                           "%s: \"algorithm\": unknown algorithm \"%.64s\" (%s)", r->type, name,
                           allow_auto ? "auto, zstd or gzip" : "zstd or gzip");
    return HOPPER_OK;
}

static hopper_status_t compress_run(run_t *r)
{
    hopper_status_t st = parse_payload(r, compress_members);
    codec_alg_t alg = CODEC_ZSTD;
    if (st == HOPPER_OK)
        st = parse_algorithm(r, "zstd", false, &alg, NULL);
    if (st != HOPPER_OK)
        return st;
    int min, max, level;
    codec_levels(alg, &min, &max, &level);
    json_t *jl = json_object_get(r->payload, "level");
    if (jl) {
        json_int_t l = json_integer_value(jl);
        if (l < min || l > max)
            return hopper_fail(r->job, HOPPER_FAIL_PERMANENT,
                               "%s: \"level\": %s takes levels %d to %d, not %" JSON_INTEGER_FORMAT,
                               r->type, codec_alg_name(alg), min, max, l);
        level = (int)l;
    }
    st = open_input(r);
    if (st != HOPPER_OK)
        return st;
    int err = codec_new(alg, true, level, (int)conf.zstd_workers, r->in_size, &r->codec);
    if (err)
        return codec_failure(r, err, alg);
    st = open_output(r, alg == CODEC_ZSTD ? "application/zstd" : "application/gzip");
    if (st == HOPPER_OK)
        st = stream(r, "compressed", codec_step, &alg);
    if (st != HOPPER_OK)
        return st;
    err = codec_finish(r->codec, out_sink, r);
    if (err)
        return codec_failure(r, err, alg);
    char id[65];
    st = commit_output(r, id);
    if (st != HOPPER_OK)
        return st;
    log_done(r, "compressed", true);
    char result[RESULT_MAX];
    snprintf(result, sizeof(result),
             "{\"blob\":\"%s\",\"algorithm\":\"%s\",\"level\":%d,\"in_bytes\":%lld,"
             "\"out_bytes\":%lld,\"ratio\":%.3f}",
             id, codec_alg_name(alg), level, r->in_done, r->out_bytes,
             r->out_bytes > 0 ? (double)r->in_done / (double)r->out_bytes : 0.0);
    return hopper_succeed(r->job, result);
}

static hopper_status_t handle_compress(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    run_t r;
    run_init(&r, job, "cpu.compress");
    hopper_status_t st = compress_run(&r);
    run_cleanup(&r);
    return st;
}

/* ---- cpu.decompress ---- */

/* What decompress_step needs across chunks: the algorithm, known from the payload
 * or, with "auto", from the first chunk's magic number. */
typedef struct decompress_s {
    codec_alg_t alg;
    bool is_auto;
} decompress_t;

static hopper_status_t decompress_step(run_t *r, const unsigned char *data, size_t len, void *arg)
{
    decompress_t *d = arg;
    if (!r->codec) {
        if (d->is_auto && codec_detect(data, len, &d->alg) != 0)
            return hopper_fail(r->job, HOPPER_FAIL_PERMANENT,
                               "%s: \"blob\" %s is neither zstd nor gzip data (\"algorithm\": "
                               "\"auto\" found no known magic number)",
                               r->type, r->blob);
        int err = codec_new(d->alg, false, 0, 0, -1, &r->codec);
        if (err)
            return codec_failure(r, err, d->alg);
    }
    int err = codec_feed(r->codec, data, len, out_sink, r);
    return err ? codec_failure(r, err, d->alg) : HOPPER_OK;
}

static hopper_status_t decompress_run(run_t *r)
{
    hopper_status_t st = parse_payload(r, decompress_members);
    decompress_t d = {CODEC_ZSTD, false};
    if (st == HOPPER_OK)
        st = parse_algorithm(r, "auto", true, &d.alg, &d.is_auto);
    if (st == HOPPER_OK)
        st = open_input(r);
    if (st == HOPPER_OK)
        st = open_output(r, "application/octet-stream");
    if (st == HOPPER_OK)
        st = stream(r, "decompressed", decompress_step, &d);
    if (st != HOPPER_OK)
        return st;
    if (!r->codec) /* an empty blob: no chunk came */
        return hopper_fail(r->job, HOPPER_FAIL_PERMANENT, "%s: \"blob\" %s is empty: not %s data",
                           r->type, r->blob, d.is_auto ? "zstd or gzip" : codec_alg_name(d.alg));
    int err = codec_finish(r->codec, out_sink, r);
    if (err)
        return codec_failure(r, err, d.alg);
    char id[65];
    st = commit_output(r, id);
    if (st != HOPPER_OK)
        return st;
    log_done(r, "decompressed", true);
    char result[RESULT_MAX];
    snprintf(result, sizeof(result),
             "{\"blob\":\"%s\",\"algorithm\":\"%s\",\"in_bytes\":%lld,\"out_bytes\":%lld}", id,
             codec_alg_name(d.alg), r->in_done, r->out_bytes);
    return hopper_succeed(r->job, result);
}

static hopper_status_t handle_decompress(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    run_t r;
    run_init(&r, job, "cpu.decompress");
    hopper_status_t st = decompress_run(&r);
    run_cleanup(&r);
    return st;
}

/* ---- cpu.digest ---- */

/* The digests one job computes, in the order asked, each once. */
typedef struct digest_set_s {
    size_t n;
    size_t which[MAX_DIGESTS]; /* index into digests[] */
    EVP_MD_CTX *ctx[MAX_DIGESTS];
} digest_set_t;

static void digest_set_cleanup(digest_set_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        EVP_MD_CTX_free(s->ctx[i]);
}

/* Adds the digest called `name` (once); HOPPER_OK or a permanent failure naming
 * `where` ("\"algorithms\"[2]"). */
static hopper_status_t digest_add(run_t *r, digest_set_t *s, const char *name, const char *where)
{
    size_t k = 0;
    while (k < NDIGESTS && strcmp(digests[k].name, name) != 0)
        k++;
    if (k == NDIGESTS)
        return hopper_fail(r->job, HOPPER_FAIL_PERMANENT,
                           "%s: %s: unknown algorithm \"%.64s\" (sha256, sha512, sha3-256 or "
                           "blake2b512)",
                           r->type, where, name);
    for (size_t i = 0; i < s->n; i++)
        if (s->which[i] == k)
            return HOPPER_OK;
    s->which[s->n++] = k; /* n < MAX_DIGESTS: there are only NDIGESTS distinct ones */
    return HOPPER_OK;
}

/* The "algorithms" member: one name, or an array of names; "sha256" if absent. */
static hopper_status_t digest_parse(run_t *r, digest_set_t *s)
{
    json_t *a = json_object_get(r->payload, "algorithms");
    if (!a)
        return digest_add(r, s, DEFAULT_DIGEST, "\"algorithms\"");
    if (json_is_string(a))
        return digest_add(r, s, json_string_value(a), "\"algorithms\"");
    if (json_array_size(a) == 0)
        return hopper_fail(r->job, HOPPER_FAIL_PERMANENT,
                           "%s: \"algorithms\" is empty: name at least one", r->type);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        char where[48];
        snprintf(where, sizeof(where), "\"algorithms\"[%zu]", i);
        if (!json_is_string(v))
            return hopper_fail(r->job, HOPPER_FAIL_PERMANENT, "%s: %s must be a string", r->type,
                               where);
        hopper_status_t st = digest_add(r, s, json_string_value(v), where);
        if (st != HOPPER_OK)
            return st;
    }
    return HOPPER_OK;
}

static hopper_status_t digest_step(run_t *r, const unsigned char *data, size_t len, void *arg)
{
    digest_set_t *s = arg;
    for (size_t i = 0; i < s->n; i++)
        if (EVP_DigestUpdate(s->ctx[i], data, len) != 1)
            return hopper_fail(r->job, HOPPER_FAIL_RETRYABLE, "%s: %s failed", r->type,
                               digests[s->which[i]].name);
    return HOPPER_OK;
}

static hopper_status_t digest_run(run_t *r, digest_set_t *s)
{
    hopper_status_t st = parse_payload(r, digest_members);
    if (st == HOPPER_OK)
        st = digest_parse(r, s);
    if (st != HOPPER_OK)
        return st;
    for (size_t i = 0; i < s->n; i++) {
        s->ctx[i] = EVP_MD_CTX_new();
        if (!s->ctx[i] || EVP_DigestInit_ex(s->ctx[i], digests[s->which[i]].md(), NULL) != 1)
            return hopper_fail(r->job, HOPPER_FAIL_RETRYABLE, "%s: cannot start %s", r->type,
                               digests[s->which[i]].name);
    }
    st = open_input(r);
    if (st == HOPPER_OK)
        st = stream(r, "digested", digest_step, s);
    if (st != HOPPER_OK)
        return st;
    char result[RESULT_MAX];
    size_t n = (size_t)snprintf(result, sizeof(result), "{");
    for (size_t i = 0; i < s->n; i++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (EVP_DigestFinal_ex(s->ctx[i], md, &mdlen) != 1)
            return hopper_fail(r->job, HOPPER_FAIL_RETRYABLE, "%s: %s failed", r->type,
                               digests[s->which[i]].name);
        n += (size_t)snprintf(result + n, sizeof(result) - n, "\"%s\":\"",
                              digests[s->which[i]].name);
        for (unsigned j = 0; j < mdlen; j++)
            n += (size_t)snprintf(result + n, sizeof(result) - n, "%02x", md[j]);
        n += (size_t)snprintf(result + n, sizeof(result) - n, "\",");
    }
    snprintf(result + n, sizeof(result) - n, "\"bytes\":%lld}", r->in_done);
    log_done(r, "digested", false);
    return hopper_succeed(r->job, result);
}

static hopper_status_t handle_digest(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    run_t r;
    run_init(&r, job, "cpu.digest");
    digest_set_t s;
    memset(&s, 0, sizeof(s));
    hopper_status_t st = digest_run(&r, &s);
    digest_set_cleanup(&s);
    run_cleanup(&r);
    return st;
}

/* ---- Registration ---- */

static const hopper_job_type_t types[] = {
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "cpu.compress", .handle = handle_compress},
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "cpu.decompress", .handle = handle_decompress},
    {.version = HOPPER_JOB_TYPE_VERSION, .name = "cpu.digest", .handle = handle_digest},
};

/* Sets *errmsg to a malloc'd "cpu: <what>" (the host frees it) and returns -1. */
static int init_error(char **errmsg, const char *what, const char *detail)
{
    if (errmsg) {
        size_t n = strlen(what) + strlen(detail) + 16;
        *errmsg = malloc(n);
        if (*errmsg)
            snprintf(*errmsg, n, "cpu: %s%s", what, detail);
    }
    return -1;
}

/* Reads conf_keys from the plugin's config section; -1 with *errmsg naming a key
 * whose value is not an integer in range. */
static int read_config(hopper_plugin_t *plugin, char **errmsg)
{
    for (size_t i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++) {
        long long *slot = (long long *)((char *)&conf + conf_keys[i].offset);
        const char *text = hopper_config(plugin, conf_keys[i].key);
        *slot = conf_keys[i].def;
        if (!text)
            continue;
        char *end = NULL;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end || v < conf_keys[i].min || v > conf_keys[i].max) {
            char detail[160];
            snprintf(detail, sizeof(detail), " must be an integer from %lld to %lld, not %.40s",
                     conf_keys[i].min, conf_keys[i].max, text);
            return init_error(errmsg, conf_keys[i].key, detail);
        }
        *slot = v;
    }
    return 0;
}

HOPPER_PLUGIN_INIT(api, plugin, errmsg)
{
    HOPPER_USE(api);
    if (hopper_register(plugin, PLUGIN_NAME, PLUGIN_VERSION) != 0)
        return init_error(errmsg, "register_plugin failed", "");
    if (!HOPPER_HAS(blob_abort))
        return init_error(errmsg, "needs a worker with blobs (ABI 1.1)", "");
    if (read_config(plugin, errmsg) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (hopper_register_type(plugin, &types[i]) != 0)
            return init_error(errmsg, "cannot register ", types[i].name);
    return 0;
}
