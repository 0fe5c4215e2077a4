/*
 * End to end: the pdf plugin (pdf.render) in the real `hopper worker`, against a
 * private redis-server and a real blob directory, checked the way a user would
 * check a PDF: qpdf --check, pdfinfo, pdftotext, pdfimages, and pdftoppm to look
 * at the pixels where an image should be.
 *
 * One worker serves every test (starting one takes a while on a loaded VM), with
 * the plugin as it ships: each job in a forked child. Worker processes end with
 * _exit(), so LeakSanitizer never sees them: the last test therefore runs the
 * renderer (plugins/pdf/render.c, compiled in) inside this process, over good and
 * bad documents, a cancel and a failing write, and LeakSanitizer checks this
 * process at exit in the sanitizer build.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>

#include <cmocka.h>
#include <jansson.h>
#include <jpeglib.h>
#include <png.h>

#include "broker/broker.h"
#include "common/common.h"
#include "tests/support/test_proc.h"
#include "tests/support/test_redis.h"

#include "render.h"

#ifndef HOPPER_PLUGIN_DIR
#error "HOPPER_PLUGIN_DIR must name the directory of the shipped plugins"
#endif
#define PDF_PLUGIN HOPPER_PLUGIN_DIR "/pdf.so"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define WAIT_MS 30000 /* how long a job may take to get where it is going */

static test_redis_t redis;
static broker_t *B;
static test_proc_t worker;
static char blob_dir[64];
static blobstore_t *store;
static const char *queue;

/* ---- Helpers ---- */

/* Runs a shell command; its stdout (free() it) and exit status. */
static char *run(int *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *run(int *status, const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 65536, n = 0, got;
    char *buf = malloc(cap);
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (cap - n < 4096)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return buf;
}

static size_t count_substr(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Stores bytes as a blob; its id in `id`. */
static void put_blob(const void *data, size_t len, const char *ctype, char id[65])
{
    blob_writer_t *w = NULL;
    assert_int_equal(blob_write_begin(store, ctype, INT64_MAX, &w), 0);
    assert_int_equal(blob_write(w, data, len), 0);
    blob_info_t info;
    assert_int_equal(blob_write_commit(w, &info), 0);
    snprintf(id, 65, "%s", info.id);
}

/* A w x h PNG of one colour, made with libpng; malloc'd bytes. */
static unsigned char *make_png(unsigned w, unsigned h, const unsigned char rgb[3], size_t *len)
{
    png_image img = {
        .version = PNG_IMAGE_VERSION, .width = w, .height = h, .format = PNG_FORMAT_RGB};
    unsigned char *pixels = malloc((size_t)w * h * 3);
    for (size_t i = 0; i < (size_t)w * h; i++)
        memcpy(pixels + 3 * i, rgb, 3);
    png_alloc_size_t size = 0;
    assert_true(png_image_write_to_memory(&img, NULL, &size, 0, pixels, 0, NULL));
    unsigned char *out = malloc(size);
    assert_true(png_image_write_to_memory(&img, out, &size, 0, pixels, 0, NULL));
    free(pixels);
    *len = size;
    return out;
}

/* A w x h JPEG of one colour, made with libjpeg; malloc'd bytes. */
static unsigned char *make_jpeg(unsigned w, unsigned h, const unsigned char rgb[3], size_t *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &out, &size);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    jpeg_start_compress(&c, TRUE);
    unsigned char *row = malloc((size_t)w * 3);
    for (unsigned x = 0; x < w; x++)
        memcpy(row + 3 * x, rgb, 3);
    while (c.next_scanline < h)
        jpeg_write_scanlines(&c, &row, 1);
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    *len = size;
    return out;
}

typedef struct rendered_s {
    job_t *job;
    char blob[65];
    long pages, bytes;
    char path[512]; /* the PDF in the blob store */
} rendered_t;

/* ---- Jobs ---- */

static void enqueue(const char *payload, char id[JOB_ID_MAX])
{
    enqueue_result_t r;
    memset(&r, 0, sizeof r);
    job_spec_t spec = {.queue = queue, .type = "pdf.render", .payload = payload, .max_attempts = 3};
    if (broker_enqueue(B, &spec, 1, &r))
        fail_msg("enqueue: %s (%s)", broker_errmsg(B), r.errmsg);
    snprintf(id, JOB_ID_MAX, "%s", r.id);
}

static void show(const job_t *j)
{
    char *json = job_to_json(j, 2);
    fprintf(stderr, "job:\n%s\n", json);
    hp_free(json);
    char *log = test_proc_log(&worker);
    size_t n = strlen(log);
    fprintf(stderr, "---- worker log (tail) ----\n%s\n", n > 6000 ? log + n - 6000 : log);
    free(log);
}

/* Waits for job `id` to reach a final state, which must be `want`; the job. */
static job_t *wait_final(const char *id, job_state_t want)
{
    int64_t end = hp_mono_ms() + WAIT_MS;
    for (;;) {
        job_t *j = NULL;
        if (broker_get(B, id, &j))
            fail_msg("broker_get %s: %s", id, broker_errmsg(B));
        bool final = j->state == JOB_STATE_SUCCEEDED || j->state == JOB_STATE_DEAD ||
                     j->state == JOB_STATE_CANCELED;
        if (final && j->state == want)
            return j;
        if (final || hp_mono_ms() > end || j->state == JOB_STATE_FAILED) {
            show(j);
            fail_msg("job %s is %s, expected %s", id, job_state_name(j->state),
                     job_state_name(want));
        }
        job_free(j);
        hp_sleep_ms(20);
    }
}

/* Renders `doc` to success and checks the result against the blob store. */
static void render_ok(const char *doc, rendered_t *out)
{
    char id[JOB_ID_MAX];
    enqueue(doc, id);
    memset(out, 0, sizeof *out);
    out->job = wait_final(id, JOB_STATE_SUCCEEDED);
    json_error_t jerr;
    json_t *res = json_loads(out->job->result ? out->job->result : "", 0, &jerr);
    if (!res)
        show(out->job);
    assert_non_null(res);
    const char *blob = json_string_value(json_object_get(res, "blob"));
    assert_non_null(blob);
    snprintf(out->blob, sizeof out->blob, "%s", blob);
    out->pages = (long)json_integer_value(json_object_get(res, "pages"));
    out->bytes = (long)json_integer_value(json_object_get(res, "bytes"));
    json_decref(res);
    assert_true(out->pages >= 1);
    blob_info_t info;
    assert_int_equal(blob_stat(store, out->blob, &info), 0);
    assert_int_equal(info.size, out->bytes);
    assert_string_equal(info.content_type, "application/pdf");
    char *path = blob_path(store, out->blob);
    snprintf(out->path, sizeof out->path, "%s", path);
    hp_free(path);
    assert_int_equal(out->job->progress, 100);
    fprintf(stderr, "pdf.render: %ld page(s), %ld bytes, %lld ms from start to finish\n",
            out->pages, out->bytes, (long long)(out->job->finished_ms - out->job->started_ms));

    int st;
    char *check = run(&st, "qpdf --check '%s' 2>&1", out->path);
    if (st != 0)
        fprintf(stderr, "qpdf --check:\n%s\n", check);
    assert_int_equal(st, 0);
    free(check);
    char *info_text = run(&st, "pdfinfo '%s' 2>/dev/null", out->path);
    assert_int_equal(st, 0);
    const char *pages = strstr(info_text, "\nPages:");
    assert_non_null(pages);
    assert_int_equal(strtol(pages + 7, NULL, 10), out->pages);
    free(info_text);
}

static void rendered_free(rendered_t *r)
{
    job_free(r->job);
}

/* pdftotext of pages [first, last] (0: all), stdout (free() it). */
static char *pdf_text(const rendered_t *r, long first, long last)
{
    int st;
    char *text = first
                     ? run(&st, "pdftotext -f %ld -l %ld '%s' - 2>/dev/null", first, last, r->path)
                     : run(&st, "pdftotext '%s' - 2>/dev/null", r->path);
    assert_int_equal(st, 0);
    return text;
}

/* Checks that the needles occur in `text` in this order; returns where the last ended. */
static const char *in_order(const char *text, const char *const *needles, size_t n)
{
    const char *p = text;
    for (size_t i = 0; i < n; i++) {
        const char *hit = strstr(p, needles[i]);
        if (!hit)
            fail_msg("\"%s\" missing from the text (or out of order)", needles[i]);
        p = hit + strlen(needles[i]);
    }
    return p;
}

/* ---- Tests ---- */

#define WORDS 1000

/* Headings, UTF-8 paragraphs, a paragraph that wraps across pages, a page break,
 * metadata and a footer: every word comes back from pdftotext, in order. */
/* Headings, UTF-8, 1000 words, a page break, metadata, a footer; free() it. */
static char *document_json(void)
{
    json_t *body = json_array();
    json_array_append_new(body, json_pack("{s:s}", "heading", "Introduction"));
    json_array_append_new(body, json_pack("{s:s}", "paragraph", "Cities: Zürich, Ελλάδα, Москва."));
    json_array_append_new(body, json_pack("{s:s,s:i}", "heading", "Long text", "level", 2));
    char *words = malloc(WORDS * 8 + 1);
    size_t n = 0;
    for (int i = 1; i <= WORDS; i++)
        n += (size_t)sprintf(words + n, "w%04d ", i);
    json_array_append_new(body, json_pack("{s:s}", "paragraph", words));
    free(words);
    json_array_append_new(body, json_pack("{s:b}", "page_break", 1));
    json_array_append_new(body, json_pack("{s:s,s:s}", "heading", "Appendix", "align", "center"));
    json_array_append_new(body, json_pack("{s:s}", "paragraph", "The end."));
    json_t *doc = json_pack("{s:{s:s,s:s,s:[f,f,f,f]},s:s,s:s,s:o,s:{s:b,s:s}}", "page", "size",
                            "A4", "orientation", "portrait", "margins", 60.0, 50.0, 60.0, 50.0,
                            "title", "Quarterly report — Zürich", "author", "Hopper Tests", "body",
                            body, "footer", "page_numbers", 1, "text", "Confidential");
    char *json = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return json;
}

static void test_document(void **state)
{
    (void)state;
    char *json = document_json();
    rendered_t r;
    render_ok(json, &r);

    /* The 1000 words need more than a page, and the appendix starts a page of its own. */
    assert_true(r.pages >= 3);
    int st;
    char *info = run(&st, "pdfinfo '%s' 2>/dev/null", r.path);
    assert_non_null(strstr(info, "Title:           Quarterly report — Zürich\n"));
    assert_non_null(strstr(info, "Author:          Hopper Tests\n"));
    free(info);

    char *text = pdf_text(&r, 0, 0);
    static const char *const head[] = {"Introduction", "Cities: Zürich, Ελλάδα, Москва.",
                                       "Long text"};
    const char *p = in_order(text, head, 3);
    for (int i = 1; i <= WORDS; i++) {
        char w[8];
        snprintf(w, sizeof w, "w%04d", i);
        const char *hit = strstr(p, w);
        if (!hit)
            fail_msg("word %s missing from the text, or out of order", w);
        p = hit + 5;
    }
    static const char *const tail[] = {"Appendix", "The end."};
    in_order(p, tail, 2);
    free(text);

    /* Each page has its footer; the last page is the appendix. */
    for (long pg = 1; pg <= r.pages; pg++) {
        char *page = pdf_text(&r, pg, pg);
        char label[32];
        snprintf(label, sizeof label, "Page %ld of %ld", pg, r.pages);
        if (!strstr(page, label) || !strstr(page, "Confidential"))
            fail_msg("page %ld lacks its footer \"%s\" / Confidential:\n%s", pg, label, page);
        bool appendix = strstr(page, "Appendix") != NULL;
        assert_true(appendix == (pg == r.pages));
        free(page);
    }

    /* The same document renders to the same bytes: one blob, the same id. */
    rendered_t again;
    render_ok(json, &again);
    assert_string_equal(again.blob, r.blob);
    rendered_free(&again);
    free(json);
    rendered_free(&r);
}

#define ROWS 500

/* A 500-row table spans pages and its header row opens every one of them. */
/* A 500-row table under a heading; free() it. */
static char *table_json(void)
{
    json_t *rows = json_array();
    for (int i = 1; i <= ROWS; i++) {
        char item[16], note[128];
        snprintf(item, sizeof item, "row-%03d", i);
        snprintf(note, sizeof note,
                 i % 50 == 0 ? "a longer note for row %d that must wrap "
                               "inside its narrow cell onto more lines"
                             : "note %d",
                 i);
        json_array_append_new(rows, json_pack("[s,i,s]", item, i * 3, note));
    }
    json_array_append_new(rows, json_pack("[s,f,n]", "total", 1234567.25)); /* all digits kept */
    json_t *doc = json_pack("{s:s,s:[{s:s},{s:{s:[s,s,s],s:o,s:[i,i,i]}}]}", "title", "Inventory",
                            "body", "heading", "Inventory", "table", "columns", "Item", "Quantity",
                            "Notes", "rows", rows, "widths", 2, 1, 2);
    char *json = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return json;
}

static void test_table_repeats_header(void **state)
{
    (void)state;
    char *json = table_json();
    rendered_t r;
    render_ok(json, &r);
    free(json);

    assert_true(r.pages >= 5);
    char *text = pdf_text(&r, 0, 0);
    assert_int_equal(count_substr(text, "Quantity"), r.pages);
    assert_non_null(strstr(text, "1234567.25"));
    const char *p = text;
    for (int i = 1; i <= ROWS; i++) {
        char item[16];
        snprintf(item, sizeof item, "row-%03d", i);
        const char *hit = strstr(p, item);
        if (!hit)
            fail_msg("%s missing from the text, or out of order", item);
        p = hit + strlen(item);
    }
    /* Row 50's note wraps inside its cell: its words stay in order, between rows. */
    const char *row50 = strstr(text, "row-050"), *row51 = strstr(text, "row-051");
    assert_non_null(row50);
    static const char *const note[] = {"longer note", "narrow", "more", "lines"};
    const char *after = in_order(row50, note, 4);
    if (!row51 || after > row51)
        fail_msg("row 50's note is not where it belongs:\n%.300s", row50);
    free(text);
    for (long pg = 1; pg <= r.pages; pg++) {
        char *page = pdf_text(&r, pg, pg);
        if (!strstr(page, "Item") || !strstr(page, "Quantity") || !strstr(page, "Notes"))
            fail_msg("page %ld of %ld has no header row:\n%.400s", pg, r.pages, page);
        free(page);
    }
    rendered_free(&r);
}

/* The RGB of pixel (x, y) of page `page` rendered at 72 dpi (1 px = 1 pt). */
static void pixel_at(const rendered_t *r, int page, int x, int y, unsigned char rgb[3])
{
    char base[128];
    snprintf(base, sizeof base, "%s/page", blob_dir);
    int st;
    free(run(&st, "pdftoppm -r 72 -f %d -l %d -singlefile '%s' '%s'", page, page, r->path, base));
    assert_int_equal(st, 0);
    char path[160];
    snprintf(path, sizeof path, "%s.ppm", base);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    int w, h, max;
    assert_int_equal(fscanf(f, "P6 %d %d %d", &w, &h, &max), 3);
    fgetc(f);
    assert_true(x < w && y < h);
    assert_int_equal(fseek(f, (long)((long)y * w + x) * 3, SEEK_CUR), 0);
    assert_int_equal(fread(rgb, 1, 3, f), 3);
    fclose(f);
    unlink(path);
}

/* PNG and JPEG blobs are drawn where the layout puts them, at the size asked. */
static void test_images(void **state)
{
    (void)state;
    static const unsigned char red[3] = {230, 20, 20}, blue[3] = {20, 40, 220};
    size_t plen, jlen;
    unsigned char *png = make_png(64, 48, red, &plen);
    unsigned char *jpeg = make_jpeg(40, 30, blue, &jlen);
    char png_id[65], jpeg_id[65];
    put_blob(png, plen, "image/png", png_id);
    put_blob(jpeg, jlen, "image/jpeg", jpeg_id);
    free(png);
    free(jpeg);

    /* Margins 50: the PNG (128 x 96 pt) at top left, the JPEG (80 x 60 pt) right below. */
    char doc[1024];
    snprintf(doc, sizeof doc,
             "{\"page\":{\"size\":\"Letter\",\"margins\":50},\"body\":["
             "{\"image\":{\"blob\":\"%s\",\"width\":128}},"
             "{\"image\":{\"blob\":\"%s\",\"height\":60,\"align\":\"right\"}},"
             "{\"paragraph\":\"Two pictures.\"}]}",
             png_id, jpeg_id);
    rendered_t r;
    render_ok(doc, &r);
    assert_int_equal(r.pages, 1);

    int st;
    char *list = run(&st, "pdfimages -list '%s' 2>/dev/null", r.path);
    assert_int_equal(st, 0);
    int page, num, w, h, found_png = 0, found_jpeg = 0;
    char type[16];
    for (const char *line = list; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (sscanf(line, "%d %d %15s %d %d", &page, &num, type, &w, &h) == 5) {
            found_png += w == 64 && h == 48;
            found_jpeg += w == 40 && h == 30 && strstr(line, "jpeg") != NULL;
        }
    }
    if (found_png != 1 || found_jpeg != 1)
        fail_msg("pdfimages -list should show the 64x48 PNG and the 40x30 JPEG:\n%s", list);
    free(list);

    unsigned char px[3];
    pixel_at(&r, 1, 50 + 64, 50 + 48, px); /* the middle of the PNG */
    if (!(px[0] > 180 && px[1] < 80 && px[2] < 80))
        fail_msg("the PNG's area is %u,%u,%u, not red", px[0], px[1], px[2]);
    pixel_at(&r, 1, 612 - 50 - 40, 50 + 96 + 8 + 30, px); /* the JPEG, right-aligned */
    if (!(px[2] > 160 && px[0] < 80))
        fail_msg("the JPEG's area is %u,%u,%u, not blue", px[0], px[1], px[2]);
    pixel_at(&r, 1, 300, 50 + 48, px); /* beside the PNG: paper */
    assert_true(px[0] > 240 && px[1] > 240 && px[2] > 240);
    char *text = pdf_text(&r, 0, 0);
    assert_non_null(strstr(text, "Two pictures."));
    free(text);
    rendered_free(&r);
}

/* The bad documents and what their failure must say. */
typedef struct bad_case_s {
    const char *doc, *message;
} bad_case_t;
#define NBAD 15

static size_t bad_cases(bad_case_t *out)
{
    static char text_id[65], broken_id[65];
    if (text_id[0])
        goto ready; /* the blobs are stored once */
    put_blob("hello, I am not a picture", 25, "text/plain", text_id);
    /* A PNG whose header is fine and whose pixel data is not zlib: libpng would
     * abort() inside libharu if the plugin let it get that far. */
    size_t plen;
    static const unsigned char grey[3] = {128, 128, 128};
    unsigned char *png = make_png(16, 16, grey, &plen);
    for (size_t i = 41; i < plen - 12 && i < 80; i++) /* inside the IDAT chunk */
        png[i] ^= 0x5a;
    put_blob(png, plen, "image/png", broken_id);
    free(png);
ready:;

    static char missing_doc[256], text_doc[256], broken_doc[256];
    snprintf(missing_doc, sizeof missing_doc, "{\"body\":[{\"image\":{\"blob\":\"%064d\"}}]}", 0);
    snprintf(text_doc, sizeof text_doc,
             "{\"body\":[{\"paragraph\":\"a\"},{\"heading\":\"b\"},{\"image\":{\"blob\":\"%s\"}}]}",
             text_id);
    snprintf(broken_doc, sizeof broken_doc, "{\"body\":[{\"image\":{\"blob\":\"%s\"}}]}",
             broken_id);
    static char text_msg[160], broken_msg[160], missing_msg[160];
    snprintf(text_msg, sizeof text_msg, "body[2].image: blob %s is not a PNG or JPEG", text_id);
    snprintf(broken_msg, sizeof broken_msg, "body[0].image: blob %s is not a valid PNG", broken_id);
    snprintf(missing_msg, sizeof missing_msg, "body[0].image: no blob %064d", 0);

    const bad_case_t all[] = {
        {"{\"body\":[{\"paragraph\":\"ok\"},{\"chart\":{\"x\":1}}]}",
         "body[1]: unknown element \"chart\""},
        {missing_doc, missing_msg},
        {text_doc, text_msg},
        {broken_doc, broken_msg},
        {"{\"body\":[{\"paragraph\":42}]}", "body[0].paragraph: expected a string"},
        {"{\"body\":[{\"heading\":\"x\",\"level\":9}]}", "body[0].level: expected an integer"},
        {"{\"body\":[{\"paragraph\":\"x\",\"colour\":\"red\"}]}",
         "body[0]: unknown key \"colour\""},
        {"{\"page\":{\"size\":\"A9\"},\"body\":[]}", "page.size: unknown size \"A9\""},
        {"{\"page\":{\"margins\":[420,10,420,10]},\"body\":[]}", "page.margins: they leave"},
        {"{\"body\":[{\"table\":{\"columns\":[\"a\",\"b\"],\"rows\":[[1,2],[3]]}}]}",
         "body[0].table.rows[1]: expected an array of 2 cells"},
        {"{\"body\":[{\"table\":{\"columns\":[\"a\"],\"rows\":[[{\"x\":1}]]}}]}",
         "body[0].table.rows[0][0]: expected a string, a number or null"},
        {"{\"body\":[{\"image\":{\"blob\":\"../../etc/passwd\"}}]}",
         "body[0].image.blob: \"../../etc/passwd\" is not a blob id"},
        {"{\"body\":{\"paragraph\":\"x\"}}", "body: expected an array of elements"},
        {"{\"bdy\":[]}", "document: unknown key \"bdy\""},
        {"[1,2,3]", "the payload must be a JSON object"},
    };
    size_t n = sizeof all / sizeof all[0];
    assert_int_equal(n, NBAD);
    memcpy(out, all, sizeof all);
    return n;
}

/* Bad documents fail for good on the first attempt, and the message names the
 * element that is wrong. */
static void test_bad_documents(void **state)
{
    (void)state;
    bad_case_t cases[NBAD];
    size_t n = bad_cases(cases);
    char ids[NBAD][JOB_ID_MAX];
    for (size_t i = 0; i < n; i++)
        enqueue(cases[i].doc, ids[i]);
    for (size_t i = 0; i < n; i++) {
        job_t *j = wait_final(ids[i], JOB_STATE_DEAD);
        if (j->attempts != 1 || j->nerrors != 1 ||
            !strstr(j->errors[0].message, cases[i].message)) {
            show(j);
            fail_msg("case %zu (%s): expected one attempt failing with \"%s\"", i, cases[i].doc,
                     cases[i].message);
        }
        job_free(j);
    }
}

/* ---- The renderer in this process ---- */

typedef struct sink_s {
    size_t bytes;     /* written so far */
    int fail_write;   /* nonzero: every write fails */
    int cancel_after; /* > 0: canceled() says yes from this call on */
    int canceled_calls;
    int last_percent;
} sink_t;

static int sink_canceled(void *ctx)
{
    sink_t *k = ctx;
    return k->cancel_after > 0 && ++k->canceled_calls >= k->cancel_after;
}

static void sink_progress(void *ctx, int percent, const char *message)
{
    sink_t *k = ctx;
    assert_true(percent >= k->last_percent && percent <= 100);
    assert_non_null(message);
    k->last_percent = percent;
}

static render_status_t sink_read_blob(void *ctx, const char *id, long long max,
                                      unsigned char **data, size_t *len, char *err, size_t errlen)
{
    (void)ctx;
    int fd = -1;
    blob_info_t info;
    if (blob_open_read(store, id, &fd, &info) != 0) {
        snprintf(err, errlen, "no blob %s in the blob store", id);
        return RENDER_BAD_INPUT;
    }
    if (info.size > max) {
        close(fd);
        snprintf(err, errlen, "too big");
        return RENDER_BAD_INPUT;
    }
    *data = malloc((size_t)info.size + 1);
    *len = (size_t)read(fd, *data, (size_t)info.size);
    close(fd);
    return RENDER_OK;
}

static int sink_write(void *ctx, const void *data, size_t len)
{
    sink_t *k = ctx;
    (void)data;
    k->bytes += len;
    return k->fail_write ? -1 : 0;
}

static render_status_t render_here(const char *json, sink_t *k, int max_pages, int *pages,
                                   char *err, size_t errlen)
{
    render_config_t cfg = {
        .font_path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        .bold_font_path = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
        .max_pages = max_pages,
        .max_image_bytes = 1 << 20,
        .max_image_pixels = 1000000,
    };
    render_io_t io = {.ctx = k,
                      .canceled = sink_canceled,
                      .progress = sink_progress,
                      .read_blob = sink_read_blob,
                      .write = sink_write};
    json_error_t jerr;
    json_t *doc = json_loads(json, 0, &jerr);
    assert_non_null(doc);
    render_status_t st = render_pdf(doc, &cfg, &io, pages, err, errlen);
    json_decref(doc);
    return st;
}

/* render_pdf over every document above, in this process: the same outcomes as in
 * the worker, a cancel, a failing write and the page limit classified, and (in the
 * sanitizer build) nothing leaked on any of those paths. */
static void test_render_in_process(void **state)
{
    (void)state;
    char err[512];
    int pages;
    char *docs[2] = {document_json(), table_json()};
    for (int i = 0; i < 2; i++) {
        sink_t k = {0};
        int64_t t0 = hp_mono_ms();
        assert_int_equal(render_here(docs[i], &k, 1000, &pages, err, sizeof err), RENDER_OK);
        fprintf(stderr, "render_pdf in process: %d pages, %zu bytes in %lld ms\n", pages, k.bytes,
                (long long)(hp_mono_ms() - t0));
        assert_true(pages >= 3 && k.bytes > 1000);
        assert_int_equal(k.last_percent, 95);
    }
    sink_t k = {.cancel_after = 3};
    assert_int_equal(render_here(docs[1], &k, 1000, &pages, err, sizeof err), RENDER_CANCELED);
    assert_non_null(strstr(err, "canceled at body[1].table.rows["));
    k = (sink_t){.fail_write = 1};
    assert_int_equal(render_here(docs[0], &k, 1000, &pages, err, sizeof err), RENDER_TRANSIENT);
    assert_non_null(strstr(err, "cannot write the PDF"));
    k = (sink_t){0};
    assert_int_equal(render_here(docs[1], &k, 2, &pages, err, sizeof err), RENDER_BAD_INPUT);
    assert_non_null(strstr(err, "body[1].table.rows["));
    assert_non_null(strstr(err, "the document needs more than 2 pages"));
    free(docs[0]);
    free(docs[1]);

    bad_case_t cases[NBAD];
    size_t n = bad_cases(cases);
    for (size_t i = 0; i < n; i++) {
        k = (sink_t){0};
        render_status_t st = render_here(cases[i].doc, &k, 1000, &pages, err, sizeof err);
        if (st != RENDER_BAD_INPUT || !strstr(err, cases[i].message))
            fail_msg("case %zu: status %d, \"%s\"; expected \"%s\"", i, (int)st, err,
                     cases[i].message);
    }
}

/* ---- Setup ---- */

static int group_setup(void **state)
{
    (void)state;
    if (test_redis_start(&redis, NULL))
        return -1;
    broker_config_t bc = {.url = redis.url};
    char *msg = NULL;
    if (broker_open(&bc, &B, &msg)) {
        fprintf(stderr, "broker_open %s: %s\n", redis.url, msg);
        hp_free(msg);
        return -1;
    }
    snprintf(blob_dir, sizeof blob_dir, "/tmp/hopper-test-pdf-XXXXXX");
    if (!mkdtemp(blob_dir))
        return -1;
    char err[256];
    store = blobstore_open(blob_dir, err, sizeof err);
    if (!store) {
        fprintf(stderr, "blobstore_open: %s\n", err);
        return -1;
    }
    queue = test_queue_name("pdf");
    char url[128];
    snprintf(url, sizeof url, "HOPPER_REDIS_URL=%s", redis.url);
    /* Under the sanitizers the plugin runs on the worker's threads, not in forked
     * children: GCC 12's ASan allocator is not fork-safe while another thread
     * allocates, so a child could hang at its first malloc (seen once in CI). The
     * normal build tests the plugin as it ships, with FORK. */
    const char *argv[] = {HOPPER_BIN,
                          "worker",
                          "--queues",
                          queue,
                          "--plugins",
                          PDF_PLUGIN,
                          "--blob-dir",
                          blob_dir,
                          "--processes",
                          "1",
                          "--threads",
                          "2",
                          SANITIZED ? "--plugin-config" : NULL,
                          "{\"pdf\":{\"isolation\":\"thread\"}}",
                          NULL};
    const char *env[] = {url, "HOPPER_LOG_LEVEL=info", NULL};
    if (test_proc_start(&worker, argv, env) != 0)
        return -1;
    if (!test_proc_wait_log(&worker, ": serving ", 30000)) {
        char *log = test_proc_log(&worker);
        fprintf(stderr, "the worker did not start:\n%s\n", log);
        free(log);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    int status = test_proc_stop(&worker, 20000);
    char *log = test_proc_log(&worker);
    if (status != 0 || strstr(log, "LeakSanitizer") || strstr(log, "AddressSanitizer")) {
        fprintf(stderr, "the worker exited with status %d:\n%s\n", status, log);
        rc = -1;
    }
    free(log);
    test_proc_cleanup(&worker);
    blobstore_close(store);
    int st;
    free(run(&st, "rm -rf '%s'", blob_dir));
    broker_close(B);
    test_redis_stop(&redis);
    return rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_document),
        cmocka_unit_test(test_table_repeats_header),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_bad_documents),
        cmocka_unit_test(test_render_in_process),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
