/*
 * plugins/pdf/pdf.c -- the "pdf" plugin: job type pdf.render, a PDF from a JSON
 * document, stored in the blob store.
 *
 * This file owns the plugin's side of Hopper: its configuration (read once in
 * init, read-only afterwards), the job type and its isolation, and the handler,
 * which parses the payload, gives the renderer (render.c) its blob reader and its
 * output (a new blob), and turns the outcome into a result or a classified
 * failure. It does not lay out anything.
 *
 * Isolation: FORK by default. libharu and libpng parse images that come from users,
 * and a crash or a runaway allocation in a forked child costs that one job, where
 * on a worker thread it would kill the worker process and every job it holds. The
 * fork costs about a millisecond next to a render's tens; the child gets a CPU-time
 * and an address-space limit (config keys below; "isolation": "thread" opts out).
 *
 * Config ("plugin_config": {"pdf": {...}}), all optional:
 *   font, bold_font      TrueType files (Debian's fonts-dejavu-core by default)
 *   max_pages            1000          a document that needs more fails for good
 *   max_image_mb         32            per image blob
 *   max_image_megapixels 40            per PNG, checked before it is decoded
 *   isolation            "fork"        or "thread"
 *   fork_cpu_seconds     120           RLIMIT_CPU of the child
 *   fork_memory_mb       1024          RLIMIT_AS of the child (0 under ASan, which
 *                                      reserves terabytes of address space)
 */
#include <hopper/plugin.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "render.h"

#if defined(__SANITIZE_ADDRESS__)
#define PDF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PDF_ASAN 1
#endif
#endif
#ifndef PDF_ASAN
#define PDF_ASAN 0
#endif

#define DEFAULT_FONT      "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
#define DEFAULT_BOLD_FONT "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

HOPPER_EXPORT int hopper_plugin_init(const hopper_host_api_t *api, hopper_plugin_t *plugin,
                                     char **errmsg);

/* The configuration, set in init and read-only afterwards (the type's ctx). The
 * font paths point into the host's config strings, valid until shutdown. */
static render_config_t g_config;

/* ---- The renderer's I/O, through the host ---- */

/* One job's output: the blob writer, created on the first write. */
typedef struct job_io_s {
    hopper_job_t *job;
    hopper_blob_writer_t *writer; /* NULL until the first byte; committed or aborted */
} job_io_t;

static int io_canceled(void *ctx)
{
    return hopper_job_canceled(((job_io_t *)ctx)->job);
}

static void io_progress(void *ctx, int percent, const char *message)
{
    hopper_progress(((job_io_t *)ctx)->job, percent, message);
}

/* A missing blob is the document's fault: ids are content hashes, so the blob had
 * to be uploaded before its id could be written into a document. */
static render_status_t io_read_blob(void *ctx, const char *id, long long max, unsigned char **data,
                                    size_t *len, char *err, size_t errlen)
{
    hopper_job_t *job = ((job_io_t *)ctx)->job;
    long long size = 0;
    int fd = hopper_blob_open(job, id, &size, NULL);
    if (fd < 0) {
        snprintf(err, errlen, "no blob %s in the blob store", id);
        return RENDER_BAD_INPUT;
    }
    if (size < 0 || size > max) {
        close(fd);
        snprintf(err, errlen, "blob %s is %lld bytes, more than the limit of %lld", id, size, max);
        return RENDER_BAD_INPUT;
    }
    unsigned char *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "out of memory reading blob %s (%lld bytes)", id, size);
        return RENDER_TRANSIENT;
    }
    size_t got = 0;
    while (got < (size_t)size) {
        ssize_t n = read(fd, buf + got, (size_t)size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "cannot read blob %s: %s", id,
                     n < 0 ? strerror(errno) : "it is shorter than its size");
            close(fd);
            free(buf);
            return RENDER_TRANSIENT;
        }
        got += (size_t)n;
    }
    close(fd);
    *data = buf;
    *len = got;
    return RENDER_OK;
}

static int io_write(void *ctx, const void *data, size_t len)
{
    job_io_t *io = ctx;
    if (!io->writer)
        io->writer = hopper_blob_create(io->job, "application/pdf");
    if (!io->writer || hopper_blob_write(io->writer, data, len) != 0)
        return -1;
    return 0;
}

/* ---- The handler ---- */

static hopper_status_t handle_render(hopper_job_t *job, void *ctx)
{
    const render_config_t *cfg = ctx;
    size_t len = 0;
    const char *payload = hopper_job_payload(job, &len);
    json_error_t jerr;
    json_t *doc = payload ? json_loadb(payload, len, 0, &jerr) : NULL;
    if (!doc) {
        if (payload && json_error_code(&jerr) == json_error_out_of_memory)
            return hopper_fail(job, HOPPER_FAIL_RETRYABLE, "out of memory parsing the payload");
        return hopper_fail(job, HOPPER_FAIL_PERMANENT, "the payload is not a JSON document: %s",
                           payload ? jerr.text : "none");
    }
    job_io_t jio = {.job = job};
    render_io_t io = {
        .ctx = &jio,
        .canceled = io_canceled,
        .progress = io_progress,
        .read_blob = io_read_blob,
        .write = io_write,
    };
    int pages = 0;
    char err[512];
    render_status_t st = render_pdf(doc, cfg, &io, &pages, err, sizeof err);
    json_decref(doc);
    if (st == RENDER_OK && !jio.writer) {
        st = RENDER_TRANSIENT;
        snprintf(err, sizeof err, "cannot create a blob in the blob store");
    }
    if (st != RENDER_OK) {
        if (jio.writer)
            hopper_blob_abort(jio.writer);
        return hopper_fail(
            job, st == RENDER_BAD_INPUT ? HOPPER_FAIL_PERMANENT : HOPPER_FAIL_RETRYABLE, "%s", err);
    }
    char id[65];
    long long bytes = 0;
    if (hopper_blob_commit(jio.writer, id, &bytes) != 0)
        return hopper_fail(job, HOPPER_FAIL_RETRYABLE,
                           "cannot store the PDF in the blob store (disk full, or past the "
                           "worker's blob size limit)");
    hopper_progress(job, 100, "done");
    hopper_log(job, HOPPER_LOG_INFO, "rendered %d pages, %lld bytes: blob %s", pages, bytes, id);
    char result[160];
    snprintf(result, sizeof result, "{\"blob\":\"%s\",\"pages\":%d,\"bytes\":%lld}", id, pages,
             bytes);
    return hopper_succeed(job, result);
}

/* ---- Configuration ---- */

static int init_error(char **errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int init_error(char **errmsg, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (errmsg)
        *errmsg = strdup(buf);
    return -1;
}

/* An integer config key in [min, max]; *out keeps its default when absent. */
static int config_int(hopper_plugin_t *p, const char *key, long long min, long long max,
                      long long *out, char **errmsg)
{
    const char *v = hopper_config(p, key);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max) {
        return init_error(errmsg, "pdf: config %s: expected an integer from %lld to %lld, not %s",
                          key, min, max, v);
    }
    *out = n;
    return 0;
}

HOPPER_PLUGIN_INIT(api, plugin, errmsg)
{
    HOPPER_USE(api);
    if (hopper_register(plugin, "pdf", "1.0.0") != 0)
        return init_error(errmsg, "pdf: the host refused the plugin (ABI mismatch)");
    if (!HOPPER_HAS(blob_create))
        return init_error(errmsg, "pdf: the host has no blob store API (ABI 1.1 needed)");
    const char *font = hopper_config(plugin, "font");
    const char *bold = hopper_config(plugin, "bold_font");
    g_config.font_path = font ? font : DEFAULT_FONT;
    g_config.bold_font_path = bold ? bold : DEFAULT_BOLD_FONT;
    if (access(g_config.font_path, R_OK) != 0)
        return init_error(errmsg, "pdf: cannot read the font %s: %s", g_config.font_path,
                          strerror(errno));
    if (access(g_config.bold_font_path, R_OK) != 0)
        return init_error(errmsg, "pdf: cannot read the bold font %s: %s", g_config.bold_font_path,
                          strerror(errno));

    long long max_pages = 1000, max_image_mb = 32, megapixels = 40, cpu = 120;
    long long memory_mb = PDF_ASAN ? 0 : 1024;
    if (config_int(plugin, "max_pages", 1, 1000000, &max_pages, errmsg) ||
        config_int(plugin, "max_image_mb", 1, 4096, &max_image_mb, errmsg) ||
        config_int(plugin, "max_image_megapixels", 1, 1000, &megapixels, errmsg) ||
        config_int(plugin, "fork_cpu_seconds", 0, 86400, &cpu, errmsg) ||
        config_int(plugin, "fork_memory_mb", 0, 1 << 20, &memory_mb, errmsg))
        return -1;
    hopper_isolation_t isolation = HOPPER_ISOLATION_FORK;
    const char *iso = hopper_config(plugin, "isolation");
    if (iso && strcmp(iso, "thread") == 0)
        isolation = HOPPER_ISOLATION_THREAD;
    else if (iso && strcmp(iso, "fork") != 0)
        return init_error(errmsg, "pdf: config isolation: expected \"fork\" or \"thread\", not %s",
                          iso);
    g_config.max_pages = (int)max_pages;
    g_config.max_image_bytes = max_image_mb << 20;
    g_config.max_image_pixels = megapixels * 1000000;
    g_config.memory_limited = isolation == HOPPER_ISOLATION_FORK && memory_mb > 0;

    hopper_job_type_t type = {
        .version = HOPPER_JOB_TYPE_VERSION,
        .name = "pdf.render",
        .handle = handle_render,
        .ctx = &g_config,
        .isolation = isolation,
        .fork_cpu_seconds = (long)cpu,
        .fork_memory_bytes = (long)(memory_mb << 20),
    };
    if (hopper_register_type(plugin, &type) != 0)
        return init_error(errmsg, "pdf: cannot register the job type pdf.render");
    return 0;
}
