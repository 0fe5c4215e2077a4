/*
 * hopper/plugin.h -- the whole interface between Hopper and a handler plugin.
 *
 * A plugin is a shared object that exports one function, hopper_plugin_init. The
 * worker loads it with dlopen, checks the ABI version it was built against, and
 * hands it a table of host functions (hopper_host_api_t): a plugin never links
 * against Hopper itself. In init, the plugin names itself and registers one or
 * more job types, each with a handler. For every job of such a type, the worker
 * calls the handler on one of its threads (or in a fresh child process, for
 * HOPPER_ISOLATION_FORK types) with an opaque hopper_job_t.
 *
 *   #include <hopper/plugin.h>
 *
 *   static hopper_status_t greet(hopper_job_t *job, void *ctx)
 *   {
 *       const char *name = hopper_payload_string(job, "name");
 *       if (!name)
 *           return hopper_fail(job, HOPPER_FAIL_PERMANENT, "payload needs a \"name\"");
 *       hopper_log(job, HOPPER_LOG_INFO, "hello, %s", name);
 *       return hopper_succeed(job, "{\"greeted\":true}");
 *   }
 *
 *   HOPPER_PLUGIN_INIT(api, plugin, errmsg)
 *   {
 *       HOPPER_USE(api);
 *       hopper_register(plugin, "greeter", "1.0.0");
 *       return hopper_register_type(plugin, &(hopper_job_type_t){
 *           .version = HOPPER_JOB_TYPE_VERSION, .name = "greet", .handle = greet});
 *   }
 *
 * Build out of tree:
 *   cc -shared -fPIC $(pkg-config --cflags hopper-plugin) greeter.c -o greeter.so
 *
 * Compatibility: HOPPER_ABI_VERSION_MAJOR changes only when something here changes
 * meaning; the loader refuses a plugin built for another major. Minor versions only
 * add: new host functions at the end of hopper_host_api_t (check api->size, or use
 * HOPPER_HAS), new fields at the end of hopper_job_type_t (read by `version`).
 * Status and error codes never change meaning.
 */
#ifndef HOPPER_PLUGIN_H
#define HOPPER_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HOPPER_ABI_VERSION_MAJOR 1
#define HOPPER_ABI_VERSION_MINOR 1
#define HOPPER_ABI_VERSION       ((HOPPER_ABI_VERSION_MAJOR << 16) | HOPPER_ABI_VERSION_MINOR)

/* Opaque: the job being handled, and the plugin being initialised. */
typedef struct hopper_job hopper_job_t;
typedef struct hopper_plugin hopper_plugin_t;
typedef struct hopper_blob_writer hopper_blob_writer_t;

/* What a handler returns; use hopper_succeed/hopper_fail to set the details. */
typedef enum {
    HOPPER_OK = 0,    /* done; an optional JSON result was set */
    HOPPER_RETRY = 1, /* failed; try again after the job's backoff */
    HOPPER_FAIL = 2,  /* failed for good: no more attempts */
} hopper_status_t;

typedef enum { HOPPER_FAIL_RETRYABLE = 0, HOPPER_FAIL_PERMANENT = 1 } hopper_fail_kind_t;

typedef enum {
    HOPPER_LOG_DEBUG = 0,
    HOPPER_LOG_INFO = 1,
    HOPPER_LOG_WARN = 2,
    HOPPER_LOG_ERROR = 3,
} hopper_log_level_t;

typedef enum {
    HOPPER_ISOLATION_THREAD = 0, /* run on one of the worker's threads (fast) */
    HOPPER_ISOLATION_FORK = 1,   /* run each job in a fresh child process with limits */
} hopper_isolation_t;

/* Who frees a buffer handed to the host (after SQLite's SQLITE_STATIC/TRANSIENT):
 * HOPPER_STATIC: the host never frees it and may keep the pointer until the job ends;
 * HOPPER_TRANSIENT: the host copies it at once; any other function: the host calls
 * it on the buffer when done -- also when it refuses the buffer. */
typedef void (*hopper_free_fn)(void *);
#define HOPPER_STATIC    ((hopper_free_fn)0)
#define HOPPER_TRANSIENT ((hopper_free_fn)(intptr_t)-1)

typedef hopper_status_t (*hopper_handler_fn)(hopper_job_t *job, void *type_ctx);

/* ---- Job types ---- */

#define HOPPER_JOB_TYPE_VERSION 1

typedef struct hopper_job_type {
    int version;              /* HOPPER_JOB_TYPE_VERSION: which fields below exist */
    const char *name;         /* e.g. "email.send"; unique across loaded plugins */
    hopper_handler_fn handle; /* required */
    void *ctx;                /* passed to handle as type_ctx */
    hopper_isolation_t isolation;
    long fork_cpu_seconds;  /* FORK: RLIMIT_CPU of the child, 0 = none */
    long fork_memory_bytes; /* FORK: RLIMIT_AS of the child, 0 = none */
    void *spare[8];         /* reserved: zero */
} hopper_job_type_t;

/* ---- The host's function table ----
 * Strings the host returns are valid until the handler returns (or, for config,
 * until shutdown). All functions may be called from any handler thread. */
typedef struct hopper_host_api {
    unsigned abi_version; /* the host's HOPPER_ABI_VERSION */
    size_t size;          /* sizeof(hopper_host_api_t) in the host: grows at the end */

    /* -- During hopper_plugin_init -- */
    /* Names the plugin; must come first. Returns 0, or -1 (ABI major mismatch). */
    int (*register_plugin)(hopper_plugin_t *p, unsigned abi_version, const char *name,
                           const char *version);
    /* Returns 0, or -1 if the name is taken or the type is malformed. The host copies
     * the struct and the name; `ctx` is the plugin's and must live until shutdown. */
    int (*register_type)(hopper_plugin_t *p, const hopper_job_type_t *type);
    /* fn(arg) runs once when the worker process stops. (The supervisor also loads
     * each plugin once at start to check it: init and shutdown run there too.) */
    void (*on_shutdown)(hopper_plugin_t *p, void (*fn)(void *arg), void *arg);
    /* A key of this plugin's config section (the worker's "plugin_config":
     * {"<plugin name>": {...}}): a JSON string's text without quotes, any other value
     * as compact JSON ("25", "true", "[1,2]"); NULL if absent. */
    const char *(*config)(hopper_plugin_t *p, const char *key);

    /* -- About the job -- */
    const char *(*job_id)(const hopper_job_t *job);
    const char *(*job_queue)(const hopper_job_t *job);
    const char *(*job_type)(const hopper_job_t *job);
    int (*job_attempt)(const hopper_job_t *job); /* 1 on the first run */
    int (*job_max_attempts)(const hopper_job_t *job);
    const char *(*job_payload)(const hopper_job_t *job, size_t *len); /* JSON text */
    int64_t (*job_deadline_ms)(const hopper_job_t *job);              /* Unix ms; stop by then */
    /* Nonzero once the job should stop: canceled, timed out, lost, or shutting down. */
    int (*job_canceled)(const hopper_job_t *job);

    /* -- Payload accessors: top-level members of a JSON object payload -- */
    const char *(*payload_string)(hopper_job_t *job, const char *key);      /* NULL: absent */
    int (*payload_int)(hopper_job_t *job, const char *key, long long *out); /* 0 or -1 */
    int (*payload_double)(hopper_job_t *job, const char *key, double *out);
    int (*payload_bool)(hopper_job_t *job, const char *key, int *out);

    /* -- Reporting -- */
    void (*progress)(hopper_job_t *job, int percent, const char *message);
    void (*log)(hopper_job_t *job, hopper_log_level_t level, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;
    /* The JSON result of a successful job (len 0: strlen); -1 if it is not JSON or
     * too large (the worker's payload limit). */
    int (*set_result)(hopper_job_t *job, const char *json, size_t len, hopper_free_fn free_fn);
    /* The failure message; returns the status that goes with `kind`. */
    hopper_status_t (*set_failure)(hopper_job_t *job, hopper_fail_kind_t kind, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;

    /* -- Blobs (ABI 1.1; check with HOPPER_HAS(blob_open)) --
     * Files in the blob store the API and the workers share (the worker's
     * --blob-dir), named by the SHA-256 of their bytes (64 lowercase hex digits).
     * Strings returned are valid until the handler returns. */
    /* Opens blob `id` for reading: a file descriptor the plugin closes, or -1 when
     * there is no such blob or the id is malformed. size and content_type may be NULL. */
    int (*blob_open)(hopper_job_t *job, const char *id, long long *size, const char **content_type);
    /* The blob's file path, for libraries that want a name; NULL as blob_open's -1. */
    const char *(*blob_path)(hopper_job_t *job, const char *id);
    /* A new blob: write it, then commit (or abort). NULL if the store cannot. */
    hopper_blob_writer_t *(*blob_create)(hopper_job_t *job, const char *content_type);
    /* 0, or -1 (past the worker's blob size limit, or a disk error: then abort). */
    int (*blob_write)(hopper_blob_writer_t *w, const void *data, size_t len);
    /* Makes it visible under its id (written to id, 65 bytes); 0 or -1. Frees w. */
    int (*blob_commit)(hopper_blob_writer_t *w, char id[65], long long *size);
    void (*blob_abort)(hopper_blob_writer_t *w);
} hopper_host_api_t;

/* The one symbol a plugin exports. Returns 0, or nonzero with *errmsg set to a
 * malloc'd message the host frees. */
typedef int (*hopper_plugin_init_fn)(const hopper_host_api_t *api, hopper_plugin_t *plugin,
                                     char **errmsg);
#define HOPPER_PLUGIN_INIT_SYMBOL "hopper_plugin_init"

#if defined(__GNUC__)
#define HOPPER_EXPORT __attribute__((visibility("default")))
#else
#define HOPPER_EXPORT
#endif

/* ---- Convenience for plugin code ----
 * HOPPER_USE(api) keeps the table in a static so the wrappers below read well. The
 * static is per source file: a plugin of several .c files calls HOPPER_USE in each
 * (with the api it saved), or defines HOPPER_NO_WRAPPERS and calls api-> itself. */
#ifndef HOPPER_NO_WRAPPERS
#if defined(__GNUC__)
__attribute__((unused))
#endif
static const hopper_host_api_t *hopper__api;
#define HOPPER_USE(api) (hopper__api = (api))
#define HOPPER_HAS(fn)                                                                             \
    (hopper__api->size >= offsetof(hopper_host_api_t, fn) + sizeof(hopper__api->fn) &&             \
     hopper__api->fn)
#define HOPPER_PLUGIN_INIT(api, plugin, errmsg)                                                    \
    HOPPER_EXPORT int hopper_plugin_init(const hopper_host_api_t *api, hopper_plugin_t *plugin,    \
                                         char **errmsg)
static inline int hopper_register(hopper_plugin_t *p, const char *name, const char *version)
{
    return hopper__api->register_plugin(p, HOPPER_ABI_VERSION, name, version);
}
static inline int hopper_register_type(hopper_plugin_t *p, const hopper_job_type_t *type)
{
    return hopper__api->register_type(p, type);
}
static inline void hopper_on_shutdown(hopper_plugin_t *p, void (*fn)(void *), void *arg)
{
    hopper__api->on_shutdown(p, fn, arg);
}
static inline const char *hopper_config(hopper_plugin_t *p, const char *key)
{
    return hopper__api->config(p, key);
}
static inline const char *hopper_job_id(const hopper_job_t *job)
{
    return hopper__api->job_id(job);
}
static inline const char *hopper_job_queue(const hopper_job_t *job)
{
    return hopper__api->job_queue(job);
}
static inline const char *hopper_job_type(const hopper_job_t *job)
{
    return hopper__api->job_type(job);
}
static inline int hopper_job_attempt(const hopper_job_t *job)
{
    return hopper__api->job_attempt(job);
}
static inline int hopper_job_max_attempts(const hopper_job_t *job)
{
    return hopper__api->job_max_attempts(job);
}
static inline const char *hopper_job_payload(const hopper_job_t *job, size_t *len)
{
    return hopper__api->job_payload(job, len);
}
static inline int64_t hopper_job_deadline_ms(const hopper_job_t *job)
{
    return hopper__api->job_deadline_ms(job);
}
static inline int hopper_job_canceled(const hopper_job_t *job)
{
    return hopper__api->job_canceled(job);
}
static inline const char *hopper_payload_string(hopper_job_t *job, const char *key)
{
    return hopper__api->payload_string(job, key);
}
static inline int hopper_payload_int(hopper_job_t *job, const char *key, long long *out)
{
    return hopper__api->payload_int(job, key, out);
}
static inline int hopper_payload_double(hopper_job_t *job, const char *key, double *out)
{
    return hopper__api->payload_double(job, key, out);
}
static inline int hopper_payload_bool(hopper_job_t *job, const char *key, int *out)
{
    return hopper__api->payload_bool(job, key, out);
}
static inline void hopper_progress(hopper_job_t *job, int percent, const char *message)
{
    hopper__api->progress(job, percent, message);
}
static inline int hopper_set_result(hopper_job_t *job, const char *json, size_t len,
                                    hopper_free_fn free_fn)
{
    return hopper__api->set_result(job, json, len, free_fn);
}
/* Sets a JSON result (copied; NULL for none) and returns HOPPER_OK; a result that
 * is not JSON, or too large, fails the job for good instead. */
static inline hopper_status_t hopper_succeed(hopper_job_t *job, const char *json)
{
    if (json && hopper__api->set_result(job, json, 0, HOPPER_TRANSIENT) != 0)
        return hopper__api->set_failure(job, HOPPER_FAIL_PERMANENT,
                                        "the handler's result is not JSON or is too large");
    return HOPPER_OK;
}
static inline int hopper_blob_open(hopper_job_t *job, const char *id, long long *size,
                                   const char **content_type)
{
    return hopper__api->blob_open(job, id, size, content_type);
}
static inline const char *hopper_blob_path(hopper_job_t *job, const char *id)
{
    return hopper__api->blob_path(job, id);
}
static inline hopper_blob_writer_t *hopper_blob_create(hopper_job_t *job, const char *content_type)
{
    return hopper__api->blob_create(job, content_type);
}
static inline int hopper_blob_write(hopper_blob_writer_t *w, const void *data, size_t len)
{
    return hopper__api->blob_write(w, data, len);
}
static inline int hopper_blob_commit(hopper_blob_writer_t *w, char id[65], long long *size)
{
    return hopper__api->blob_commit(w, id, size);
}
static inline void hopper_blob_abort(hopper_blob_writer_t *w)
{
    hopper__api->blob_abort(w);
}
#define hopper_log(job, level, ...) hopper__api->log((job), (level), __VA_ARGS__)
/* Sets the failure message; returns HOPPER_RETRY or HOPPER_FAIL to match `kind`. */
#define hopper_fail(job, kind, ...) hopper__api->set_failure((job), (kind), __VA_ARGS__)
#endif

#ifdef __cplusplus
}
#endif

#endif
