/*
 * Unit tests for common/config.c, the option engine, on a table of its own (not the
 * worker's), so the engine's behaviour is pinned independently of any one program:
 * every type and its bounds message, '_' for '-', the JSON file, the environment
 * with its prefix and renames, and the getopt table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"

typedef struct demo_s {
    char *name;
    int count;
    int64_t big;
    int64_t wait_ms;
    bool loud;
    char *custom; /* "<" value ">", so the test sees the setter ran */
} demo_t;

static int set_custom(void *cfg, const char *value, char **errmsg)
{
    demo_t *d = cfg;
    if (strcmp(value, "bad") == 0)
        return hp_config_bad_value(errmsg, "custom-thing", "not that", value);
    hp_free(d->custom);
    d->custom = hp_sprintf("<%s>", value);
    return 0;
}

#define OFF(f) offsetof(demo_t, f)
static const hp_option_t demo_opts[] = {
    {"name", HP_OPT_STRING, OFF(name), 0, 0, "a name", NULL},
    {"count", HP_OPT_INT, OFF(count), 1, 10, "a count", NULL},
    {"big-number", HP_OPT_INT64, OFF(big), 0, 5000000000LL, "a big one", NULL},
    {"wait", HP_OPT_DURATION, OFF(wait_ms), 100, 60000, "a wait", NULL},
    {"loud", HP_OPT_BOOL, OFF(loud), 0, 0, "be loud", NULL},
    {"custom-thing", HP_OPT_CUSTOM, 0, 0, 0, "custom", set_custom},
};
static const char *const renames[] = {"TESTCFG_NAME", "TESTCFG_THE_NAME", NULL};
static const hp_option_table_t demo = {demo_opts, sizeof(demo_opts) / sizeof(demo_opts[0]),
                                       "TESTCFG_", renames};

static void demo_cleanup(demo_t *d)
{
    hp_free(d->name);
    hp_free(d->custom);
    memset(d, 0, sizeof(*d));
}

/* Sets name=value and expects exactly `want` as the error message. */
static void expect_error(demo_t *d, const char *name, const char *value, const char *want)
{
    char *msg = NULL;
    assert_int_equal(hp_config_set(&demo, d, name, value, &msg), HP_EINVAL);
    assert_non_null(msg);
    assert_string_equal(msg, want);
    hp_free(msg);
}

static void each_type(void **state)
{
    (void)state;
    demo_t d = {0};
    char *msg = NULL;
    assert_int_equal(hp_config_set(&demo, &d, "name", "alpha", &msg), 0);
    assert_int_equal(hp_config_set(&demo, &d, "name", "beta", &msg), 0); /* replaces, no leak */
    assert_string_equal(d.name, "beta");
    assert_int_equal(hp_config_set(&demo, &d, "count", "10", &msg), 0);
    assert_int_equal(d.count, 10);
    assert_int_equal(hp_config_set(&demo, &d, "big-number", "5000000000", &msg), 0);
    assert_true(d.big == 5000000000LL);
    assert_int_equal(hp_config_set(&demo, &d, "wait", "2s", &msg), 0);
    assert_true(d.wait_ms == 2000);
    assert_int_equal(hp_config_set(&demo, &d, "loud", "true", &msg), 0);
    assert_true(d.loud);
    assert_int_equal(hp_config_set(&demo, &d, "loud", "0", &msg), 0);
    assert_false(d.loud);
    assert_int_equal(hp_config_set(&demo, &d, "loud", "1", &msg), 0);
    assert_true(d.loud);
    assert_int_equal(hp_config_set(&demo, &d, "custom-thing", "x", &msg), 0);
    assert_string_equal(d.custom, "<x>");
    assert_null(msg);
    demo_cleanup(&d);
}

static void bounds_and_messages(void **state)
{
    (void)state;
    demo_t d = {.count = 5};
    expect_error(&d, "count", "0", "count: expected an integer from 1 to 10, got \"0\"");
    expect_error(&d, "count", "11", "count: expected an integer from 1 to 10, got \"11\"");
    expect_error(&d, "count", "x", "count: expected an integer from 1 to 10, got \"x\"");
    expect_error(&d, "count", "", "count: expected an integer from 1 to 10, got \"\"");
    expect_error(&d, "count", "3x", "count: expected an integer from 1 to 10, got \"3x\"");
    expect_error(&d, "count", "99999999999999999999",
                 "count: expected an integer from 1 to 10, got \"99999999999999999999\"");
    assert_int_equal(d.count, 5); /* a refused value leaves the field alone */
    expect_error(&d, "big-number", "5000000001",
                 "big-number: expected an integer from 0 to 5000000000, got \"5000000001\"");
    expect_error(&d, "wait", "99ms",
                 "wait: expected a duration like 500ms, 10s, 5m, within limits, got \"99ms\"");
    expect_error(&d, "wait", "2m",
                 "wait: expected a duration like 500ms, 10s, 5m, within limits, got \"2m\"");
    expect_error(&d, "loud", "yes", "loud: expected true or false, got \"yes\"");
    expect_error(&d, "custom-thing", "bad", "custom-thing: not that, got \"bad\"");
    expect_error(&d, "nonsense", "1", "unknown option \"nonsense\"");
    /* A NULL errmsg is allowed: the code alone comes back. */
    assert_int_equal(hp_config_set(&demo, &d, "count", "0", NULL), HP_EINVAL);
    assert_int_equal(hp_config_set(&demo, &d, "nonsense", "1", NULL), HP_EINVAL);
    demo_cleanup(&d);
}

static void underscores_and_hyphens(void **state)
{
    (void)state;
    assert_ptr_equal(hp_config_find(&demo, "big_number"), &demo_opts[2]);
    assert_ptr_equal(hp_config_find(&demo, "big-number"), &demo_opts[2]);
    assert_ptr_equal(hp_config_find(&demo, "custom_thing"), &demo_opts[5]);
    assert_null(hp_config_find(&demo, "big"));         /* no prefixes */
    assert_null(hp_config_find(&demo, "big-numbers")); /* nor longer names */
    assert_null(hp_config_find(&demo, "big-Number"));  /* case matters */
    assert_null(hp_config_find(&demo, "count-"));
    assert_null(hp_config_find(&demo, "nam_"));
    demo_t d = {0};
    assert_int_equal(hp_config_set(&demo, &d, "big_number", "7", NULL), 0);
    assert_true(d.big == 7);
    demo_cleanup(&d);
}

/* Writes `text` to a fresh temporary file; the caller unlinks `path`. */
static void write_file(char *path, const char *text)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Loads `text` as a config file and returns the result, with the message (minus the
 * "<path>: " in front) in *msg, or NULL. */
static int load_text(demo_t *d, const char *text, const char *const *skip, char **msg)
{
    char path[] = "/tmp/hopper-test-config-XXXXXX";
    write_file(path, text);
    char *full = NULL;
    int err = hp_config_load_file(&demo, d, path, skip, &full);
    unlink(path);
    *msg = NULL;
    if (full) {
        size_t n = strlen(path);
        assert_memory_equal(full, path, n); /* every message names the file */
        assert_memory_equal(full + n, ": ", 2);
        *msg = hp_strdup(full + n + 2);
        hp_free(full);
    }
    return err;
}

static void file_loading(void **state)
{
    (void)state;
    demo_t d = {0};
    char *msg;
    assert_int_equal(load_text(&d,
                               "{\"name\": \"n\", \"count\": 3, \"big_number\": 4000000000,\n"
                               " \"wait\": \"1s\", \"loud\": true,\n"
                               " \"custom-thing\": [\"a\", \"b:2\", \"c\"]}",
                               NULL, &msg),
                     0);
    assert_null(msg);
    assert_string_equal(d.name, "n");
    assert_int_equal(d.count, 3);
    assert_true(d.big == 4000000000LL);
    assert_true(d.wait_ms == 1000);
    assert_true(d.loud);
    assert_string_equal(d.custom, "<a,b:2,c>");
    demo_cleanup(&d);

    /* Integers too big for the bounds come back with the option's own message. */
    assert_int_equal(load_text(&d, "{\"big-number\": 6000000000}", NULL, &msg), HP_EINVAL);
    assert_string_equal(msg, "big-number: expected an integer from 0 to 5000000000, got "
                             "\"6000000000\"");
    hp_free(msg);

    /* Arrays of strings join with ","; objects pass as compact JSON; booleans as text. */
    assert_int_equal(load_text(&d,
                               "{\"custom_thing\": [\"a\", \"b:2\"], \"loud\": false,"
                               " \"name\": {\"x\": {\"y\": [1, 2]}, \"z\": \"w\"}}",
                               NULL, &msg),
                     0);
    assert_string_equal(d.custom, "<a,b:2>");
    assert_false(d.loud);
    assert_string_equal(d.name, "{\"x\":{\"y\":[1,2]},\"z\":\"w\"}");
    demo_cleanup(&d);
    assert_int_equal(load_text(&d, "{\"custom-thing\": []}", NULL, &msg), 0);
    assert_string_equal(d.custom, "<>");
    demo_cleanup(&d);

    /* Wrong types: null, fractions, arrays holding anything but strings. */
    const char *wrong[] = {"{\"name\": null}", "{\"count\": 2.5}", "{\"custom-thing\": [\"a\", 1]}",
                           "{\"custom-thing\": [[\"a\"]]}"};
    const char *key[] = {"name", "count", "custom-thing", "custom-thing"};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        assert_int_equal(load_text(&d, wrong[i], NULL, &msg), HP_EINVAL);
        char want[96];
        snprintf(want, sizeof(want), "\"%s\" has a value of the wrong type", key[i]);
        assert_string_equal(msg, want);
        hp_free(msg);
    }
    demo_cleanup(&d);

    /* The first bad value stops the load and is named; unknown keys are refused. */
    assert_int_equal(load_text(&d, "{\"count\": 0}", NULL, &msg), HP_EINVAL);
    assert_string_equal(msg, "count: expected an integer from 1 to 10, got \"0\"");
    hp_free(msg);
    assert_int_equal(load_text(&d, "{\"nonsense\": 1}", NULL, &msg), HP_EINVAL);
    assert_string_equal(msg, "unknown option \"nonsense\"");
    hp_free(msg);
    assert_int_equal(load_text(&d, "{\"loud\": \"maybe\"}", NULL, &msg), HP_EINVAL);
    assert_string_equal(msg, "loud: expected true or false, got \"maybe\"");
    hp_free(msg);

    /* skip_keys: left for the caller, whatever their type. */
    const char *const skip[] = {"routes", "nonsense", NULL};
    assert_int_equal(
        load_text(&d, "{\"routes\": {\"a\": 1}, \"count\": 4, \"nonsense\": null}", skip, &msg), 0);
    assert_null(msg);
    assert_int_equal(d.count, 4);
    demo_cleanup(&d);

    /* Not an object, not JSON, not there. */
    assert_int_equal(load_text(&d, "[1, 2]", NULL, &msg), HP_EINVAL);
    assert_string_equal(msg, "expected a JSON object");
    hp_free(msg);
    assert_int_equal(load_text(&d, "{\"count\": ", NULL, &msg), HP_EINVAL);
    assert_non_null(strstr(msg, "(line 1)"));
    hp_free(msg);
    msg = NULL;
    assert_int_equal(hp_config_load_file(&demo, &d, "/nonexistent/hopper.json", NULL, &msg),
                     HP_EINVAL);
    assert_non_null(strstr(msg, "/nonexistent/hopper.json: "));
    hp_free(msg);
    demo_cleanup(&d);
}

static void environment(void **state)
{
    (void)state;
    demo_t d = {0};
    char *msg = NULL;
    setenv("TESTCFG_COUNT", "7", 1);
    setenv("TESTCFG_BIG_NUMBER", "9", 1);
    setenv("TESTCFG_CUSTOM_THING", "e", 1);
    setenv("TESTCFG_LOUD", "", 1);          /* empty: as if unset */
    setenv("TESTCFG_NAME", "ignored", 1);   /* renamed away */
    setenv("TESTCFG_THE_NAME", "named", 1); /* the rename */
    assert_int_equal(hp_config_load_env(&demo, &d, &msg), 0);
    assert_null(msg);
    assert_int_equal(d.count, 7);
    assert_true(d.big == 9);
    assert_string_equal(d.custom, "<e>");
    assert_false(d.loud);
    assert_string_equal(d.name, "named");
    /* A bad value names the variable, not the option. */
    setenv("TESTCFG_WAIT", "soon", 1);
    assert_int_equal(hp_config_load_env(&demo, &d, &msg), HP_EINVAL);
    assert_string_equal(msg, "TESTCFG_WAIT: wait: expected a duration like 500ms, 10s, 5m, "
                             "within limits, got \"soon\"");
    hp_free(msg);
    unsetenv("TESTCFG_WAIT");
    setenv("TESTCFG_CUSTOM_THING", "bad", 1);
    msg = NULL;
    assert_int_equal(hp_config_load_env(&demo, &d, &msg), HP_EINVAL);
    assert_string_equal(msg, "TESTCFG_CUSTOM_THING: custom-thing: not that, got \"bad\"");
    hp_free(msg);
    const char *vars[] = {"TESTCFG_COUNT", "TESTCFG_BIG_NUMBER", "TESTCFG_CUSTOM_THING",
                          "TESTCFG_LOUD",  "TESTCFG_NAME",       "TESTCFG_THE_NAME"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    demo_cleanup(&d);
}

static void getopt_table(void **state)
{
    (void)state;
    const struct option extra[] = {
        {"config", required_argument, NULL, 900},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct option *o = hp_config_getopt(&demo, extra);
    size_t n = demo.n;
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(o[i].name, demo_opts[i].name);
        assert_int_equal(o[i].has_arg,
                         demo_opts[i].type == HP_OPT_BOOL ? optional_argument : required_argument);
        assert_null(o[i].flag);
        assert_int_equal(o[i].val, 0x1000 + (int)i);
    }
    assert_string_equal(o[n].name, "config");
    assert_int_equal(o[n].val, 900);
    assert_string_equal(o[n + 1].name, "help");
    assert_int_equal(o[n + 1].has_arg, no_argument);
    assert_null(o[n + 2].name);
    assert_int_equal(o[n + 2].val, 0);
    hp_free(o);

    /* No extras at all; and getopt_long really parses with it. */
    o = hp_config_getopt(&demo, NULL);
    assert_null(o[n].name);
    char a0[] = "prog", a1[] = "--count", a2[] = "3", a3[] = "--loud", a4[] = "--big_number=4";
    char *argv[] = {a0, a1, a2, a3, a4, NULL};
    int argc = 5, opt, seen = 0;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", o, NULL)) != -1) {
        if (opt == HP_CONFIG_OPT_BASE + 1) {
            assert_string_equal(optarg, "3");
            seen |= 1;
        } else if (opt == HP_CONFIG_OPT_BASE + 4) {
            assert_null(optarg);
            seen |= 2;
        } else {
            assert_int_equal(opt, '?'); /* "--big_number": flags are spelled with hyphens */
            seen |= 4;
        }
    }
    assert_int_equal(seen, 7);
    hp_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_type),
        cmocka_unit_test(bounds_and_messages),
        cmocka_unit_test(underscores_and_hyphens),
        cmocka_unit_test(file_loading),
        cmocka_unit_test(environment),
        cmocka_unit_test(getopt_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
