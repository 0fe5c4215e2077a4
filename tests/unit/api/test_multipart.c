/* Unit tests for api/multipart.c: parts, binary content, every split, and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api/multipart.h"

/* ---- A recorder: every callback appends to one transcript ---- */

typedef struct rec_s {
    hp_strbuf_t out;
    int stop_code; /* on_part_data returns this when nonzero */
} rec_t;

static int on_begin(void *ctx, const char *name, const char *filename, const char *ctype)
{
    rec_t *r = ctx;
    return hp_strbuf_printf(&r->out, "<begin %s|%s|%s>", name, filename ? filename : "-",
                            ctype ? ctype : "-");
}

static int on_data(void *ctx, const char *data, size_t len)
{
    rec_t *r = ctx;
    assert_true(len > 0);
    if (r->stop_code)
        return r->stop_code;
    return hp_strbuf_append(&r->out, data, len);
}

static int on_end(void *ctx)
{
    rec_t *r = ctx;
    return hp_strbuf_appends(&r->out, "<end>");
}

static const mp_callbacks_t callbacks = {on_begin, on_data, on_end};

#define CT "multipart/form-data; boundary=XyZ"

/* Parses body in pieces of `step` bytes after a first piece of `first` bytes, then
 * finishes. Returns the first nonzero code; the transcript is left in r. */
static int parse(rec_t *r, const char *ct, const char *body, size_t len, size_t first, size_t step)
{
    hp_strbuf_init(&r->out, 0);
    char err[MP_ERRMSG_MAX];
    mp_parser_t *p = mp_new(ct, &callbacks, r, err, sizeof(err));
    assert_non_null(p);
    int rc = mp_feed(p, body, first < len ? first : len);
    for (size_t off = first; rc == 0 && off < len; off += step)
        rc = mp_feed(p, body + off, len - off < step ? len - off : step);
    if (rc == 0)
        rc = mp_finish(p);
    if (rc)
        assert_true(strlen(mp_errmsg(p)) > 0);
    mp_free(p);
    return rc;
}

/* ---- Sample bodies ---- */

static const char two_parts[] = "preamble, ignored\r\n"
                                "--XyZ\r\n"
                                "Content-Disposition: form-data; name=\"field1\"\r\n"
                                "\r\n"
                                "value one\r\n"
                                "--XyZ \t\r\n"
                                "content-disposition: form-data; name=upload;"
                                " filename=\"a \\\"q\\\".txt\"\r\n"
                                "Content-Type:  text/plain; charset=utf-8 \r\n"
                                "X-Ignored: yes\r\n"
                                "\r\n"
                                "line1\r\nline2\r\n"
                                "--XyZ--\r\n"
                                "epilogue, ignored --XyZ\r\n";

static const char two_parts_out[] = "<begin field1|-|->value one<end>"
                                    "<begin upload|a \"q\".txt|text/plain; charset=utf-8>"
                                    "line1\r\nline2<end>";

/* Binary content: NUL and 0xff bytes, bare CR and LF, and prefixes of the delimiter
 * that break off at every length. */
static const char binary_part[] = "\x00\x01\xff\r\n\r\r\n\r\n-\r\n--\r\n--X\r\n--Xy"
                                  "--XyZ\r\n-\n--XyZ\r\r\n--Xy\r";

static size_t binary_body(char *buf, size_t cap)
{
    static const char head[] = "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"f\";"
                               " filename=\"C:\\dir\\b.bin\"\r\n"
                               "Content-Type: application/octet-stream\r\n\r\n";
    static const char tail[] = "\r\n--XyZ--";
    size_t n = 0;
    memcpy(buf + n, head, sizeof(head) - 1);
    n += sizeof(head) - 1;
    memcpy(buf + n, binary_part, sizeof(binary_part) - 1);
    n += sizeof(binary_part) - 1;
    memcpy(buf + n, tail, sizeof(tail) - 1);
    n += sizeof(tail) - 1;
    assert_true(n <= cap);
    return n;
}

/* ---- Tests ---- */

static void two_parts_parse(void **state)
{
    (void)state;
    rec_t r = {0};
    assert_int_equal(parse(&r, CT, two_parts, sizeof(two_parts) - 1, SIZE_MAX, 1), 0);
    assert_string_equal(r.out.data, two_parts_out);
    hp_strbuf_cleanup(&r.out);
}

static void binary_content_with_look_alikes(void **state)
{
    (void)state;
    char body[512];
    size_t len = binary_body(body, sizeof(body));
    rec_t r = {0};
    assert_int_equal(parse(&r, CT, body, len, SIZE_MAX, 1), 0);
    static const char begin[] = "<begin f|C:\\dir\\b.bin|application/octet-stream>";
    size_t blen = sizeof(begin) - 1, plen = sizeof(binary_part) - 1;
    assert_int_equal(r.out.len, blen + plen + 5);
    assert_memory_equal(r.out.data, begin, blen);
    assert_memory_equal(r.out.data + blen, binary_part, plen);
    assert_string_equal(r.out.data + blen + plen, "<end>");
    hp_strbuf_cleanup(&r.out);
}

static void check_every_split(const char *body, size_t len)
{
    rec_t whole = {0};
    assert_int_equal(parse(&whole, CT, body, len, SIZE_MAX, 1), 0);
    for (size_t cut = 0; cut <= len; cut++) {
        rec_t r = {0};
        assert_int_equal(parse(&r, CT, body, len, cut, SIZE_MAX), 0);
        assert_int_equal(r.out.len, whole.out.len);
        assert_memory_equal(r.out.data, whole.out.data, whole.out.len);
        hp_strbuf_cleanup(&r.out);
    }
    rec_t bytes = {0};
    assert_int_equal(parse(&bytes, CT, body, len, 0, 1), 0);
    assert_int_equal(bytes.out.len, whole.out.len);
    assert_memory_equal(bytes.out.data, whole.out.data, whole.out.len);
    hp_strbuf_cleanup(&bytes.out);
    hp_strbuf_cleanup(&whole.out);
}

static void every_split_gives_the_same_parts(void **state)
{
    (void)state;
    check_every_split(two_parts, sizeof(two_parts) - 1);
    char body[512];
    check_every_split(body, binary_body(body, sizeof(body)));
}

static void quoted_boundary_and_empty_parts(void **state)
{
    (void)state;
    static const char body[] = "--a b:c?\r\n"
                               "Content-Disposition: form-data; name=\"e\"\r\n\r\n"
                               "\r\n--a b:c?\r\n"
                               "Content-Disposition: form-data; name=\"x\"\r\n\r\n"
                               "x\r\n--a b:c?--";
    rec_t r = {0};
    const char *ct = "Multipart/Form-Data ; charset=x; boundary=\"a b:c?\";";
    assert_int_equal(parse(&r, ct, body, sizeof(body) - 1, SIZE_MAX, 1), 0);
    assert_string_equal(r.out.data, "<begin e|-|-><end><begin x|-|->x<end>");
    hp_strbuf_cleanup(&r.out);
}

static void truncated_bodies_fail(void **state)
{
    (void)state;
    size_t full = sizeof(two_parts) - 1;
    size_t closing = (size_t)(strstr(two_parts, "--XyZ--") - two_parts);
    /* Every cut before the closing "--" fails, mid-part or between parts. */
    for (size_t cut = 0; cut < closing + strlen("--XyZ--"); cut++) {
        rec_t r = {0};
        assert_int_equal(parse(&r, CT, two_parts, cut, SIZE_MAX, 1), HP_EINVAL);
        hp_strbuf_cleanup(&r.out);
    }
    rec_t r = {0};
    assert_int_equal(parse(&r, CT, two_parts, full, SIZE_MAX, 1), 0);
    hp_strbuf_cleanup(&r.out);
}

static int feed_all(const char *ct, const char *body, size_t len, char *msg, size_t msglen)
{
    rec_t r = {0};
    hp_strbuf_init(&r.out, 0);
    mp_parser_t *p = mp_new(ct, &callbacks, &r, NULL, 0);
    assert_non_null(p);
    int rc = mp_feed(p, body, len);
    if (!rc)
        rc = mp_finish(p);
    snprintf(msg, msglen, "%s", mp_errmsg(p));
    mp_free(p);
    hp_strbuf_cleanup(&r.out);
    return rc;
}

static void headers_too_long(void **state)
{
    (void)state;
    hp_strbuf_t body;
    hp_strbuf_init(&body, 0);
    hp_strbuf_appends(&body, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Pad: ");
    for (int i = 0; i < MP_HEADER_MAX; i++)
        hp_strbuf_append(&body, "p", 1);
    hp_strbuf_appends(&body, "\r\n\r\ndata\r\n--XyZ--");
    char msg[MP_ERRMSG_MAX];
    assert_int_equal(feed_all(CT, body.data, body.len, msg, sizeof(msg)), HP_EINVAL);
    assert_non_null(strstr(msg, "8192"));
    hp_strbuf_cleanup(&body);
}

static void bad_content_types(void **state)
{
    (void)state;
    char err[MP_ERRMSG_MAX];
    rec_t r = {0};
    assert_null(mp_new("multipart/form-data", &callbacks, &r, err, sizeof(err)));
    assert_non_null(strstr(err, "no boundary"));
    assert_null(mp_new("multipart/form-data; boundary=\"\"", &callbacks, &r, err, sizeof(err)));
    assert_null(mp_new("text/plain; boundary=x", &callbacks, &r, err, sizeof(err)));
    assert_null(mp_new("multipart/form-data; boundary=\"a\r\nb\"", &callbacks, &r, err, 8));
    assert_null(mp_new("multipart/form-data; boundary=\"ab \"", &callbacks, &r, NULL, 0));
    assert_null(mp_new("multipart/form-data; boundary=a; boundary=b", &callbacks, &r, err, 9));
    assert_null(mp_new(NULL, &callbacks, &r, err, sizeof(err)));
    char ct[128];
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%071d", 7);
    assert_null(mp_new(ct, &callbacks, &r, err, sizeof(err)));
    assert_non_null(strstr(err, "70"));
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%070d", 7);
    mp_parser_t *p = mp_new(ct, &callbacks, &r, err, sizeof(err));
    assert_non_null(p);
    mp_free(p);
    mp_free(NULL);
}

static void malformed_bodies(void **state)
{
    (void)state;
    static const char *const bad[] = {
        /* no name */
        "--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--",
        /* not form-data */
        "--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--XyZ--",
        /* two names */
        "--XyZ\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\nx\r\n--XyZ--",
        /* unterminated quote */
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--XyZ--",
        /* header without a colon, and folding */
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\nnocolon\r\n\r\n\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data;\r\n name=a\r\n\r\n\r\n--XyZ--",
        /* the delimiter followed by junk inside a part */
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZjunk\r\n--XyZ--",
        /* a single dash after the boundary */
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZ-\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[MP_ERRMSG_MAX];
        assert_int_equal(feed_all(CT, bad[i], strlen(bad[i]), msg, sizeof(msg)), HP_EINVAL);
        assert_true(msg[0] != '\0');
    }
}

static void callback_code_stops_the_parser(void **state)
{
    (void)state;
    rec_t r = {.stop_code = HP_ETOOBIG};
    hp_strbuf_init(&r.out, 0);
    mp_parser_t *p = mp_new(CT, &callbacks, &r, NULL, 0);
    assert_int_equal(mp_feed(p, two_parts, sizeof(two_parts) - 1), HP_ETOOBIG);
    assert_int_equal(mp_feed(p, "more", 4), HP_ETOOBIG);
    assert_int_equal(mp_finish(p), HP_ETOOBIG);
    assert_non_null(strstr(mp_errmsg(p), "too large"));
    assert_string_equal(r.out.data, "<begin field1|-|->");
    mp_free(p);
    hp_strbuf_cleanup(&r.out);
}

static void null_callbacks_are_allowed(void **state)
{
    (void)state;
    mp_parser_t *p = mp_new(CT, NULL, NULL, NULL, 0);
    assert_int_equal(mp_feed(p, two_parts, sizeof(two_parts) - 1), 0);
    assert_int_equal(mp_finish(p), 0);
    assert_string_equal(mp_errmsg(p), "");
    mp_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_parts_parse),
        cmocka_unit_test(binary_content_with_look_alikes),
        cmocka_unit_test(every_split_gives_the_same_parts),
        cmocka_unit_test(quoted_boundary_and_empty_parts),
        cmocka_unit_test(truncated_bodies_fail),
        cmocka_unit_test(headers_too_long),
        cmocka_unit_test(bad_content_types),
        cmocka_unit_test(malformed_bodies),
        cmocka_unit_test(callback_code_stops_the_parser),
        cmocka_unit_test(null_callbacks_are_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
