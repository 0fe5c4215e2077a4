/*
 * greeter.c -- the example Hopper plugin (docs/plugins.md walks through it).
 *
 * One job type, "greet": payload {"name": "Ada"} gives the result
 * {"greeting":"hello, Ada"}. A payload without a "name" is a permanent
 * failure: retrying cannot fix it. The result is built in a malloc'd buffer whose
 * ownership passes to Hopper with `free` as its destructor.
 *
 * Build out of tree, once Hopper is installed (cmake --install):
 *   cc -shared -fPIC $(pkg-config --cflags hopper-plugin) greeter.c -o greeter.so
 */
#include <hopper/plugin.h>

#include <stdlib.h>
#include <string.h>

/* ---- JSON ---- */

/* Appends `s` to `out` as the inside of a JSON string, escaping what JSON requires.
 * Returns the number of bytes written; `out` must hold 6 bytes per input byte. */
static size_t json_escape(char *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
        case '\\':
            out[n++] = '\\';
            out[n++] = (char)*p;
            break;
        case '\n':
            out[n++] = '\\';
            out[n++] = 'n';
            break;
        case '\r':
            out[n++] = '\\';
            out[n++] = 'r';
            break;
        case '\t':
            out[n++] = '\\';
            out[n++] = 't';
            break;
        default:
            if (*p < 0x20) {
                memcpy(out + n, "\\u00", 4);
                out[n + 4] = hex[*p >> 4];
                out[n + 5] = hex[*p & 0xf];
                n += 6;
            } else {
                out[n++] = (char)*p; /* UTF-8 bytes pass through unchanged */
            }
        }
    }
    return n;
}

/* ---- The "greet" job type ---- */

/* Runs on a worker thread, possibly on several threads at once: it keeps no state
 * of its own, so it needs no lock. */
static hopper_status_t greet(hopper_job_t *job, void *type_ctx)
{
    (void)type_ctx; /* no ctx was registered */

    /* Borrowed from the host: valid until this handler returns. */
    const char *name = hopper_payload_string(job, "name");
    if (!name)
        return hopper_fail(job, HOPPER_FAIL_PERMANENT, "payload needs a \"name\"");

    hopper_log(job, HOPPER_LOG_INFO, "greeting %s (attempt %d of %d)", name,
               hopper_job_attempt(job), hopper_job_max_attempts(job));

    /* {"greeting":"hello, <name>"}: each escaped byte of the name takes at most 6. */
    static const char head[] = "{\"greeting\":\"hello, ";
    static const char tail[] = "\"}";
    char *json = malloc(sizeof(head) - 1 + 6 * strlen(name) + sizeof(tail));
    if (!json)
        return hopper_fail(job, HOPPER_FAIL_RETRYABLE, "out of memory");
    size_t len = sizeof(head) - 1;
    memcpy(json, head, len);
    len += json_escape(json + len, name);
    memcpy(json + len, tail, sizeof(tail)); /* with its NUL */
    len += sizeof(tail) - 1;

    /* Ownership of `json` passes to the host, which calls free(json) when done with
     * it. -1 means the host refused it (not JSON, or over the payload limit); the
     * header does not say who frees a refused buffer, so this leaves it alone. */
    if (hopper_set_result(job, json, len, free) != 0)
        return hopper_fail(job, HOPPER_FAIL_PERMANENT, "result refused (%zu bytes)", len);
    return HOPPER_OK;
}

/* ---- Entry point ---- */

HOPPER_PLUGIN_INIT(api, plugin, errmsg)
{
    HOPPER_USE(api);
    (void)errmsg; /* nothing of our own can fail here */
    /* Must come first. -1 means the host speaks another ABI major (the host has the
     * reason), so init just gives up. */
    if (hopper_register(plugin, "greeter", "1.0.0") != 0)
        return -1;
    return hopper_register_type(plugin, &(hopper_job_type_t){
                                            .version = HOPPER_JOB_TYPE_VERSION,
                                            .name = "greet",
                                            .handle = greet,
                                            .isolation = HOPPER_ISOLATION_THREAD,
                                        });
}
