/*
 * plugins/email/email.c -- the "email" plugin: job type email.send delivers one
 * message through an SMTP server with libESMTP.
 *
 * This file owns the plugin's configuration (server, STARTTLS, AUTH credentials,
 * timeouts, limits, circuit breaker), the payload (JSON, read with jansson), the
 * attachments (blobs), the SMTP session and the classification of its outcome.
 * mime.c owns the bytes of the message and the checks on what becomes a header.
 *
 * Delivery is all-or-nothing: libESMTP's require_all_recipients is on, so when the
 * server refuses any recipient no DATA is sent, and a retry never sends the message
 * twice to those who had it. Outcomes:
 *   - bad payload, invalid address, header injection, 5xx reply -> permanent;
 *   - connection trouble, timeouts, 4xx reply, missing STARTTLS -> retryable, and
 *     counted by the per-server circuit breaker (plugins/common/breaker.h).
 * The password comes from the config or the environment and goes only to
 * libESMTP's AUTH exchange: it is never logged, nor put in a result or message.
 */
#include <hopper/plugin.h>

#include <openssl/ssl.h> /* before libesmtp.h: it declares smtp_starttls_set_ctx then */

#include <auth-client.h>
#include <libesmtp.h>

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "breaker.h"
#include "mime.h"

/* The entry point's prototype (-Wmissing-prototypes): defined at the end. */
HOPPER_EXPORT int hopper_plugin_init(const hopper_host_api_t *api, hopper_plugin_t *plugin,
                                     char **errmsg);

#define PLUGIN_NAME    "email"
#define PLUGIN_VERSION "1.0.0"
#define MAX_HEADERS    50
#define WHY_MAX        160

/* ---- Configuration ---- */

typedef enum { TLS_OFF, TLS_WHEN_OFFERED, TLS_REQUIRED } tls_mode_t;

/*
 * The plugin's settings, read once in init from the worker's "plugin_config":
 * {"email": {...}} and the environment. One per process, shared read-only by all
 * handler threads (the breaker locks itself). Owned by the plugin: freed at
 * shutdown, the password wiped first.
 */
typedef struct email_conf_s {
    char server[300];     /* "host:port": what libESMTP dials and the breaker's key */
    tls_mode_t starttls;  /* "starttls": off | when_offered | required */
    bool tls_verify;      /* "tls_verify": refuse a certificate that does not verify */
    SSL_CTX *tls;         /* ours, shared by all sessions; CAs from "tls_ca_file" or system */
    char *username;       /* "username" or $<username_env>; NULL: no AUTH */
    char *password;       /* "password" or $<password_env>; never logged */
    long long timeout_ms; /* "timeout_ms": each SMTP wait (greeting, each reply, data) */
    char *from;           /* "from": the default From, an address string, or NULL */
    char *helo;           /* "helo": the name in EHLO, NULL: the host name */
    long long max_bytes;  /* "max_message_bytes": the whole message, encoded */
    long long max_rcpt;   /* "max_recipients": to + cc + bcc */
    breaker_t *breaker;   /* per server; "breaker_threshold", "breaker_open_ms" */
} email_conf_t;

static email_conf_t *g_conf; /* for on_shutdown: the type ctx is the same pointer */

/* Copies the string, NULL when s is NULL. Aborts nothing: NULL also on no memory,
 * which the callers treat as an init failure. */
static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void conf_free(email_conf_t *c)
{
    if (!c)
        return;
    if (c->password) {
        volatile char *p = c->password;
        while (*p)
            *p++ = '\0';
    }
    free(c->password);
    free(c->username);
    free(c->from);
    free(c->helo);
    SSL_CTX_free(c->tls);
    breaker_free(c->breaker);
    free(c);
}

static void on_shutdown(void *arg)
{
    conf_free(arg);
    if (arg == g_conf)
        g_conf = NULL;
    auth_client_exit();
}

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

static int init_error(char **errmsg, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int init_error(char **errmsg, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (errmsg)
        *errmsg = strdup(buf);
    return -1;
}

/* An integer key within [min, max], def when absent. 0, or -1 with *errmsg. */
static int conf_int(hopper_plugin_t *p, const char *key, long long def, long long min,
                    long long max, long long *out, char **errmsg)
{
    const char *v = hopper_config(p, key);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max)
        return init_error(errmsg, "email: config \"%s\" must be an integer from %lld to %lld", key,
                          min, max);
    *out = n;
    return 0;
}

static int conf_bool(hopper_plugin_t *p, const char *key, bool def, bool *out, char **errmsg)
{
    const char *v = hopper_config(p, key);
    if (!v)
        *out = def;
    else if (strcmp(v, "true") == 0)
        *out = true;
    else if (strcmp(v, "false") == 0)
        *out = false;
    else
        return init_error(errmsg, "email: config \"%s\" must be true or false", key);
    return 0;
}

/* A secret from the config key, else from the environment variable the *_env key
 * names (default_env when that key is absent). Copied; NULL when neither is set. */
static char *conf_secret(hopper_plugin_t *p, const char *key, const char *env_key,
                         const char *default_env)
{
    const char *v = hopper_config(p, key);
    if (v && *v)
        return strdup(v);
    const char *env = hopper_config(p, env_key);
    const char *e = getenv(env ? env : default_env);
    return e && *e ? strdup(e) : NULL;
}

/*
 * The TLS context every session uses. TLS 1.2 at most: libESMTP 1.1 hangs until its
 * timeout when a TLS 1.3 server's post-handshake session tickets are already
 * waiting as the client reads its reply to EHLO (test_plugin_email under ASan; a
 * libESMTP client that pauses 0.3 s after the handshake hangs every time). The CAs
 * are "tls_ca_file" when set, else the system's; libESMTP checks the verify result
 * and the host name itself.
 */
static int tls_setup(hopper_plugin_t *p, email_conf_t *c, char **errmsg)
{
    const char *ca = hopper_config(p, "tls_ca_file");
    c->tls = SSL_CTX_new(TLS_client_method());
    if (!c->tls)
        return init_error(errmsg, "email: cannot create a TLS context");
    SSL_CTX_set_min_proto_version(c->tls, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(c->tls, TLS1_2_VERSION);
    if (ca ? SSL_CTX_load_verify_locations(c->tls, ca, NULL) != 1
           : SSL_CTX_set_default_verify_paths(c->tls) != 1)
        return init_error(errmsg,
                          "email: config \"tls_ca_file\": cannot load CA certificates "
                          "from %s",
                          ca ? ca : "the system's default locations");
    return 0;
}

/* The default From must be an address a job can use as it is. */
static int check_conf_from(const char *from, char **errmsg)
{
    char why[160], *name = NULL, *email = NULL;
    int rc = 0;
    if (mime_check_header_text(from, why, sizeof(why)))
        rc = init_error(errmsg, "email: config \"from\" %s", why);
    else if (mime_split_address(from, &name, &email))
        rc = init_error(errmsg, "email: config \"from\" is not an address");
    else if (mime_check_email(email, why, sizeof(why)) ||
             (name && mime_check_header_text(name, why, sizeof(why))))
        rc = init_error(errmsg, "email: config \"from\" %s", why);
    free(name);
    free(email);
    return rc;
}

static int conf_load(hopper_plugin_t *p, email_conf_t **out, char **errmsg)
{
    email_conf_t *c = calloc(1, sizeof(*c));
    if (!c)
        return init_error(errmsg, "email: out of memory");
    const char *host = hopper_config(p, "host");
    long long port, threshold, open_ms;
    if (!host)
        host = "localhost";
    if (!*host || strpbrk(host, ": \r\n/")) {
        conf_free(c);
        return init_error(errmsg, "email: config \"host\" must be a host name or IPv4 address");
    }
    if (conf_int(p, "port", 25, 1, 65535, &port, errmsg) ||
        conf_int(p, "timeout_ms", 30000, 1000, 3600000, &c->timeout_ms, errmsg) ||
        conf_int(p, "max_message_bytes", 25LL << 20, 1024, 1LL << 30, &c->max_bytes, errmsg) ||
        conf_int(p, "max_recipients", 100, 1, 10000, &c->max_rcpt, errmsg) ||
        conf_int(p, "breaker_threshold", 5, 1, 1000000, &threshold, errmsg) ||
        conf_int(p, "breaker_open_ms", 30000, 0, 86400000, &open_ms, errmsg) ||
        conf_bool(p, "tls_verify", true, &c->tls_verify, errmsg)) {
        conf_free(c);
        return -1;
    }
    snprintf(c->server, sizeof(c->server), "%s:%lld", host, port);

    const char *tls = hopper_config(p, "starttls");
    if (!tls || strcmp(tls, "when_offered") == 0) {
        c->starttls = TLS_WHEN_OFFERED;
    } else if (strcmp(tls, "off") == 0) {
        c->starttls = TLS_OFF;
    } else if (strcmp(tls, "required") == 0) {
        c->starttls = TLS_REQUIRED;
    } else {
        conf_free(c);
        return init_error(errmsg, "email: config \"starttls\" must be \"off\", \"when_offered\" or "
                                  "\"required\"");
    }

    if (c->starttls != TLS_OFF && tls_setup(p, c, errmsg)) {
        conf_free(c);
        return -1;
    }

    c->username = conf_secret(p, "username", "username_env", "HOPPER_EMAIL_USERNAME");
    c->password = conf_secret(p, "password", "password_env", "HOPPER_EMAIL_PASSWORD");
    if (!c->username != !c->password) {
        conf_free(c);
        return init_error(errmsg, "email: AUTH needs both a username and a password (config "
                                  "\"username\"/\"password\" or their environment variables)");
    }
    c->from = dup_or_null(hopper_config(p, "from"));
    if (c->from && check_conf_from(c->from, errmsg)) {
        conf_free(c);
        return -1;
    }
    c->helo = dup_or_null(hopper_config(p, "helo"));
    c->breaker = breaker_new((int)threshold, open_ms);
    if (!c->breaker) {
        conf_free(c);
        return init_error(errmsg, "email: out of memory");
    }
    *out = c;
    return 0;
}

/* ---- The mail of one job ---- */

/*
 * What a payload asks for, checked. Strings are borrowed from `root` (the parsed
 * payload) except the parts of address strings ("Name <a@b>"), which are malloc'd
 * and listed in `owned`; attachment bytes are malloc'd. mail_cleanup frees it all.
 */
typedef struct mail_s {
    json_t *root;
    mime_addr_t from;
    mime_addr_t *to, *cc, *bcc, *reply_to;
    size_t nto, ncc, nbcc, nreply_to;
    const char *subject, *text, *html;
    mime_header_t headers[MAX_HEADERS];
    size_t nheaders;
    mime_attachment_t *att;
    size_t natt;
    char **owned;
    size_t nowned, capowned;
} mail_t;

static void mail_cleanup(mail_t *m)
{
    for (size_t i = 0; i < m->nowned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->to);
    free(m->cc);
    free(m->bcc);
    free(m->reply_to);
    for (size_t i = 0; i < m->natt; i++)
        free((void *)m->att[i].data);
    free(m->att);
    json_decref(m->root);
    memset(m, 0, sizeof(*m));
}

/* Hands s to the mail (freed by mail_cleanup); false when out of memory (s freed). */
static bool mail_own(mail_t *m, char *s)
{
    if (!s)
        return true;
    if (m->nowned == m->capowned) {
        size_t cap = m->capowned ? m->capowned * 2 : 16;
        char **o = realloc(m->owned, cap * sizeof(*o));
        if (!o) {
            free(s);
            return false;
        }
        m->owned = o;
        m->capowned = cap;
    }
    m->owned[m->nowned++] = s;
    return true;
}

/* A failure to report: the kind and its message. */
typedef struct fail_s {
    hopper_fail_kind_t kind;
    char msg[512];
} fail_t;

static int failf(fail_t *f, hopper_fail_kind_t kind, const char *fmt, ...) PRINTF_LIKE(3, 4);
static int failf(fail_t *f, hopper_fail_kind_t kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
    va_end(ap);
    f->kind = kind;
    return -1;
}
#define bad(f, ...) failf((f), HOPPER_FAIL_PERMANENT, __VA_ARGS__)

/* One address from a string ("Name <a@b>" or "a@b") or an object {"email", "name"};
 * `label` names it in messages ("to[1]"). */
static int parse_address(mail_t *m, json_t *v, const char *label, mime_addr_t *out, fail_t *f)
{
    char why[WHY_MAX];
    const char *name = NULL, *email = NULL;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (mime_check_header_text(s, why, sizeof(why)))
            return bad(f, "field \"%s\" %s", label, why);
        char *n = NULL, *e = NULL;
        if (mime_split_address(s, &n, &e))
            return bad(f,
                       "field \"%s\" is not an address (\"Name <user@host>\" or "
                       "\"user@host\")",
                       label);
        if (!mail_own(m, n)) {
            free(e);
            return failf(f, HOPPER_FAIL_RETRYABLE, "out of memory");
        }
        if (!mail_own(m, e))
            return failf(f, HOPPER_FAIL_RETRYABLE, "out of memory");
        name = n;
        email = e;
    } else if (json_is_object(v)) {
        const char *key;
        json_t *val;
        json_object_foreach(v, key, val)
        {
            if (strcmp(key, "email") && strcmp(key, "name"))
                return bad(f, "field \"%s\" has an unknown member \"%s\" (email, name)", label,
                           key);
            if (!json_is_string(val) && !(json_is_null(val) && strcmp(key, "name") == 0))
                return bad(f, "field \"%s.%s\" must be a string", label, key);
        }
        email = json_string_value(json_object_get(v, "email"));
        name = json_string_value(json_object_get(v, "name"));
        if (!email)
            return bad(f, "field \"%s.email\" is missing", label);
        if (name && mime_check_header_text(name, why, sizeof(why)))
            return bad(f, "field \"%s.name\" %s", label, why);
    } else {
        return bad(f, "field \"%s\" must be an address string or {\"email\", \"name\"}", label);
    }
    if (mime_check_email(email, why, sizeof(why)))
        return bad(f, "field \"%s\": address \"%s\" %s", label, email, why);
    out->name = name && *name ? name : NULL;
    out->email = email;
    return 0;
}

/* An address list: one address, or an array of them. Absent or null: empty. */
static int parse_list(mail_t *m, const char *field, mime_addr_t **out, size_t *n, fail_t *f)
{
    json_t *v = json_object_get(m->root, field);
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v))
        return 0;
    size_t count = json_is_array(v) ? json_array_size(v) : 1;
    if (count == 0)
        return 0;
    *out = calloc(count, sizeof(**out));
    if (!*out)
        return failf(f, HOPPER_FAIL_RETRYABLE, "out of memory");
    if (!json_is_array(v)) {
        *n = 1;
        return parse_address(m, v, field, *out, f);
    }
    for (size_t i = 0; i < count; i++) {
        char label[64];
        snprintf(label, sizeof(label), "%s[%zu]", field, i);
        if (parse_address(m, json_array_get(v, i), label, &(*out)[i], f))
            return -1;
        *n = i + 1;
    }
    return 0;
}

/* A string member: absent or null gives NULL; `header` checks it as header text. */
static int parse_text(mail_t *m, const char *field, bool header, const char **out, fail_t *f)
{
    json_t *v = json_object_get(m->root, field);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return bad(f, "field \"%s\" must be a string", field);
    char why[WHY_MAX];
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v))
        return bad(f, "field \"%s\" contains a NUL character", field);
    if (header ? mime_check_header_text(s, why, sizeof(why))
               : mime_check_body_text(s, why, sizeof(why)))
        return bad(f, "field \"%s\" %s", field, why);
    *out = s;
    return 0;
}

/* Headers that the plugin writes itself, or that a sender must not set. */
static bool reserved_header(const char *name)
{
    static const char *const names[] = {
        "from",         "to",
        "cc",           "bcc",
        "reply-to",     "subject",
        "date",         "message-id",
        "sender",       "mime-version",
        "received",     "return-path",
        "content-type", "content-transfer-encoding",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(name, names[i]) == 0)
            return true;
    }
    return strncasecmp(name, "content-", 8) == 0;
}

static int parse_headers(mail_t *m, fail_t *f)
{
    json_t *v = json_object_get(m->root, "headers");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return bad(f, "field \"headers\" must be an object {\"Name\": \"value\"}");
    if (json_object_size(v) > MAX_HEADERS)
        return bad(f, "field \"headers\" has more than %d headers", MAX_HEADERS);
    const char *key;
    json_t *val;
    char why[WHY_MAX];
    json_object_foreach(v, key, val)
    {
        if (mime_check_header_name(key, why, sizeof(why)))
            return bad(f, "field \"headers\": name \"%s\" %s", key, why);
        if (reserved_header(key))
            return bad(f,
                       "field \"headers\": \"%s\" is set by the plugin or from its own "
                       "field, not through headers",
                       key);
        if (!json_is_string(val))
            return bad(f, "field \"headers.%s\" must be a string", key);
        if (mime_check_header_text(json_string_value(val), why, sizeof(why)))
            return bad(f, "field \"headers.%s\" %s", key, why);
        m->headers[m->nheaders].name = key;
        m->headers[m->nheaders].value = json_string_value(val);
        m->nheaders++;
    }
    return 0;
}

/* Reads blob `id` whole into a malloc'd buffer (*data, *len); budget is what the
 * message may still take. */
static int read_blob(hopper_job_t *job, const char *label, const char *id, long long budget,
                     unsigned char **data, size_t *len, const char **ctype, fail_t *f)
{
    long long size = 0;
    int fd = hopper_blob_open(job, id, &size, ctype);
    if (fd < 0)
        return bad(f, "field \"%s.blob\": no blob \"%s\" in the blob store", label, id);
    /* base64 takes 4 bytes per 3, and 2 more per 76 */
    if (size < 0 || size / 57 * 78 > budget) {
        close(fd);
        return bad(f,
                   "field \"%s\": blob %s is %lld bytes, more than the message may hold "
                   "(max_message_bytes)",
                   label, id, size);
    }
    unsigned char *buf = malloc(size ? (size_t)size : 1);
    if (!buf) {
        close(fd);
        return failf(f, HOPPER_FAIL_RETRYABLE, "out of memory reading blob %s", id);
    }
    size_t got = 0;
    while (got < (size_t)size) {
        ssize_t r = read(fd, buf + got, (size_t)size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            free(buf);
            return failf(f, HOPPER_FAIL_RETRYABLE, "field \"%s.blob\": reading blob %s: %s", label,
                         id, e ? strerror(e) : "shorter than its size");
        }
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *len = got;
    return 0;
}

static int parse_attachments(hopper_job_t *job, mail_t *m, long long budget, fail_t *f)
{
    json_t *v = json_object_get(m->root, "attachments");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return bad(f, "field \"attachments\" must be an array");
    size_t n = json_array_size(v);
    if (n == 0)
        return 0;
    m->att = calloc(n, sizeof(*m->att));
    if (!m->att)
        return failf(f, HOPPER_FAIL_RETRYABLE, "out of memory");
    char why[WHY_MAX];
    for (size_t i = 0; i < n; i++) {
        char label[48];
        snprintf(label, sizeof(label), "attachments[%zu]", i);
        json_t *a = json_array_get(v, i);
        if (!json_is_object(a))
            return bad(f,
                       "field \"%s\" must be an object {\"blob\", \"filename\", "
                       "\"content_type\"}",
                       label);
        const char *key;
        json_t *val;
        json_object_foreach(a, key, val)
        {
            if (strcmp(key, "blob") && strcmp(key, "filename") && strcmp(key, "content_type"))
                return bad(f,
                           "field \"%s\" has an unknown member \"%s\" (blob, filename, "
                           "content_type)",
                           label, key);
            if (!json_is_string(val))
                return bad(f, "field \"%s.%s\" must be a string", label, key);
        }
        const char *blob = json_string_value(json_object_get(a, "blob"));
        const char *fname = json_string_value(json_object_get(a, "filename"));
        const char *ctype = json_string_value(json_object_get(a, "content_type"));
        if (!blob)
            return bad(f, "field \"%s.blob\" is missing (a blob id)", label);
        if (fname &&
            (mime_check_header_text(fname, why, sizeof(why)) || !*fname || strlen(fname) > 255))
            return bad(f, "field \"%s.filename\" %s", label,
                       *fname && strlen(fname) <= 255 ? why : "must be 1 to 255 bytes");
        if (ctype && mime_check_content_type(ctype, why, sizeof(why)))
            return bad(f, "field \"%s.content_type\" %s", label, why);
        if (hopper_job_canceled(job))
            return failf(f, HOPPER_FAIL_RETRYABLE, "canceled while reading attachments");
        unsigned char *data = NULL;
        size_t len = 0;
        const char *blob_ct = NULL;
        if (read_blob(job, label, blob, budget, &data, &len, &blob_ct, f))
            return -1;
        budget -= (long long)len / 57 * 78 + 78;
        mime_attachment_t *att = &m->att[m->natt++];
        att->data = data;
        att->len = len;
        if (!ctype && blob_ct && !mime_check_content_type(blob_ct, why, sizeof(why))) {
            char *copy = strdup(blob_ct); /* the host's string dies with the handler */
            if (!copy || !mail_own(m, copy))
                return failf(f, HOPPER_FAIL_RETRYABLE, "out of memory");
            ctype = copy;
        }
        att->content_type = ctype ? ctype : "application/octet-stream";
        if (!fname) {
            char def[32];
            snprintf(def, sizeof(def), "attachment-%zu", i + 1);
            char *copy = strdup(def);
            if (!copy || !mail_own(m, copy))
                return failf(f, HOPPER_FAIL_RETRYABLE, "out of memory");
            fname = copy;
        }
        att->filename = fname;
    }
    return 0;
}

static int parse_mail(hopper_job_t *job, const email_conf_t *c, mail_t *m, fail_t *f)
{
    static const char *const known[] = {"from",    "to",   "cc",   "bcc",         "reply_to",
                                        "subject", "text", "html", "attachments", "headers"};
    size_t len = 0;
    const char *text = hopper_job_payload(job, &len);
    json_error_t jerr;
    m->root = text ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!json_is_object(m->root))
        return bad(f, "the payload must be a JSON object (see the email.send payload)");
    const char *key;
    json_t *val;
    json_object_foreach(m->root, key, val)
    {
        size_t i = 0;
        while (i < sizeof(known) / sizeof(known[0]) && strcmp(key, known[i]))
            i++;
        if (i == sizeof(known) / sizeof(known[0]))
            return bad(f, "unknown field \"%s\" in the payload", key);
    }

    json_t *from = json_object_get(m->root, "from");
    json_t *def = NULL;
    if (!from || json_is_null(from)) {
        if (!c->from)
            return bad(f, "field \"from\" is missing (and no default \"from\" is configured)");
        from = def = json_string(c->from);
        if (!def)
            return failf(f, HOPPER_FAIL_RETRYABLE, "out of memory");
    }
    /* A configured default is parsed like the payload's (it was checked at init);
     * its parts are copies owned by m, so def can go at once. */
    int err = parse_address(m, from, "from", &m->from, f);
    json_decref(def);
    if (err)
        return -1;

    if (parse_list(m, "to", &m->to, &m->nto, f) || parse_list(m, "cc", &m->cc, &m->ncc, f) ||
        parse_list(m, "bcc", &m->bcc, &m->nbcc, f) ||
        parse_list(m, "reply_to", &m->reply_to, &m->nreply_to, f))
        return -1;
    size_t nrcpt = m->nto + m->ncc + m->nbcc;
    if (nrcpt == 0)
        return bad(f, "no recipients: fields \"to\", \"cc\" and \"bcc\" are all empty");
    if ((long long)nrcpt > c->max_rcpt)
        return bad(f,
                   "%zu recipients in \"to\", \"cc\" and \"bcc\"; at most %lld "
                   "(max_recipients)",
                   nrcpt, c->max_rcpt);
    if (parse_text(m, "subject", true, &m->subject, f) ||
        parse_text(m, "text", false, &m->text, f) || parse_text(m, "html", false, &m->html, f) ||
        parse_headers(m, f))
        return -1;
    json_t *atts = json_object_get(m->root, "attachments");
    if (!m->text && !m->html && json_array_size(atts) == 0)
        return bad(f, "the message is empty: give \"text\", \"html\" or \"attachments\"");
    long long budget = c->max_bytes - (long long)((m->text ? strlen(m->text) : 0) +
                                                  (m->html ? strlen(m->html) : 0));
    if (budget < 0)
        return bad(f,
                   "fields \"text\" and \"html\" are larger than the message may be "
                   "(max_message_bytes %lld)",
                   c->max_bytes);
    return parse_attachments(job, m, budget, f);
}

/* ---- SMTP ---- */

/* What one session's callbacks see and note. */
typedef struct session_s {
    const email_conf_t *conf;
    hopper_job_t *job;
    const char *data; /* the message */
    size_t len;
    bool sent_chunk;  /* the message callback handed out the message */
    bool tls_missing; /* STARTTLS required, not offered */
    bool cert_refused;
    long cert_result;
    size_t transferred; /* bytes of the message written so far */
    int last_percent;
} session_t;

/* libESMTP's message callback: the whole message in one chunk, then the end; a
 * NULL len asks to rewind. */
static const char *message_cb(void **ctx, int *len, void *arg)
{
    (void)ctx; /* libESMTP frees *ctx with free(): leave it NULL */
    session_t *s = arg;
    if (!len) {
        s->sent_chunk = false;
        return NULL;
    }
    if (s->sent_chunk) {
        *len = 0;
        return NULL;
    }
    s->sent_chunk = true;
    *len = (int)s->len;
    return s->data;
}

static void event_cb(smtp_session_t session, int event, void *arg, ...)
{
    (void)session;
    session_t *s = arg;
    va_list ap;
    va_start(ap, arg);
    switch (event) {
    case SMTP_EV_EXTNA_STARTTLS:
        s->tls_missing = true;
        break;
    case SMTP_EV_INVALID_PEER_CERTIFICATE: {
        long result = va_arg(ap, long);
        int *ok = va_arg(ap, int *);
        if (!s->conf->tls_verify) {
            *ok = 1;
        } else {
            s->cert_refused = true;
            s->cert_result = result;
        }
        break;
    }
    case SMTP_EV_NO_PEER_CERTIFICATE:
    case SMTP_EV_WRONG_PEER_CERTIFICATE: {
        int *ok = va_arg(ap, int *);
        if (!s->conf->tls_verify)
            *ok = 1;
        else
            s->cert_refused = true;
        break;
    }
    case SMTP_EV_MESSAGEDATA: {
        (void)va_arg(ap, smtp_message_t);
        int n = va_arg(ap, int);
        s->transferred += n > 0 ? (size_t)n : 0;
        int pct = 40 + (int)(55.0 * (double)s->transferred / (double)(s->len ? s->len : 1));
        if (pct > 95)
            pct = 95;
        if (pct >= s->last_percent + 5) {
            s->last_percent = pct;
            hopper_progress(s->job, pct, "transferring the message");
        }
        break;
    }
    default:
        break;
    }
    va_end(ap);
}

static int auth_interact(auth_client_request_t req, char **result, int fields, void *arg)
{
    const email_conf_t *c = arg;
    for (int i = 0; i < fields; i++) {
        if (req[i].flags & AUTH_USER)
            result[i] = c->username;
        else if (req[i].flags & AUTH_PASS)
            result[i] = c->password;
        else
            return 0; /* a realm or something else we do not have */
    }
    return 1;
}

/* The server's text without its trailing line end, into out. */
static const char *reply_text(const smtp_status_t *st, char *out, size_t outlen)
{
    snprintf(out, outlen, "%d %s", st->code, st->text ? st->text : "");
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\r' || out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    return out;
}

/* One label per envelope recipient, for messages: "to[0]", "bcc[2]"... */
typedef struct rcpt_s {
    smtp_recipient_t r;
    const char *email;
    char label[24];
} rcpt_t;

static void add_rcpts(rcpt_t *out, size_t *n, const char *field, const mime_addr_t *a, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        out[*n].email = a[i].email;
        snprintf(out[*n].label, sizeof(out[*n].label), "%s[%zu]", field, i);
        (*n)++;
    }
}

/* A refusal for want of authentication (RFC 4954: 530 5.7.0 required, 535 5.7.8
 * invalid credentials, 538 5.7.11 encryption required): the operator's config is
 * wrong, not the job, so it is retryable. libESMTP goes on to MAIL FROM after a
 * failed AUTH, so this shows as the sender's status. */
static bool auth_refusal(const smtp_status_t *st)
{
    return st->code == 530 || st->code == 535 || st->code == 538 ||
           (st->enh_class == 5 && st->enh_subject == 7 &&
            (st->enh_detail == 8 || st->enh_detail == 9 || st->enh_detail == 11));
}

/* Decides the outcome of a finished session. 0 on delivery (the result JSON in
 * *result, malloc'd), or -1 with f set. */
static int classify(const email_conf_t *c, session_t *s, int started, smtp_message_t msg,
                    rcpt_t *rcpts, size_t nrcpt, const char *message_id, char **result, fail_t *f)
{
    char reply[400];
    if (s->tls_missing)
        return failf(f, HOPPER_FAIL_RETRYABLE,
                     "STARTTLS is required (config \"starttls\") but %s does not offer it",
                     c->server);
    if (s->cert_refused)
        return failf(f, HOPPER_FAIL_RETRYABLE,
                     "the TLS certificate of %s did not verify (OpenSSL result %ld; config "
                     "\"tls_verify\")",
                     c->server, s->cert_result);
    if (!started) {
        char err[200];
        int e = smtp_errno();
        smtp_strerror(e, err, sizeof(err));
        return failf(f, HOPPER_FAIL_RETRYABLE, "cannot deliver through %s: %s", c->server,
                     e ? err : "the server ended the session");
    }
    const smtp_status_t *rp = smtp_reverse_path_status(msg);
    if (auth_refusal(rp))
        return failf(f, HOPPER_FAIL_RETRYABLE,
                     "%s wants AUTH that succeeds (config \"username\"/\"password\"%s): %s",
                     c->server, c->username ? ", which it refused" : ", not set",
                     reply_text(rp, reply, sizeof(reply)));
    if (rp->code / 100 == 5)
        return bad(f, "field \"from\": %s refused the sender: %s", c->server,
                   reply_text(rp, reply, sizeof(reply)));
    if (rp->code / 100 == 4)
        return failf(f, HOPPER_FAIL_RETRYABLE, "%s deferred the sender: %s", c->server,
                     reply_text(rp, reply, sizeof(reply)));
    if (rp->code / 100 != 2) {
        char err[200];
        int e = smtp_errno();
        smtp_strerror(e, err, sizeof(err));
        return failf(f, HOPPER_FAIL_RETRYABLE,
                     "%s ended the session before taking the sender%s"
                     ": %s",
                     c->server, c->username ? " (was AUTH refused?)" : "", e ? err : "no reply");
    }
    const rcpt_t *perm = NULL, *temp = NULL;
    for (size_t i = 0; i < nrcpt; i++) {
        int code = smtp_recipient_status(rcpts[i].r)->code;
        if (code / 100 == 5 && !perm)
            perm = &rcpts[i];
        else if (code / 100 != 2 && !temp)
            temp = &rcpts[i];
    }
    if (perm)
        return bad(f, "field \"%s\": %s refused recipient %s: %s", perm->label, c->server,
                   perm->email, reply_text(smtp_recipient_status(perm->r), reply, sizeof(reply)));
    if (temp)
        return failf(f, HOPPER_FAIL_RETRYABLE, "field \"%s\": %s deferred recipient %s: %s",
                     temp->label, c->server, temp->email,
                     reply_text(smtp_recipient_status(temp->r), reply, sizeof(reply)));
    const smtp_status_t *ms = smtp_message_transfer_status(msg);
    if (ms->code / 100 == 5)
        return bad(f, "%s refused the message: %s", c->server,
                   reply_text(ms, reply, sizeof(reply)));
    if (ms->code / 100 != 2) {
        char err[200];
        int e = smtp_errno();
        smtp_strerror(e, err, sizeof(err));
        return failf(f, HOPPER_FAIL_RETRYABLE, "%s did not take the message: %s", c->server,
                     ms->code ? reply_text(ms, reply, sizeof(reply))
                     : e      ? err
                              : "no reply");
    }

    json_t *accepted = json_array();
    for (size_t i = 0; i < nrcpt; i++)
        json_array_append_new(accepted, json_string(rcpts[i].email));
    char mid[300];
    snprintf(mid, sizeof(mid), "<%s>", message_id);
    json_t *r = json_pack("{s:o, s:s, s:s, s:s, s:I}", "accepted", accepted, "message_id", mid,
                          "server", c->server, "reply", reply_text(ms, reply, sizeof(reply)),
                          "size", (json_int_t)s->len);
    *result = r ? json_dumps(r, JSON_COMPACT) : NULL;
    json_decref(r);
    if (!*result)
        return failf(f, HOPPER_FAIL_RETRYABLE, "out of memory");
    return 0;
}

/* Sends the message through c->server. 0 with *result, or -1 with f. */
static int deliver(hopper_job_t *job, const email_conf_t *c, const mail_t *m, const char *data,
                   size_t len, const char *message_id, char **result, fail_t *f)
{
    size_t nrcpt = m->nto + m->ncc + m->nbcc, n = 0;
    rcpt_t *rcpts = calloc(nrcpt, sizeof(*rcpts));
    smtp_session_t session = smtp_create_session();
    auth_context_t auth = NULL;
    int rc = -1;
    if (!rcpts || !session) {
        failf(f, HOPPER_FAIL_RETRYABLE, "out of memory");
        goto done;
    }
    add_rcpts(rcpts, &n, "to", m->to, m->nto);
    add_rcpts(rcpts, &n, "cc", m->cc, m->ncc);
    add_rcpts(rcpts, &n, "bcc", m->bcc, m->nbcc);

    session_t s = {.conf = c, .job = job, .data = data, .len = len, .last_percent = 40};
    long long timeout = c->timeout_ms;
    int64_t deadline = hopper_job_deadline_ms(job);
    if (deadline > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long long left = deadline - ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
        if (left < timeout)
            timeout = left < 1000 ? 1000 : left;
    }
    static const int phases[] = {Timeout_GREETING, Timeout_ENVELOPE, Timeout_DATA, Timeout_TRANSFER,
                                 Timeout_DATA2};
    for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++)
        smtp_set_timeout(session, phases[i] | Timeout_OVERRIDE_RFC2822_MINIMUM, (long)timeout);
    static const enum starttls_option tls[] = {Starttls_DISABLED, Starttls_ENABLED,
                                               Starttls_REQUIRED};
    smtp_message_t msg = smtp_add_message(session);
    if (!smtp_set_server(session, c->server) || !msg ||
        (c->helo && !smtp_set_hostname(session, c->helo)) ||
        !smtp_set_eventcb(session, event_cb, &s) ||
        !smtp_option_require_all_recipients(session, 1) ||
        !smtp_set_reverse_path(msg, m->from.email) || !smtp_set_messagecb(msg, message_cb, &s)) {
        failf(f, HOPPER_FAIL_RETRYABLE, "cannot set up the SMTP session (out of memory?)");
        goto done;
    }
    if (c->tls && !smtp_starttls_set_ctx(session, c->tls)) {
        failf(f, HOPPER_FAIL_RETRYABLE, "cannot give libESMTP the TLS context");
        goto done;
    }
    if (!smtp_starttls_enable(session, tls[c->starttls]) && c->starttls != TLS_OFF) {
        failf(f, HOPPER_FAIL_RETRYABLE,
              "this libESMTP has no STARTTLS, but config \"starttls\" "
              "asks for it");
        goto done;
    }
    smtp_size_set_estimate(msg, (unsigned long)len);
    for (size_t i = 0; i < nrcpt; i++) {
        rcpts[i].r = smtp_add_recipient(msg, rcpts[i].email);
        if (!rcpts[i].r) {
            failf(f, HOPPER_FAIL_RETRYABLE, "out of memory");
            goto done;
        }
    }
    if (c->username) {
        auth = auth_create_context();
        if (!auth) {
            failf(f, HOPPER_FAIL_RETRYABLE, "out of memory");
            goto done;
        }
        auth_set_mechanism_flags(auth, AUTH_PLUGIN_PLAIN, 0);
        auth_set_interact_cb(auth, auth_interact, (void *)c);
        smtp_auth_set_context(session, auth);
    }
    hopper_progress(job, 40, "connecting");
    int started = smtp_start_session(session);
    rc = classify(c, &s, started, msg, rcpts, nrcpt, message_id, result, f);
done:
    if (session)
        smtp_destroy_session(session);
    if (auth)
        auth_destroy_context(auth);
    free(rcpts);
    return rc;
}

/* ---- The email.send job type ---- */

static bool is_id_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.';
}

/* A Message-ID that stays the same across the job's attempts (receivers can drop a
 * duplicate), in the sender's domain. */
static void make_message_id(hopper_job_t *job, const char *from, char *out, size_t outlen)
{
    const char *id = hopper_job_id(job);
    char safe[80];
    size_t n = 0;
    for (const char *p = id ? id : ""; *p && n < sizeof(safe) - 1; p++)
        safe[n++] = is_id_char(*p) ? *p : '_';
    safe[n] = '\0';
    const char *at = strrchr(from, '@');
    snprintf(out, outlen, "hopper.%s@%s", n ? safe : "job", at ? at + 1 : "localhost");
}

static hopper_status_t send_mail(hopper_job_t *job, void *type_ctx)
{
    const email_conf_t *c = type_ctx;
    mail_t m = {0};
    fail_t f = {0};
    mbuf_t msg;
    mbuf_init(&msg, (size_t)c->max_bytes);
    char *result = NULL;
    hopper_status_t status;

    if (parse_mail(job, c, &m, &f))
        goto fail;
    char message_id[200];
    make_message_id(job, m.from.email, message_id, sizeof(message_id));
    mime_mail_t mm = {
        .from = m.from,
        .to = m.to,
        .nto = m.nto,
        .cc = m.cc,
        .ncc = m.ncc,
        .reply_to = m.reply_to,
        .nreply_to = m.nreply_to,
        .subject = m.subject,
        .text = m.text,
        .html = m.html,
        .headers = m.headers,
        .nheaders = m.nheaders,
        .attachments = m.att,
        .nattachments = m.natt,
        .message_id = message_id,
        .date = time(NULL),
    };
    if (mime_build(&mm, &msg)) {
        bad(&f, "the message is larger than %lld bytes (max_message_bytes)", c->max_bytes);
        goto fail;
    }
    hopper_progress(job, 30, "message built");
    if (hopper_job_canceled(job)) {
        failf(&f, HOPPER_FAIL_RETRYABLE, "canceled before sending");
        goto fail;
    }
    int64_t open_for = 0;
    if (breaker_acquire(c->breaker, c->server, &open_for)) {
        failf(&f, HOPPER_FAIL_RETRYABLE,
              "circuit open for %s (after repeated failures; %lld ms "
              "before a trial)",
              c->server, (long long)open_for);
        goto fail;
    }
    hopper_log(job, HOPPER_LOG_INFO, "sending <%s> (%zu bytes, %zu recipients) through %s",
               message_id, msg.len, m.nto + m.ncc + m.nbcc, c->server);
    int rc = deliver(job, c, &m, msg.p, msg.len, message_id, &result, &f);
    breaker_report(c->breaker, c->server, rc != 0 && f.kind == HOPPER_FAIL_RETRYABLE);
    if (rc)
        goto fail;
    hopper_progress(job, 100, "sent");
    status = hopper_succeed(job, result);
    free(result);
    mbuf_free(&msg);
    mail_cleanup(&m);
    return status;

fail:
    mbuf_free(&msg);
    mail_cleanup(&m);
    hopper_log(job, HOPPER_LOG_WARN, "email.send: %s", f.msg);
    return hopper_fail(job, f.kind, "%s", f.msg);
}

HOPPER_PLUGIN_INIT(api, plugin, errmsg)
{
    HOPPER_USE(api);
    if (hopper_register(plugin, PLUGIN_NAME, PLUGIN_VERSION) != 0)
        return init_error(errmsg, "email: this worker's plugin ABI is not %d.x",
                          HOPPER_ABI_VERSION_MAJOR);
    if (!HOPPER_HAS(blob_open))
        return init_error(errmsg, "email: needs a worker with the blob API (ABI 1.1)");
    email_conf_t *c = NULL;
    if (conf_load(plugin, &c, errmsg))
        return -1;
    auth_client_init();
    g_conf = c;
    hopper_on_shutdown(plugin, on_shutdown, c);
    return hopper_register_type(plugin, &(hopper_job_type_t){.version = HOPPER_JOB_TYPE_VERSION,
                                                             .name = "email.send",
                                                             .handle = send_mail,
                                                             .ctx = c});
}
