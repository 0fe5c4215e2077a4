/*
 * The content-addressed blob store (see blobstore.h for the contract).
 *
 * Layout under the store's directory:
 *   tmp/<32 hex>.tmp   uploads in progress and sidecars being written; never read
 *   <aa>/<id>          the blob, where aa is the first two hex digits of its id
 *   <aa>/<id>.meta     its sidecar, written before the blob is renamed into place,
 *                      so a visible blob always has one (unless the disk lost it)
 * Two-digit fan-out keeps directories at a few thousand entries per million blobs.
 * Every name is built from a validated id or from random hex, never from input.
 *
 * Sidecar format, version 1 (bump the first line when it changes, and keep a
 * reader for the old one):
 *   hopper-blob-meta 1
 *   content_type=<type>
 *   size=<bytes>
 *   created_ms=<Unix ms>
 */
#include "common/common.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define META_MAGIC    "hopper-blob-meta 1\n"
#define META_MAX      1024 /* bytes of sidecar we read */
#define TEMP_ATTEMPTS 8

struct blobstore_s {
    char *dir; /* as given, without a trailing slash */
};

/*
 * One upload in progress. It owns the open temp file, its path and the hash
 * context, and releases all three in commit or abort. `err` is sticky: once a
 * write has failed, the blob can only be dropped.
 */
struct blob_writer_s {
    blobstore_t *bs;
    int fd;
    char *tmp_path;
    EVP_MD_CTX *md;
    int64_t size; /* bytes written so far */
    int64_t max;  /* limit given to blob_write_begin */
    int err;
    char content_type[BLOB_CONTENT_TYPE_MAX + 1];
};

/* ---- Names ---- */

bool blob_id_valid(const char *id)
{
    if (!id)
        return false;
    for (int i = 0; i < BLOB_ID_LEN; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return id[BLOB_ID_LEN] == '\0';
}

static bool is_tchar(char c)
{
    return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", c);
}

static bool take_token(const char **p)
{
    const char *start = *p;
    while (is_tchar(**p))
        (*p)++;
    return *p > start;
}

static void skip_spaces(const char **p)
{
    while (**p == ' ')
        (*p)++;
}

static bool take_quoted(const char **p)
{
    const char *s = *p + 1;
    while (*s && *s != '"') {
        if (*s == '\\' && s[1])
            s++;
        s++;
    }
    if (*s != '"')
        return false;
    *p = s + 1;
    return true;
}

bool blob_content_type_valid(const char *ct)
{
    if (!ct || strlen(ct) > BLOB_CONTENT_TYPE_MAX)
        return false;
    for (const char *q = ct; *q; q++) {
        if (*q < 0x20 || *q > 0x7e) /* no CR/LF: the type goes into headers and lines */
            return false;
    }
    const char *p = ct;
    if (!take_token(&p) || *p++ != '/' || !take_token(&p))
        return false;
    for (skip_spaces(&p); *p; skip_spaces(&p)) {
        if (*p++ != ';')
            return false;
        skip_spaces(&p);
        if (!take_token(&p) || *p++ != '=')
            return false;
        bool ok = *p == '"' ? take_quoted(&p) : take_token(&p);
        if (!ok)
            return false;
    }
    return true;
}

char *blob_path(blobstore_t *bs, const char *id)
{
    if (!blob_id_valid(id))
        return NULL;
    return hp_sprintf("%s/%.2s/%s", bs->dir, id, id);
}

/* ---- Files ---- */

/* mkdir -p with `mode` for every directory it creates. */
static int mkdir_p(const char *path, mode_t mode)
{
    char *copy = hp_strdup(path);
    int err = 0;
    for (char *s = copy + 1; !err; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(copy, mode) != 0 && errno != EEXIST)
            err = -1;
        *s = saved;
        if (!saved)
            break;
    }
    hp_free(copy);
    struct stat st;
    if (!err && (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)))
        err = -1;
    return err;
}

/* Creates a fresh temp file under dir/tmp. Returns its fd and path (*path, freed by
 * the caller with hp_free), or -1 with errno set. Random names keep concurrent
 * writers apart; O_EXCL makes a collision a retry, never a shared file. */
static int make_temp(blobstore_t *bs, char **path)
{
    for (int i = 0; i < TEMP_ATTEMPTS; i++) {
        char hex[33];
        hp_random_hex(hex, 16);
        *path = hp_sprintf("%s/tmp/%s.tmp", bs->dir, hex);
        int fd = open(*path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0)
            return fd;
        int saved = errno;
        hp_free(*path);
        *path = NULL;
        errno = saved;
        if (errno != EEXIST)
            break;
    }
    return -1;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* fsync a directory so a rename into it survives a power cut. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* ---- Opening ---- */

blobstore_t *blobstore_open(const char *dir, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (!dir || !*dir) {
        snprintf(err, errlen, "blob store: no directory given");
        return NULL;
    }
    blobstore_t *bs = hp_calloc(1, sizeof(*bs));
    bs->dir = hp_strdup(dir);
    size_t n = strlen(bs->dir);
    while (n > 1 && bs->dir[n - 1] == '/')
        bs->dir[--n] = '\0';
    char *tmp = hp_sprintf("%s/tmp", bs->dir);
    char *probe = NULL;
    int fd = -1;
    if (mkdir_p(tmp, 0700) != 0) {
        snprintf(err, errlen, "blob store: cannot create %s: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = make_temp(bs, &probe);
    if (fd < 0) {
        snprintf(err, errlen, "blob store: %s is not writable: %s", tmp, strerror(errno));
        goto fail;
    }
    close(fd);
    unlink(probe);
    hp_free(probe);
    hp_free(tmp);
    return bs;
fail:
    hp_free(tmp);
    blobstore_close(bs);
    return NULL;
}

void blobstore_close(blobstore_t *bs)
{
    if (!bs)
        return;
    hp_free(bs->dir);
    hp_free(bs);
}

/* ---- Writing ---- */

int blob_write_begin(blobstore_t *bs, const char *content_type, int64_t max_bytes,
                     blob_writer_t **out)
{
    *out = NULL;
    if (!content_type)
        content_type = BLOB_DEFAULT_TYPE;
    if (!blob_content_type_valid(content_type) || max_bytes < 0)
        return HP_EINVAL;
    char *path;
    int fd = make_temp(bs, &path);
    if (fd < 0) {
        hp_error("blob store: cannot create a temp file in %s/tmp: %s", bs->dir, strerror(errno));
        return HP_EIO;
    }
    blob_writer_t *w = hp_calloc(1, sizeof(*w));
    w->bs = bs;
    w->fd = fd;
    w->tmp_path = path;
    w->max = max_bytes;
    snprintf(w->content_type, sizeof(w->content_type), "%s", content_type);
    w->md = EVP_MD_CTX_new();
    if (!w->md || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
        hp_error("blob store: cannot start a SHA-256 context");
        blob_write_abort(w);
        return HP_EIO;
    }
    *out = w;
    return 0;
}

int blob_write(blob_writer_t *w, const void *data, size_t len)
{
    if (w->err)
        return w->err;
    if (len > (uint64_t)(w->max - w->size)) {
        w->err = HP_ETOOBIG;
        return w->err;
    }
    if (write_all(w->fd, data, len) != 0) {
        hp_error("blob store: writing %s: %s", w->tmp_path, strerror(errno));
        w->err = HP_EIO;
        return w->err;
    }
    if (EVP_DigestUpdate(w->md, data, len) != 1) {
        w->err = HP_EIO;
        return w->err;
    }
    w->size += (int64_t)len;
    return 0;
}

/* Writes the sidecar for blob `id` at meta_path through a temp file and a rename,
 * so a reader sees the old sidecar or the new one, never half of one. */
static int write_meta(blob_writer_t *w, const char *meta_path, int64_t created_ms)
{
    char *tmp;
    int fd = make_temp(w->bs, &tmp);
    if (fd < 0)
        return HP_EIO;
    char *text =
        hp_sprintf(META_MAGIC "content_type=%s\nsize=%" PRId64 "\ncreated_ms=%" PRId64 "\n",
                   w->content_type, w->size, created_ms);
    int rc = write_all(fd, text, strlen(text));
    hp_free(text);
    if (rc == 0)
        rc = fsync(fd);
    if (close(fd) != 0)
        rc = -1;
    if (rc == 0)
        rc = rename(tmp, meta_path);
    if (rc != 0) {
        hp_error("blob store: writing %s: %s", meta_path, strerror(errno));
        unlink(tmp);
    }
    hp_free(tmp);
    return rc == 0 ? 0 : HP_EIO;
}

static void hex_digest(EVP_MD_CTX *md, char id[BLOB_ID_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(md, digest, &n);
    for (unsigned int i = 0; i < n && i * 2 < BLOB_ID_LEN; i++)
        snprintf(id + i * 2, 3, "%02x", digest[i]);
}

/* Moves the finished temp file to `path`, its sidecar first. */
static int publish(blob_writer_t *w, const char *id, const char *path)
{
    char *fanout = hp_sprintf("%s/%.2s", w->bs->dir, id);
    char *meta = hp_sprintf("%s.meta", path);
    int err = 0;
    if (mkdir(fanout, 0700) != 0 && errno != EEXIST) {
        hp_error("blob store: cannot create %s: %s", fanout, strerror(errno));
        err = HP_EIO;
    }
    if (!err)
        err = write_meta(w, meta, hp_now_ms());
    if (!err && rename(w->tmp_path, path) != 0) {
        hp_error("blob store: renaming into %s: %s", path, strerror(errno));
        err = HP_EIO;
    }
    if (!err && sync_dir(fanout) != 0)
        err = HP_EIO;
    hp_free(meta);
    hp_free(fanout);
    return err;
}

int blob_write_commit(blob_writer_t *w, blob_info_t *out)
{
    int err = w->err;
    char id[BLOB_ID_LEN + 1] = "";
    char *path = NULL;
    if (!err && fsync(w->fd) != 0) {
        hp_error("blob store: fsync %s: %s", w->tmp_path, strerror(errno));
        err = HP_EIO;
    }
    if (close(w->fd) != 0 && !err)
        err = HP_EIO;
    w->fd = -1;
    if (err)
        goto done;
    hex_digest(w->md, id);
    path = blob_path(w->bs, id);
    struct stat st;
    if (stat(path, &st) == 0)
        unlink(w->tmp_path); /* same bytes already stored: keep the first */
    else
        err = publish(w, id, path);
    if (!err) {
        hp_free(w->tmp_path); /* gone or renamed: abort must not unlink the name */
        w->tmp_path = NULL;
    }
    if (!err && out)
        err = blob_stat(w->bs, id, out);
done:
    hp_free(path);
    blob_write_abort(w); /* removes the temp file if it is still there */
    return err;
}

void blob_write_abort(blob_writer_t *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp_path)
        unlink(w->tmp_path);
    EVP_MD_CTX_free(w->md);
    hp_free(w->tmp_path);
    hp_free(w);
}

/* ---- Reading ---- */

/* Reads the sidecar next to `path` into out; leaves out alone where it is missing
 * or damaged, since the blob itself is still good. */
static void read_meta(const char *path, blob_info_t *out)
{
    char *meta = hp_sprintf("%s.meta", path);
    int fd = open(meta, O_RDONLY | O_CLOEXEC);
    hp_free(meta);
    if (fd < 0)
        return;
    char buf[META_MAX];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < (ssize_t)strlen(META_MAGIC) || memcmp(buf, META_MAGIC, strlen(META_MAGIC)) != 0)
        return;
    buf[n] = '\0';
    for (char *line = buf + strlen(META_MAGIC); *line;) {
        char *nl = strchr(line, '\n');
        if (!nl)
            break;
        *nl = '\0';
        if (strncmp(line, "content_type=", 13) == 0 && blob_content_type_valid(line + 13))
            snprintf(out->content_type, sizeof(out->content_type), "%s", line + 13);
        else if (strncmp(line, "created_ms=", 11) == 0)
            out->created_ms = strtoll(line + 11, NULL, 10);
        line = nl + 1;
    }
}

/* Fills out from the blob's stat and sidecar. The size always comes from the file. */
static int fill_info(const char *id, const char *path, const struct stat *st, blob_info_t *out)
{
    if (!S_ISREG(st->st_mode))
        return HP_ENOTFOUND;
    if (!out)
        return 0;
    memset(out, 0, sizeof(*out));
    memcpy(out->id, id, BLOB_ID_LEN + 1);
    out->size = (int64_t)st->st_size;
    snprintf(out->content_type, sizeof(out->content_type), "%s", BLOB_DEFAULT_TYPE);
    out->created_ms = (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
    read_meta(path, out);
    return 0;
}

static int errno_code(void)
{
    return errno == ENOENT || errno == ENOTDIR ? HP_ENOTFOUND : HP_EIO;
}

int blob_stat(blobstore_t *bs, const char *id, blob_info_t *out)
{
    char *path = blob_path(bs, id);
    if (!path)
        return HP_EINVAL;
    struct stat st;
    int err = stat(path, &st) == 0 ? fill_info(id, path, &st, out) : errno_code();
    hp_free(path);
    return err;
}

int blob_open_read(blobstore_t *bs, const char *id, int *fd, blob_info_t *out)
{
    *fd = -1;
    char *path = blob_path(bs, id);
    if (!path)
        return HP_EINVAL;
    int err = 0;
    int f = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (f < 0)
        err = errno_code();
    else if (fstat(f, &st) != 0)
        err = HP_EIO;
    else
        err = fill_info(id, path, &st, out);
    if (err && f >= 0)
        close(f);
    else if (!err)
        *fd = f;
    hp_free(path);
    return err;
}

/* ---- Maintenance ---- */

int blobstore_sweep_tmp(blobstore_t *bs, int64_t age_ms)
{
    char *tmp = hp_sprintf("%s/tmp", bs->dir);
    DIR *d = opendir(tmp);
    hp_free(tmp);
    if (!d)
        return 0;
    int64_t cutoff = hp_now_ms() - age_ms;
    int removed = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        size_t n = strlen(e->d_name);
        struct stat st;
        if (n < 5 || strcmp(e->d_name + n - 4, ".tmp") != 0)
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
        if (mtime < cutoff && unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}
