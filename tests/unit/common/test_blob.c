/* Unit tests for api/blobstore.c: ids, limits, dedup, aborts, crash leftovers. */
#include "common/common.h"
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Fixture: a fresh store in a private temp directory ---- */

typedef struct fix_s {
    char root[64];
    blobstore_t *bs;
} fix_t;

static int setup(void **state)
{
    fix_t *f = hp_calloc(1, sizeof(*f));
    snprintf(f->root, sizeof(f->root), "/tmp/hopper-blobs-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/a/b/store/", f->root); /* parents are created */
    char err[256];
    f->bs = blobstore_open(dir, err, sizeof(err));
    assert_non_null(f->bs);
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fix_t *f = *state;
    blobstore_close(f->bs);
    nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    hp_free(f);
    return 0;
}

static char *store_path(fix_t *f, const char *sub)
{
    return hp_sprintf("%s/a/b/store/%s", f->root, sub);
}

/* Entries in dir, "." and ".." not counted. */
static int count_entries(fix_t *f, const char *sub)
{
    char *dir = store_path(f, sub);
    DIR *d = opendir(dir);
    hp_free(dir);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void sha256_hex(const void *data, size_t len, char out[BLOB_ID_LEN + 1])
{
    unsigned char md[32];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL), 1);
    for (unsigned int i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int store(blobstore_t *bs, const char *ct, const void *data, size_t len, int64_t max,
                 blob_info_t *info)
{
    blob_writer_t *w;
    int err = blob_write_begin(bs, ct, max, &w);
    if (err)
        return err;
    err = blob_write(w, data, len);
    if (err) {
        blob_write_abort(w);
        return err;
    }
    return blob_write_commit(w, info);
}

/* ---- Tests ---- */

static void chunked_write_is_named_by_its_sha256(void **state)
{
    fix_t *f = *state;
    size_t len = 100000;
    unsigned char *data = hp_malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(i * 7 + i / 251);
    blob_writer_t *w;
    assert_int_equal(blob_write_begin(f->bs, "image/png", 1 << 20, &w), 0);
    for (size_t off = 0, step = 1; off < len; off += step, step = step * 3 % 4093 + 1)
        assert_int_equal(blob_write(w, data + off, step < len - off ? step : len - off), 0);
    blob_info_t info;
    assert_int_equal(blob_write_commit(w, &info), 0);
    char want[BLOB_ID_LEN + 1];
    sha256_hex(data, len, want);
    assert_string_equal(info.id, want);
    assert_int_equal(info.size, len);
    assert_string_equal(info.content_type, "image/png");
    assert_true(info.created_ms > hp_now_ms() - 60000 && info.created_ms <= hp_now_ms());

    blob_info_t st;
    assert_int_equal(blob_stat(f->bs, want, &st), 0);
    assert_memory_equal(&st, &info, sizeof(st));
    int fd;
    assert_int_equal(blob_open_read(f->bs, want, &fd, &st), 0);
    unsigned char *back = hp_malloc(len + 1);
    assert_int_equal(read(fd, back, len + 1), len);
    assert_memory_equal(back, data, len);
    close(fd);

    char *path = blob_path(f->bs, want);
    char *expect = hp_sprintf("%s/a/b/store/%.2s/%s", f->root, want, want);
    assert_string_equal(path, expect);
    assert_int_equal(access(path, R_OK), 0);
    assert_int_equal(count_entries(f, "tmp"), 0);
    hp_free(expect);
    hp_free(path);
    hp_free(back);
    hp_free(data);
}

static void empty_blob_and_default_type(void **state)
{
    fix_t *f = *state;
    blob_info_t info;
    assert_int_equal(store(f->bs, NULL, "", 0, 0, &info), 0);
    assert_string_equal(info.id,
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(info.size, 0);
    assert_string_equal(info.content_type, BLOB_DEFAULT_TYPE);
}

static void size_limit_is_enforced(void **state)
{
    fix_t *f = *state;
    blob_writer_t *w;
    assert_int_equal(blob_write_begin(f->bs, "text/plain", 10, &w), 0);
    assert_int_equal(blob_write(w, "123456", 6), 0);
    assert_int_equal(blob_write(w, "78901", 5), HP_ETOOBIG);
    assert_int_equal(blob_write(w, "7", 1), HP_ETOOBIG); /* sticky */
    assert_int_equal(blob_write_commit(w, NULL), HP_ETOOBIG);
    assert_int_equal(count_entries(f, "tmp"), 0);
    blob_info_t info;
    assert_int_equal(store(f->bs, "text/plain", "1234567890", 10, 10, &info), 0);
    assert_int_equal(info.size, 10);
    assert_int_equal(blob_write_begin(f->bs, "text/plain", -1, &w), HP_EINVAL);
    assert_null(w);
}

static void same_content_is_stored_once(void **state)
{
    fix_t *f = *state;
    blob_info_t a, b;
    assert_int_equal(store(f->bs, "text/plain", "hello", 5, 100, &a), 0);
    assert_int_equal(store(f->bs, "application/json", "hello", 5, 100, &b), 0);
    assert_string_equal(a.id, b.id);
    assert_string_equal(b.content_type, "text/plain"); /* the first upload's metadata */
    assert_int_equal(b.created_ms, a.created_ms);
    char fan[3] = {a.id[0], a.id[1], '\0'};
    assert_int_equal(count_entries(f, fan), 2); /* the blob and its sidecar */
    assert_int_equal(count_entries(f, "tmp"), 0);
}

static void abort_leaves_nothing(void **state)
{
    fix_t *f = *state;
    blob_writer_t *w;
    assert_int_equal(blob_write_begin(f->bs, "text/plain", 100, &w), 0);
    assert_int_equal(count_entries(f, "tmp"), 1);
    assert_int_equal(blob_write(w, "partial", 7), 0);
    blob_write_abort(w);
    blob_write_abort(NULL);
    assert_int_equal(count_entries(f, "tmp"), 0);
    char id[BLOB_ID_LEN + 1];
    sha256_hex("partial", 7, id);
    assert_int_equal(blob_stat(f->bs, id, NULL), HP_ENOTFOUND);
}

static void bad_ids_are_refused(void **state)
{
    fix_t *f = *state;
    static const char *const bad[] = {
        "../../../../../../etc/passwd",
        "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
        "../b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
        "",
        NULL,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(blob_id_valid(bad[i]));
        assert_int_equal(blob_stat(f->bs, bad[i], NULL), HP_EINVAL);
        int fd = 7;
        assert_int_equal(blob_open_read(f->bs, bad[i], &fd, NULL), HP_EINVAL);
        assert_int_equal(fd, -1);
        assert_null(blob_path(f->bs, bad[i]));
    }
}

static void unknown_ids_are_not_found(void **state)
{
    fix_t *f = *state;
    const char *id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    blob_info_t info;
    assert_int_equal(blob_stat(f->bs, id, &info), HP_ENOTFOUND);
    int fd;
    assert_int_equal(blob_open_read(f->bs, id, &fd, &info), HP_ENOTFOUND);
    assert_int_equal(fd, -1);
}

static void crash_leftovers_are_invisible_and_swept(void **state)
{
    fix_t *f = *state;
    /* A crash mid-upload leaves a temp file holding real bytes. */
    char id[BLOB_ID_LEN + 1];
    sha256_hex("crashed", 7, id);
    char *tmp = store_path(f, "tmp/00112233445566778899aabbccddeeff.tmp");
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    fputs("crashed", fp);
    fclose(fp);
    struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
    assert_int_equal(utimensat(AT_FDCWD, tmp, old, 0), 0);
    assert_int_equal(blob_stat(f->bs, id, NULL), HP_ENOTFOUND);

    /* An upload in progress is younger than the cutoff and survives the sweep. */
    blob_writer_t *w;
    assert_int_equal(blob_write_begin(f->bs, "text/plain", 100, &w), 0);
    assert_int_equal(blobstore_sweep_tmp(f->bs, 3600 * 1000), 1);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(count_entries(f, "tmp"), 1);
    assert_int_equal(blob_write(w, "ok", 2), 0);
    assert_int_equal(blob_write_commit(w, NULL), 0);
    hp_free(tmp);
}

static void missing_sidecar_falls_back(void **state)
{
    fix_t *f = *state;
    blob_info_t info;
    assert_int_equal(store(f->bs, "text/csv; charset=\"utf-8\"", "a,b\n", 4, 100, &info), 0);
    assert_string_equal(info.content_type, "text/csv; charset=\"utf-8\"");
    char *path = blob_path(f->bs, info.id);
    char *meta = hp_sprintf("%s.meta", path);
    assert_int_equal(unlink(meta), 0);
    assert_int_equal(blob_stat(f->bs, info.id, &info), 0);
    assert_string_equal(info.content_type, BLOB_DEFAULT_TYPE);
    assert_int_equal(info.size, 4);
    hp_free(meta);
    hp_free(path);
}

static void content_types_are_checked(void **state)
{
    fix_t *f = *state;
    static const char *const good[] = {"text/plain", "application/vnd.api+json",
                                       "text/plain; charset=utf-8",
                                       "multipart/mixed;boundary=\"a b\""};
    static const char *const bad[] = {"text",
                                      "text/",
                                      "/plain",
                                      "text/plain\r\nX-Evil: 1",
                                      "text/plain; x",
                                      "text/pl ain",
                                      "text/plain; a=\"open",
                                      "tëxt/plain"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(blob_content_type_valid(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(blob_content_type_valid(bad[i]));
        blob_writer_t *w;
        assert_int_equal(blob_write_begin(f->bs, bad[i], 10, &w), HP_EINVAL);
    }
    char longest[BLOB_CONTENT_TYPE_MAX + 2];
    memset(longest, 'a', sizeof(longest) - 1);
    longest[1] = '/';
    longest[BLOB_CONTENT_TYPE_MAX] = '\0';
    assert_true(blob_content_type_valid(longest));
    longest[BLOB_CONTENT_TYPE_MAX] = 'a';
    longest[BLOB_CONTENT_TYPE_MAX + 1] = '\0';
    assert_false(blob_content_type_valid(longest));
}

static void open_fails_cleanly(void **state)
{
    (void)state;
    char err[256] = "";
    assert_null(blobstore_open("/proc/hopper-cannot-be-here", err, sizeof(err)));
    assert_true(strlen(err) > 0);
    assert_null(blobstore_open("", NULL, 0));
    blobstore_close(NULL);
}

/* ---- Concurrent writers ---- */

typedef struct writer_arg_s {
    blobstore_t *bs;
    int n;
    char ids[20][BLOB_ID_LEN + 1];
} writer_arg_t;

static void *writer_thread(void *p)
{
    writer_arg_t *a = p;
    for (int i = 0; i < 20; i++) {
        char text[32];
        snprintf(text, sizeof(text), "blob %d", i % 10 + a->n % 2); /* overlapping bytes */
        blob_info_t info;
        if (store(a->bs, "text/plain", text, strlen(text), 100, &info) != 0)
            return (void *)1;
        memcpy(a->ids[i], info.id, sizeof(info.id));
    }
    return NULL;
}

static void concurrent_writers(void **state)
{
    fix_t *f = *state;
    writer_arg_t args[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (writer_arg_t){.bs = f->bs, .n = t};
        assert_int_equal(pthread_create(&th[t], NULL, writer_thread, &args[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        void *rc;
        pthread_join(th[t], &rc);
        assert_null(rc);
    }
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < 20; i++) {
            char text[32], want[BLOB_ID_LEN + 1];
            snprintf(text, sizeof(text), "blob %d", i % 10 + t % 2);
            sha256_hex(text, strlen(text), want);
            assert_string_equal(args[t].ids[i], want);
            assert_int_equal(blob_stat(f->bs, want, NULL), 0);
        }
    }
    assert_int_equal(count_entries(f, "tmp"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(chunked_write_is_named_by_its_sha256, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_blob_and_default_type, setup, teardown),
        cmocka_unit_test_setup_teardown(size_limit_is_enforced, setup, teardown),
        cmocka_unit_test_setup_teardown(same_content_is_stored_once, setup, teardown),
        cmocka_unit_test_setup_teardown(abort_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_ids_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_ids_are_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_leftovers_are_invisible_and_swept, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_sidecar_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(content_types_are_checked, setup, teardown),
        cmocka_unit_test(open_fails_cleanly),
        cmocka_unit_test_setup_teardown(concurrent_writers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
