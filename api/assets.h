/*
 * api/assets.h -- the dashboard's files, compiled into the server from dashboard/
 * by cmake/embed_dir.cmake, so the running server needs no files and no network.
 */
#ifndef HP_API_ASSETS_H
#define HP_API_ASSETS_H

#include <stddef.h>

typedef struct api_asset_s {
    const char *path; /* relative to dashboard/, e.g. "index.html", "pages/jobs.js" */
    const unsigned char *data;
    size_t len;
    const char *etag; /* quoted, as the ETag header carries it */
} api_asset_t;

extern const api_asset_t api_assets[]; /* sorted by path; api_nassets of them */
extern const size_t api_nassets;

#endif
