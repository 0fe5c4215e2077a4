/*
 * tests/plugins/no_entry.c -- a shared object that is not a plugin: it exports a
 * function, but not hopper_plugin_init. The worker must refuse to load it.
 */
#include <hopper/plugin.h>

HOPPER_EXPORT int no_entry_answer(void);

HOPPER_EXPORT int no_entry_answer(void)
{
    return 42;
}
