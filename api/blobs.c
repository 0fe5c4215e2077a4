/*
 * POST /v1/blobs and GET /v1/blobs/{id}: files into and out of the blob store,
 * streamed both ways so a 50 MiB upload never sits in memory.
 *
 * An upload is the raw body (its Content-Type kept), or multipart/form-data whose
 * first part with a filename is the file. Bytes go to a temporary file as they
 * arrive (on the loop: page-cache writes); the commit, which fsyncs, runs on the
 * executor so the loop never waits for the disk.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/internal.h"
#include "api/multipart.h"

#define DOWNLOAD_CHUNK (256 * 1024)

typedef struct upload_s {
    blob_writer_t *writer;
    mp_parser_t *mp;
    bool in_file_part, file_done;
    int err;
    char errmsg[256];
    blob_info_t info;
} upload_t;

static void upload_free(void *p)
{
    upload_t *u = p;
    if (!u)
        return;
    if (u->writer)
        blob_write_abort(u->writer);
    if (u->mp)
        mp_free(u->mp);
    hp_free(u);
}

static int upload_fail(upload_t *u, int err, const char *msg)
{
    if (!u->err) {
        u->err = err;
        snprintf(u->errmsg, sizeof(u->errmsg), "%s", msg);
    }
    return err;
}

static int start_writer(api_req_t *ar, upload_t *u, const char *content_type)
{
    api_server_t *s = ar->loop->server;
    const char *ct = content_type && content_type[0] ? content_type : BLOB_DEFAULT_TYPE;
    if (!blob_content_type_valid(ct))
        return upload_fail(u, HP_EINVAL, "Content-Type of the file is not a valid media type");
    int err = blob_write_begin(s->blobs, ct, s->cfg.max_blob, &u->writer);
    if (err)
        return upload_fail(u, err, "cannot create a file in the blob store");
    return 0;
}

/* ---- multipart callbacks ---- */

static int part_begin(void *ctx, const char *name, const char *filename, const char *ctype)
{
    api_req_t *ar = ctx;
    upload_t *u = ar->state;
    (void)name;
    if (u->file_done || u->writer || !filename)
        return 0; /* fields and later files are skipped */
    u->in_file_part = true;
    return start_writer(ar, u, ctype);
}

static int part_data(void *ctx, const char *data, size_t len)
{
    api_req_t *ar = ctx;
    upload_t *u = ar->state;
    if (!u->in_file_part)
        return 0;
    int err = blob_write(u->writer, data, len);
    return err ? upload_fail(u, err, "the file is larger than the blob limit") : 0;
}

static int part_end(void *ctx)
{
    api_req_t *ar = ctx;
    upload_t *u = ar->state;
    if (u->in_file_part) {
        u->in_file_part = false;
        u->file_done = true;
    }
    return 0;
}

static const mp_callbacks_t mp_callbacks = {part_begin, part_data, part_end};

/* ---- Upload ---- */

static void upload_abandon(api_req_t *ar)
{
    http_req_t *req = ar->http;
    api_problem(ar, req->error_status ? req->error_status : 400, "%s",
                req->error_detail[0] ? req->error_detail : "upload abandoned");
}

bool api_blob_prepare(api_req_t *ar)
{
    upload_t *u = hp_calloc(1, sizeof(*u));
    ar->state = u;
    ar->state_free = upload_free;
    ar->abandon = upload_abandon;
    const char *ct = http_header(ar->http, "content-type");
    if (ct && strncasecmp(ct, "multipart/form-data", 19) == 0) {
        char err[160];
        u->mp = mp_new(ct, &mp_callbacks, ar, err, sizeof(err));
        if (!u->mp) {
            api_problem(ar, 400, "multipart body: %s", err);
            return false;
        }
        return true;
    }
    if (start_writer(ar, u, ct) != 0) {
        api_problem(ar, 400, "%s", u->errmsg);
        return false;
    }
    return true;
}

int api_blob_on_body(http_req_t *req, const char *data, size_t len)
{
    api_req_t *ar = req->data;
    upload_t *u = ar->state;
    if (u->err)
        return 0; /* answered when the body ends */
    if (u->mp) {
        if (mp_feed(u->mp, data, len) != 0 && !u->err)
            upload_fail(u, HP_EINVAL, mp_errmsg(u->mp));
        return 0;
    }
    int err = blob_write(u->writer, data, len);
    if (err)
        upload_fail(u, err, "the body is larger than the blob limit");
    return 0;
}

/* On the executor: the fsync and rename. */
static void commit_upload(api_req_t *ar, broker_t *b)
{
    upload_t *u = ar->state;
    (void)b;
    if (!u->err && u->mp && mp_finish(u->mp) != 0)
        upload_fail(u, HP_EINVAL, mp_errmsg(u->mp));
    if (!u->err && !u->writer)
        upload_fail(u, HP_EINVAL, "multipart body without a file part (a part with a filename)");
    if (u->err) {
        api_set_problem(ar, u->err == HP_ETOOBIG ? 413 : 400, "%s", u->errmsg);
        return;
    }
    int err = blob_write_commit(u->writer, &u->info);
    u->writer = NULL;
    if (err) {
        api_set_problem(ar, 500, "could not store the blob");
        return;
    }
    ar->status = 201;
}

void api_blob_finish_upload(api_req_t *ar)
{
    upload_t *u = ar->state;
    char *body = hp_sprintf("{\"id\":\"%s\",\"size\":%lld,\"content_type\":", u->info.id,
                            (long long)u->info.size);
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    hp_strbuf_appends(&sb, body);
    hp_strbuf_append_json_string(&sb, u->info.content_type);
    hp_strbuf_appends(&sb, "}");
    hp_free(body);
    snprintf(ar->headers, sizeof(ar->headers), "Location: /v1/blobs/%s\r\n", u->info.id);
    api_json(ar, 201, sb.data, sb.len);
    hp_strbuf_cleanup(&sb);
}

void api_blob_run_upload(api_req_t *ar, broker_t *b)
{
    commit_upload(ar, b);
}

/* ---- Download ---- */

typedef struct download_s {
    uv_fs_t fs;
    api_req_t *ar;
    int fd;
    int64_t offset, size;
    char buf[DOWNLOAD_CHUNK];
    bool reading;
} download_t;

static void download_free(void *p)
{
    download_t *d = p;
    if (d->fd >= 0)
        close(d->fd);
    hp_free(d);
}

static void download_end(api_req_t *ar)
{
    http_req_t *req = ar->http;
    req->data = NULL;
    http_stream_end(req);
    api_req_free(ar);
}

static void read_next(http_req_t *req);

static void on_chunk_read(uv_fs_t *fs)
{
    download_t *d = fs->data;
    api_req_t *ar = d->ar;
    ssize_t n = fs->result;
    uv_fs_req_cleanup(fs);
    d->reading = false;
    if (!ar->http->conn || n <= 0) { /* gone, or the end (or a read error: cut short) */
        download_end(ar);
        return;
    }
    d->offset += n;
    if (!http_stream_write(ar->http, d->buf, (size_t)n, SIZE_MAX)) {
        download_end(ar);
        return;
    }
    if (d->offset >= d->size) {
        download_end(ar);
        return;
    }
    http_stream_on_drain(ar->http, DOWNLOAD_CHUNK, read_next);
}

static void read_next(http_req_t *req)
{
    api_req_t *ar = req->data;
    download_t *d = ar->state;
    uv_buf_t buf = uv_buf_init(d->buf, DOWNLOAD_CHUNK);
    d->reading = true;
    if (uv_fs_read(&ar->loop->loop, &d->fs, d->fd, &buf, 1, d->offset, on_chunk_read) != 0) {
        d->reading = false;
        download_end(ar);
    }
}

static void download_abandon(api_req_t *ar)
{
    download_t *d = ar->state;
    if (!d->reading) /* else the read in flight ends it */
        download_end(ar);
}

bool api_blob_prepare_get(api_req_t *ar)
{
    if (!blob_id_valid(ar->params[0])) {
        api_problem(ar, 404, "no blob %s: a blob id is 64 lowercase hex digits (SHA-256)",
                    ar->params[0]);
        return false;
    }
    return true;
}

void api_blob_finish_get(api_req_t *ar)
{
    api_server_t *s = ar->loop->server;
    blob_info_t info;
    int fd = -1;
    if (blob_open_read(s->blobs, ar->params[0], &fd, &info) != 0) {
        api_problem(ar, 404, "no blob %s", ar->params[0]);
        return;
    }
    download_t *d = hp_calloc(1, sizeof(*d));
    d->fd = fd;
    d->ar = ar;
    d->size = info.size;
    d->fs.data = d;
    ar->state = d;
    ar->state_free = download_free;
    ar->abandon = download_abandon;
    http_req_t *req = ar->http;
    if (!req->conn) {
        download_end(ar);
        return;
    }
    req->app = ar;
    char headers[256];
    snprintf(headers, sizeof(headers),
             "Content-Length: %lld\r\nETag: \"%s\"\r\n"
             "Content-Disposition: attachment\r\n",
             (long long)info.size, info.id);
    http_stream_begin(req, 200, info.content_type, headers);
    if (info.size == 0 || strcmp(req->method, "HEAD") == 0)
        download_end(ar);
    else
        read_next(req);
}
