/* ULIDs (https://github.com/ulid/spec): time-ordered ids, so listings sort by id.
 * Monotonic within a process: a second id in the same millisecond is the first
 * plus one in its random part, so ids made by one process always increase. */
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#include "common/common.h"

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static pthread_mutex_t ulid_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t last_ms = -1;
static uint8_t last_rand[10];

void hp_random_bytes(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n <= 0)
            continue; /* EINTR; getrandom from the urandom pool does not fail otherwise */
        p += n;
        len -= (size_t)n;
    }
}

void hp_random_hex(char *out, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t buf[64];
    while (len > 0) {
        size_t chunk = len < sizeof(buf) ? len : sizeof(buf);
        hp_random_bytes(buf, chunk);
        for (size_t i = 0; i < chunk; i++) {
            *out++ = hex[buf[i] >> 4];
            *out++ = hex[buf[i] & 15];
        }
        len -= chunk;
    }
    *out = '\0';
}

/* Adds one to the 80-bit big-endian random part; false on overflow. */
static bool increment(uint8_t r[10])
{
    for (int i = 9; i >= 0; i--) {
        if (++r[i] != 0)
            return true;
    }
    return false;
}

static void encode(int64_t ms, const uint8_t r[10], char out[HP_ULID_LEN + 1])
{
    uint64_t t = (uint64_t)ms;
    for (int i = 9; i >= 0; i--) {
        out[i] = crockford[t & 31];
        t >>= 5;
    }
    /* 80 random bits as 16 characters of 5 bits each. */
    int bit = 0;
    for (int i = 0; i < 16; i++) {
        int v = 0;
        for (int b = 0; b < 5; b++, bit++)
            v = (v << 1) | ((r[bit / 8] >> (7 - bit % 8)) & 1);
        out[10 + i] = crockford[v];
    }
    out[HP_ULID_LEN] = '\0';
}

void hp_ulid_new(char out[HP_ULID_LEN + 1])
{
    int64_t ms = hp_now_ms();
    uint8_t r[10];
    pthread_mutex_lock(&ulid_lock);
    if (ms <= last_ms) {
        ms = last_ms; /* clock went back or same ms: stay monotonic */
        if (!increment(last_rand)) {
            ms = ++last_ms;
            hp_random_bytes(last_rand, sizeof(last_rand));
        }
    } else {
        last_ms = ms;
        hp_random_bytes(last_rand, sizeof(last_rand));
        last_rand[0] &= 0x7f; /* headroom so increments within a ms never overflow */
    }
    memcpy(r, last_rand, sizeof(r));
    pthread_mutex_unlock(&ulid_lock);
    encode(ms, r, out);
}

static int decode_char(char c)
{
    const char *p = c ? strchr(crockford, c) : NULL;
    return p ? (int)(p - crockford) : -1;
}

bool hp_ulid_valid(const char *s, size_t len)
{
    if (len != HP_ULID_LEN || decode_char(s[0]) > 7) /* 48-bit time: first char <= 7 */
        return false;
    for (size_t i = 0; i < len; i++) {
        if (decode_char(s[i]) < 0)
            return false;
    }
    return true;
}

int64_t hp_ulid_time_ms(const char *ulid)
{
    if (!ulid || !hp_ulid_valid(ulid, strnlen(ulid, HP_ULID_LEN + 1)))
        return -1;
    int64_t t = 0;
    for (int i = 0; i < 10; i++)
        t = (t << 5) | decode_char(ulid[i]);
    return t;
}
