/* Unit tests for broker/token.c that need no broker: scopes and queue patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "broker/broker.h"

static void scopes_round_trip(void **state)
{
    (void)state;
    const token_scope_t all[] = {TOKEN_SCOPE_SUBMIT, TOKEN_SCOPE_READ, TOKEN_SCOPE_ADMIN};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        assert_int_equal(token_scope_parse(token_scope_name(all[i])), all[i]);
    assert_string_equal(token_scope_name(TOKEN_SCOPE_ADMIN), "admin");
    assert_int_equal(token_scope_parse("Admin"), -1);
    assert_int_equal(token_scope_parse(""), -1);
    assert_int_equal(token_scope_parse(NULL), -1);
    assert_string_equal(token_scope_name((token_scope_t)42), "unknown");
}

static void queue_patterns(void **state)
{
    (void)state;
    static const struct {
        const char *patterns, *queue;
        bool allowed;
    } cases[] = {
        {"", "anything", true},
        {"*", "anything", true},
        {"email", "email", true},
        {"email", "emails", false},
        {"email", "mail", false},
        {"email*", "email", true}, /* a star matches an empty run */
        {"email*", "email.bulk", true},
        {"email*", "e-mail", false},
        {"*mail", "email", true},
        {"*mail", "mailer", false},
        {"e*l", "email", true},
        {"e*l", "emails", false},
        {"a*b*c", "axxbyyc", true},
        {"a*b*c", "axxcyyb", false},
        {"a*b*c", "abcbc", true}, /* needs the backtrack to the last star */
        {"**", "", true},
        {"email*,pdf", "pdf", true},
        {"email*,pdf", "pdf2", false},
        {"email*,pdf", "email.eu", true},
        {"x,y,z", "y", true},
        {"x,y,z", "w", false},
        {"a.b", "a.b", true},
        {"a.b", "axb", false}, /* '.' is literal, not a wildcard */
        {"email", "EMAIL", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = token_queue_allowed(cases[i].patterns, cases[i].queue);
        if (got != cases[i].allowed)
            fail_msg("\"%s\" against \"%s\": got %d, expected %d", cases[i].patterns,
                     cases[i].queue, got, cases[i].allowed);
    }
    assert_true(token_queue_allowed(NULL, "q"));
    assert_false(token_queue_allowed("q", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scopes_round_trip),
        cmocka_unit_test(queue_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
