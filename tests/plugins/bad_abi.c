/*
 * tests/plugins/bad_abi.c -- a plugin that claims to be built against the next
 * major ABI. The host must refuse it (register_plugin returns -1) and the worker
 * must report the plugin as not loaded.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <hopper/plugin.h>

#include <string.h>

HOPPER_EXPORT int hopper_plugin_init(const hopper_host_api_t *api, hopper_plugin_t *plugin,
                                     char **errmsg);

HOPPER_PLUGIN_INIT(api, plugin, errmsg)
{
    int rc = api->register_plugin(plugin, (unsigned)((HOPPER_ABI_VERSION_MAJOR + 1) << 16),
                                  "bad_abi", "9.9.9");
    if (rc != 0 && errmsg)
        *errmsg = strdup("bad_abi: the host refused a plugin built for the next ABI major");
    return rc;
}
