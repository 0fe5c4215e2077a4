/* The benchmark's handlers: bench.noop does nothing; bench.stamp answers with the
 * wall-clock microsecond its handler started, so enqueue-to-start latency can be
 * measured finer than the broker's millisecond timestamps. */
#include <time.h>

#include <hopper/plugin.h>

#include <stdio.h>

static hopper_status_t noop(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    return hopper_succeed(job, NULL);
}

static hopper_status_t stamp(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char result[64];
    snprintf(result, sizeof(result), "{\"start_us\":%lld}",
             (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
    return hopper_succeed(job, result);
}

HOPPER_PLUGIN_INIT(api, plugin, errmsg)
{
    (void)errmsg;
    HOPPER_USE(api);
    if (hopper_register(plugin, "bench", "1.0.0"))
        return -1;
    hopper_job_type_t t = {
        .version = HOPPER_JOB_TYPE_VERSION, .name = "bench.noop", .handle = noop};
    if (hopper_register_type(plugin, &t))
        return -1;
    t.name = "bench.stamp";
    t.handle = stamp;
    return hopper_register_type(plugin, &t);
}
