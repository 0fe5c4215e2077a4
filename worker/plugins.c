/*
 * Loading handler plugins (after Redis's moduleLoad and SQLite's loadext.c): dlopen
 * with RTLD_NOW|RTLD_LOCAL, find the one entry point, hand it the host table, and
 * collect what it registers. Every refusal says which file and which step failed.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "worker/internal.h"

typedef struct shutdown_hook_s {
    void (*fn)(void *);
    void *arg;
} shutdown_hook_t;

/*
 * One loaded plugin. Created by load_one, owned by the worker_plugins_t set, freed
 * by worker__plugins_unload. config_keys/values are this plugin's section of the
 * worker's plugin_config, as text, fixed after init (so reading needs no lock).
 */
struct hopper_plugin {
    char *path;
    void *handle;
    char *name;
    char *version;
    worker_plugins_t *set;
    json_t *all_config; /* borrowed during init: the whole plugin_config object */
    char **config_keys;
    char **config_values;
    size_t nconfig;
    shutdown_hook_t *hooks;
    size_t nhooks;
    char error[256]; /* why a registration was refused */
};

/* ---- Host functions used during init ---- */

static void take_config(struct hopper_plugin *p)
{
    json_t *section = json_object_get(p->all_config, p->name);
    if (!json_is_object(section))
        return;
    size_t n = json_object_size(section), i = 0;
    p->config_keys = hp_calloc(n ? n : 1, sizeof(char *));
    p->config_values = hp_calloc(n ? n : 1, sizeof(char *));
    const char *key;
    json_t *v;
    json_object_foreach(section, key, v)
    {
        p->config_keys[i] = hp_strdup(key);
        if (json_is_string(v)) {
            p->config_values[i] = hp_strdup(json_string_value(v));
        } else {
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            p->config_values[i] = hp_strdup(text ? text : "null");
            free(text);
        }
        i++;
    }
    p->nconfig = i;
}

int worker__register_plugin(hopper_plugin_t *p, unsigned abi, const char *name, const char *version)
{
    if ((abi >> 16) != HOPPER_ABI_VERSION_MAJOR) {
        snprintf(p->error, sizeof(p->error),
                 "built for plugin ABI %u.%u; this worker speaks ABI %d.%d (%s %s)", abi >> 16,
                 abi & 0xffff, HOPPER_ABI_VERSION_MAJOR, HOPPER_ABI_VERSION_MINOR,
                 name ? name : "?", version ? version : "?");
        return -1;
    }
    if (!name || !name[0] || p->name) {
        snprintf(p->error, sizeof(p->error), "hopper_register: %s",
                 p->name ? "called twice" : "needs a plugin name");
        return -1;
    }
    for (size_t i = 0; i < p->set->nplugins; i++) {
        if (p->set->plugins[i] != p && p->set->plugins[i]->name &&
            strcmp(p->set->plugins[i]->name, name) == 0) {
            snprintf(p->error, sizeof(p->error), "a plugin named \"%s\" is already loaded (%s)",
                     name, p->set->plugins[i]->path);
            return -1;
        }
    }
    p->name = hp_strdup(name);
    p->version = hp_strdup(version ? version : "");
    take_config(p);
    return 0;
}

static bool type_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    for (size_t i = 0; i < n; i++)
        if (name[i] < 0x21 || name[i] > 0x7e)
            return false;
    return n > 0 && n <= JOB_TYPE_NAME_MAX;
}

int worker__register_type(hopper_plugin_t *p, const hopper_job_type_t *type)
{
    const char *why = NULL;
    if (!p->name)
        why = "hopper_register_type before hopper_register";
    else if (!type || type->version < 1)
        why = "job type without a version (set .version = HOPPER_JOB_TYPE_VERSION)";
    else if (!type_name_ok(type->name))
        why = "job type name must be 1-128 printable ASCII characters without spaces";
    else if (!type->handle)
        why = "job type without a handler";
    else if (type->isolation != HOPPER_ISOLATION_THREAD && type->isolation != HOPPER_ISOLATION_FORK)
        why = "job type with an unknown isolation";
    if (why) {
        snprintf(p->error, sizeof(p->error), "%s", why);
        return -1;
    }
    const worker_type_t *taken = worker__plugins_find(p->set, type->name);
    if (taken) {
        snprintf(p->error, sizeof(p->error), "job type \"%s\" is already registered by %s",
                 type->name, taken->plugin->name);
        return -1;
    }
    worker_plugins_t *set = p->set;
    set->types = hp_realloc(set->types, (set->ntypes + 1) * sizeof(*set->types));
    worker_type_t *t = &set->types[set->ntypes++];
    memset(t, 0, sizeof(*t));
    /* Version 1 is every field we know; later versions only add fields after them. */
    memcpy(&t->type, type, sizeof(t->type));
    t->name = hp_strdup(type->name);
    t->type.name = t->name;
    t->plugin = p;
    return 0;
}

void worker__on_shutdown(hopper_plugin_t *p, void (*fn)(void *), void *arg)
{
    if (!fn)
        return;
    p->hooks = hp_realloc(p->hooks, (p->nhooks + 1) * sizeof(*p->hooks));
    p->hooks[p->nhooks++] = (shutdown_hook_t){fn, arg};
}

const char *worker__plugin_config(hopper_plugin_t *p, const char *key)
{
    for (size_t i = 0; key && i < p->nconfig; i++) {
        if (strcmp(p->config_keys[i], key) == 0)
            return p->config_values[i];
    }
    return NULL;
}

/* ---- Loading ---- */

static void free_plugin(struct hopper_plugin *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nconfig; i++) {
        hp_free(p->config_keys[i]);
        hp_free(p->config_values[i]);
    }
    hp_free(p->config_keys);
    hp_free(p->config_values);
    hp_free(p->hooks);
    hp_free(p->name);
    hp_free(p->version);
    hp_free(p->path);
    hp_free(p);
}

/* Drops the types a failed plugin registered before failing. */
static void forget_types(worker_plugins_t *set, struct hopper_plugin *p)
{
    size_t kept = 0;
    for (size_t i = 0; i < set->ntypes; i++) {
        if (set->types[i].plugin == p)
            hp_free(set->types[i].name);
        else
            set->types[kept++] = set->types[i];
    }
    set->ntypes = kept;
}

static int load_one(worker_plugins_t *set, const char *path, json_t *config, char **errmsg)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) {
        *errmsg = hp_sprintf("plugin %s: cannot open: no such file", path);
        return HP_EINVAL;
    }
    struct hopper_plugin *p = hp_calloc(1, sizeof(*p));
    p->path = hp_strdup(real);
    p->set = set;
    p->all_config = config;
    dlerror();
    p->handle = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!p->handle) {
        *errmsg = hp_sprintf("plugin %s: cannot open: %s", path, dlerror());
        free_plugin(p);
        return HP_EINVAL;
    }
    hopper_plugin_init_fn init;
    *(void **)&init = dlsym(p->handle, HOPPER_PLUGIN_INIT_SYMBOL);
    if (!init) {
        *errmsg = hp_sprintf("plugin %s: no entry point %s: is it a Hopper plugin?", path,
                             HOPPER_PLUGIN_INIT_SYMBOL);
        dlclose(p->handle);
        free_plugin(p);
        return HP_EINVAL;
    }
    set->plugins = hp_realloc(set->plugins, (set->nplugins + 1) * sizeof(*set->plugins));
    set->plugins[set->nplugins++] = p;
    char *init_msg = NULL;
    int rc = init(worker__host_api(), p, &init_msg);
    const char *step = rc ? "init failed" : !p->name ? "init did not call hopper_register" : NULL;
    if (step) {
        const char *why = p->error[0] ? p->error : init_msg ? init_msg : "no reason given";
        *errmsg = hp_sprintf("plugin %s: %s: %s", path, step, why);
        free(init_msg); /* the plugin allocated it with malloc */
        forget_types(set, p);
        set->nplugins--;
        dlclose(p->handle);
        free_plugin(p);
        return HP_EINVAL;
    }
    free(init_msg);
    p->all_config = NULL;
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *.so in a directory, in name order. */
static int load_dir(worker_plugins_t *set, const char *dir, json_t *config, char **errmsg)
{
    DIR *d = opendir(dir);
    if (!d) {
        *errmsg = hp_sprintf("plugin directory %s: cannot open", dir);
        return HP_EINVAL;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 3 && strcmp(e->d_name + len - 3, ".so") == 0) {
            names = hp_realloc(names, (n + 1) * sizeof(char *));
            names[n++] = hp_sprintf("%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof(char *), compare_names);
    int err = n ? 0 : HP_EINVAL;
    if (!n)
        *errmsg = hp_sprintf("plugin directory %s: no .so files in it", dir);
    for (size_t i = 0; i < n && !err; i++)
        err = load_one(set, names[i], config, errmsg);
    broker_queues_free(names, n);
    return err;
}

int worker__plugins_load(worker_plugins_t *set, char *const *paths, size_t npaths,
                         const char *plugin_config, char **errmsg)
{
    memset(set, 0, sizeof(*set));
    json_t *config = plugin_config ? json_loads(plugin_config, 0, NULL) : NULL;
    int err = 0;
    for (size_t i = 0; i < npaths && !err; i++) {
        struct stat st;
        if (stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode))
            err = load_dir(set, paths[i], config, errmsg);
        else
            err = load_one(set, paths[i], config, errmsg);
    }
    json_decref(config);
    if (err)
        worker__plugins_unload(set);
    return err;
}

void worker__plugins_unload(worker_plugins_t *set)
{
    for (size_t i = set->nplugins; i-- > 0;) {
        struct hopper_plugin *p = set->plugins[i];
        for (size_t k = 0; k < p->nhooks; k++)
            p->hooks[k].fn(p->hooks[k].arg);
    }
    for (size_t i = 0; i < set->ntypes; i++)
        hp_free(set->types[i].name);
    hp_free(set->types);
    for (size_t i = set->nplugins; i-- > 0;) {
        dlclose(set->plugins[i]->handle);
        free_plugin(set->plugins[i]);
    }
    hp_free(set->plugins);
    memset(set, 0, sizeof(*set));
}

const worker_type_t *worker__plugins_find(const worker_plugins_t *set, const char *type)
{
    for (size_t i = 0; i < set->ntypes; i++) {
        if (strcmp(set->types[i].name, type) == 0)
            return &set->types[i];
    }
    return NULL;
}

char *worker__plugins_describe(const worker_plugins_t *set)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < set->nplugins; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s}", "name", set->plugins[i]->name, "version",
                                             set->plugins[i]->version));
    char *text = json_dumps(arr, JSON_COMPACT);
    char *copy = hp_strdup(text);
    free(text);
    json_decref(arr);
    return copy;
}

int worker__plugins_apply_config(worker_plugins_t *set, const worker_config_t *cfg, char **errmsg)
{
    if (!cfg->fork_types)
        return 0;
    char *copy = hp_strdup(cfg->fork_types), *save = NULL;
    int err = 0;
    for (char *name = strtok_r(copy, ", ", &save); name && !err;
         name = strtok_r(NULL, ", ", &save)) {
        worker_type_t *t = (worker_type_t *)worker__plugins_find(set, name);
        if (!t) {
            *errmsg = hp_sprintf("fork-types: no loaded plugin registers the type \"%s\"", name);
            err = HP_EINVAL;
            break;
        }
        t->type.isolation = HOPPER_ISOLATION_FORK;
        if (!t->type.fork_cpu_seconds && cfg->fork_cpu_ms)
            t->type.fork_cpu_seconds = (long)((cfg->fork_cpu_ms + 999) / 1000);
        if (!t->type.fork_memory_bytes && cfg->fork_memory_mb)
            t->type.fork_memory_bytes = (long)cfg->fork_memory_mb << 20;
    }
    hp_free(copy);
    return err;
}
