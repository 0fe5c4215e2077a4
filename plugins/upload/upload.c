/*
 * plugins/upload/upload.c -- the "upload" plugin: job type upload.put sends one blob
 * of the store to a remote destination with libcurl's easy interface.
 *
 * Destinations: HTTP(S) PUT (the default), HTTP(S) POST as multipart/form-data,
 * FTP/FTPS (STOR) and SFTP, and S3-compatible object stores (a PUT signed with AWS
 * SigV4; the blob id, being the SHA-256 of the bytes, is the signed payload hash).
 * The body streams from the blob's file descriptor in curl's upload buffer: a 5 GiB
 * blob costs the same memory as a 5 KiB one. Progress goes to the job as a percent
 * of bytes sent; hopper_job_canceled() aborts the transfer from the progress
 * callback. Every failure is classified (see classify_http/classify_curl) as
 * retryable (the destination is in trouble: network, timeout, 408, 429, 5xx) or
 * permanent (the request is wrong: other 4xx, refused credentials, bad payload).
 * A per-host circuit breaker (plugins/common/breaker.c) makes jobs for a host that
 * keeps failing fail fast instead of each waiting out a timeout.
 *
 * Secrets: credentials come from the plugin's config or environment, go only to
 * the hosts listed in "auth_hosts", and are never logged. A URL is logged or put in
 * a result only without its userinfo (safe_url), and any password given in a URL is
 * masked out of curl's error text before that text goes anywhere.
 *
 * This file owns the payload, the transfer and the classification; it does not
 * own retries (the job's attempts and backoff do) nor the blob store.
 */
#include <hopper/plugin.h>

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "breaker.h"

HOPPER_EXPORT int hopper_plugin_init(const hopper_host_api_t *api, hopper_plugin_t *plugin,
                                     char **errmsg);

#define UPLOAD_VERSION    "1.0.0"
#define URL_MAX           4096 /* bytes of a payload URL */
#define HOST_KEY_MAX      280  /* "host:port" */
#define RESPONSE_MAX      2048 /* bytes of the response body kept for the result */
#define MSG_MAX           1024
#define TEXT_MAX          255 /* content_type, filename, field */
#define DEFAULT_PROTOCOLS "http,https,ftp,ftps,sftp"

/* ---- Configuration ---- */

/*
 * The plugin's settings, read once in init from its config section, with the
 * environment as a fallback for secrets. Integers come from int_keys[] (bounds and
 * defaults in one table); strings from str_keys[] and are owned here (strdup'd,
 * freed by config_free at shutdown), so nothing depends on how long the host keeps
 * its config strings or on setenv elsewhere.
 */
typedef struct config_s {
    long breaker_threshold;  /* retryable failures in a row that open a host's circuit */
    long breaker_open_ms;    /* how long it stays open before a trial job */
    long connect_timeout_ms; /* TCP + TLS/SSH handshake */
    long low_speed_bytes;    /* abort when slower than this many bytes/s ... */
    long low_speed_seconds;  /* ... for this many seconds */
    long timeout_ms;         /* whole transfer, 0: none (the job's deadline still holds) */
    long max_send_speed;     /* bytes/s cap on each upload, 0: none */
    char *username;          /* HTTP basic, FTP, SFTP */
    char *password;
    char *s3_access_key;
    char *s3_secret_key;
    char *s3_session_token; /* temporary credentials: x-amz-security-token */
    char *s3_region;
    char *s3_service;
    char *auth_hosts;      /* comma-separated host or host:port the credentials go to; "*" */
    char *ca_file;         /* CA bundle for https/ftps */
    char *ssh_private_key; /* SFTP key authentication */
    char *ssh_public_key;
    char *ssh_known_hosts; /* SFTP host key check; unset: not checked */
    char *protocols;       /* CURLOPT_PROTOCOLS_STR */
} config_t;

typedef struct int_key_s {
    const char *name;
    long min, max, def;
    size_t offset;
} int_key_t;

static const int_key_t int_keys[] = {
    {"breaker_threshold", 1, 1000, 5, offsetof(config_t, breaker_threshold)},
    {"breaker_open_ms", 0, 86400000L, 30000, offsetof(config_t, breaker_open_ms)},
    {"connect_timeout_ms", 1, 600000, 10000, offsetof(config_t, connect_timeout_ms)},
    {"low_speed_bytes", 0, 1L << 30, 1, offsetof(config_t, low_speed_bytes)},
    {"low_speed_seconds", 1, 3600, 30, offsetof(config_t, low_speed_seconds)},
    {"timeout_ms", 0, 86400000L, 0, offsetof(config_t, timeout_ms)},
    {"max_send_speed", 0, LONG_MAX, 0, offsetof(config_t, max_send_speed)},
};

typedef struct str_key_s {
    const char *name;
    const char *env; /* fallback when the config has no such key, or NULL */
    const char *def;
    size_t offset;
} str_key_t;

static const str_key_t str_keys[] = {
    {"username", "HOPPER_UPLOAD_USERNAME", NULL, offsetof(config_t, username)},
    {"password", "HOPPER_UPLOAD_PASSWORD", NULL, offsetof(config_t, password)},
    {"s3_access_key", "AWS_ACCESS_KEY_ID", NULL, offsetof(config_t, s3_access_key)},
    {"s3_secret_key", "AWS_SECRET_ACCESS_KEY", NULL, offsetof(config_t, s3_secret_key)},
    {"s3_session_token", "AWS_SESSION_TOKEN", NULL, offsetof(config_t, s3_session_token)},
    {"s3_region", "AWS_REGION", "us-east-1", offsetof(config_t, s3_region)},
    {"s3_service", NULL, "s3", offsetof(config_t, s3_service)},
    {"auth_hosts", "HOPPER_UPLOAD_AUTH_HOSTS", NULL, offsetof(config_t, auth_hosts)},
    {"ca_file", NULL, NULL, offsetof(config_t, ca_file)},
    {"ssh_private_key", NULL, NULL, offsetof(config_t, ssh_private_key)},
    {"ssh_public_key", NULL, NULL, offsetof(config_t, ssh_public_key)},
    {"ssh_known_hosts", NULL, NULL, offsetof(config_t, ssh_known_hosts)},
    {"protocols", NULL, DEFAULT_PROTOCOLS, offsetof(config_t, protocols)},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* The plugin's state: set in init, read-only while jobs run (the breaker locks
 * itself), freed by on_shutdown. */
static struct {
    config_t cfg;
    breaker_t *breaker;
} g;

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Frees the strings of `cfg`; safe on a zeroed or half-filled config. */
static void config_free(config_t *cfg)
{
    for (size_t i = 0; i < NELEM(str_keys); i++) {
        char **slot = (char **)((char *)cfg + str_keys[i].offset);
        free(*slot);
        *slot = NULL;
    }
}

/* Fills `cfg` from the plugin's config and the environment. Returns 0, or -1 with
 * *errmsg a malloc'd message that names the key. */
static int config_load(config_t *cfg, hopper_plugin_t *p, char **errmsg)
{
    char msg[256];
    for (size_t i = 0; i < NELEM(int_keys); i++) {
        const int_key_t *k = &int_keys[i];
        long v = k->def;
        const char *text = hopper_config(p, k->name);
        if (text) {
            char *end;
            errno = 0;
            long long parsed = strtoll(text, &end, 10);
            if (errno || end == text || *end || parsed < k->min || parsed > k->max) {
                snprintf(msg, sizeof(msg), "upload: config \"%s\" must be an integer in %ld..%ld",
                         k->name, k->min, k->max);
                goto fail;
            }
            v = (long)parsed;
        }
        *(long *)((char *)cfg + k->offset) = v;
    }
    for (size_t i = 0; i < NELEM(str_keys); i++) {
        const str_key_t *k = &str_keys[i];
        const char *v = hopper_config(p, k->name);
        if (!v && k->env)
            v = getenv(k->env);
        if (!v || !*v)
            v = k->def;
        char **slot = (char **)((char *)cfg + k->offset);
        *slot = xstrdup(v);
        if (v && !*slot) {
            snprintf(msg, sizeof(msg), "upload: out of memory");
            goto fail;
        }
    }
    bool has_creds = cfg->username || cfg->password || cfg->s3_access_key || cfg->s3_secret_key;
    if (has_creds && !cfg->auth_hosts) {
        snprintf(msg, sizeof(msg),
                 "upload: config \"auth_hosts\" must list the hosts the configured credentials "
                 "are sent to (host or host:port, comma-separated, or \"*\" for any host)");
        goto fail;
    }
    if (!!cfg->s3_access_key != !!cfg->s3_secret_key) {
        snprintf(msg, sizeof(msg),
                 "upload: config \"s3_access_key\" and \"s3_secret_key\" go together");
        goto fail;
    }
    return 0;
fail:
    config_free(cfg);
    *errmsg = strdup(msg);
    return -1;
}

/* True when the credentials may go to `host` (a bare host name) at `port`: it is
 * listed in auth_hosts as host or host:port (case-insensitive), or the list is "*". */
static bool auth_allowed(const char *host, long port)
{
    const char *list = g.cfg.auth_hosts;
    if (!list)
        return false;
    char with_port[HOST_KEY_MAX];
    snprintf(with_port, sizeof(with_port), "%s:%ld", host, port);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 1 && *p == '*')
            return true;
        if (n && ((strlen(host) == n && strncasecmp(p, host, n) == 0) ||
                  (strlen(with_port) == n && strncasecmp(p, with_port, n) == 0)))
            return true;
        p += n;
    }
    return false;
}

/* ---- The request: the payload, checked ---- */

typedef enum { DEST_HTTP, DEST_FTP, DEST_SFTP } dest_kind_t;

/*
 * What one job asks for, checked before anything touches the network. The strings
 * from the payload are borrowed from the job (valid until the handler returns);
 * the rest are copies. safe_url is the only form of the URL that is ever logged or
 * returned; url_password, when the URL carries one, is masked out of curl's texts.
 */
typedef struct request_s {
    const char *blob; /* 64 lowercase hex */
    const char *url;  /* as given, userinfo included */
    char safe_url[URL_MAX + 1];
    char host[HOST_KEY_MAX];     /* bare host name, for auth_hosts */
    char host_key[HOST_KEY_MAX]; /* "host:port": the breaker's key and what messages name */
    long port;
    dest_kind_t kind;
    bool post; /* HTTP POST multipart/form-data instead of PUT */
    bool s3;   /* sign with AWS SigV4 */
    bool resume;
    bool url_userinfo; /* the URL names a user: config credentials are not used */
    char url_password[256];
    const char *content_type; /* NULL: the blob's */
    const char *filename;     /* multipart: NULL means the last path segment, else the id */
    const char *field;        /* multipart: the form field, "file" by default */
} request_t;

static bool blob_id_ok(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++) {
        if (!((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'a' && id[n] <= 'f')))
            return false;
    }
    return n == 64;
}

/* Printable ASCII and at most TEXT_MAX bytes: nothing that could end a header line
 * or a multipart header (CR, LF) gets through. */
static bool text_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e)
            return false;
    }
    return n > 0 && n <= TEXT_MAX;
}

/* A bool member that may be absent (then `def`). -1 when present but not a bool. */
static int payload_flag(hopper_job_t *job, const char *key, bool def, bool *out)
{
    int v = 0;
    if (hopper_payload_bool(job, key, &v) == 0) {
        *out = v != 0;
        return 0;
    }
    *out = def;
    /* Present with another type? A string/int accessor would see it. */
    long long n;
    if (hopper_payload_string(job, key) || hopper_payload_int(job, key, &n) == 0)
        return -1;
    return 0;
}

/* Reads and checks the payload into `r`. Returns 0, or -1 with `msg` naming the
 * field (a permanent failure: the same payload can never work). */
static int request_parse(hopper_job_t *job, request_t *r, char *msg, size_t msglen)
{
    memset(r, 0, sizeof(*r));
    r->blob = hopper_payload_string(job, "blob");
    if (!r->blob || !blob_id_ok(r->blob)) {
        snprintf(msg, msglen,
                 "payload \"blob\" must be a blob id (64 lowercase hex digits, the SHA-256 "
                 "that POST /v1/blobs returned)");
        return -1;
    }
    r->url = hopper_payload_string(job, "url");
    if (!r->url || !*r->url || strlen(r->url) > URL_MAX) {
        snprintf(msg, msglen, "payload \"url\" must be a string of 1..%d bytes", URL_MAX);
        return -1;
    }

    CURLU *u = curl_url();
    if (!u) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    int rc = -1;
    char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *pass = NULL, *safe = NULL;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, r->url, 0);
    if (uc) {
        snprintf(msg, msglen, "payload \"url\" is not a valid URL: %s", curl_url_strerror(uc));
        goto done;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) || !host || !*host) {
        snprintf(msg, msglen, "payload \"url\" must name a scheme and a host");
        goto done;
    }
    if (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) {
        r->kind = DEST_HTTP;
    } else if (strcmp(scheme, "ftp") == 0 || strcmp(scheme, "ftps") == 0) {
        r->kind = DEST_FTP;
    } else if (strcmp(scheme, "sftp") == 0) {
        r->kind = DEST_SFTP;
    } else {
        snprintf(msg, msglen,
                 "payload \"url\": scheme \"%s\" is not one of http, https, ftp, "
                 "ftps, sftp",
                 scheme);
        goto done;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK && user)
        r->url_userinfo = true;
    if (curl_url_get(u, CURLUPART_PASSWORD, &pass, 0) == CURLUE_OK && pass) {
        r->url_userinfo = true;
        snprintf(r->url_password, sizeof(r->url_password), "%s", pass);
    }
    /* The safe form: the same URL without userinfo. */
    curl_url_set(u, CURLUPART_USER, NULL, 0);
    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
    curl_url_set(u, CURLUPART_OPTIONS, NULL, 0);
    if (curl_url_get(u, CURLUPART_URL, &safe, 0) || strlen(safe) > URL_MAX) {
        snprintf(msg, msglen, "payload \"url\" is not a valid URL");
        goto done;
    }
    snprintf(r->safe_url, sizeof(r->safe_url), "%s", safe);
    r->port = strtol(port, NULL, 10);
    snprintf(r->host, sizeof(r->host), "%s", host);
    snprintf(r->host_key, sizeof(r->host_key), "%s:%ld", host, r->port);

    const char *method = hopper_payload_string(job, "method");
    if (method && strcasecmp(method, "POST") == 0) {
        r->post = true;
    } else if (method && strcasecmp(method, "PUT") != 0) {
        snprintf(msg, msglen, "payload \"method\" must be \"PUT\" or \"POST\"");
        goto done;
    }
    if (r->post && r->kind != DEST_HTTP) {
        snprintf(msg, msglen, "payload \"method\": POST is for http and https URLs only");
        goto done;
    }
    if (payload_flag(job, "s3", false, &r->s3) || payload_flag(job, "resume", true, &r->resume)) {
        snprintf(msg, msglen, "payload \"s3\" and \"resume\" must be true or false");
        goto done;
    }
    if (r->s3 && (r->kind != DEST_HTTP || r->post)) {
        snprintf(msg, msglen, "payload \"s3\": S3 uploads are PUTs to http or https URLs");
        goto done;
    }
    if (r->s3 && !g.cfg.s3_access_key) {
        snprintf(msg, msglen,
                 "payload \"s3\": no S3 credentials are configured (config s3_access_key and "
                 "s3_secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
        goto done;
    }
    if (r->s3 && r->url_userinfo) {
        snprintf(msg, msglen, "payload \"url\": an S3 URL carries no user or password");
        goto done;
    }
    if (r->s3 && !auth_allowed(r->host, r->port)) {
        snprintf(msg, msglen,
                 "payload \"url\": host %s is not in the config's auth_hosts, so "
                 "the S3 credentials are not sent there",
                 r->host_key);
        goto done;
    }
    static const char *const texts[] = {"content_type", "filename", "field"};
    const char **slots[] = {&r->content_type, &r->filename, &r->field};
    for (size_t i = 0; i < NELEM(texts); i++) {
        *slots[i] = hopper_payload_string(job, texts[i]);
        if (*slots[i] && !text_ok(*slots[i])) {
            snprintf(msg, msglen,
                     "payload \"%s\" must be 1..%d printable ASCII characters (no CR or LF)",
                     texts[i], TEXT_MAX);
            goto done;
        }
    }
    if ((r->filename || r->field) && !r->post) {
        snprintf(msg, msglen, "payload \"filename\" and \"field\" are for \"method\": \"POST\"");
        goto done;
    }
    const char *slash = r->content_type ? strchr(r->content_type, '/') : NULL;
    if (r->content_type && (!slash || slash == r->content_type || !slash[1] ||
                            strcspn(r->content_type, " ;") < (size_t)(slash - r->content_type))) {
        snprintf(msg, msglen, "payload \"content_type\" must look like type/subtype");
        goto done;
    }
    rc = 0;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_free(pass);
    curl_free(safe);
    curl_url_cleanup(u);
    return rc;
}

/* ---- The transfer ---- */

/*
 * One curl transfer's state, on the handler's stack: the blob's descriptor (owned:
 * the handler closes it), what the progress callback last reported, and what the
 * header and write callbacks kept of the response (bounded buffers: a server's
 * reply never grows memory).
 */
typedef struct transfer_s {
    hopper_job_t *job;
    int fd;
    long long size;     /* the blob's bytes */
    long long start;    /* where this transfer starts in the blob (resume) */
    int last_percent;   /* -1 before the first report */
    int read_errno;     /* nonzero: reading the blob failed */
    bool canceled;      /* the progress callback saw hopper_job_canceled */
    long retry_after_s; /* from Retry-After, -1 when absent */
    char reason[96];    /* the status line's reason phrase */
    char etag[160];     /* ETag of the response, or "" */
    char body[RESPONSE_MAX + 1];
    size_t body_len;
} transfer_t;

static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    transfer_t *t = arg;
    for (;;) {
        ssize_t n = read(t->fd, buf, size * nitems);
        if (n >= 0)
            return (size_t)n;
        if (errno != EINTR) {
            t->read_errno = errno;
            return CURL_READFUNC_ABORT;
        }
    }
}

/* curl rewinds the body to resend it (an auth round, a redirect, a resume offset). */
static int seek_cb(void *arg, curl_off_t offset, int origin)
{
    transfer_t *t = arg;
    if (lseek(t->fd, (off_t)offset, origin) < 0)
        return CURL_SEEKFUNC_FAIL;
    return CURL_SEEKFUNC_OK;
}

/* Reports progress when the percent changes (at most 101 reports a transfer: each
 * is a round trip to the broker), and stops the transfer once the job is canceled. */
static int progress_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    transfer_t *t = arg;
    if (hopper_job_canceled(t->job)) {
        t->canceled = true;
        return 1; /* CURLE_ABORTED_BY_CALLBACK */
    }
    long long sent = t->start + (long long)ulnow;
    int percent = t->size > 0 ? (int)(sent * 100 / t->size) : 0;
    if (percent > 99)
        percent = 99; /* 100 once the server has answered */
    if (percent != t->last_percent) {
        t->last_percent = percent;
        char text[96];
        snprintf(text, sizeof(text), "sent %lld of %lld bytes", sent, t->size);
        hopper_progress(t->job, percent, text);
    }
    return 0;
}

/* Copies the header value after "Name:" into out, trimmed. */
static void header_value(const char *line, size_t len, size_t name_len, char *out, size_t cap)
{
    const char *v = line + name_len, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t n = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(out, v, n);
    out[n] = '\0';
}

static bool header_is(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* Keeps what classification and the result need from each response's headers. A
 * new status line (after a 100 Continue, a redirect, an auth round) starts over. */
static size_t header_cb(char *line, size_t size, size_t nitems, void *arg)
{
    transfer_t *t = arg;
    size_t len = size * nitems;
    if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
        t->retry_after_s = -1;
        t->etag[0] = '\0';
        t->reason[0] = '\0';
        const char *sp = memchr(line, ' ', len);
        const char *sp2 = sp ? memchr(sp + 1, ' ', len - (size_t)(sp + 1 - line)) : NULL;
        if (sp2)
            header_value(sp2, len - (size_t)(sp2 - line), 0, t->reason, sizeof(t->reason));
        t->body_len = 0;
    } else if (header_is(line, len, "Retry-After")) {
        char v[64];
        header_value(line, len, strlen("Retry-After:"), v, sizeof(v));
        char *end;
        long secs = strtol(v, &end, 10);
        if (end != v && *end == '\0' && secs >= 0) {
            t->retry_after_s = secs;
        } else {
            time_t when = curl_getdate(v, NULL); /* an HTTP-date */
            if (when != -1)
                t->retry_after_s = when > time(NULL) ? (long)(when - time(NULL)) : 0;
        }
    } else if (header_is(line, len, "ETag")) {
        header_value(line, len, strlen("ETag:"), t->etag, sizeof(t->etag));
    }
    return len;
}

/* Keeps the first RESPONSE_MAX bytes of the body, drops the rest. */
static size_t write_cb(char *data, size_t size, size_t nitems, void *arg)
{
    transfer_t *t = arg;
    size_t len = size * nitems;
    size_t room = RESPONSE_MAX - t->body_len;
    size_t n = len < room ? len : room;
    memcpy(t->body + t->body_len, data, n);
    t->body_len += n;
    t->body[t->body_len] = '\0';
    return len;
}

/* Replaces every occurrence of `secret` in `s` with "***" (in place: never longer). */
static void mask(char *s, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n < 3)
        return; /* too short to mask without mangling the text */
    for (char *p = strstr(s, secret); p; p = strstr(p + 3, secret)) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + n, strlen(p + n) + 1);
    }
}

/* Masks every secret this request could have put into a text we show. */
static void mask_secrets(char *s, const request_t *r)
{
    mask(s, r->url_password);
    mask(s, g.cfg.password);
    mask(s, g.cfg.s3_secret_key);
    mask(s, g.cfg.s3_session_token);
}

/* ---- Classification ---- */

typedef struct outcome_s {
    hopper_fail_kind_t kind;
    bool host_trouble; /* counts against the host's circuit */
    char msg[MSG_MAX];
} outcome_t;

/* The text between <tag> and </tag> in body, into out; false when absent. */
static bool xml_element(const char *body, const char *tag, char *out, size_t cap)
{
    char open[32], close[32];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = strstr(body, open);
    const char *b = a ? strstr(a, close) : NULL;
    if (!b)
        return false;
    a += strlen(open);
    snprintf(out, cap, "%.*s", (int)(b - a), a);
    return true;
}

/* What a server said about a refusal, from the start of its response body: an S3
 * error's Code and Message, or a plain-text first line; HTML pages say nothing a
 * user needs (the status line has it). False when there is nothing worth showing. */
static bool server_words(const char *body, char *out, size_t cap)
{
    char code[64], message[160];
    if (xml_element(body, "Code", code, sizeof(code))) {
        if (xml_element(body, "Message", message, sizeof(message)))
            snprintf(out, cap, "%s: %s", code, message);
        else
            snprintf(out, cap, "%s", code);
    } else {
        while (*body == ' ' || *body == '\r' || *body == '\n')
            body++;
        if (!*body || *body == '<')
            return false;
        size_t n = strcspn(body, "\r\n");
        snprintf(out, cap, "%.*s", (int)(n < 200 ? n : 200), body);
    }
    for (char *p = out; *p; p++) { /* the server's bytes: printable ASCII only */
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    }
    return true;
}

/* An HTTP status other than 2xx. 408, 429 and 5xx: the server is busy or failing,
 * so try again (Retry-After, when given, goes into the message: the host API has no
 * per-failure delay, so the job's backoff sets the next attempt). Any other 4xx and
 * 3xx: the request itself is wrong, and a retry would get the same answer. */
static void classify_http(const request_t *r, const transfer_t *t, long code, outcome_t *o)
{
    bool retry = code == 408 || code == 429 || code >= 500;
    o->kind = retry ? HOPPER_FAIL_RETRYABLE : HOPPER_FAIL_PERMANENT;
    o->host_trouble = retry;
    int n = snprintf(o->msg, sizeof(o->msg), "upload to %s: HTTP %ld%s%s", r->safe_url, code,
                     t->reason[0] ? " " : "", t->reason);
    if (n < 0 || (size_t)n >= sizeof(o->msg))
        return;
    if (retry && t->retry_after_s >= 0)
        n += snprintf(o->msg + n, sizeof(o->msg) - (size_t)n,
                      "; the server asks to retry after %ld s (Retry-After; the job's backoff "
                      "sets when the next attempt runs)",
                      t->retry_after_s);
    else if (code >= 300 && code < 400)
        n += snprintf(o->msg + n, sizeof(o->msg) - (size_t)n,
                      "; redirects are not followed: give the final URL");
    else if (!retry && (code == 401 || code == 403))
        n +=
            snprintf(o->msg + n, sizeof(o->msg) - (size_t)n, "; check the credentials and the URL");
    if (n > 0 && (size_t)n < sizeof(o->msg) && t->body_len && !retry) {
        char said[256];
        if (server_words(t->body, said, sizeof(said)))
            snprintf(o->msg + n, sizeof(o->msg) - (size_t)n, " (%s)", said);
    }
}

/* A transfer that curl itself failed. Network trouble and timeouts are retryable
 * and count against the host; refusals that a retry cannot change (credentials,
 * access, certificate, URL) are permanent. An FTP/SFTP "upload failed" goes by the
 * server's reply: 4xx transient, 5xx permanent. */
static void classify_curl(const request_t *r, const transfer_t *t, CURLcode rc, long code,
                          const char *errbuf, outcome_t *o)
{
    const char *detail = errbuf && *errbuf ? errbuf : curl_easy_strerror(rc);
    o->kind = HOPPER_FAIL_RETRYABLE;
    o->host_trouble = true;
    switch (rc) {
    case CURLE_ABORTED_BY_CALLBACK:
        o->host_trouble = false;
        snprintf(o->msg, sizeof(o->msg), "upload to %.300s: canceled", r->safe_url);
        return;
    case CURLE_READ_ERROR:
        o->host_trouble = false;
        snprintf(o->msg, sizeof(o->msg), "upload to %.300s: reading blob %.64s failed: %.500s",
                 r->safe_url, r->blob, t->read_errno ? strerror(t->read_errno) : detail);
        return;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(o->msg, sizeof(o->msg), "upload to %.300s: timed out: %.600s", r->safe_url,
                 detail);
        return;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_LOGIN_DENIED:
    case CURLE_REMOTE_ACCESS_DENIED:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_AUTH_ERROR:
    case CURLE_REMOTE_FILE_NOT_FOUND:
    case CURLE_USE_SSL_FAILED:
        o->kind = HOPPER_FAIL_PERMANENT;
        o->host_trouble = false; /* the server answered */
        break;
    case CURLE_UPLOAD_FAILED:
    case CURLE_QUOTE_ERROR:
        if (code >= 500 && code < 600) {
            o->kind = HOPPER_FAIL_PERMANENT;
            o->host_trouble = false;
        }
        break;
    case CURLE_REMOTE_DISK_FULL:
        o->host_trouble = false; /* up, but full: may pass once space is freed */
        break;
    default:
        break;
    }
    if (code > 0)
        snprintf(o->msg, sizeof(o->msg), "upload to %.300s: %.600s (server reply %ld)", r->safe_url,
                 detail, code);
    else
        snprintf(o->msg, sizeof(o->msg), "upload to %.300s: %.600s", r->safe_url, detail);
}

/* ---- JSON ---- */

/* Appends `s` (len bytes) as a JSON string with quotes to out (cap bytes in all);
 * returns the new length. Bytes that are not printable ASCII go out as \u00XX, so
 * the text stays valid JSON whatever the server sent. Truncates rather than overrun. */
static size_t json_str(char *out, size_t n, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (n + 2 >= cap)
        return n;
    out[n++] = '"';
    for (size_t i = 0; i < len && n + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c > 0x7e) {
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hex[c >> 4];
            out[n + 5] = hex[c & 0xf];
            n += 6;
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    out[n] = '\0';
    return n;
}

/* ---- The handler ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sets up `c` for request `r` from transfer `t`. Lists and the mime handle it makes
 * go to *headers and *mime, which the caller frees after the transfer, whatever
 * this returns. Returns 0, or -1 (out of memory) with msg set. */
static int setup(CURL *c, const request_t *r, transfer_t *t, const char *content_type, char *errbuf,
                 struct curl_slist **headers, curl_mime **mime, int64_t timeout_ms, bool resume_now)
{
    const config_t *cfg = &g.cfg;
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, cfg->protocols);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "hopper-upload/" UPLOAD_VERSION);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
    if (cfg->low_speed_bytes > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, cfg->low_speed_bytes);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, cfg->low_speed_seconds);
    }
    if (timeout_ms > 0)
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    if (cfg->max_send_speed > 0)
        curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)cfg->max_send_speed);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    if (cfg->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, cfg->ca_file);

    /* Credentials: the URL's own, else the config's, for listed hosts only. */
    if (!r->url_userinfo && auth_allowed(r->host, r->port)) {
        if (r->s3) {
            char sigv4[160];
            snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:%s", cfg->s3_region, cfg->s3_service);
            curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4); /* curl copies it */
            curl_easy_setopt(c, CURLOPT_USERNAME, cfg->s3_access_key);
            curl_easy_setopt(c, CURLOPT_PASSWORD, cfg->s3_secret_key);
        } else if (cfg->username) {
            curl_easy_setopt(c, CURLOPT_USERNAME, cfg->username);
            if (cfg->password)
                curl_easy_setopt(c, CURLOPT_PASSWORD, cfg->password);
        }
    }

    if (r->kind == DEST_HTTP) {
        char line[TEXT_MAX + 64];
        if (!r->post) {
            snprintf(line, sizeof(line), "Content-Type: %s", content_type);
            struct curl_slist *l = curl_slist_append(*headers, line);
            if (!l)
                return -1;
            *headers = l;
        }
        if (r->s3) {
            /* The blob id is the SHA-256 of the body: a signed payload, for free. */
            snprintf(line, sizeof(line), "x-amz-content-sha256: %s", r->blob);
            struct curl_slist *l = curl_slist_append(*headers, line);
            if (!l)
                return -1;
            *headers = l;
            if (cfg->s3_session_token) {
                size_t len = strlen(cfg->s3_session_token) + 32;
                char *tok = malloc(len);
                if (!tok)
                    return -1;
                snprintf(tok, len, "x-amz-security-token: %s", cfg->s3_session_token);
                l = curl_slist_append(*headers, tok); /* copies */
                free(tok);
                if (!l)
                    return -1;
                *headers = l;
            }
        }
        if (*headers)
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, *headers);
        if (r->post) {
            *mime = curl_mime_init(c);
            curl_mimepart *part = *mime ? curl_mime_addpart(*mime) : NULL;
            if (!part)
                return -1;
            const char *filename = r->filename ? r->filename : r->blob;
            if (curl_mime_name(part, r->field ? r->field : "file") ||
                curl_mime_filename(part, filename) || curl_mime_type(part, content_type) ||
                curl_mime_data_cb(part, (curl_off_t)t->size, read_cb, seek_cb, NULL, t))
                return -1;
            curl_easy_setopt(c, CURLOPT_MIMEPOST, *mime);
            return 0;
        }
    } else {
        curl_easy_setopt(c, CURLOPT_FTP_CREATE_MISSING_DIRS, (long)CURLFTP_CREATE_DIR_RETRY);
        if (r->kind == DEST_SFTP) {
            if (cfg->ssh_private_key)
                curl_easy_setopt(c, CURLOPT_SSH_PRIVATE_KEYFILE, cfg->ssh_private_key);
            if (cfg->ssh_public_key)
                curl_easy_setopt(c, CURLOPT_SSH_PUBLIC_KEYFILE, cfg->ssh_public_key);
            if (cfg->ssh_known_hosts)
                curl_easy_setopt(c, CURLOPT_SSH_KNOWNHOSTS, cfg->ssh_known_hosts);
        }
        if (resume_now) /* -1: from the size of the remote file (FTP SIZE, SFTP stat) */
            curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)-1);
    }
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, t);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, seek_cb);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, t);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)t->size);
    return 0;
}

/* Runs one curl transfer of the blob. Returns the curl code; *code is the server's
 * last reply (HTTP status, FTP reply) and *sent the bytes sent by this transfer. */
static CURLcode transfer_run(const request_t *r, transfer_t *t, const char *content_type,
                             int64_t timeout_ms, bool resume_now, char *errbuf, long *code,
                             long long *sent, char *msg, size_t msglen)
{
    errbuf[0] = '\0';
    *code = 0;
    *sent = 0;
    if (lseek(t->fd, 0, SEEK_SET) < 0) {
        t->read_errno = errno;
        return CURLE_READ_ERROR;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(msg, msglen, "out of memory");
        return CURLE_OUT_OF_MEMORY;
    }
    struct curl_slist *headers = NULL;
    curl_mime *mime = NULL;
    CURLcode rc = CURLE_OUT_OF_MEMORY;
    if (setup(c, r, t, content_type, errbuf, &headers, &mime, timeout_ms, resume_now) == 0) {
        rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
        curl_off_t up = 0;
        curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &up);
        *sent = (long long)up;
    }
    curl_easy_cleanup(c);
    curl_mime_free(mime);
    curl_slist_free_all(headers);
    return rc;
}

static hopper_status_t handle_put(hopper_job_t *job, void *type_ctx)
{
    (void)type_ctx;
    char msg[MSG_MAX];
    request_t r;
    if (request_parse(job, &r, msg, sizeof(msg)) != 0)
        return hopper_fail(job, HOPPER_FAIL_PERMANENT, "%s", msg);

    long long size = 0;
    const char *blob_type = NULL;
    int fd = hopper_blob_open(job, r.blob, &size, &blob_type);
    if (fd < 0)
        return hopper_fail(job, HOPPER_FAIL_PERMANENT, "payload \"blob\": no blob %s in the store",
                           r.blob);
    const char *content_type = r.content_type            ? r.content_type
                               : blob_type && *blob_type ? blob_type
                                                         : "application/octet-stream";

    int64_t open_for = 0;
    if (breaker_acquire(g.breaker, r.host_key, &open_for) != 0) {
        close(fd);
        return hopper_fail(job, HOPPER_FAIL_RETRYABLE,
                           "circuit open for %s (%" PRId64 " ms left): recent uploads there "
                           "failed; not trying",
                           r.host_key, open_for);
    }

    int64_t timeout_ms = g.cfg.timeout_ms;
    int64_t deadline = hopper_job_deadline_ms(job);
    if (deadline > 0) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            close(fd);
            breaker_report(g.breaker, r.host_key, false);
            return hopper_fail(job, HOPPER_FAIL_RETRYABLE,
                               "upload to %s: the job's deadline "
                               "passed before the transfer began",
                               r.safe_url);
        }
        if (timeout_ms == 0 || left < timeout_ms)
            timeout_ms = left;
    }

    hopper_log(job, HOPPER_LOG_INFO, "uploading blob %s (%lld bytes, %s) to %s%s", r.blob, size,
               content_type, r.safe_url,
               r.s3     ? " with SigV4"
               : r.post ? " as multipart/form-data"
                        : "");

    transfer_t t = {.job = job, .fd = fd, .size = size, .last_percent = -1, .retry_after_s = -1};
    char errbuf[CURL_ERROR_SIZE];
    long code = 0;
    long long sent = 0;
    /* FTP/SFTP resume from the remote size on later attempts only: the first attempt
     * always writes the whole file, so a stale remote file is never extended. */
    bool resume_now = r.resume && r.kind != DEST_HTTP && hopper_job_attempt(job) > 1;
    int64_t t0 = mono_ms();
    msg[0] = '\0';
    CURLcode rc = transfer_run(&r, &t, content_type, timeout_ms, resume_now, errbuf, &code, &sent,
                               msg, sizeof(msg));
    if (resume_now && (rc == CURLE_FTP_COULDNT_USE_REST || rc == CURLE_RANGE_ERROR ||
                       rc == CURLE_BAD_DOWNLOAD_RESUME)) {
        hopper_log(job, HOPPER_LOG_WARN, "%s refuses to resume (%s): sending it all again",
                   r.host_key, curl_easy_strerror(rc));
        resume_now = false;
        t.start = 0;
        rc = transfer_run(&r, &t, content_type, timeout_ms, resume_now, errbuf, &code, &sent, msg,
                          sizeof(msg));
    }
    close(fd);
    double secs = (double)(mono_ms() - t0) / 1000.0;
    mask_secrets(errbuf, &r);

    outcome_t o = {.kind = HOPPER_FAIL_RETRYABLE};
    bool ok = false;
    if (rc == CURLE_OUT_OF_MEMORY && msg[0]) {
        snprintf(o.msg, sizeof(o.msg), "upload to %.300s: %.600s", r.safe_url, msg);
    } else if (rc != CURLE_OK) {
        classify_curl(&r, &t, rc, code, errbuf, &o);
        if (rc == CURLE_ABORTED_BY_CALLBACK) {
            /* A cancel says nothing about the host; if it had answered, it is up. */
            o.host_trouble = false;
        }
    } else if (r.kind == DEST_HTTP && (code < 200 || code > 299)) {
        classify_http(&r, &t, code, &o);
    } else {
        ok = true;
    }
    breaker_report(g.breaker, r.host_key, !ok && o.host_trouble);
    if (!ok) {
        mask_secrets(o.msg, &r);
        return hopper_fail(job, o.kind, "%s", o.msg);
    }

    long long resumed_from = resume_now && size >= sent ? size - sent : 0;
    hopper_progress(job, 100, "done");
    hopper_log(job, HOPPER_LOG_INFO, "uploaded %lld bytes to %s in %.3f s (%s %ld)%s", sent,
               r.safe_url, secs, r.kind == DEST_HTTP ? "HTTP" : "reply", code,
               resumed_from ? " resuming a previous attempt" : "");

    /* {"url":..,"bytes":..,"sent":..,"resumed_from":..,"status":..,"etag":..,
     *  "response":..,"seconds":..} */
    mask_secrets(t.body, &r);
    size_t cap = URL_MAX * 6 + RESPONSE_MAX * 6 + 1024;
    char *json = malloc(cap);
    if (!json)
        return hopper_fail(job, HOPPER_FAIL_RETRYABLE, "out of memory");
    size_t n = (size_t)snprintf(json, cap, "{\"url\":");
    n = json_str(json, n, cap, r.safe_url, strlen(r.safe_url));
    n += (size_t)snprintf(json + n, cap - n,
                          ",\"blob\":\"%s\",\"bytes\":%lld,\"sent\":%lld,\"resumed_from\":%lld,"
                          "\"status\":%ld,\"seconds\":%.3f,\"etag\":",
                          r.blob, size, sent, resumed_from, code, secs);
    n = t.etag[0] ? json_str(json, n, cap, t.etag, strlen(t.etag))
                  : n + (size_t)snprintf(json + n, cap - n, "null");
    n += (size_t)snprintf(json + n, cap - n, ",\"response\":");
    n = json_str(json, n, cap, t.body, t.body_len);
    snprintf(json + n, cap - n, "}");
    /* The host takes ownership (free), also when it refuses the buffer. */
    if (hopper_set_result(job, json, 0, free) != 0)
        return hopper_fail(job, HOPPER_FAIL_PERMANENT, "upload: the result was refused");
    return HOPPER_OK;
}

/* ---- Entry point ---- */

static void on_shutdown(void *arg)
{
    (void)arg;
    breaker_free(g.breaker);
    g.breaker = NULL;
    config_free(&g.cfg);
    curl_global_cleanup();
}

HOPPER_PLUGIN_INIT(api, plugin, errmsg)
{
    HOPPER_USE(api);
    if (hopper_register(plugin, "upload", UPLOAD_VERSION) != 0)
        return -1;
    if (!HOPPER_HAS(blob_open)) {
        *errmsg = strdup("upload: the worker has no blob store API (ABI 1.1 needed)");
        return -1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        *errmsg = strdup("upload: curl_global_init failed");
        return -1;
    }
    memset(&g, 0, sizeof(g));
    if (config_load(&g.cfg, plugin, errmsg) != 0) {
        curl_global_cleanup();
        return -1;
    }
    g.breaker = breaker_new((int)g.cfg.breaker_threshold, g.cfg.breaker_open_ms);
    if (!g.breaker) {
        config_free(&g.cfg);
        curl_global_cleanup();
        *errmsg = strdup("upload: out of memory");
        return -1;
    }
    hopper_on_shutdown(plugin, on_shutdown, NULL);
    return hopper_register_type(plugin, &(hopper_job_type_t){
                                            .version = HOPPER_JOB_TYPE_VERSION,
                                            .name = "upload.put",
                                            .handle = handle_put,
                                            .isolation = HOPPER_ISOLATION_THREAD,
                                        });
}
