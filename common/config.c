/*
 * The option engine (declared in common/common.h): turns text from a JSON file, the environment
 * or a flag into a config struct's fields through a table of options. It knows
 * nothing of any one program's options; the worker's table lives in worker/config.c
 * and the HTTP server's in its own module. Checks that span several options (say,
 * threads x prefetch) belong to the caller, after every source has been applied.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/common.h"

/* ---- Setting one option ---- */

int hp_config_bad_value(char **errmsg, const char *name, const char *why, const char *value)
{
    if (errmsg)
        *errmsg = hp_sprintf("%s: %s, got \"%.200s\"", name, why, value);
    return HP_EINVAL;
}

const hp_option_t *hp_config_find(const hp_option_table_t *t, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < t->n; i++) {
        const char *want = t->opts[i].name;
        bool same = strlen(want) == len;
        for (size_t k = 0; same && k < len; k++) /* "strict_order" finds "strict-order" */
            same = name[k] == want[k] || (name[k] == '_' && want[k] == '-');
        if (same)
            return &t->opts[i];
    }
    return NULL;
}

/* Parses a whole decimal integer within the option's bounds. */
static int parse_integer(const hp_option_t *o, const char *value, long long *out, char **errmsg)
{
    errno = 0;
    char *end;
    long long v = strtoll(value, &end, 10);
    if (errno || *end || end == value || v < o->min || v > o->max) {
        char why[96];
        snprintf(why, sizeof(why), "expected an integer from %lld to %lld", o->min, o->max);
        return hp_config_bad_value(errmsg, o->name, why, value);
    }
    *out = v;
    return 0;
}

int hp_config_set(const hp_option_table_t *t, void *cfg, const char *name, const char *value,
                  char **errmsg)
{
    const hp_option_t *o = hp_config_find(t, name);
    if (!o) {
        if (errmsg)
            *errmsg = hp_sprintf("unknown option \"%s\"", name);
        return HP_EINVAL;
    }
    void *field = (char *)cfg + o->offset;
    long long v;
    int64_t ms;
    int err;
    switch (o->type) {
    case HP_OPT_STRING:
        hp_free(*(char **)field);
        *(char **)field = hp_strdup(value);
        return 0;
    case HP_OPT_INT:
        /* A table whose bounds do not fit an int would truncate silently. */
        assert(o->min >= INT_MIN && o->max <= INT_MAX);
        err = parse_integer(o, value, &v, errmsg);
        if (err)
            return err;
        *(int *)field = (int)v;
        return 0;
    case HP_OPT_INT64:
        err = parse_integer(o, value, &v, errmsg);
        if (err)
            return err;
        *(int64_t *)field = (int64_t)v;
        return 0;
    case HP_OPT_DURATION:
        if (hp_parse_duration_ms(value, &ms) || ms < o->min || ms > o->max)
            return hp_config_bad_value(
                errmsg, o->name, "expected a duration like 500ms, 10s, 5m, within limits", value);
        *(int64_t *)field = ms;
        return 0;
    case HP_OPT_BOOL:
        if (strcmp(value, "true") && strcmp(value, "false") && strcmp(value, "1") &&
            strcmp(value, "0"))
            return hp_config_bad_value(errmsg, o->name, "expected true or false", value);
        *(bool *)field = value[0] == 't' || value[0] == '1';
        return 0;
    case HP_OPT_CUSTOM:
        assert(o->set); /* a table without a setter is a programming error */
        return o->set(cfg, value, errmsg);
    }
    return HP_EINVAL;
}

/* ---- Help and the command line ---- */

void hp_config_print_help(const hp_option_table_t *t)
{
    for (size_t i = 0; i < t->n; i++) {
        char flag[40];
        snprintf(flag, sizeof(flag), "--%s%s", t->opts[i].name,
                 t->opts[i].type == HP_OPT_BOOL ? "" : " V");
        printf("  %-20s %s\n", flag, t->opts[i].help);
    }
}

struct option *hp_config_getopt(const hp_option_table_t *t, const struct option *extra)
{
    size_t nextra = 0;
    while (extra && extra[nextra].name)
        nextra++;
    struct option *opts = hp_calloc(t->n + nextra + 1, sizeof(*opts)); /* zeroed: terminated */
    for (size_t i = 0; i < t->n; i++)
        /* A bool flag alone means true; --flag=false turns it off. */
        opts[i] = (struct option){
            t->opts[i].name, t->opts[i].type == HP_OPT_BOOL ? optional_argument : required_argument,
            NULL, HP_CONFIG_OPT_BASE + (int)i};
    for (size_t i = 0; i < nextra; i++)
        opts[t->n + i] = extra[i];
    return opts;
}

/* ---- Sources ---- */

static int dump_to_strbuf(const char *buffer, size_t size, void *data)
{
    return hp_strbuf_append(data, buffer, size) ? -1 : 0;
}

/* A JSON value as the text hp_config_set takes, or NULL when it has no such text.
 * The caller frees the result with hp_free. */
static char *json_as_text(json_t *v)
{
    if (json_is_string(v))
        return hp_strdup(json_string_value(v));
    if (json_is_boolean(v))
        return hp_strdup(json_is_true(v) ? "true" : "false");
    if (json_is_integer(v))
        return hp_sprintf("%lld", (long long)json_integer_value(v));
    if (json_is_array(v)) { /* "queues": ["email", "pdf:2"] */
        hp_strbuf_t sb;
        hp_strbuf_init(&sb, 0);
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            if (!json_is_string(item)) {
                hp_strbuf_cleanup(&sb);
                return NULL;
            }
            hp_strbuf_printf(&sb, "%s%s", i ? "," : "", json_string_value(item));
        }
        return hp_strbuf_steal(&sb, NULL);
    }
    if (json_is_object(v)) { /* "plugin_config": {"email": {...}} */
        /* Dumped straight into our buffer, so the text has one owner and one allocator. */
        hp_strbuf_t sb;
        hp_strbuf_init(&sb, 0);
        if (json_dump_callback(v, dump_to_strbuf, &sb, JSON_COMPACT) != 0) {
            hp_strbuf_cleanup(&sb);
            return NULL;
        }
        return hp_strbuf_steal(&sb, NULL);
    }
    return NULL;
}

static bool skipped(const char *const *skip_keys, const char *key)
{
    for (size_t i = 0; skip_keys && skip_keys[i]; i++)
        if (strcmp(skip_keys[i], key) == 0)
            return true;
    return false;
}

int hp_config_load_file(const hp_option_table_t *t, void *cfg, const char *path,
                        const char *const *skip_keys, char **errmsg)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!json_is_object(doc)) {
        if (errmsg)
            *errmsg = doc             ? hp_sprintf("%s: expected a JSON object", path)
                      : jerr.line > 0 ? hp_sprintf("%s: %s (line %d)", path, jerr.text, jerr.line)
                                      : hp_sprintf("%s: %s", path, jerr.text);
        json_decref(doc);
        return HP_EINVAL;
    }
    const char *key;
    json_t *v;
    int err = 0;
    json_object_foreach(doc, key, v)
    {
        if (skipped(skip_keys, key))
            continue;
        char *text = json_as_text(v);
        if (!text) {
            if (errmsg)
                *errmsg = hp_sprintf("%s: \"%s\" has a value of the wrong type", path, key);
            err = HP_EINVAL;
            break;
        }
        char *why = NULL;
        err = hp_config_set(t, cfg, key, text, &why);
        if (err && errmsg)
            *errmsg = hp_sprintf("%s: %s", path, why ? why : hp_strerror(err));
        hp_free(why);
        hp_free(text);
        if (err)
            break;
    }
    json_decref(doc);
    return err;
}

/* The variable that sets option `name`: prefix + NAME, or its rename. hp_free it. */
static char *env_name(const hp_option_table_t *t, const char *name)
{
    char *env = hp_sprintf("%s%s", t->env_prefix ? t->env_prefix : "", name);
    for (char *p = env + strlen(env) - strlen(name); *p; p++)
        *p = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    for (size_t i = 0; t->env_renames && t->env_renames[i]; i += 2) {
        if (strcmp(env, t->env_renames[i]) == 0) {
            hp_free(env);
            return hp_strdup(t->env_renames[i + 1]);
        }
    }
    return env;
}

int hp_config_load_env(const hp_option_table_t *t, void *cfg, char **errmsg)
{
    for (size_t i = 0; i < t->n; i++) {
        char *env = env_name(t, t->opts[i].name);
        const char *value = getenv(env);
        int err = 0;
        if (value && value[0]) {
            char *why = NULL;
            err = hp_config_set(t, cfg, t->opts[i].name, value, &why);
            if (err && errmsg)
                *errmsg = hp_sprintf("%s: %s", env, why ? why : hp_strerror(err));
            hp_free(why);
        }
        hp_free(env);
        if (err)
            return err;
    }
    return 0;
}
