/*
 * common/config.h -- a table-driven option engine: one table of options, applied the
 * same way from a JSON file, <PREFIX>NAME environment variables and command-line
 * flags (nginx's ngx_command_t, Redis's static_configs[]). The worker and the HTTP
 * server each keep their own table and config struct; this engine owns only the
 * parsing, the error messages and the getopt table, never a config struct's memory
 * beyond the fields it sets.
 *
 * This is common/'s second door, kept apart from common/common.h so that only the
 * modules that read options pull in <getopt.h>.
 */
#ifndef HP_COMMON_CONFIG_H
#define HP_COMMON_CONFIG_H

#include <getopt.h>
#include <stddef.h>

#include "common/common.h"

typedef enum {
    HP_OPT_STRING,   /* char * owned by the config struct (hp_strdup), replaced on each set */
    HP_OPT_INT,      /* int, within [min, max] (which must fit an int) */
    HP_OPT_INT64,    /* int64_t, within [min, max] */
    HP_OPT_DURATION, /* int64_t ms, from "500ms", "10s", "5m"..., within [min, max] ms */
    HP_OPT_BOOL,     /* bool, from true/false/1/0; a flag without a value means true */
    HP_OPT_CUSTOM,   /* the option's own `set` parses the text */
} hp_opt_type_t;

/* One option. Tables are static const arrays, so every field is fixed at build time. */
typedef struct hp_option_s {
    const char *name; /* flag --name; file key name or name_with_underscores; env <prefix>NAME */
    hp_opt_type_t type;
    /* Of the field in the config struct: char * (owned, hp_strdup), int, int64_t, int64_t ms,
     * bool; unused by HP_OPT_CUSTOM. */
    size_t offset;
    long long min, max; /* INT, INT64, DURATION bounds */
    const char *help;
    /* HP_OPT_CUSTOM: parses value into cfg; on error returns HP_EINVAL with *errmsg
     * (hp_malloc'd; errmsg may be NULL). NULL for every other type. */
    int (*set)(void *cfg, const char *value, char **errmsg);
} hp_option_t;

typedef struct hp_option_table_s {
    const hp_option_t *opts;
    size_t n;
    const char *env_prefix;         /* "HOPPER_" */
    const char *const *env_renames; /* NULL or pairs {"HOPPER_REDIS","HOPPER_REDIS_URL", NULL} */
} hp_option_table_t;

/* getopt_long's `val` of table entry i is HP_CONFIG_OPT_BASE + i, above any short
 * option character a caller's `extra` entries may use. */
#define HP_CONFIG_OPT_BASE 0x1000

/* Applies one option by name ("threads", "strict_order" or "strict-order") from text.
 * Returns 0, or HP_EINVAL with a message naming the option and the value in *errmsg
 * (when errmsg is not NULL; the caller frees it with hp_free). On failure the field
 * keeps its previous value. */
int hp_config_set(const hp_option_table_t *t, void *cfg, const char *name, const char *value,
                  char **errmsg);

/* Applies a file holding one JSON object, key by key, in the file's order.
 * JSON object file: strings, numbers, booleans, arrays of strings (joined with ","), and objects
 * (passed as compact JSON text) become the text hp_config_set takes. Keys listed in skip_keys
 * (NULL-terminated, may be NULL) are left for the caller.
 * Numbers are integers: a fraction, null, or an array holding a non-string is "of the wrong
 * type". Stops at the first failure: HP_EINVAL with "<path>: ..." in *errmsg (hp_free it);
 * options applied before it stay applied. */
int hp_config_load_file(const hp_option_table_t *t, void *cfg, const char *path,
                        const char *const *skip_keys, char **errmsg);

/* Applies every option whose variable is set and not empty: env_prefix plus the name in
 * capitals with '-' as '_' (HOPPER_STRICT_ORDER), or its rename. Stops at the first
 * failure: HP_EINVAL with "<VARIABLE>: ..." in *errmsg (hp_free it). */
int hp_config_load_env(const hp_option_table_t *t, void *cfg, char **errmsg);

/* Prints "  --name V             help" for every option to stdout, for --help. */
void hp_config_print_help(const hp_option_table_t *t);

/* The option called `name` ('_' standing for '-'), or NULL. */
const hp_option_t *hp_config_find(const hp_option_table_t *t, const char *name);

/* getopt_long options: one per table entry (required_argument unless BOOL; val = 0x1000 + index)
 * followed by `extra` (terminated by a zero entry); hp_free the result. */
struct option *hp_config_getopt(const hp_option_table_t *t, const struct option *extra);

/* For HP_OPT_CUSTOM setters, so their messages read like the engine's: sets *errmsg (if
 * errmsg is not NULL) to "<name>: <why>, got \"<value>\"" and returns HP_EINVAL. */
int hp_config_bad_value(char **errmsg, const char *name, const char *why, const char *value);

#endif
