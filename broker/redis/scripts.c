/* The Redis backend's Lua scripts: each is the defaults line (written here from
 * broker.h, so Lua and C share one source of every default), the prelude, the
 * script's own body (which defines main()), and the epilogue that calls main and
 * writes the counts; hashed with SHA-1 so it can be called by EVALSHA. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "broker/redis/internal.h"

extern const char broker__lua_prelude[];
extern const char broker__lua_epilogue[];
#define XX(id, file) extern const char broker__lua_##file[];
REDIS_SCRIPT_MAP(XX)
#undef XX

static const char *const bodies[SCRIPT_COUNT] = {
#define XX(id, file) broker__lua_##file,
    REDIS_SCRIPT_MAP(XX)
#undef XX
};

static const char *const names[SCRIPT_COUNT] = {
#define XX(id, file) #file,
    REDIS_SCRIPT_MAP(XX)
#undef XX
};

static redis_script_t scripts[SCRIPT_COUNT];
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static char *defaults_line(void)
{
    hp_strbuf_t rt;
    hp_strbuf_init(&rt, 0);
    for (int i = 0; i < QUEUE_RUNTIME_NBUCKETS; i++)
        hp_strbuf_printf(&rt, "%s%lld", i ? ", " : "", (long long)QUEUE_RUNTIME_BUCKETS_MS[i]);
    char *line =
        hp_sprintf("local D = {bb = %d, bc = %lld, log_max = %d, history_max = %d,\n"
                   "  keep = {succeeded = %d, dead = %d, canceled = %d},\n"
                   "  keepage = {succeeded = %lld, dead = %lld, canceled = %lld},\n"
                   "  rt = {%s}}\n",
                   BACKOFF_BASE_DEFAULT_MS, BACKOFF_CAP_DEFAULT_MS, JOB_LOG_MAX_BYTES,
                   SCHEDULE_HISTORY_MAX, QUEUE_KEEP_SUCCEEDED_DEFAULT, QUEUE_KEEP_DEAD_DEFAULT,
                   QUEUE_KEEP_CANCELED_DEFAULT, QUEUE_KEEP_SUCCEEDED_AGE_DEFAULT_MS,
                   QUEUE_KEEP_DEAD_AGE_DEFAULT_MS, QUEUE_KEEP_CANCELED_AGE_DEFAULT_MS, rt.data);
    hp_strbuf_cleanup(&rt);
    return line;
}

static void sha1_hex(const char *text, size_t len, char out[41])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_Digest(text, len, digest, &dlen, EVP_sha1(), NULL);
    for (unsigned i = 0; i < dlen && i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

static void assemble_all(void)
{
    char *defaults = defaults_line();
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        scripts[i].name = names[i];
        scripts[i].text = hp_sprintf("%s%s\n-- ---- %s ----\n%s%s", defaults, broker__lua_prelude,
                                     names[i], bodies[i], broker__lua_epilogue);
        scripts[i].len = strlen(scripts[i].text);
        sha1_hex(scripts[i].text, scripts[i].len, scripts[i].sha);
    }
    hp_free(defaults);
}

const redis_script_t *broker__redis_script(redis_script_id_t id)
{
    pthread_once(&scripts_once, assemble_all);
    return &scripts[id];
}
