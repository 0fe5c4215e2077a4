/* The server's HTTP metrics, on the registry of api/metrics.h. */
#include <stdio.h>

#include "api/metrics.h"
#include "api/metrics_http.h"

static metrics_t *registry;
static metric_t *requests, *latency;

void api_metrics_init(void)
{
    static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05,   0.1,   0.25,   0.5,   1,    2.5};
    if (registry)
        return;
    registry = metrics_new();
    requests = metrics_counter(registry, "hopper_http_requests_total",
                               "HTTP requests by route and status.", "route", "status");
    latency = metrics_histogram(registry, "hopper_http_request_duration_seconds",
                                "HTTP request latency, from the first byte to the answer.", bounds,
                                sizeof(bounds) / sizeof(bounds[0]), "route", NULL);
}

void api_metrics_request(const char *route, const char *method, int status, int64_t micros)
{
    if (!registry)
        return;
    char name[160], code[8];
    snprintf(name, sizeof(name), "%s %s", method, route);
    snprintf(code, sizeof(code), "%d", status);
    metric_inc(requests, name, code);
    metric_observe(latency, name, NULL, (double)micros / 1e6);
}

void api_metrics_render(hp_strbuf_t *out)
{
    if (registry)
        metrics_render(registry, out);
}
