/*
 * End to end: the real `hopper` binary against a private redis-server, driven the
 * way a user drives it, checking what a user checks: what is printed on stdout,
 * that errors are one line on stderr naming the problem, and the exit status
 * (CLI_EXIT_* in cli/cli.h, stable for scripts).
 *
 * JSON output is checked by looking for "key": value pairs (any spacing), which
 * also lets us check that a payload comes back as the very text it went in as.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/version.h"
#include "tests/support/test_cli.h"
#include "tests/support/test_redis.h"

/* Exit statuses, as documented in `hopper --help` and cli/cli.h. */
enum { EXIT_OK = 0, EXIT_USAGE = 2, EXIT_NOT_FOUND = 3, EXIT_STATE = 4, EXIT_UNAVAILABLE = 6 };

#define ULID_LEN       26
#define MIB            (1024 * 1024) /* the documented payload limit */
#define QUEUE_NAME_MAX 64            /* the documented queue name limit */

static test_redis_t redis;
/* One result buffer is enough: tests run one at a time and keep what they need. */
static cli_result_t res_buf;
static cli_result_t *const R = &res_buf;

/* ---- Running hopper ---- */

/* hopper ARGS... with HOPPER_REDIS_URL pointing at our server. */
#define HOP(...) hop_env(redis.url, (const char *const[]){__VA_ARGS__, NULL})
/* hopper ARGS... with HOPPER_REDIS_URL=url (NULL: unset). */
#define HOP_ENV(url, ...) hop_env((url), (const char *const[]){__VA_ARGS__, NULL})

static cli_result_t *hop_env(const char *url, const char *const *argv)
{
    test_cli_run(R, url, argv);
    return R;
}

static void show(const char *what, const cli_result_t *r)
{
    print_error("%s\n  exit status: %d\n  stdout: %.2000s\n  stderr: %.2000s\n", what, r->status,
                r->out, r->err);
}

/* Fails with the whole result shown when the exit status is not `code`. */
#define assert_exit(r, code)                                                                       \
    do {                                                                                           \
        if ((r)->status != (code)) {                                                               \
            show("unexpected exit status", (r));                                                   \
            fail_msg("exit status %d, expected %d", (r)->status, (code));                          \
        }                                                                                          \
    } while (0)

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0)
            return true;
    return n == 0;
}

/* A user-facing error: exit `code`, nothing on stdout, and exactly one non-empty
 * line on stderr that mentions `word` (case-insensitive). */
static void assert_error_line(const cli_result_t *r, int code, const char *word)
{
    assert_exit(r, code);
    if (r->out[0] || !r->err[0] || strchr(r->err, '\n') || !contains_nocase(r->err, word)) {
        show("expected one line on stderr naming the problem, nothing on stdout", r);
        fail_msg("stderr should be one line mentioning \"%s\"", word);
    }
}

/* ---- Reading output ---- */

/* Whether the JSON text has "key" followed by `:` and exactly `raw` as its value
 * (any whitespace around the colon; the value must end there). */
static bool json_has(const char *text, const char *key, const char *raw)
{
    char quoted[256];
    snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    size_t rawlen = strlen(raw);
    for (const char *p = strstr(text, quoted); p; p = strstr(p + 1, quoted)) {
        const char *v = p + strlen(quoted);
        while (isspace((unsigned char)*v))
            v++;
        if (*v != ':')
            continue;
        v++;
        while (isspace((unsigned char)*v))
            v++;
        if (strncmp(v, raw, rawlen) != 0)
            continue;
        char after = v[rawlen];
        if (after == '\0' || after == ',' || after == '}' || after == ']' ||
            isspace((unsigned char)after))
            return true;
    }
    return false;
}

#define assert_json_has(text, key, raw)                                                            \
    do {                                                                                           \
        if (!json_has((text), (key), (raw))) {                                                     \
            print_error("output:\n%.3000s\n", (text));                                             \
            fail_msg("expected \"%s\": %s in the JSON output", (key), (raw));                      \
        }                                                                                          \
    } while (0)

static bool crockford(char c)
{
    return (c >= '0' && c <= '9') ||
           (c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U');
}

/* "<26-char ULID>-<queue>", nothing more. */
static bool is_job_id(const char *s, const char *queue)
{
    if (strlen(s) != ULID_LEN + 1 + strlen(queue) || s[0] < '0' || s[0] > '7')
        return false;
    for (int i = 0; i < ULID_LEN; i++)
        if (!crockford(s[i]))
            return false;
    return s[ULID_LEN] == '-' && strcmp(s + ULID_LEN + 1, queue) == 0;
}

static size_t count_lines(const char *s)
{
    if (!*s)
        return 0;
    size_t n = 1;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Whether some line of `text` is exactly `line`. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return true;
    }
    return false;
}

/* Whether some line of `text`, after leading blanks, starts with `word` and a blank. */
static bool has_line_starting_with_word(const char *text, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = text; p; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, word, n) == 0 && (p[n] == ' ' || p[n] == '\t'))
            return true;
    }
    return false;
}

/* Copies line i (0-based) of text into out; false when there is none. */
static bool nth_line(const char *text, size_t i, char *out, size_t cap)
{
    const char *p = text;
    for (; i > 0 && p; i--) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    if (!p || !*p)
        return false;
    size_t n = strcspn(p, "\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

/* ---- Doing things ---- */

typedef struct job_id_s {
    char s[ULID_LEN + 2 + 80];
} job_id_t;

static job_id_t job_id_of(const char *text)
{
    job_id_t id;
    size_t n = strlen(text);
    assert_true(n < sizeof(id.s));
    memcpy(id.s, text, n + 1);
    return id;
}

/* hopper enqueue --queue Q --type T [extra...]; asserts success, a well-formed id
 * on stdout and nothing on stderr. */
static job_id_t enqueue_v(const char *queue, const char *type, const char *const *extra)
{
    const char *argv[32] = {"enqueue", "--queue", queue, "--type", type};
    int n = 5;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    test_cli_run(R, redis.url, argv);
    assert_exit(R, EXIT_OK);
    if (!is_job_id(R->out, queue)) {
        show("enqueue should print one job id", R);
        fail_msg("\"%s\" is not <26-char ULID>-%s", R->out, queue);
    }
    if (R->err[0]) {
        show("enqueue should print nothing on stderr", R);
        fail();
    }
    return job_id_of(R->out);
}
#define ENQUEUE(queue, type, ...)                                                                  \
    enqueue_v((queue), (type), (const char *const[]){__VA_ARGS__ NULL})

/* `hopper job ID`, asserting success and JSON-object-looking output. */
static const char *job_json(const char *id)
{
    HOP("job", id);
    assert_exit(R, EXIT_OK);
    size_t n = strlen(R->out);
    if (n < 2 || R->out[0] != '{' || R->out[n - 1] != '}') {
        show("job should print a JSON object", R);
        fail();
    }
    return R->out;
}

static void assert_job_state(const char *id, const char *state)
{
    char quoted[32];
    snprintf(quoted, sizeof(quoted), "\"%s\"", state);
    const char *out = job_json(id);
    assert_json_has(out, "state", quoted);
}

/* The value of one state's column for `queue` in `hopper stats QUEUE --json`. */
static long long stats_count(const char *queue, const char *state)
{
    HOP("stats", queue, "--json");
    if (R->status == EXIT_NOT_FOUND && contains_nocase(R->err, "no queue named"))
        return 0; /* never enqueued to: it holds nothing */
    assert_exit(R, EXIT_OK);
    char quoted[128];
    snprintf(quoted, sizeof(quoted), "\"%s\"", queue);
    assert_json_has(R->out, "queue", quoted);
    char key[40];
    snprintf(key, sizeof(key), "\"%s\"", state);
    const char *p = strstr(R->out, key);
    if (!p) {
        show("stats --json should have a count per state", R);
        fail_msg("no \"%s\" in stats --json", state);
    }
    p += strlen(key);
    while (isspace((unsigned char)*p) || *p == ':')
        p++;
    char *end;
    long long v = strtoll(p, &end, 10);
    assert_true(end != p);
    return v;
}

/* ---- Group setup ---- */

static int group_setup(void **state)
{
    return test_redis_start(&redis, NULL);
}

static int group_teardown(void **state)
{
    test_redis_stop(&redis);
    return 0;
}

/* ---- Version, help, unknown verbs and options ---- */

static void test_version(void **state)
{
    HOP("--version");
    assert_exit(R, EXIT_OK);
    unsigned major, minor, patch;
    int used = -1;
    assert_int_equal(sscanf(R->out, "hopper %u.%u.%u%n", &major, &minor, &patch, &used), 3);
    assert_int_equal(used, (int)strlen(R->out)); /* nothing after X.Y.Z */
    assert_string_equal(R->out, "hopper " HOPPER_VERSION_STRING);
    assert_string_equal(R->err, "");
}

static void test_help_lists_verbs(void **state)
{
    static const char *const verbs[] = {"run",    "enqueue", "job",    "jobs",  "retry",  "cancel",
                                        "delete", "stats",   "queues", "pause", "resume", "token"};
    HOP("--help");
    assert_exit(R, EXIT_OK);
    assert_true(contains_nocase(R->out, "usage"));
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (!has_line_starting_with_word(R->out, verbs[i])) {
            show("--help should list every verb", R);
            fail_msg("verb \"%s\" missing from --help", verbs[i]);
        }
    }
    /* The exit statuses scripts rely on are documented there too. */
    assert_non_null(strstr(R->out, "exit status"));
}

static void test_no_arguments_is_usage(void **state)
{
    test_cli_run(R, redis.url, (const char *const[]){NULL});
    assert_exit(R, EXIT_USAGE);
    assert_true(contains_nocase(R->err, "usage"));
}

static void test_verb_help(void **state)
{
    HOP("enqueue", "--help");
    assert_exit(R, EXIT_OK);
    assert_non_null(strstr(R->out, "--queue"));
    assert_non_null(strstr(R->out, "--type"));
    assert_non_null(strstr(R->out, "--payload"));

    HOP("jobs", "--help");
    assert_exit(R, EXIT_OK);
    assert_non_null(strstr(R->out, "--cursor"));

    /* --help needs no broker. */
    HOP_ENV("redis://127.0.0.1:1", "stats", "--help");
    assert_exit(R, EXIT_OK);
}

static void test_unknown_verb(void **state)
{
    HOP("frobnicate");
    assert_error_line(R, EXIT_USAGE, "frobnicate");
}

static void test_unknown_option(void **state)
{
    HOP("enqueue", "--queue", "q", "--type", "t", "--frobnicate");
    assert_exit(R, EXIT_USAGE);
    assert_string_equal(R->out, "");
    assert_true(contains_nocase(R->err, "frobnicate") || contains_nocase(R->err, "option"));

    HOP("stats", "--frobnicate");
    assert_exit(R, EXIT_USAGE);
    assert_string_equal(R->out, "");
    assert_true(R->err[0] != '\0');

    HOP("job", "--frobnicate", "x");
    assert_exit(R, EXIT_USAGE);
    assert_true(R->err[0] != '\0');
}

/* ---- Enqueue and read back ---- */

static void test_enqueue_and_job(void **state)
{
    const char *q = test_queue_name("e2e-enq");
    const char *payload =
        "{\"to\":\"ann@example.com\",\"n\":123456789012345678901234567890,\"f\":1.50,"
        "\"s\":\"caf\\u00e9 \\\"x\\\"\",\"a\":[1, 2 ,3]}";
    job_id_t id = ENQUEUE(q, "email.send", "--payload", payload, );

    const char *out = job_json(id.s);
    char quoted[256];
    snprintf(quoted, sizeof(quoted), "\"%s\"", id.s);
    assert_json_has(out, "id", quoted);
    assert_json_has(out, "state", "\"waiting\"");
    assert_json_has(out, "type", "\"email.send\"");
    snprintf(quoted, sizeof(quoted), "\"%s\"", q);
    assert_json_has(out, "queue", quoted);
    /* The payload exactly as given: digit for digit, spacing and escapes kept. */
    assert_json_has(out, "payload", payload);
    assert_non_null(strstr(out, "123456789012345678901234567890"));
    /* Defaults a user would see. */
    assert_json_has(out, "priority", "0");
    assert_json_has(out, "attempts", "0");
    assert_json_has(out, "max_attempts", "25");
}

static void test_enqueue_default_payload_is_null(void **state)
{
    const char *q = test_queue_name("e2e-null");
    job_id_t id = ENQUEUE(q, "noop", );
    assert_json_has(job_json(id.s), "payload", "null");

    /* Any JSON value is a payload, scalars included. */
    id = ENQUEUE(q, "noop", "--payload", "\"just a string\"", );
    assert_json_has(job_json(id.s), "payload", "\"just a string\"");
    id = ENQUEUE(q, "noop", "--payload", "-0.5e3", );
    assert_json_has(job_json(id.s), "payload", "-0.5e3");
}

static void test_enqueue_payload_from_file(void **state)
{
    const char *q = test_queue_name("e2e-file");
    char path[] = "/tmp/hopper-e2e-payload-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *payload = "{\"from\": \"file\", \"big\": 98765432109876543210}";
    assert_int_equal(write(fd, payload, strlen(payload)), (ssize_t)strlen(payload));
    close(fd);
    char arg[64];
    snprintf(arg, sizeof(arg), "@%s", path);
    HOP("enqueue", "--queue", q, "--type", "file.job", "--payload", arg);
    unlink(path);
    assert_exit(R, EXIT_OK);
    assert_true(is_job_id(R->out, q));
    job_id_t id = job_id_of(R->out);
    assert_json_has(job_json(id.s), "payload", payload);
}

static void test_delay_gives_scheduled(void **state)
{
    const char *q = test_queue_name("e2e-delay");
    job_id_t id = ENQUEUE(q, "later", "--delay", "10s", );
    const char *out = job_json(id.s);
    assert_json_has(out, "state", "\"scheduled\"");
    assert_non_null(strstr(out, "\"run_at\""));

    HOP("jobs", "--queue", q, "--state", "scheduled");
    assert_exit(R, EXIT_OK);
    assert_int_equal(count_lines(R->out), 1);
    assert_true(strncmp(R->out, id.s, strlen(id.s)) == 0);

    assert_int_equal(stats_count(q, "scheduled"), 1);
    assert_int_equal(stats_count(q, "waiting"), 0);
}

static void test_priority_and_max_attempts(void **state)
{
    const char *q = test_queue_name("e2e-prio");
    job_id_t id = ENQUEUE(q, "t", "--priority", "7", "--max-attempts", "3", );
    const char *out = job_json(id.s);
    assert_json_has(out, "priority", "7");
    assert_json_has(out, "max_attempts", "3");

    /* The limits themselves are accepted. */
    id = ENQUEUE(q, "t", "--priority", "-1000", "--max-attempts", "1", );
    out = job_json(id.s);
    assert_json_has(out, "priority", "-1000");
    assert_json_has(out, "max_attempts", "1");
    id = ENQUEUE(q, "t", "--priority", "1000", "--max-attempts", "1000", );
    out = job_json(id.s);
    assert_json_has(out, "priority", "1000");
    assert_json_has(out, "max_attempts", "1000");
}

static void test_unique_key(void **state)
{
    const char *q = test_queue_name("e2e-uniq");
    job_id_t first = ENQUEUE(q, "t", "--unique-key", "order-42", );

    HOP("enqueue", "--queue", q, "--type", "t", "--unique-key", "order-42");
    assert_exit(R, EXIT_OK);
    assert_string_equal(R->out, first.s);
    if (!R->err[0] || strchr(R->err, '\n') || !contains_nocase(R->err, "order-42")) {
        show("a duplicate should say so on stderr, naming the key", R);
        fail();
    }
    assert_int_equal(stats_count(q, "waiting"), 1);

    /* Another key is another job. */
    job_id_t other = ENQUEUE(q, "t", "--unique-key", "order-43", );
    assert_string_not_equal(other.s, first.s);
    assert_int_equal(stats_count(q, "waiting"), 2);
}

/* ---- Listing ---- */

static void test_jobs_lists_waiting(void **state)
{
    const char *q = test_queue_name("e2e-list");
    job_id_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = ENQUEUE(q, "list.me", );

    HOP("jobs", "--queue", q, "--state", "waiting");
    assert_exit(R, EXIT_OK);
    assert_string_equal(R->err, "");
    assert_int_equal(count_lines(R->out), 3);
    /* In the order they will run: FIFO at equal priority. */
    for (size_t i = 0; i < 3; i++) {
        char line[512];
        assert_true(nth_line(R->out, i, line, sizeof(line)));
        assert_true(strncmp(line, ids[i].s, strlen(ids[i].s)) == 0);
        assert_non_null(strstr(line, "waiting"));
        assert_non_null(strstr(line, "list.me"));
    }

    /* waiting is the default state. */
    static char all[sizeof(R->out)];
    memcpy(all, R->out, sizeof(all));
    HOP("jobs", "--queue", q);
    assert_exit(R, EXIT_OK);
    assert_string_equal(R->out, all);

    /* No job in another state. */
    HOP("jobs", "--queue", q, "--state", "dead");
    assert_exit(R, EXIT_OK);
    assert_string_equal(R->out, "");

    /* --json: one object per line. */
    HOP("jobs", "--queue", q, "--json");
    assert_exit(R, EXIT_OK);
    assert_int_equal(count_lines(R->out), 3);
    char line[512];
    assert_true(nth_line(R->out, 0, line, sizeof(line)));
    assert_true(line[0] == '{' && line[strlen(line) - 1] == '}');
    char quoted[128];
    snprintf(quoted, sizeof(quoted), "\"%s\"", ids[0].s);
    assert_json_has(line, "id", quoted);
}

/* Splits a "more: hopper jobs ... --cursor C" hint into argv (after "hopper"). */
static int hint_argv(const char *hint, char *buf, size_t cap, const char **argv, int max)
{
    const char *p = strstr(hint, "hopper ");
    if (!p)
        return -1;
    snprintf(buf, cap, "%s", p + strlen("hopper "));
    int n = 0;
    for (char *tok = strtok(buf, " "); tok && n < max - 1; tok = strtok(NULL, " "))
        argv[n++] = tok;
    argv[n] = NULL;
    return n;
}

/* The cursor in a "more: ... --cursor C" hint on stderr, or false when there is no
 * hint (the last page). */
static bool hint_cursor(const char *err, char *cursor, size_t cap)
{
    const char *more = strstr(err, "more:");
    if (!more)
        return false;
    const char *c = strstr(more, "--cursor ");
    if (!c) {
        print_error("stderr: %s\n", err);
        fail_msg("a \"more:\" hint without --cursor");
    }
    c += strlen("--cursor ");
    size_t n = strcspn(c, " \n");
    if (n == 0 || n >= cap)
        fail_msg("bad cursor in hint \"%s\"", more);
    /* The hint is a command to paste into a shell: the cursor must need no quoting. */
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)c[i]) && !strchr(":._-+=/,", c[i]))
            fail_msg("cursor in \"%s\" needs shell quoting", more);
    memcpy(cursor, c, n);
    cursor[n] = '\0';
    return true;
}

/* The job id at the start of each line of `out`, appended to seen[]. */
static void collect_ids(const char *out, char seen[][128], int *nseen, int max)
{
    char line[512];
    for (size_t i = 0; nth_line(out, i, line, sizeof(line)); i++) {
        assert_true(*nseen < max);
        snprintf(seen[(*nseen)++], 128, "%.*s", (int)strcspn(line, " "), line);
    }
}

static void test_jobs_paging(void **state)
{
    const char *q = test_queue_name("e2e-page");
    job_id_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = ENQUEUE(q, "page", );

    /* Page by page, one job each, following the cursor each page prints. */
    char seen[8][128], cursor[256];
    int nseen = 0, pages = 0;
    HOP("jobs", "--queue", q, "--state", "waiting", "--limit", "1");
    for (;;) {
        assert_exit(R, EXIT_OK);
        if (count_lines(R->out) > 1) {
            show("--limit 1 should print at most one job", R);
            fail();
        }
        collect_ids(R->out, seen, &nseen, 8);
        pages++;
        if (!hint_cursor(R->err, cursor, sizeof(cursor)))
            break;
        if (pages > 5) {
            show("paging should end", R);
            fail();
        }
        HOP("jobs", "--queue", q, "--state", "waiting", "--limit", "1", "--cursor", cursor);
    }
    /* All three, in order, none twice, none missed. */
    assert_true(pages >= 3);
    assert_int_equal(nseen, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(seen[i], ids[i].s);

    /* The first page's hint, pasted as printed, lists the rest. */
    HOP("jobs", "--queue", q, "--limit", "1");
    assert_exit(R, EXIT_OK);
    assert_int_equal(count_lines(R->out), 1);
    assert_true(strncmp(R->out, ids[0].s, strlen(ids[0].s)) == 0);
    assert_true(strncmp(R->err, "more:", 5) == 0);
    assert_non_null(strstr(R->err, q));
    assert_true(hint_cursor(R->err, cursor, sizeof(cursor)));
    char buf[1024];
    const char *argv[32];
    assert_true(hint_argv(R->err, buf, sizeof(buf), argv, 32) > 0);
    assert_string_equal(argv[0], "jobs");
    test_cli_run(R, redis.url, argv);
    assert_exit(R, EXIT_OK);
    nseen = 0;
    collect_ids(R->out, seen, &nseen, 8);
    assert_true(nseen >= 1);
    for (int i = 0; i < nseen; i++)
        assert_string_equal(seen[i], ids[i + 1].s);

    /* A page of everything has no hint. */
    HOP("jobs", "--queue", q, "--limit", "3");
    assert_exit(R, EXIT_OK);
    assert_int_equal(count_lines(R->out), 3);
    assert_null(strstr(R->err, "more:"));
}

static void test_jobs_bad_arguments(void **state)
{
    const char *q = test_queue_name("e2e-jobsbad");
    HOP("jobs", "--queue", q, "--state", "sleeping");
    assert_error_line(R, EXIT_USAGE, "state");
    HOP("jobs", "--queue", q, "--limit", "0");
    assert_error_line(R, EXIT_USAGE, "limit");
    HOP("jobs", "--queue", q, "--limit", "1001");
    assert_error_line(R, EXIT_USAGE, "limit");
    HOP("jobs", "--state", "waiting");
    assert_error_line(R, EXIT_USAGE, "queue");
    HOP("jobs", "--queue", "bad queue");
    assert_error_line(R, EXIT_USAGE, "queue");
}

/* ---- Queues ---- */

/* Parses the `stats` table row for `queue` into counts by the header's column names. */
static long long stats_table_count(const char *table, const char *queue, const char *state)
{
    char header[512], row[512];
    assert_true(nth_line(table, 0, header, sizeof(header)));
    int col = -1, i = 0;
    for (char *tok = strtok(header, " \t"); tok; tok = strtok(NULL, " \t"), i++)
        if (strcasecmp(tok, state) == 0)
            col = i;
    if (col < 0)
        fail_msg("no \"%s\" column in stats header", state);
    for (size_t n = 1; nth_line(table, n, row, sizeof(row)); n++) {
        char *tok = strtok(row, " \t");
        if (!tok || strcmp(tok, queue) != 0)
            continue;
        for (i = 1; (tok = strtok(NULL, " \t")); i++)
            if (i == col)
                return strtoll(tok, NULL, 10);
        fail_msg("short stats row for %s", queue);
    }
    print_error("%s\n", table);
    fail_msg("queue %s missing from stats", queue);
    return -1;
}

static void test_stats_and_queues(void **state)
{
    const char *q = test_queue_name("e2e-stats");
    ENQUEUE(q, "a", );
    ENQUEUE(q, "a", );
    ENQUEUE(q, "a", "--delay", "1h", );

    HOP("stats");
    assert_exit(R, EXIT_OK);
    static char table[sizeof(R->out)];
    memcpy(table, R->out, sizeof(table));
    assert_int_equal(stats_table_count(table, q, "waiting"), 2);
    assert_int_equal(stats_table_count(table, q, "scheduled"), 1);
    assert_int_equal(stats_table_count(table, q, "active"), 0);
    assert_int_equal(stats_table_count(table, q, "dead"), 0);

    HOP("stats", q);
    assert_exit(R, EXIT_OK);
    memcpy(table, R->out, sizeof(table));
    assert_int_equal(count_lines(table), 2); /* header and this queue */
    assert_int_equal(stats_table_count(table, q, "waiting"), 2);

    HOP("stats", q, "--json");
    assert_exit(R, EXIT_OK);
    assert_true(R->out[0] == '{' || R->out[0] == '[');
    assert_json_has(R->out, "waiting", "2");
    assert_json_has(R->out, "scheduled", "1");
    assert_json_has(R->out, "active", "0");
    assert_json_has(R->out, "paused", "false");
    assert_int_equal(stats_count(q, "waiting"), 2);

    HOP("queues");
    assert_exit(R, EXIT_OK);
    if (!has_line(R->out, q)) {
        show("queues should list the queue, one per line", R);
        fail();
    }
    HOP("queues", "extra");
    assert_exit(R, EXIT_USAGE);
    /* A queue never enqueued to is not a queue: exit 3, named. */
    HOP("stats", "never-used-queue");
    assert_error_line(R, EXIT_NOT_FOUND, "never-used-queue");
}

static void test_pause_resume(void **state)
{
    const char *q = test_queue_name("e2e-pause");
    ENQUEUE(q, "a", );

    HOP("pause", q);
    assert_exit(R, EXIT_OK);
    assert_non_null(strstr(R->out, q));
    assert_true(contains_nocase(R->out, "paused"));
    HOP("stats", q, "--json");
    assert_exit(R, EXIT_OK);
    assert_json_has(R->out, "paused", "true");
    HOP("stats", q);
    assert_exit(R, EXIT_OK);
    assert_true(contains_nocase(R->out, "paused"));

    HOP("resume", q);
    assert_exit(R, EXIT_OK);
    assert_non_null(strstr(R->out, q));
    assert_true(contains_nocase(R->out, "resumed"));
    HOP("stats", q, "--json");
    assert_exit(R, EXIT_OK);
    assert_json_has(R->out, "paused", "false");

    HOP("pause");
    assert_exit(R, EXIT_USAGE);
    HOP("pause", "no such{queue}");
    assert_error_line(R, EXIT_USAGE, "queue");
}

/* ---- Cancel, retry, delete ---- */

static void test_cancel_retry_delete(void **state)
{
    const char *q = test_queue_name("e2e-life");
    job_id_t id = ENQUEUE(q, "t", "--max-attempts", "2", );

    HOP("retry", id.s); /* waiting: nothing to retry */
    assert_error_line(R, EXIT_STATE, "waiting");
    assert_job_state(id.s, "waiting");

    HOP("cancel", id.s);
    assert_exit(R, EXIT_OK);
    assert_non_null(strstr(R->out, id.s));
    assert_job_state(id.s, "canceled");
    assert_non_null(strstr(R->out, "\"finished_at\""));
    assert_int_equal(stats_count(q, "canceled"), 1);
    assert_int_equal(stats_count(q, "waiting"), 0);

    HOP("cancel", id.s); /* already finished */
    assert_error_line(R, EXIT_STATE, "");

    HOP("retry", id.s);
    assert_exit(R, EXIT_OK);
    assert_non_null(strstr(R->out, id.s));
    assert_job_state(id.s, "waiting");
    assert_json_has(R->out, "max_attempts", "2");
    assert_int_equal(stats_count(q, "waiting"), 1);
    assert_int_equal(stats_count(q, "canceled"), 0);

    HOP("retry", id.s);
    assert_error_line(R, EXIT_STATE, "");

    HOP("delete", id.s);
    assert_exit(R, EXIT_OK);
    assert_non_null(strstr(R->out, id.s));
    HOP("job", id.s);
    assert_error_line(R, EXIT_NOT_FOUND, "not found");
    assert_int_equal(stats_count(q, "waiting"), 0);

    /* Gone means gone for every verb. */
    HOP("delete", id.s);
    assert_error_line(R, EXIT_NOT_FOUND, "");
    HOP("cancel", id.s);
    assert_error_line(R, EXIT_NOT_FOUND, "");
    HOP("retry", id.s);
    assert_error_line(R, EXIT_NOT_FOUND, "");
}

static void test_job_ids(void **state)
{
    const char *q = test_queue_name("e2e-ids");
    char unknown[128];
    snprintf(unknown, sizeof(unknown), "01ARZ3NDEKTSV4RRFFQ69G5FAV-%s", q);
    static const char *const verbs[] = {"job", "cancel", "retry", "delete"};
    for (size_t v = 0; v < 4; v++) {
        HOP(verbs[v], unknown);
        assert_error_line(R, EXIT_NOT_FOUND, "not found");
    }

    static const char *const malformed[] = {
        "nope",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",           /* no queue */
        "01ARZ3NDEKTSV4RRFFQ69G5FAV-",          /* empty queue */
        "01ARZ3NDEKTSV4RRFFQ69G5FA-q",          /* 25-char ULID */
        "01ARZ3NDEKTSV4RRFFQ69G5FAU-q",         /* U is not Crockford base32 */
        "01ARZ3NDEKTSV4RRFFQ69G5FAV-bad queue", /* bad queue part */
        "01ARZ3NDEKTSV4RRFFQ69G5FAV_q",         /* wrong separator */
        "",
    };
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        for (size_t v = 0; v < 4; v++) {
            HOP(verbs[v], malformed[i]);
            if (R->status != EXIT_USAGE)
                print_error("hopper %s \"%s\"\n", verbs[v], malformed[i]);
            assert_error_line(R, EXIT_USAGE, "id");
        }
    }
    HOP("job");
    assert_error_line(R, EXIT_USAGE, "");
    HOP("job", unknown, unknown);
    assert_error_line(R, EXIT_USAGE, "");
}

/* ---- Bad input to enqueue ---- */

typedef struct bad_case_s {
    const char *what;     /* a word the one-line message must contain */
    const char *also;     /* and another (NULL: none) */
    const char *queue;    /* NULL: a fresh valid queue; "" etc.: as given */
    const char *args[12]; /* after --queue (if any), NULL-terminated */
    bool no_queue_option;
} bad_case_t;

static char queue_65[QUEUE_NAME_MAX + 2];
static char big_payload_path[64];   /* "@FILE": a JSON string of 1 MiB + 10 bytes */
static char trunc_payload_path[64]; /* "@FILE": 1 MiB of valid JSON, then more that is not */

static void assert_nothing_written(const char *q, const char *queues_before)
{
    HOP("queues");
    assert_exit(R, EXIT_OK);
    if (strcmp(R->out, queues_before) != 0) {
        print_error("before:\n%s\nafter:\n%s\n", queues_before, R->out);
        fail_msg("a refused job changed the list of queues");
    }
    if (q) {
        assert_false(has_line(R->out, q));
        assert_int_equal(stats_count(q, "waiting"), 0);
        assert_int_equal(stats_count(q, "scheduled"), 0);
    }
}

static void test_bad_enqueue(void **state)
{
    const bad_case_t *c = *state;
    const char *fresh = test_queue_name("e2e-bad");
    const char *q = c->queue ? c->queue : fresh;

    HOP("queues");
    assert_exit(R, EXIT_OK);
    static char before[sizeof(R->out)];
    memcpy(before, R->out, sizeof(before));

    const char *argv[32] = {"enqueue"};
    int n = 1;
    if (!c->no_queue_option) {
        argv[n++] = "--queue";
        argv[n++] = q;
    }
    for (int i = 0; c->args[i]; i++)
        argv[n++] = c->args[i];
    argv[n] = NULL;
    test_cli_run(R, redis.url, argv);
    if (R->status != EXIT_USAGE || R->out[0])
        show(c->what, R);
    assert_error_line(R, EXIT_USAGE, c->what);
    if (c->also && !contains_nocase(R->err, c->also)) {
        show(c->what, R);
        fail_msg("the message should also mention \"%s\"", c->also);
    }

    assert_nothing_written(c->queue ? NULL : fresh, before);
}

#define T "--type", "t"
#define BAD(word, q, ...)                                                                          \
    {                                                                                              \
        .what = (word), .queue = (q), .args = { __VA_ARGS__ }                                      \
    }
static bad_case_t bad_cases[] = {
    BAD("payload", NULL, T, "--payload", "{\"a\":", NULL),
    BAD("payload", NULL, T, "--payload", "hello", NULL),
    BAD("payload", NULL, T, "--payload", "{\"a\":1} trailing", NULL),
    BAD("payload", NULL, T, "--payload", "", NULL),
    /* Too big: refused as too big (not as bad JSON), and never cut to fit. */
    {.what = "payload", .also = "limit", .args = {T, "--payload", big_payload_path, NULL}},
    {.what = "payload", .also = "limit", .args = {T, "--payload", trunc_payload_path, NULL}},
    BAD("payload", NULL, T, "--payload", "@/nonexistent/hopper-e2e.json", NULL),
    BAD("queue", "", T, NULL),
    BAD("queue", "has space", T, NULL),
    BAD("queue", "brace{tag}", T, NULL),
    BAD("queue", "brace{", T, NULL),
    BAD("queue", queue_65, T, NULL),
    BAD("delay", NULL, T, "--delay", "-5s", NULL),
    BAD("delay", NULL, T, "--delay", "abc", NULL),
    BAD("delay", NULL, T, "--delay", "400d", NULL),
    BAD("attempts", NULL, T, "--max-attempts", "0", NULL),
    BAD("attempts", NULL, T, "--max-attempts", "100000", NULL),
    BAD("attempts", NULL, T, "--max-attempts", "3x", NULL),
    BAD("priority", NULL, T, "--priority", "5000", NULL),
    BAD("priority", NULL, T, "--priority", "-1001", NULL),
    BAD("priority", NULL, T, "--priority", "high", NULL),
    BAD("type", NULL, NULL),
    BAD("type", NULL, "--type", "has space", NULL),
    BAD("type", NULL, "--type", "", NULL),
    {.what = "queue", .args = {T, NULL}, .no_queue_option = true},
    BAD("backoff", NULL, T, "--backoff", "random", NULL),
    BAD("run-at", NULL, T, "--run-at", "tomorrow", NULL),
    BAD("unexpected", NULL, T, "stray", NULL),
};
#undef BAD
#undef T

/* Creates a file (mkstemp template) holding a JSON string `size` bytes long,
 * quotes included, then `tail`. */
static int write_json_string_file(char *template, size_t size, const char *tail)
{
    int fd = mkstemp(template);
    if (fd < 0) {
        perror(template);
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    fputc('"', f);
    for (size_t i = 0; i < size - 2; i++)
        fputc('a', f);
    fputc('"', f);
    fputs(tail, f);
    return fclose(f);
}

static void test_enqueue_limits_accepted(void **state)
{
    /* The largest queue name and payload are accepted. */
    char q64[QUEUE_NAME_MAX + 1];
    snprintf(q64, sizeof(q64), "%s-", test_queue_name("e2e-q64"));
    for (size_t i = strlen(q64); i < QUEUE_NAME_MAX; i++)
        q64[i] = 'q';
    q64[QUEUE_NAME_MAX] = '\0';
    ENQUEUE(q64, "t", );
    HOP("queues");
    assert_exit(R, EXIT_OK);
    assert_true(has_line(R->out, q64));

    char path[] = "/tmp/hopper-e2e-max-XXXXXX";
    assert_int_equal(write_json_string_file(path, MIB, ""), 0);
    char arg[64];
    snprintf(arg, sizeof(arg), "@%s", path);
    const char *q = test_queue_name("e2e-max");
    HOP("enqueue", "--queue", q, "--type", "t", "--payload", arg);
    unlink(path);
    assert_exit(R, EXIT_OK);
    assert_true(is_job_id(R->out, q));
    assert_int_equal(stats_count(q, "waiting"), 1);
}

/* ---- The broker's address ---- */

static void test_redis_unreachable(void **state)
{
    const char *down = "redis://127.0.0.1:1";
    HOP_ENV(down, "enqueue", "--queue", "q", "--type", "t");
    assert_error_line(R, EXIT_UNAVAILABLE, "unreachable");
    HOP_ENV(down, "job", "01ARZ3NDEKTSV4RRFFQ69G5FAV-q");
    assert_error_line(R, EXIT_UNAVAILABLE, "unreachable");
    HOP_ENV(down, "stats");
    assert_error_line(R, EXIT_UNAVAILABLE, "unreachable");
    HOP_ENV(down, "queues");
    assert_error_line(R, EXIT_UNAVAILABLE, "unreachable");

    /* --redis wins over the environment, both ways. */
    HOP("queues", "--redis", down);
    assert_error_line(R, EXIT_UNAVAILABLE, "unreachable");
    HOP_ENV(down, "queues", "--redis", redis.url);
    assert_exit(R, EXIT_OK);
}

static void test_redis_url_malformed(void **state)
{
    HOP_ENV("http://x", "queues");
    assert_error_line(R, EXIT_USAGE, "url");
    HOP_ENV("http://x", "enqueue", "--queue", "q", "--type", "t");
    assert_error_line(R, EXIT_USAGE, "url");
    HOP("queues", "--redis", "localhost:6379");
    assert_error_line(R, EXIT_USAGE, "url");
}

/* ---- Main ---- */

/* ---- API tokens ---- */

static void test_token_create_list_revoke(void **state)
{
    HOP("token", "create", "--scope", "submit", "--queues", "email*,pdf", "--name", "ci bot",
        "--rate", "5", "--burst", "10");
    assert_exit(R, EXIT_OK);
    /* The token alone on stdout, "hop_<12-char id>_<secret>"; a warning on stderr. */
    char token[128];
    assert_true(strlen(R->out) < sizeof(token));
    memcpy(token, R->out, strlen(R->out) + 1);
    assert_int_equal(strncmp(token, "hop_", 4), 0);
    assert_null(strchr(token, '\n'));
    assert_int_equal(token[16], '_');
    assert_true(strlen(token + 17) >= 52);
    assert_true(contains_nocase(R->err, "shown"));
    char id[13];
    memcpy(id, token + 4, 12);
    id[12] = '\0';
    const char *secret = token + 17;

    HOP("token", "list");
    assert_exit(R, EXIT_OK);
    assert_non_null(strstr(R->out, id));
    assert_non_null(strstr(R->out, "ci bot"));
    assert_non_null(strstr(R->out, "submit"));
    assert_non_null(strstr(R->out, "email*,pdf"));
    assert_null(strstr(R->out, secret));
    assert_null(strstr(R->out, "sha256"));

    HOP("token", "list", "--json");
    assert_exit(R, EXIT_OK);
    char quoted[32];
    snprintf(quoted, sizeof(quoted), "\"%s\"", id);
    assert_json_has(R->out, "id", quoted);
    assert_json_has(R->out, "scope", "\"submit\"");
    assert_json_has(R->out, "queues", "\"email*,pdf\"");
    assert_json_has(R->out, "burst", "10");
    assert_null(strstr(R->out, secret));
    assert_null(strstr(R->out, "sha256"));

    HOP("token", "revoke", id);
    assert_exit(R, EXIT_OK);
    assert_non_null(strstr(R->out, id));
    HOP("token", "list");
    assert_exit(R, EXIT_OK);
    assert_null(strstr(R->out, id));
    HOP("token", "revoke", id);
    assert_error_line(R, EXIT_NOT_FOUND, "not found");
}

static void test_token_bad_input(void **state)
{
    HOP("token", "create", "--scope", "root");
    assert_error_line(R, EXIT_USAGE, "scope");
    HOP("token", "create");
    assert_error_line(R, EXIT_USAGE, "scope");
    HOP("token", "create", "--scope", "read", "--queues", "email,,pdf");
    assert_error_line(R, EXIT_USAGE, "queues");
    HOP("token", "create", "--scope", "read", "--rate", "-1");
    assert_error_line(R, EXIT_USAGE, "rate");
    HOP("token", "create", "--scope", "read", "--frobnicate");
    assert_error_line(R, EXIT_USAGE, "frobnicate");
    HOP("token", "revoke", "zzzzzzzzzzzz");
    assert_error_line(R, EXIT_NOT_FOUND, "not found");
    HOP("token", "revoke");
    assert_error_line(R, EXIT_USAGE, "ID");
    HOP("token", "mint");
    assert_error_line(R, EXIT_USAGE, "mint");
    HOP_ENV("redis://127.0.0.1:1", "token", "create", "--help");
    assert_exit(R, EXIT_OK);
    assert_non_null(strstr(R->out, "--scope"));
    assert_non_null(strstr(R->out, "--queues"));
}

int main(void)
{
    memset(queue_65, 'x', sizeof(queue_65) - 1);
    queue_65[sizeof(queue_65) - 1] = '\0';

    /* A valid JSON string of 1 MiB + 10 bytes; and a JSON string of exactly 1 MiB
     * followed by text that makes the whole file invalid JSON. */
    char path[] = "/tmp/hopper-e2e-big-XXXXXX", tpath[] = "/tmp/hopper-e2e-trunc-XXXXXX";
    if (write_json_string_file(path, MIB + 10, "") ||
        write_json_string_file(tpath, MIB, " and then this, which is not JSON"))
        return 1;
    snprintf(big_payload_path, sizeof(big_payload_path), "@%s", path);
    snprintf(trunc_payload_path, sizeof(trunc_payload_path), "@%s", tpath);

    struct CMUnitTest tests[64] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_help_lists_verbs),
        cmocka_unit_test(test_no_arguments_is_usage),
        cmocka_unit_test(test_verb_help),
        cmocka_unit_test(test_unknown_verb),
        cmocka_unit_test(test_unknown_option),
        cmocka_unit_test(test_enqueue_and_job),
        cmocka_unit_test(test_enqueue_default_payload_is_null),
        cmocka_unit_test(test_enqueue_payload_from_file),
        cmocka_unit_test(test_delay_gives_scheduled),
        cmocka_unit_test(test_priority_and_max_attempts),
        cmocka_unit_test(test_unique_key),
        cmocka_unit_test(test_jobs_lists_waiting),
        cmocka_unit_test(test_jobs_paging),
        cmocka_unit_test(test_jobs_bad_arguments),
        cmocka_unit_test(test_stats_and_queues),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_cancel_retry_delete),
        cmocka_unit_test(test_job_ids),
        cmocka_unit_test(test_enqueue_limits_accepted),
        cmocka_unit_test(test_redis_unreachable),
        cmocka_unit_test(test_redis_url_malformed),
        cmocka_unit_test(test_token_create_list_revoke),
        cmocka_unit_test(test_token_bad_input),
    };
    size_t n = 0;
    while (tests[n].name)
        n++;
    static char names[sizeof(bad_cases) / sizeof(bad_cases[0])][160];
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case_t *c = &bad_cases[i];
        char detail[120] = "";
        for (int a = 0; c->args[a]; a++) {
            const char *arg = c->args[a] == big_payload_path     ? "@<1 MiB + 10 bytes>"
                              : c->args[a] == trunc_payload_path ? "@<1 MiB of JSON + text>"
                                                                 : c->args[a];
            size_t used = strlen(detail);
            snprintf(detail + used, sizeof(detail) - used, "%s%s", a ? " " : "", arg);
        }
        snprintf(names[i], sizeof(names[i]), "test_bad_enqueue[%s%.20s%s%.60s]",
                 c->no_queue_option ? "no --queue "
                 : c->queue         ? "--queue '"
                                    : "",
                 c->queue ? c->queue : "", c->queue ? "' " : "", detail);
        tests[n++] = (struct CMUnitTest){names[i], test_bad_enqueue, NULL, NULL, (void *)c};
    }
    int failed = _cmocka_run_group_tests("test_cli", tests, n, group_setup, group_teardown);
    unlink(path);
    unlink(tpath);
    return failed;
}
