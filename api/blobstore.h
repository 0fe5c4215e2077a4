/*
 * api/blobstore.h -- a content-addressed blob store in one directory.
 *
 * A blob is named by the SHA-256 of its bytes, in 64 lowercase hex digits, and
 * lives at <dir>/<first two hex digits>/<id>, with a metadata sidecar <id>.meta
 * beside it (content type, size, creation time). Uploads stream into a private
 * temp file under <dir>/tmp while the hash is computed, and become visible only by
 * a rename once they are complete and on disk, so a reader never sees a partial
 * blob and a temp file left by a crash is never mistaken for one. Writing the
 * same bytes twice stores them once; the first upload's metadata is kept.
 *
 * The store owns the directory layout; it does not decide where the directory is
 * (the caller does), nor who may read which blob, nor when blobs are deleted.
 * A blobstore_t is immutable after blobstore_open, so any number of threads may
 * use one store at once; each blob_writer_t belongs to one thread at a time.
 */
#ifndef HP_API_BLOBSTORE_H
#define HP_API_BLOBSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define BLOB_ID_LEN           64  /* SHA-256 in lowercase hex */
#define BLOB_CONTENT_TYPE_MAX 127 /* bytes, without the NUL */
#define BLOB_DEFAULT_TYPE     "application/octet-stream"

typedef struct blob_info_s {
    char id[BLOB_ID_LEN + 1];
    int64_t size;                                 /* bytes */
    char content_type[BLOB_CONTENT_TYPE_MAX + 1]; /* as given when first stored */
    int64_t created_ms;                           /* Unix ms of the first store */
} blob_info_t;

typedef struct blobstore_s blobstore_t;
typedef struct blob_writer_s blob_writer_t;

/* Opens the store in `dir`, creating it (and its parents, and dir/tmp) with mode
 * 0700 when missing, and checks that a file can be created there. Returns the
 * store, which the caller closes with blobstore_close, or NULL with the reason in
 * `err` (if not NULL). */
blobstore_t *blobstore_open(const char *dir, char *err, size_t errlen);

/* Frees the store; blobstore_close(NULL) is a no-op. Writers must be done first. */
void blobstore_close(blobstore_t *bs);

/* True when `id` is exactly 64 lowercase hex digits. Every function that takes an
 * id checks this first, so an id can never name a path outside the store. */
bool blob_id_valid(const char *id);

/* True when `ct` is "type/subtype" with optional "; name=value" parameters (value
 * a token or a quoted string), printable ASCII only and at most 127 bytes. */
bool blob_content_type_valid(const char *ct);

/* Starts a blob: creates a temp file dir/tmp/<random>.tmp (O_EXCL, mode 0600).
 * `content_type` NULL means application/octet-stream. At most `max_bytes` may be
 * written (INT64_MAX for no limit). Returns 0 and the writer in *out, which the
 * caller ends with exactly one of blob_write_commit or blob_write_abort;
 * HP_EINVAL for a bad content type or a negative limit; HP_EIO when the temp file
 * cannot be created (logged with the reason). */
int blob_write_begin(blobstore_t *bs, const char *content_type, int64_t max_bytes,
                     blob_writer_t **out);

/* Appends len bytes. Returns 0; HP_ETOOBIG when they would pass max_bytes (nothing
 * is written); HP_EIO on a write error such as a full disk. After an error the
 * writer only accepts blob_write_abort (commit returns the same error). */
int blob_write(blob_writer_t *w, const void *data, size_t len);

/* Finishes the blob: fsyncs it, writes the metadata sidecar (temp + rename) unless
 * the blob is already stored, and renames the temp file into place (or drops it
 * when the same bytes are already stored). Fills *out (if not NULL) with what is
 * stored. Frees the writer whether it succeeds or not; on failure the temp file is
 * removed. Returns 0, the writer's earlier error, or HP_EIO. */
int blob_write_commit(blob_writer_t *w, blob_info_t *out);

/* Drops the blob being written: removes the temp file and frees the writer.
 * blob_write_abort(NULL) is a no-op. */
void blob_write_abort(blob_writer_t *w);

/* Fills *out for blob `id`. Returns 0, HP_EINVAL for a malformed id, HP_ENOTFOUND
 * when no such blob is stored, or HP_EIO. A missing or damaged sidecar is not an
 * error: the type is then application/octet-stream and the time the file's mtime. */
int blob_stat(blobstore_t *bs, const char *id, blob_info_t *out);

/* Opens blob `id` for reading: *fd is a read-only descriptor the caller closes.
 * Returns like blob_stat; on error *fd is -1. */
int blob_open_read(blobstore_t *bs, const char *id, int *fd, blob_info_t *out);

/* The path of blob `id` (whether stored or not), for worker-side plugins that read
 * by path; the caller frees it with hp_free. NULL when the id is malformed. */
char *blob_path(blobstore_t *bs, const char *id);

/* Removes temp files under dir/tmp older than `age_ms` (crash leftovers), and
 * returns how many it removed. Call it at start-up, with an age longer than any
 * upload takes, since a concurrent upload's temp file lives there too. */
int blobstore_sweep_tmp(blobstore_t *bs, int64_t age_ms);

#endif
