/* `hopper token create|list|revoke`: API tokens. A new token's text is printed once,
 * on stdout, and never again: the broker keeps only its hash, and list shows no
 * secret or hash. Each sub-verb is its own entry of a small table, with its own
 * options and --help. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"

const struct option cli_token_options[] = {CLI_COMMON_OPTIONS, {0}};

static const struct option create_options[] = {
    {"scope", required_argument, NULL, 's'},
    {"queues", required_argument, NULL, 'q'},
    {"name", required_argument, NULL, 'n'},
    {"rate", required_argument, NULL, 'r'},
    {"burst", required_argument, NULL, 'b'},
    CLI_COMMON_OPTIONS,
    {0},
};

static int token_create(const cli_verb_t *verb, int argc, char **argv);
static int token_list(const cli_verb_t *verb, int argc, char **argv);
static int token_revoke(const cli_verb_t *verb, int argc, char **argv);

static const cli_verb_t subverbs[] = {
    {"token create", "", "create an API token and print it, the only time it is shown",
     "  --scope S        submit, read or admin (required)\n"
     "  --queues P       comma-separated queue patterns, '*' matching any run of\n"
     "                   characters, e.g. 'email*,pdf' (default: every queue)\n"
     "  --name N         a label for people, up to 64 printable characters\n"
     "  --rate R         requests per second allowed (default 0: unlimited)\n"
     "  --burst B        requests allowed at once (default 0: the rate's own)\n",
     create_options, token_create},
    {"token list", "", "list API tokens (never their secrets)",
     "  --json           one JSON object per line\n", cli_token_options, token_list},
    {"token revoke", "ID", "revoke an API token: it stops working at once", "", cli_token_options,
     token_revoke},
};
#define NSUBVERBS (sizeof(subverbs) / sizeof(subverbs[0]))

int cli_token(const cli_verb_t *verb, int argc, char **argv)
{
    return cli_run_subverb(verb, subverbs, NSUBVERBS, argc, argv, "create, list or revoke");
}

/* ---- Options ---- */

typedef struct token_args_s {
    cli_common_t common;
    token_info_t info;
    bool scope_given;
} token_args_t;

static int parse_rate(const cli_verb_t *verb, const char *text, double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !isfinite(v) || v < 0)
        return cli_usage(verb, "--rate: expected a number of requests per second >= 0, got \"%s\"",
                         text);
    *out = v;
    return 0;
}

/* The sub-verb's own option, or 0 when `opt` is not one. Fields are checked for
 * length here because token_info_t holds them in fixed arrays; the broker checks
 * the rest. */
static int token_option(const cli_verb_t *verb, int opt, const char *arg, token_args_t *a)
{
    long burst;
    int scope;
    switch (opt) {
    case 's':
        scope = token_scope_parse(arg);
        if (scope < 0)
            return cli_usage(verb, "--scope: expected submit, read or admin, got \"%s\"", arg);
        a->info.scope = (token_scope_t)scope;
        a->scope_given = true;
        return 0;
    case 'q':
        if (strlen(arg) > TOKEN_QUEUES_MAX)
            return cli_usage(verb, "--queues: at most %d characters", TOKEN_QUEUES_MAX);
        snprintf(a->info.queues, sizeof(a->info.queues), "%s", arg);
        return 0;
    case 'n':
        if (strlen(arg) > TOKEN_NAME_MAX)
            return cli_usage(verb, "--name: at most %d characters", TOKEN_NAME_MAX);
        snprintf(a->info.name, sizeof(a->info.name), "%s", arg);
        return 0;
    case 'r':
        return parse_rate(verb, arg, &a->info.rate);
    case 'b':
        if (cli_parse_int(verb, "burst", arg, 0, 1000000, &burst))
            return CLI_EXIT_USAGE;
        a->info.burst = (int)burst;
        return 0;
    default:
        return cli_usage(verb, "bad option");
    }
}

/* getopt over a sub-verb's argv (argv[0] is the sub-verb), then min..max positional
 * arguments at argv[optind..]. Returns 0 or an exit code. */
static int parse(const cli_verb_t *verb, int argc, char **argv, token_args_t *a, int min, int max)
{
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "", verb->options, NULL)) != -1) {
        if (opt == '?')
            return cli_usage(verb, "bad option \"%s\" (unknown, or missing its value)",
                             argv[optind - 1]);
        if (cli_common_option(verb, opt, optarg, &a->common) == 0)
            continue;
        int rc = token_option(verb, opt, optarg, a);
        if (rc)
            return rc;
    }
    int n = argc - optind;
    if (n < min || n > max)
        return max == 0 ? cli_usage(verb, "expected no arguments")
                        : cli_usage(verb, "expected %s", verb->args);
    return 0;
}

/* ---- Sub-verbs ---- */

static int token_create(const cli_verb_t *verb, int argc, char **argv)
{
    token_args_t a = {0};
    broker_t *b = NULL;
    int rc = parse(verb, argc, argv, &a, 0, 0);
    if (!rc && !a.scope_given)
        rc = cli_usage(verb, "--scope is required (submit, read or admin)");
    if (!rc)
        rc = cli_open_broker(&a.common, &b);
    if (!rc) {
        char token[TOKEN_MAX];
        int err = broker_token_create(b, &a.info, token);
        char target[96];
        snprintf(target, sizeof(target), "%s (scope %s)", err ? "-" : a.info.id,
                 token_scope_name(a.info.scope));
        cli_audit(b, "hopper token create", target, err);
        if (err) {
            rc = cli_broker_fail(b, err);
        } else {
            printf("%s\n", token);
            fflush(stdout);
            fprintf(stderr,
                    "hopper: token %s created (scope %s, queues %s); it is shown this once "
                    "and cannot be shown again\n",
                    a.info.id, token_scope_name(a.info.scope),
                    a.info.queues[0] ? a.info.queues : "*");
        }
        memset(token, 0, sizeof(token));
    }
    broker_close(b);
    return rc;
}

static void print_token(const token_info_t *t, bool json)
{
    char created[HP_RFC3339_MAX];
    hp_format_rfc3339_ms(t->created_ms, created);
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:f, s:i, s:s}", "id", t->id, "name", t->name,
                              "scope", token_scope_name(t->scope), "queues", t->queues, "rate",
                              t->rate, "burst", t->burst, "created_at", created);
        char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("%s\n", text);
        free(text);
        json_decref(o);
        return;
    }
    printf("%-12s  %-20s  %-6s  %-24s  %8g  %s\n", t->id, t->name[0] ? t->name : "-",
           token_scope_name(t->scope), t->queues[0] ? t->queues : "*", t->rate, created);
}

static int token_list(const cli_verb_t *verb, int argc, char **argv)
{
    token_args_t a = {0};
    broker_t *b = NULL;
    int rc = parse(verb, argc, argv, &a, 0, 0);
    if (!rc)
        rc = cli_open_broker(&a.common, &b);
    if (!rc) {
        token_info_t *tokens = NULL;
        size_t n = 0;
        int err = broker_tokens(b, &tokens, &n);
        if (err) {
            rc = cli_broker_fail(b, err);
        } else {
            if (!a.common.json)
                printf("%-12s  %-20s  %-6s  %-24s  %8s  %s\n", "ID", "NAME", "SCOPE", "QUEUES",
                       "RATE", "CREATED");
            for (size_t i = 0; i < n; i++)
                print_token(&tokens[i], a.common.json);
        }
        hp_free(tokens);
    }
    broker_close(b);
    return rc;
}

static int token_revoke(const cli_verb_t *verb, int argc, char **argv)
{
    token_args_t a = {0};
    broker_t *b = NULL;
    int rc = parse(verb, argc, argv, &a, 1, 1);
    if (!rc)
        rc = cli_open_broker(&a.common, &b);
    if (!rc) {
        int err = broker_token_revoke(b, argv[optind]);
        cli_audit(b, "hopper token revoke", argv[optind], err);
        if (err)
            rc = cli_broker_fail(b, err);
        else
            printf("token %s revoked\n", argv[optind]);
    }
    broker_close(b);
    return rc;
}
