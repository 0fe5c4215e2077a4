/*
 * plugins/pdf/render.c -- the pdf plugin's layout engine: JSON document in, PDF out.
 *
 * It owns the layout: pages and margins, word wrap, headings that keep with what
 * follows, tables whose header row repeats on every page they reach (and whose rows
 * split when one is taller than a page), images scaled to fit, page breaks, and
 * the footer, drawn on every page once the page count is known. Text goes through
 * one embedded TrueType font with libharu's UTF-8 encoder, so any script the font
 * covers renders, and stays extractable (libharu writes a ToUnicode map).
 *
 * It does not own where blobs come from or where the PDF goes (render_io_t), nor
 * how a failure is classified for the job (plugins/pdf/pdf.c maps the status).
 *
 * Errors from libharu: the error handler only records the first error; every call
 * that can fail is followed by a check (hpdf_check), so no longjmp crosses libharu
 * and HPDF_Free always releases the whole document. The document is validated as it
 * is laid out: the first bad element ends the render, and nothing half-made leaves.
 */
#include "render.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hpdf.h>

#include "png_check.h"

#define LINE_SPACING     1.25f /* line height / font size */
#define CELL_PADDING     3.0f  /* points inside a table cell */
#define PROGRESS_EVERY   64    /* table rows between cancel checks */
#define MAX_COLUMNS      64
#define MAX_IMAGE_SIDE   30000 /* pixels each way */
#define MIN_FONT_SIZE    4.0
#define MAX_FONT_SIZE    96.0
#define MAX_PAGE_POINTS  14400.0 /* libharu's limit (200 inches) */
#define MIN_PAGE_POINTS  72.0
#define MIN_CONTENT      36.0 /* points left for content after the margins, each way */
#define DEFAULT_MARGIN   50.0
#define DEFAULT_FONTSIZE 11.0

/* The page sizes a document may name (case-insensitive), in points, portrait. */
static const struct page_size {
    const char *name;
    float w, h;
} page_sizes[] = {
    {"A3", 841.89f, 1190.55f},    {"A4", 595.28f, 841.89f},   {"A5", 419.53f, 595.28f},
    {"A6", 297.64f, 419.53f},     {"B4", 708.66f, 1000.63f},  {"B5", 498.90f, 708.66f},
    {"Letter", 612.0f, 792.0f},   {"Legal", 612.0f, 1008.0f}, {"Executive", 522.0f, 756.0f},
    {"Tabloid", 792.0f, 1224.0f},
};

/* Heading sizes relative to the document's font size, by level 1-6. */
static const float heading_scale[] = {2.0f, 1.6f, 1.3f, 1.15f, 1.0f, 0.9f};

/* A line of wrapped text: a span of the (sanitised) source text. */
typedef struct line_s {
    const char *s;
    size_t len;
} line_t;

typedef struct lines_s {
    line_t *v;
    size_t n, cap;
} lines_t;

typedef struct image_ref_s {
    char id[65];
    HPDF_Image img;
} image_ref_t;

/*
 * One render. `doc` owns every libharu object (pages, fonts, images) and HPDF_Free
 * releases them all; the arrays below are ours and render_free releases them.
 * Coordinates are PDF points from the bottom-left corner; `y` is the top of the
 * free space on the current page, which is NULL until the first element needs one.
 */
typedef struct render_s {
    const render_config_t *cfg;
    const render_io_t *io;
    HPDF_Doc doc;
    HPDF_Font font, bold;
    HPDF_Page page;   /* the current page, or NULL */
    HPDF_Page *pages; /* every page, for the footer */
    int npages, cap_pages;
    float width, height;            /* of every page */
    float top, right, bottom, left; /* margins */
    float y;                        /* top of the free space on `page` */
    float size;                     /* the document's font size */
    bool fresh;                     /* nothing drawn on `page` yet */
    image_ref_t *images;            /* loaded once per blob id */
    int nimages, cap_images;
    char *scratch; /* NUL-terminated copies of lines for libharu */
    size_t scratch_cap;
    HPDF_STATUS hpdf_error, hpdf_detail; /* the first error libharu reported */
    render_status_t status;              /* the first failure, RENDER_OK until then */
    char *err;
    size_t errlen;
} render_t;

/* ---- Errors ---- */

static void hpdf_error_handler(HPDF_STATUS error_no, HPDF_STATUS detail_no, void *user_data)
{
    render_t *r = user_data;
    if (r->hpdf_error == HPDF_OK) {
        r->hpdf_error = error_no;
        r->hpdf_detail = detail_no;
    }
}

/* Records the first failure (later ones are consequences) and returns its status. */
static render_status_t failf(render_t *r, render_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static render_status_t failf(render_t *r, render_status_t status, const char *fmt, ...)
{
    if (r->status != RENDER_OK)
        return r->status;
    r->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
    return status;
}

/* After libharu calls: turns a recorded libharu error into this render's failure.
 * Out of memory is transient unless memory is limited (then this document is too
 * big for the limit, every time); anything else follows from the input. */
static render_status_t hpdf_check(render_t *r, const char *where)
{
    if (r->status != RENDER_OK)
        return r->status;
    if (r->hpdf_error == HPDF_OK)
        return RENDER_OK;
    if (r->hpdf_error == HPDF_FAILD_TO_ALLOC_MEM)
        return failf(r, r->cfg->memory_limited ? RENDER_BAD_INPUT : RENDER_TRANSIENT,
                     "%s: out of memory while rendering%s", where,
                     r->cfg->memory_limited ? " (the document needs more than the memory limit)"
                                            : "");
    return failf(r, RENDER_BAD_INPUT, "%s: libharu error 0x%04X (detail %u)", where,
                 (unsigned)r->hpdf_error, (unsigned)r->hpdf_detail);
}

/* ---- Small helpers ---- */

static void *grow(void *v, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return v;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *nv = realloc(v, ncap * elem);
    if (nv)
        *cap = ncap;
    return nv;
}

static render_status_t oom(render_t *r, const char *where)
{
    return failf(r, r->cfg->memory_limited ? RENDER_BAD_INPUT : RENDER_TRANSIENT,
                 "%s: out of memory", where);
}

/* A JSON number as a double; false if `v` is not a number. */
static bool number_of(const json_t *v, double *out)
{
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return isfinite(*out);
}

/* Checks that every key of `obj` is in the NULL-terminated `known`. */
static render_status_t check_keys(render_t *r, const json_t *obj, const char *where,
                                  const char *const *known)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool ok = false;
        for (int i = 0; known[i] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok)
            return failf(r, RENDER_BAD_INPUT, "%s: unknown key \"%s\"", where, key);
    }
    return RENDER_OK;
}

/* An optional number member in [min, max]; *out keeps its default when absent. */
static render_status_t opt_number(render_t *r, const json_t *obj, const char *key,
                                  const char *where, double min, double max, double *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return RENDER_OK;
    double d;
    if (!number_of(v, &d) || d < min || d > max)
        return failf(r, RENDER_BAD_INPUT, "%s.%s: expected a number from %g to %g", where, key, min,
                     max);
    *out = d;
    return RENDER_OK;
}

/* An optional string member; *out keeps its default (may be NULL) when absent. */
static render_status_t opt_string(render_t *r, const json_t *obj, const char *key,
                                  const char *where, const char **out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return RENDER_OK;
    if (!json_is_string(v))
        return failf(r, RENDER_BAD_INPUT, "%s.%s: expected a string", where, key);
    *out = json_string_value(v);
    return RENDER_OK;
}

typedef enum { ALIGN_LEFT, ALIGN_CENTER, ALIGN_RIGHT } align_t;

static render_status_t opt_align(render_t *r, const json_t *obj, const char *where, align_t *out)
{
    const char *s = NULL;
    render_status_t st = opt_string(r, obj, "align", where, &s);
    if (st || !s)
        return st;
    if (strcmp(s, "left") == 0)
        *out = ALIGN_LEFT;
    else if (strcmp(s, "center") == 0)
        *out = ALIGN_CENTER;
    else if (strcmp(s, "right") == 0)
        *out = ALIGN_RIGHT;
    else
        return failf(r, RENDER_BAD_INPUT,
                     "%s.align: expected \"left\", \"center\" or \"right\", not \"%s\"", where, s);
    return RENDER_OK;
}

/* A copy of `s` where every control character but '\n' is a space (a tab, a CR),
 * so the font never sees them; malloc'd, or NULL when out of memory. */
static char *sanitize(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c != 0 && c != '\n' && (c < 0x20 || c == 0x7f)) ? ' ' : (char)c;
    }
    return out;
}

/* ---- Text ---- */

static float text_width(HPDF_Font font, float size, const char *s, size_t len)
{
    if (len == 0)
        return 0;
    HPDF_TextWidth tw = HPDF_Font_TextWidth(font, (const HPDF_BYTE *)s, (HPDF_UINT)len);
    return (float)tw.width * size / 1000.0f;
}

static bool lines_push(lines_t *l, const char *s, size_t len)
{
    line_t *v = grow(l->v, &l->cap, l->n + 1, sizeof(*v));
    if (!v)
        return false;
    l->v = v;
    l->v[l->n++] = (line_t){s, len};
    return true;
}

/* The longest prefix of [s, end) that fits in maxw, cut between UTF-8 code points;
 * at least one code point, so wrapping always moves on. */
static const char *fit_chars(HPDF_Font font, float size, const char *s, const char *end, float maxw)
{
    const char *cut = s;
    for (const char *p = s; p < end;) {
        const char *next = p + 1;
        while (next < end && ((unsigned char)*next & 0xC0) == 0x80)
            next++;
        if (cut != s && text_width(font, size, s, (size_t)(next - s)) > maxw)
            break;
        cut = next;
        p = next;
    }
    return cut;
}

/* Wraps `text` (sanitised) into lines of at most maxw points: breaks at spaces,
 * keeps '\n' as a forced break (and "\n\n" as an empty line), and cuts a word
 * longer than a line between code points. Leading spaces of a wrapped line go.
 * The lines point into `text`. false when out of memory. */
static bool wrap(HPDF_Font font, float size, const char *text, float maxw, lines_t *out)
{
    out->n = 0;
    const char *p = text;
    for (;;) {
        while (*p == ' ')
            p++;
        const char *start = p, *end = p, *stop;
        for (;;) {
            const char *ws = end;
            while (*ws == ' ')
                ws++;
            if (*ws == '\0' || *ws == '\n') {
                stop = ws;
                break;
            }
            const char *we = ws;
            while (*we && *we != ' ' && *we != '\n')
                we++;
            if (text_width(font, size, start, (size_t)(we - start)) <= maxw) {
                end = we;
                continue;
            }
            if (end == start) /* one word wider than the line */
                end = fit_chars(font, size, start, we, maxw);
            stop = end;
            break;
        }
        if (!lines_push(out, start, (size_t)(end - start)))
            return false;
        if (*stop == '\0')
            return true;
        p = *stop == '\n' ? stop + 1 : stop;
    }
}

/* Draws one line with its baseline at y. */
static render_status_t draw_text(render_t *r, HPDF_Font font, float size, float x, float y,
                                 const char *s, size_t len)
{
    if (len == 0)
        return RENDER_OK;
    char *buf = grow(r->scratch, &r->scratch_cap, len + 1, 1);
    if (!buf)
        return oom(r, "text");
    r->scratch = buf;
    memcpy(buf, s, len);
    buf[len] = '\0';
    HPDF_Page_BeginText(r->page);
    HPDF_Page_SetFontAndSize(r->page, font, size);
    HPDF_Page_TextOut(r->page, x, y, buf);
    HPDF_Page_EndText(r->page);
    return RENDER_OK;
}

static float aligned_x(align_t align, float left, float avail, float w)
{
    if (align == ALIGN_CENTER)
        return left + (avail - w) / 2;
    if (align == ALIGN_RIGHT)
        return left + avail - w;
    return left;
}

/* ---- Pages ---- */

static float content_width(const render_t *r)
{
    return r->width - r->left - r->right;
}

static float content_top(const render_t *r)
{
    return r->height - r->top;
}

static render_status_t new_page(render_t *r, const char *where)
{
    if (r->npages >= r->cfg->max_pages)
        return failf(r, RENDER_BAD_INPUT, "%s: the document needs more than %d pages (the limit)",
                     where, r->cfg->max_pages);
    if (r->npages == r->cap_pages) {
        int ncap = r->cap_pages ? r->cap_pages * 2 : 16;
        HPDF_Page *np = realloc(r->pages, (size_t)ncap * sizeof(*np));
        if (!np)
            return oom(r, where);
        r->pages = np;
        r->cap_pages = ncap;
    }
    HPDF_Page page = HPDF_AddPage(r->doc);
    if (!page)
        return hpdf_check(r, where) ? r->status : failf(r, RENDER_TRANSIENT, "%s: no page", where);
    HPDF_Page_SetWidth(page, r->width);
    HPDF_Page_SetHeight(page, r->height);
    r->pages[r->npages++] = page;
    r->page = page;
    r->y = content_top(r);
    r->fresh = true;
    return hpdf_check(r, where);
}

/* Makes sure `h` points are free on the current page, starting a new one when they
 * are not (unless the page is still empty: then the caller copes with what there is). */
static render_status_t need_space(render_t *r, float h, const char *where)
{
    if (!r->page || (!r->fresh && r->y - h < r->bottom))
        return new_page(r, where);
    return RENDER_OK;
}

/* ---- Elements ---- */

/* Lays out wrapped text: each line starts a new page when it does not fit. */
static render_status_t flow_text(render_t *r, const char *text, HPDF_Font font, float size,
                                 align_t align, const char *where)
{
    char *clean = sanitize(text);
    lines_t lines = {0};
    if (!clean || !wrap(font, size, clean, content_width(r), &lines)) {
        free(clean);
        free(lines.v);
        return oom(r, where);
    }
    float lh = size * LINE_SPACING;
    render_status_t st = RENDER_OK;
    for (size_t i = 0; i < lines.n && !st; i++) {
        st = need_space(r, lh, where);
        if (st)
            break;
        line_t *l = &lines.v[i];
        float w = text_width(font, size, l->s, l->len);
        float x = aligned_x(align, r->left, content_width(r), w);
        st = draw_text(r, font, size, x, r->y - size, l->s, l->len);
        r->y -= lh;
        r->fresh = false;
    }
    free(clean);
    free(lines.v);
    return st ? st : hpdf_check(r, where);
}

static render_status_t do_paragraph(render_t *r, const json_t *el, const char *where)
{
    static const char *const keys[] = {"paragraph", "align", "size", "bold", NULL};
    render_status_t st = check_keys(r, el, where, keys);
    if (st)
        return st;
    const json_t *text = json_object_get(el, "paragraph");
    if (!json_is_string(text))
        return failf(r, RENDER_BAD_INPUT, "%s.paragraph: expected a string", where);
    double size = r->size;
    align_t align = ALIGN_LEFT;
    const json_t *bold = json_object_get(el, "bold");
    if (bold && !json_is_boolean(bold))
        return failf(r, RENDER_BAD_INPUT, "%s.bold: expected true or false", where);
    if ((st = opt_number(r, el, "size", where, MIN_FONT_SIZE, MAX_FONT_SIZE, &size)) ||
        (st = opt_align(r, el, where, &align)))
        return st;
    st = flow_text(r, json_string_value(text), json_is_true(bold) ? r->bold : r->font, (float)size,
                   align, where);
    r->y -= (float)size * 0.5f;
    return st;
}

static render_status_t do_heading(render_t *r, const json_t *el, const char *where)
{
    static const char *const keys[] = {"heading", "level", "align", NULL};
    render_status_t st = check_keys(r, el, where, keys);
    if (st)
        return st;
    const json_t *text = json_object_get(el, "heading");
    if (!json_is_string(text))
        return failf(r, RENDER_BAD_INPUT, "%s.heading: expected a string", where);
    const json_t *lv = json_object_get(el, "level");
    json_int_t level = 1;
    if (lv) {
        if (!json_is_integer(lv) || json_integer_value(lv) < 1 || json_integer_value(lv) > 6)
            return failf(r, RENDER_BAD_INPUT, "%s.level: expected an integer from 1 to 6", where);
        level = json_integer_value(lv);
    }
    align_t align = ALIGN_LEFT;
    if ((st = opt_align(r, el, where, &align)))
        return st;
    float size = r->size * heading_scale[level - 1];
    /* Space above, unless at the top of a page; and keep with the next two lines. */
    if (r->page && !r->fresh)
        r->y -= size * 0.6f;
    st = need_space(r, size * LINE_SPACING + 2 * r->size * LINE_SPACING, where);
    if (st)
        return st;
    st = flow_text(r, json_string_value(text), r->bold, size, align, where);
    r->y -= size * 0.3f;
    return st;
}

static render_status_t do_page_break(render_t *r, const json_t *el, const char *where)
{
    static const char *const keys[] = {"page_break", NULL};
    render_status_t st = check_keys(r, el, where, keys);
    if (st)
        return st;
    if (!json_is_boolean(json_object_get(el, "page_break")))
        return failf(r, RENDER_BAD_INPUT, "%s.page_break: expected true or false", where);
    if (!json_is_true(json_object_get(el, "page_break")) || (r->page && r->fresh))
        return RENDER_OK;
    return new_page(r, where);
}

/* ---- Images ---- */

static bool blob_id_ok(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++)
        if (!isdigit((unsigned char)id[n]) && !(id[n] >= 'a' && id[n] <= 'f'))
            return false;
    return n == 64;
}

/* Reads and loads image blob `id` once per render. */
static render_status_t load_image(render_t *r, const char *id, const char *where, HPDF_Image *out)
{
    for (int i = 0; i < r->nimages; i++)
        if (strcmp(r->images[i].id, id) == 0) {
            *out = r->images[i].img;
            return RENDER_OK;
        }
    if (!blob_id_ok(id))
        return failf(r, RENDER_BAD_INPUT,
                     "%s.blob: \"%.80s\" is not a blob id (64 lowercase hex digits)", where, id);
    unsigned char *data = NULL;
    size_t len = 0;
    char msg[256] = "";
    render_status_t st =
        r->io->read_blob(r->io->ctx, id, r->cfg->max_image_bytes, &data, &len, msg, sizeof msg);
    if (st)
        return failf(r, st, "%s: %s", where, msg);
    static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    bool png = len >= 8 && memcmp(data, png_magic, 8) == 0;
    bool jpeg = len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
    HPDF_Image img = NULL;
    if (!png && !jpeg) {
        st = failf(r, RENDER_BAD_INPUT, "%s: blob %s is not a PNG or JPEG", where, id);
    } else if (png && png_check(data, len, r->cfg->max_image_pixels, MAX_IMAGE_SIDE, msg,
                                sizeof msg) != 0) {
        st = failf(r, RENDER_BAD_INPUT, "%s: blob %s is not a valid PNG: %s", where, id, msg);
    } else {
        img = png ? HPDF_LoadPngImageFromMem(r->doc, data, (HPDF_UINT)len)
                  : HPDF_LoadJpegImageFromMem(r->doc, data, (HPDF_UINT)len);
        if (!img || r->hpdf_error != HPDF_OK) {
            if (r->hpdf_error == HPDF_FAILD_TO_ALLOC_MEM)
                st = hpdf_check(r, where);
            else
                st = failf(r, RENDER_BAD_INPUT,
                           "%s: blob %s is not a valid %s (libharu error 0x%04X, detail %u)", where,
                           id, png ? "PNG" : "JPEG", (unsigned)r->hpdf_error,
                           (unsigned)r->hpdf_detail);
            img = NULL;
        }
    }
    free(data);
    if (st)
        return st;
    if (r->nimages == r->cap_images) {
        int ncap = r->cap_images ? r->cap_images * 2 : 8;
        image_ref_t *ni = realloc(r->images, (size_t)ncap * sizeof(*ni));
        if (!ni)
            return oom(r, where);
        r->images = ni;
        r->cap_images = ncap;
    }
    snprintf(r->images[r->nimages].id, sizeof r->images[0].id, "%s", id);
    r->images[r->nimages++].img = img;
    *out = img;
    return RENDER_OK;
}

static render_status_t do_image(render_t *r, const json_t *el, const char *where)
{
    static const char *const keys[] = {"image", NULL};
    static const char *const ikeys[] = {"blob", "width", "height", "align", NULL};
    render_status_t st = check_keys(r, el, where, keys);
    if (st)
        return st;
    char at[96];
    snprintf(at, sizeof at, "%s.image", where);
    const json_t *im = json_object_get(el, "image");
    if (!json_is_object(im))
        return failf(r, RENDER_BAD_INPUT, "%s: expected an object", at);
    if ((st = check_keys(r, im, at, ikeys)))
        return st;
    const json_t *blob = json_object_get(im, "blob");
    if (!json_is_string(blob))
        return failf(r, RENDER_BAD_INPUT, "%s.blob: expected a blob id (a string)", at);
    double w = 0, h = 0;
    align_t align = ALIGN_LEFT;
    if ((st = opt_number(r, im, "width", at, 1, MAX_PAGE_POINTS, &w)) ||
        (st = opt_number(r, im, "height", at, 1, MAX_PAGE_POINTS, &h)) ||
        (st = opt_align(r, im, at, &align)))
        return st;
    HPDF_Image img = NULL;
    if ((st = load_image(r, json_string_value(blob), at, &img)))
        return st;
    double pw = HPDF_Image_GetWidth(img), ph = HPDF_Image_GetHeight(img);
    if (pw < 1 || ph < 1)
        return failf(r, RENDER_BAD_INPUT, "%s: the image has no pixels", at);
    /* Both given: as given. One: the other keeps the aspect ratio. None: 1 px = 1 pt. */
    if (w > 0 && h <= 0)
        h = w * ph / pw;
    else if (h > 0 && w <= 0)
        w = h * pw / ph;
    else if (w <= 0 && h <= 0)
        w = pw, h = ph;
    double cw = content_width(r), ch = content_top(r) - r->bottom;
    double scale = fmin(1.0, fmin(cw / w, ch / h)); /* never larger than the content area */
    w *= scale;
    h *= scale;
    if ((st = need_space(r, (float)h, at)))
        return st;
    float x = aligned_x(align, r->left, (float)cw, (float)w);
    HPDF_Page_DrawImage(r->page, img, x, r->y - (float)h, (float)w, (float)h);
    r->y -= (float)h + r->size * 0.5f;
    r->fresh = false;
    return hpdf_check(r, at);
}

/* ---- Tables ---- */

typedef struct table_s {
    size_t ncols;
    float x[MAX_COLUMNS + 1]; /* column edges */
    float size, lh;
    const char *texts[MAX_COLUMNS]; /* this row's cell texts (sanitised, owned) */
    char *owned[MAX_COLUMNS];
    lines_t lines[MAX_COLUMNS];
    size_t maxlines;
    bool repeat_header;
    const json_t *columns;
} table_t;

static void table_clear_row(table_t *t)
{
    for (size_t c = 0; c < t->ncols; c++) {
        free(t->owned[c]);
        t->owned[c] = NULL;
    }
}

static void table_free(table_t *t)
{
    table_clear_row(t);
    for (size_t c = 0; c < MAX_COLUMNS; c++)
        free(t->lines[c].v);
}

/* Sets up a row's cells (header when `row` is the columns array) and wraps them. */
static render_status_t table_prepare(render_t *r, table_t *t, const json_t *row, HPDF_Font font,
                                     const char *where)
{
    table_clear_row(t);
    t->maxlines = 1;
    for (size_t c = 0; c < t->ncols; c++) {
        const json_t *cell = json_array_get(row, c);
        char num[64];
        const char *text;
        if (json_is_string(cell))
            text = json_string_value(cell);
        else if (json_is_integer(cell))
            snprintf(num, sizeof num, "%lld", (long long)json_integer_value(cell)), text = num;
        else if (json_is_real(cell))
            snprintf(num, sizeof num, "%.15g", json_real_value(cell)), text = num;
        else if (json_is_null(cell))
            text = "";
        else
            return failf(r, RENDER_BAD_INPUT, "%s[%zu]: expected a string, a number or null", where,
                         c);
        t->owned[c] = sanitize(text);
        float avail = t->x[c + 1] - t->x[c] - 2 * CELL_PADDING;
        if (!t->owned[c] || !wrap(font, t->size, t->owned[c], avail, &t->lines[c]))
            return oom(r, where);
        if (t->lines[c].n > t->maxlines)
            t->maxlines = t->lines[c].n;
    }
    return RENDER_OK;
}

/* Draws lines [from, from + n) of the prepared row in a box at the top of the free
 * space, with a grey background for the header. */
static render_status_t table_draw(render_t *r, table_t *t, HPDF_Font font, size_t from, size_t n,
                                  bool header)
{
    float h = (float)n * t->lh + 2 * CELL_PADDING;
    float top = r->y;
    HPDF_Page_SetLineWidth(r->page, 0.5f);
    if (header)
        HPDF_Page_SetGrayFill(r->page, 0.88f);
    for (size_t c = 0; c < t->ncols; c++) {
        HPDF_Page_Rectangle(r->page, t->x[c], top - h, t->x[c + 1] - t->x[c], h);
        if (header)
            HPDF_Page_FillStroke(r->page);
        else
            HPDF_Page_Stroke(r->page);
    }
    HPDF_Page_SetGrayFill(r->page, 0.0f);
    for (size_t c = 0; c < t->ncols; c++)
        for (size_t i = from; i < from + n && i < t->lines[c].n; i++) {
            float base = top - CELL_PADDING - (float)(i - from) * t->lh - t->size;
            render_status_t st = draw_text(r, font, t->size, t->x[c] + CELL_PADDING, base,
                                           t->lines[c].v[i].s, t->lines[c].v[i].len);
            if (st)
                return st;
        }
    r->y -= h;
    r->fresh = false;
    return RENDER_OK;
}

/* Starts a new page and, when the table repeats it, draws the header row there. */
static render_status_t table_new_page(render_t *r, table_t *t, table_t *hdr, const char *where)
{
    render_status_t st = new_page(r, where);
    if (st || !t->repeat_header)
        return st;
    st = table_draw(r, hdr, r->bold, 0, hdr->maxlines, true);
    r->fresh = true; /* only the header: a row too tall for the page still goes here */
    return st;
}

/* Draws the prepared row, splitting it across pages when it is taller than one. */
static render_status_t table_row(render_t *r, table_t *t, table_t *hdr, const char *where)
{
    size_t done = 0;
    while (done < t->maxlines) {
        float avail = r->y - r->bottom - 2 * CELL_PADDING;
        size_t fit = avail > 0 ? (size_t)(avail / t->lh) : 0;
        size_t left = t->maxlines - done;
        if (fit < left && !r->fresh) {
            render_status_t st = table_new_page(r, t, hdr, where);
            if (st)
                return st;
            continue;
        }
        if (fit == 0)
            return failf(r, RENDER_BAD_INPUT, "%s: the page has no room for a table row", where);
        size_t n = fit < left ? fit : left;
        render_status_t st = table_draw(r, t, r->font, done, n, false);
        if (st)
            return st;
        done += n;
    }
    return hpdf_check(r, where);
}

static render_status_t do_table(render_t *r, const json_t *el, const char *where, int index,
                                int nelements)
{
    static const char *const keys[] = {"table", NULL};
    static const char *const tkeys[] = {"columns", "rows", "widths", "repeat_header", "size", NULL};
    render_status_t st = check_keys(r, el, where, keys);
    if (st)
        return st;
    char at[96];
    snprintf(at, sizeof at, "%s.table", where);
    const json_t *tb = json_object_get(el, "table");
    if (!json_is_object(tb))
        return failf(r, RENDER_BAD_INPUT, "%s: expected an object", at);
    if ((st = check_keys(r, tb, at, tkeys)))
        return st;
    const json_t *columns = json_object_get(tb, "columns");
    const json_t *rows = json_object_get(tb, "rows");
    const json_t *widths = json_object_get(tb, "widths");
    const json_t *repeat = json_object_get(tb, "repeat_header");
    size_t ncols = json_array_size(columns);
    if (!json_is_array(columns) || ncols == 0 || ncols > MAX_COLUMNS)
        return failf(r, RENDER_BAD_INPUT, "%s.columns: expected an array of 1 to %d headings", at,
                     MAX_COLUMNS);
    if (!json_is_array(rows))
        return failf(r, RENDER_BAD_INPUT, "%s.rows: expected an array of rows", at);
    if (repeat && !json_is_boolean(repeat))
        return failf(r, RENDER_BAD_INPUT, "%s.repeat_header: expected true or false", at);
    if (widths && (!json_is_array(widths) || json_array_size(widths) != ncols))
        return failf(r, RENDER_BAD_INPUT, "%s.widths: expected %zu numbers, one per column", at,
                     ncols);
    double size = r->size * 0.9;
    if ((st = opt_number(r, tb, "size", at, MIN_FONT_SIZE, MAX_FONT_SIZE, &size)))
        return st;

    table_t *t = calloc(2, sizeof(*t)); /* [0] the body rows, [1] the header */
    if (!t)
        return oom(r, at);
    table_t *hdr = &t[1];
    t->ncols = ncols;
    t->size = (float)size;
    t->lh = t->size * LINE_SPACING;
    t->repeat_header = !repeat || json_is_true(repeat);
    double total = 0, wv[MAX_COLUMNS];
    for (size_t c = 0; c < ncols; c++) {
        wv[c] = 1;
        if (widths && (!number_of(json_array_get(widths, c), &wv[c]) || wv[c] <= 0)) {
            st = failf(r, RENDER_BAD_INPUT, "%s.widths[%zu]: expected a positive number", at, c);
            goto done;
        }
        total += wv[c];
    }
    float cw = content_width(r);
    t->x[0] = r->left;
    for (size_t c = 0; c < ncols; c++)
        t->x[c + 1] = t->x[c] + (float)(wv[c] / total) * cw;
    if (cw / (float)ncols < 2 * CELL_PADDING + t->size) {
        st = failf(r, RENDER_BAD_INPUT, "%s: %zu columns do not fit the page's width", at, ncols);
        goto done;
    }
    for (size_t c = 0; c < ncols; c++)
        if (t->x[c + 1] - t->x[c] < 2 * CELL_PADDING + t->size) {
            st = failf(r, RENDER_BAD_INPUT, "%s.widths[%zu]: the column is too narrow", at, c);
            goto done;
        }
    *hdr = *t;
    char path[128];
    snprintf(path, sizeof path, "%s.columns", at);
    if ((st = table_prepare(r, hdr, columns, r->bold, path)))
        goto done;
    /* The header starts the table: it moves to a new page with the first row. */
    if ((st = need_space(r, (float)hdr->maxlines * t->lh + 2 * CELL_PADDING + t->lh, at)))
        goto done;
    if ((st = table_draw(r, hdr, r->bold, 0, hdr->maxlines, true)))
        goto done;
    size_t nrows = json_array_size(rows);
    for (size_t i = 0; i < nrows; i++) {
        snprintf(path, sizeof path, "%s.rows[%zu]", at, i);
        const json_t *row = json_array_get(rows, i);
        if (!json_is_array(row) || json_array_size(row) != ncols) {
            st = failf(r, RENDER_BAD_INPUT, "%s: expected an array of %zu cells (one per column)",
                       path, ncols);
            goto done;
        }
        if ((st = table_prepare(r, t, row, r->font, path)) || (st = table_row(r, t, hdr, path)))
            goto done;
        if (i % PROGRESS_EVERY == PROGRESS_EVERY - 1) {
            if (r->io->canceled && r->io->canceled(r->io->ctx)) {
                st = failf(r, RENDER_CANCELED, "canceled at %s", path);
                goto done;
            }
            if (r->io->progress) {
                char msg[96];
                snprintf(msg, sizeof msg, "%s: row %zu of %zu, page %d", where, i + 1, nrows,
                         r->npages);
                double frac = (index + (double)(i + 1) / (double)nrows) / nelements;
                r->io->progress(r->io->ctx, (int)(frac * 90), msg);
            }
        }
    }
    r->y -= r->size * 0.5f;
done:
    table_free(hdr);
    table_free(t);
    free(t);
    return st;
}

/* ---- The document ---- */

static render_status_t setup_page(render_t *r, const json_t *doc)
{
    static const char *const keys[] = {"size", "orientation", "margins", NULL};
    const json_t *pg = json_object_get(doc, "page");
    r->width = page_sizes[1].w; /* A4 portrait */
    r->height = page_sizes[1].h;
    r->top = r->right = r->bottom = r->left = (float)DEFAULT_MARGIN;
    if (!pg)
        return RENDER_OK;
    if (!json_is_object(pg))
        return failf(r, RENDER_BAD_INPUT, "page: expected an object");
    render_status_t st = check_keys(r, pg, "page", keys);
    if (st)
        return st;
    const json_t *size = json_object_get(pg, "size");
    if (json_is_string(size)) {
        const char *name = json_string_value(size);
        size_t i = 0, n = sizeof page_sizes / sizeof page_sizes[0];
        while (i < n && strcasecmp(page_sizes[i].name, name) != 0)
            i++;
        if (i == n)
            return failf(r, RENDER_BAD_INPUT,
                         "page.size: unknown size \"%.40s\" (A3, A4, A5, A6, B4, B5, Letter, "
                         "Legal, Executive, Tabloid, or [width, height] in points)",
                         name);
        r->width = page_sizes[i].w;
        r->height = page_sizes[i].h;
    } else if (size) {
        double w, h;
        if (!json_is_array(size) || json_array_size(size) != 2 ||
            !number_of(json_array_get(size, 0), &w) || !number_of(json_array_get(size, 1), &h) ||
            w < MIN_PAGE_POINTS || h < MIN_PAGE_POINTS || w > MAX_PAGE_POINTS ||
            h > MAX_PAGE_POINTS)
            return failf(r, RENDER_BAD_INPUT,
                         "page.size: expected a size name or [width, height] in points, each "
                         "from %g to %g",
                         MIN_PAGE_POINTS, MAX_PAGE_POINTS);
        r->width = (float)w;
        r->height = (float)h;
    }
    /* Named sizes are portrait; [width, height] is as given unless turned. */
    const char *orient = NULL;
    if ((st = opt_string(r, pg, "orientation", "page", &orient)))
        return st;
    float lo = fminf(r->width, r->height), hi = fmaxf(r->width, r->height);
    if (orient && strcmp(orient, "landscape") == 0) {
        r->width = hi;
        r->height = lo;
    } else if (orient && strcmp(orient, "portrait") == 0) {
        r->width = lo;
        r->height = hi;
    } else if (orient) {
        return failf(r, RENDER_BAD_INPUT,
                     "page.orientation: expected \"portrait\" or \"landscape\", not \"%.40s\"",
                     orient);
    }
    const json_t *m = json_object_get(pg, "margins");
    double mv[4] = {DEFAULT_MARGIN, DEFAULT_MARGIN, DEFAULT_MARGIN, DEFAULT_MARGIN};
    if (json_is_number(m)) {
        double all;
        if (!number_of(m, &all) || all < 0)
            return failf(r, RENDER_BAD_INPUT, "page.margins: expected points >= 0");
        mv[0] = mv[1] = mv[2] = mv[3] = all;
    } else if (m) {
        if (!json_is_array(m) || json_array_size(m) != 4)
            return failf(r, RENDER_BAD_INPUT,
                         "page.margins: expected a number or [top, right, bottom, left] in points");
        for (size_t i = 0; i < 4; i++)
            if (!number_of(json_array_get(m, i), &mv[i]) || mv[i] < 0)
                return failf(r, RENDER_BAD_INPUT, "page.margins[%zu]: expected points >= 0", i);
    }
    r->top = (float)mv[0];
    r->right = (float)mv[1];
    r->bottom = (float)mv[2];
    r->left = (float)mv[3];
    if (content_width(r) < MIN_CONTENT || content_top(r) - r->bottom < MIN_CONTENT)
        return failf(r, RENDER_BAD_INPUT,
                     "page.margins: they leave %.0f x %.0f points for content, less than %g",
                     content_width(r), content_top(r) - r->bottom, MIN_CONTENT);
    return RENDER_OK;
}

typedef struct footer_s {
    bool page_numbers;
    const char *text;   /* or NULL */
    const char *format; /* with {page} and {pages} */
} footer_t;

static render_status_t parse_footer(render_t *r, const json_t *doc, footer_t *f)
{
    static const char *const keys[] = {"page_numbers", "text", "format", NULL};
    f->page_numbers = false;
    f->text = NULL;
    f->format = "Page {page} of {pages}";
    const json_t *ft = json_object_get(doc, "footer");
    if (!ft)
        return RENDER_OK;
    if (!json_is_object(ft))
        return failf(r, RENDER_BAD_INPUT, "footer: expected an object");
    render_status_t st = check_keys(r, ft, "footer", keys);
    if (st)
        return st;
    const json_t *pn = json_object_get(ft, "page_numbers");
    if (pn && !json_is_boolean(pn))
        return failf(r, RENDER_BAD_INPUT, "footer.page_numbers: expected true or false");
    f->page_numbers = json_is_true(pn);
    if ((st = opt_string(r, ft, "text", "footer", &f->text)) ||
        (st = opt_string(r, ft, "format", "footer", &f->format)))
        return st;
    if (strlen(f->format) > 200)
        return failf(r, RENDER_BAD_INPUT, "footer.format: longer than 200 bytes");
    return RENDER_OK;
}

/* Expands {page} and {pages} in fmt. */
static void page_label(char *out, size_t cap, const char *fmt, int page, int pages)
{
    size_t n = 0;
    for (const char *p = fmt; *p && n + 1 < cap;) {
        int v = -1;
        if (strncmp(p, "{pages}", 7) == 0)
            v = pages, p += 7;
        else if (strncmp(p, "{page}", 6) == 0)
            v = page, p += 6;
        if (v >= 0) {
            int w = snprintf(out + n, cap - n, "%d", v);
            n += w > 0 ? (size_t)w : 0;
            if (n >= cap)
                n = cap - 1;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
}

/* The footer, on every page, now that the page count is known: the text on the
 * left, the page number on the right (centred when there is no text), in the
 * middle of the bottom margin. */
static render_status_t draw_footers(render_t *r, const footer_t *f)
{
    if (!f->page_numbers && !f->text)
        return RENDER_OK;
    char *text = f->text ? sanitize(f->text) : NULL;
    if (f->text && !text)
        return oom(r, "footer");
    for (char *p = text; p && *p; p++)
        if (*p == '\n')
            *p = ' ';
    float size = r->size * 0.8f;
    float base = r->bottom / 2 - size / 3;
    if (base < 2)
        base = 2;
    render_status_t st = RENDER_OK;
    for (int i = 0; i < r->npages && !st; i++) {
        r->page = r->pages[i];
        if (text)
            st = draw_text(r, r->font, size, r->left, base, text, strlen(text));
        if (!st && f->page_numbers) {
            char label[256];
            page_label(label, sizeof label, f->format, i + 1, r->npages);
            float w = text_width(r->font, size, label, strlen(label));
            float x = text ? r->width - r->right - w : (r->width - w) / 2;
            st = draw_text(r, r->font, size, x, base, label, strlen(label));
        }
    }
    free(text);
    return st ? st : hpdf_check(r, "footer");
}

static render_status_t set_info(render_t *r, const json_t *doc)
{
    static const struct {
        const char *key;
        HPDF_InfoType type;
    } info[] = {
        {"title", HPDF_INFO_TITLE},
        {"author", HPDF_INFO_AUTHOR},
        {"subject", HPDF_INFO_SUBJECT},
        {"keywords", HPDF_INFO_KEYWORDS},
    };
    for (size_t i = 0; i < sizeof info / sizeof info[0]; i++) {
        const char *v = NULL;
        render_status_t st = opt_string(r, doc, info[i].key, "document", &v);
        if (st)
            return st;
        if (v && *v)
            HPDF_SetInfoAttr(r->doc, info[i].type, v);
    }
    HPDF_SetInfoAttr(r->doc, HPDF_INFO_CREATOR, "Hopper pdf plugin");
    return hpdf_check(r, "document");
}

static render_status_t load_fonts(render_t *r)
{
    const char *regular = HPDF_LoadTTFontFromFile(r->doc, r->cfg->font_path, HPDF_TRUE);
    const char *bold =
        regular ? HPDF_LoadTTFontFromFile(r->doc, r->cfg->bold_font_path, HPDF_TRUE) : NULL;
    if (regular)
        r->font = HPDF_GetFont(r->doc, regular, "UTF-8");
    if (bold)
        r->bold = HPDF_GetFont(r->doc, bold, "UTF-8");
    if (!r->font || !r->bold) /* the host's fonts, not the document: it may work later */
        return failf(r, RENDER_TRANSIENT, "cannot load the fonts %s and %s (libharu error 0x%04X)",
                     r->cfg->font_path, r->cfg->bold_font_path, (unsigned)r->hpdf_error);
    return RENDER_OK;
}

static render_status_t write_out(render_t *r)
{
    HPDF_SaveToStream(r->doc);
    if (hpdf_check(r, "saving"))
        return r->status;
    HPDF_ResetStream(r->doc);
    unsigned char buf[65536];
    for (;;) {
        HPDF_UINT32 n = sizeof buf;
        HPDF_STATUS rc = HPDF_ReadFromStream(r->doc, buf, &n);
        if (rc != HPDF_OK && rc != HPDF_STREAM_EOF)
            return hpdf_check(r, "saving")
                       ? r->status
                       : failf(r, RENDER_TRANSIENT, "saving: error 0x%04X", (unsigned)rc);
        if (n > 0 && r->io->write(r->io->ctx, buf, n) != 0)
            return failf(r, RENDER_TRANSIENT, "cannot write the PDF to the blob store");
        if (rc == HPDF_STREAM_EOF || n == 0)
            break;
    }
    r->hpdf_error = HPDF_OK; /* the end of the stream is reported as an error */
    return RENDER_OK;
}

typedef render_status_t (*element_fn)(render_t *r, const json_t *el, const char *where);

static const struct element_kind {
    const char *name;
    element_fn fn;
} element_kinds[] = {
    {"heading", do_heading}, {"paragraph", do_paragraph},
    {"image", do_image},     {"page_break", do_page_break},
    {"table", NULL}, /* do_table: takes the progress position too */
};

static render_status_t do_element(render_t *r, const json_t *el, int i, int n)
{
    char where[32];
    snprintf(where, sizeof where, "body[%d]", i);
    if (!json_is_object(el))
        return failf(r, RENDER_BAD_INPUT, "%s: expected an object", where);
    for (size_t k = 0; k < sizeof element_kinds / sizeof element_kinds[0]; k++) {
        if (!json_object_get(el, element_kinds[k].name))
            continue;
        if (!element_kinds[k].fn)
            return do_table(r, el, where, i, n);
        return element_kinds[k].fn(r, el, where);
    }
    const char *key = json_object_iter_key(json_object_iter((json_t *)el));
    if (key)
        return failf(r, RENDER_BAD_INPUT,
                     "%s: unknown element \"%.40s\" (expected heading, paragraph, table, image "
                     "or page_break)",
                     where, key);
    return failf(r, RENDER_BAD_INPUT, "%s: an empty object is not an element", where);
}

static render_status_t render_body(render_t *r, const json_t *doc)
{
    static const char *const keys[] = {"page", "title",  "author",    "subject", "keywords",
                                       "body", "footer", "font_size", NULL};
    render_status_t st = check_keys(r, doc, "document", keys);
    if (st)
        return st;
    double size = DEFAULT_FONTSIZE;
    if ((st = opt_number(r, doc, "font_size", "document", MIN_FONT_SIZE, 72, &size)))
        return st;
    r->size = (float)size;
    footer_t footer;
    const json_t *body = json_object_get(doc, "body");
    if ((st = setup_page(r, doc)) || (st = parse_footer(r, doc, &footer)))
        return st;
    if (!json_is_array(body))
        return failf(r, RENDER_BAD_INPUT, "body: expected an array of elements");
    if ((st = set_info(r, doc)) || (st = load_fonts(r)))
        return st;
    int n = (int)json_array_size(body), last_percent = -1;
    for (int i = 0; i < n; i++) {
        if (r->io->canceled && r->io->canceled(r->io->ctx))
            return failf(r, RENDER_CANCELED, "canceled at body[%d]", i);
        if ((st = do_element(r, json_array_get(body, (size_t)i), i, n)))
            return st;
        int percent = (int)((double)(i + 1) / n * 90);
        if (r->io->progress && percent / 5 != last_percent / 5) {
            char msg[64];
            snprintf(msg, sizeof msg, "laid out %d of %d elements, %d pages", i + 1, n, r->npages);
            r->io->progress(r->io->ctx, percent, msg);
            last_percent = percent;
        }
    }
    if (!r->page && (st = new_page(r, "body"))) /* an empty body is one empty page */
        return st;
    if ((st = draw_footers(r, &footer)))
        return st;
    if (r->io->progress)
        r->io->progress(r->io->ctx, 95, "saving");
    return write_out(r);
}

render_status_t render_pdf(const json_t *doc, const render_config_t *cfg, const render_io_t *io,
                           int *pages, char *err, size_t errlen)
{
    render_t r = {.cfg = cfg, .io = io, .err = err, .errlen = errlen};
    err[0] = '\0';
    *pages = 0;
    if (!json_is_object(doc))
        return failf(&r, RENDER_BAD_INPUT, "the payload must be a JSON object (the document)");
    r.doc = HPDF_New(hpdf_error_handler, &r);
    if (!r.doc)
        return failf(&r, RENDER_TRANSIENT, "cannot create a PDF document: out of memory");
    HPDF_SetCompressionMode(r.doc, HPDF_COMP_ALL);
    HPDF_UseUTFEncodings(r.doc);
    HPDF_SetCurrentEncoder(r.doc, "UTF-8"); /* metadata strings are UTF-8 too */
    render_status_t st = hpdf_check(&r, "document");
    if (!st)
        st = render_body(&r, doc);
    if (!st)
        *pages = r.npages;
    HPDF_Free(r.doc);
    free(r.pages);
    free(r.images);
    free(r.scratch);
    return st;
}
