/*
 * hp_json_check against jansson: on hand-picked cases and on random mutations of
 * valid documents, both must agree on what is JSON (jansson is the reference the
 * rest of Hopper reads payloads with).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/common.h"

static bool jansson_accepts(const char *s, size_t len, bool *skip)
{
    json_error_t e;
    json_t *v = json_loadb(s, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
    /* A number too big for a double is syntax we accept and jansson does not. */
    *skip = !v && strstr(e.text, "overflow") != NULL;
    json_decref(v);
    return v != NULL;
}

static void agree(const char *s, size_t len)
{
    char msg[160];
    bool skip;
    bool ref = jansson_accepts(s, len, &skip);
    bool ours = hp_json_check(s, len, msg, sizeof(msg)) == 0;
    if (!skip && ref != ours)
        fail_msg("disagree on [%.*s] (%zu bytes): jansson %s, hp_json_check %s (%s)", (int)len, s,
                 len, ref ? "accepts" : "refuses", ours ? "accepts" : "refuses", ours ? "" : msg);
}

static void hand_picked_cases(void **state)
{
    (void)state;
    const char *cases[] = {
        "null",
        "true",
        "false",
        "0",
        "-0",
        "1.5",
        "-1.5e10",
        "1E+2",
        "1e-2",
        "123456789012345678901234567890",
        "\"\"",
        "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
        "\"\\u00e9\\uD83D\\uDE00\"",
        "\"Zürich Ελλάδα Москва 😀\"",
        "[]",
        "{}",
        " [ 1 , 2 ] ",
        "{\"a\":{\"b\":[1,{\"c\":null}]}}",
        "\t\r\n{}\n",
        /* refused */
        "",
        " ",
        "nul",
        "True",
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "+1",
        "0x10",
        "NaN",
        "Infinity",
        "\"abc",
        "\"a\nb\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u0000\"",
        "\"\\uD800\"",
        "\"\\uDC00x\"",
        "\"\\uD800\\u0041\"",
        "[1,]",
        "[,1]",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{a:1}",
        "{\"a\" 1}",
        "[1 2]",
        "[1]]",
        "{}{}",
        "[",
        "{",
        "]",
        "\"\xff\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\xe2\x82\"",
        "1 2",
        "[1] x",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        agree(cases[i], strlen(cases[i]));
    char msg[160];
    assert_int_equal(hp_json_check("{\"a\":\n  [1,,2]}", 15, msg, sizeof(msg)), HP_EINVAL);
    assert_string_equal(msg, "expected a JSON value at line 2 column 6");
}

static void depth_is_limited(void **state)
{
    (void)state;
    size_t n = HP_JSON_MAX_DEPTH;
    char *deep = hp_malloc(2 * n + 2);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    assert_int_equal(hp_json_check(deep, 2 * n, NULL, 0), 0);
    memset(deep, '[', n + 1);
    memset(deep + n + 1, ']', n + 1);
    char msg[160];
    assert_int_equal(hp_json_check(deep, 2 * n + 2, msg, sizeof(msg)), HP_EINVAL);
    assert_non_null(strstr(msg, "nested too deep"));
    hp_free(deep);
}

/* Random edits of valid documents: whatever comes out, both must agree. */
static void random_mutations_agree(void **state)
{
    (void)state;
    const char *seeds[] = {
        "{\"to\":[\"a@b.c\",\"d@e.f\"],\"n\":-12.5e3,\"ok\":true,\"x\":null,\"s\":\"\\u00e9\"}",
        "[1,[2,[3,{\"k\":\"v\\\"w\"}]],\"é😀\",false,0.0]",
        "\"plain string with \\n escapes \\ud83d\\ude00\"",
    };
    const char alphabet[] =
        "{}[]\",:\\/ 0123456789-+.eEtrufalsn\n\t\x01\xc3\xa9\xf0\x9f\xed\xa0\xff";
    srandom(12345);
    char buf[256];
    for (int iter = 0; iter < 200000; iter++) {
        const char *seed = seeds[iter % 3];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        int edits = 1 + (int)(random() % 3);
        for (int e = 0; e < edits && len > 0 && len < sizeof(buf) - 1; e++) {
            size_t at = (size_t)random() % len;
            char ch = alphabet[random() % (sizeof(alphabet) - 1)];
            switch (random() % 3) {
            case 0: /* replace */
                buf[at] = ch;
                break;
            case 1: /* insert */
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = ch;
                len++;
                break;
            default: /* delete */
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            }
        }
        agree(buf, len);
    }
}

static void json_strings_are_escaped(void **state)
{
    (void)state;
    hp_strbuf_t sb;
    hp_strbuf_init(&sb, 0);
    assert_int_equal(hp_strbuf_append_json_string(&sb, "a\"b\\c\n\x01é"), 0);
    assert_string_equal(sb.data, "\"a\\\"b\\\\c\\u000a\\u0001é\"");
    json_t *v = json_loads(sb.data, JSON_DECODE_ANY, NULL);
    assert_string_equal(json_string_value(v), "a\"b\\c\n\x01é");
    json_decref(v);
    hp_strbuf_cleanup(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hand_picked_cases),
        cmocka_unit_test(depth_is_limited),
        cmocka_unit_test(random_mutations_agree),
        cmocka_unit_test(json_strings_are_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
