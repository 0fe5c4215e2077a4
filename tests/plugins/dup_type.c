/*
 * tests/plugins/dup_type.c -- the "dup_type" plugin registers "test.noop", which
 * testhandlers also registers: loading both must fail on the clash.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <hopper/plugin.h>

#include <string.h>

HOPPER_EXPORT int hopper_plugin_init(const hopper_host_api_t *api, hopper_plugin_t *plugin,
                                     char **errmsg);

static hopper_status_t handle_noop(hopper_job_t *job, void *ctx)
{
    (void)ctx;
    return hopper_succeed(job, NULL);
}

HOPPER_PLUGIN_INIT(api, plugin, errmsg)
{
    HOPPER_USE(api);
    if (hopper_register(plugin, "dup_type", "1.0.0") != 0) {
        if (errmsg)
            *errmsg = strdup("dup_type: register_plugin failed");
        return -1;
    }
    if (hopper_register_type(plugin, &(hopper_job_type_t){.version = HOPPER_JOB_TYPE_VERSION,
                                                          .name = "test.noop",
                                                          .handle = handle_noop}) != 0) {
        if (errmsg)
            *errmsg = strdup("dup_type: register_type test.noop failed");
        return -1;
    }
    return 0;
}
