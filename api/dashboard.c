/*
 * The dashboard's files (api/assets.h), served at /dashboard/ with the policy the
 * front-end is written for: scripts and styles only from this server, nothing
 * inline, nothing from elsewhere. Files are revalidated by ETag (cheap 304s) and
 * never cached without asking, so a server upgrade shows its new dashboard at once.
 */
#include <string.h>
#include <strings.h>

#include "api/assets.h"
#include "api/internal.h"

#define DASHBOARD_CSP                                                                              \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "           \
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; "             \
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'\r\n"

static const struct {
    const char *ext;
    const char *type;
} content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".json", "application/json"},
    {".webmanifest", "application/manifest+json"},
    {".txt", "text/plain; charset=utf-8"},
    {".woff2", "font/woff2"},
};

static const char *content_type_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof(content_types) / sizeof(content_types[0]); i++) {
        if (strcasecmp(dot, content_types[i].ext) == 0)
            return content_types[i].type;
    }
    return "application/octet-stream";
}

static const api_asset_t *find_asset(const char *path)
{
    size_t lo = 0, hi = api_nassets;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(path, api_assets[mid].path);
        if (c == 0)
            return &api_assets[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static void serve(api_req_t *ar, const api_asset_t *a)
{
    ar->http->own_policy = true;
    snprintf(ar->headers, sizeof(ar->headers),
             DASHBOARD_CSP "Cache-Control: no-cache\r\nETag: %s\r\n", a->etag);
    const char *inm = http_header(ar->http, "if-none-match");
    if (inm && strstr(inm, a->etag)) {
        api_answer(ar, 304, NULL, NULL, 0);
        return;
    }
    api_answer(ar, 200, content_type_of(a->path), (const char *)a->data, a->len);
}

bool api_dashboard_prepare_root(api_req_t *ar)
{
    snprintf(ar->headers, sizeof(ar->headers), "Location: /dashboard/\r\n");
    api_answer(ar, 302, NULL, NULL, 0);
    return false;
}

/* /dashboard/ and /dashboard/<path>: the file, or index.html for a path that names
 * no file (a page of the front-end's own routes); 404 for a missing file. */
bool api_dashboard_prepare_file(api_req_t *ar)
{
    const char *path = ar->params[0][0] ? ar->params[0] : "index.html";
    const api_asset_t *a = find_asset(path);
    const char *last = strrchr(path, '/');
    if (!a && !strchr(last ? last : path, '.'))
        a = find_asset("index.html");
    if (!a || strstr(path, "..")) {
        api_problem(ar, 404, "no such dashboard file: %s", path);
        return false;
    }
    serve(ar, a);
    return false;
}
