/*
 * api/metrics_http.h -- the server's own Prometheus metrics: HTTP requests by
 * route and status, and their latency. Job figures are read from the broker at
 * scrape time (routes.c).
 */
#ifndef HP_API_METRICS_HTTP_H
#define HP_API_METRICS_HTTP_H

#include <stdint.h>

#include "common/common.h"

void api_metrics_init(void);
void api_metrics_request(const char *route, const char *method, int status, int64_t micros);
/* Appends the HTTP metrics in the text exposition format. */
void api_metrics_render(hp_strbuf_t *out);

#endif
