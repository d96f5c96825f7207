/* Small C helpers for the native core: byte order, CRC32C, string interning.
 * Written for aether_fast; no third-party code. */
#ifndef AETHER_NATIVE_UTIL_H
#define AETHER_NATIVE_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>

/* ---- byte order ------------------------------------------------------- */

static inline void af_put_u16le(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static inline void af_put_u32le(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline void af_put_u64le(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline void af_put_u64be(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[7 - i] = (unsigned char)(v >> (8 * i)); }
static inline uint16_t af_get_u16le(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t af_get_u32le(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static inline uint64_t af_get_u64le(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static inline uint64_t af_get_u64be(const unsigned char *p) { uint64_t v = 0; for (int i = 0; i < 8; i++) v = (v << 8) | p[i]; return v; }

/* ---- CRC32C (Castagnoli), software slice-by-8 with an SSE4.2 fast path -- */

static uint32_t af_crc_table[8][256];
static int af_crc_hw = 0;

static void af_crc32c_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        af_crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            af_crc_table[t][i] = (af_crc_table[t - 1][i] >> 8) ^ af_crc_table[0][af_crc_table[t - 1][i] & 0xFF];
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    af_crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t af_crc32c_sw(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo = crc ^ af_get_u32le(p);
        uint32_t hi = af_get_u32le(p + 4);
        crc = af_crc_table[7][lo & 0xFF] ^ af_crc_table[6][(lo >> 8) & 0xFF] ^
              af_crc_table[5][(lo >> 16) & 0xFF] ^ af_crc_table[4][lo >> 24] ^
              af_crc_table[3][hi & 0xFF] ^ af_crc_table[2][(hi >> 8) & 0xFF] ^
              af_crc_table[1][(hi >> 16) & 0xFF] ^ af_crc_table[0][hi >> 24];
        p += 8; n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ af_crc_table[0][(crc ^ *p++) & 0xFF];
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2")))
static uint32_t af_crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = ~crc;
    while (n >= 8) { uint64_t w; memcpy(&w, p, 8); c = __builtin_ia32_crc32di(c, w); p += 8; n -= 8; }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#else
static uint32_t af_crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) { return af_crc32c_sw(crc, p, n); }
#endif

static inline uint32_t af_crc32c(uint32_t crc, const unsigned char *p, size_t n) {
    return af_crc_hw ? af_crc32c_hw(crc, p, n) : af_crc32c_sw(crc, p, n);
}

/* ---- growable byte buffer ------------------------------------------------ */

typedef struct { unsigned char *data; size_t len, cap; } af_buf;

#define AF_HUGE_PAGE ((size_t)2 << 20)
#define AF_BIG ((size_t)8 << 20)          /* buffers from this size on are "big" */
#define AF_POOL_SLOTS 16
#define AF_POOL_BYTES ((size_t)256 << 20) /* at most this much kept for reuse */

/* Big buffers (columnar reads) are 2 MiB aligned, advised to use transparent huge pages
 * on Linux, and kept in a small pool when freed: fresh memory must be zeroed by the
 * kernel on first touch, which otherwise costs as much as the read itself. */
static struct { void *p; size_t cap; } af_pool[AF_POOL_SLOTS];
static size_t af_pool_bytes = 0;
static pthread_mutex_t af_pool_lock = PTHREAD_MUTEX_INITIALIZER;

static void *af_big_alloc(size_t *cap) {
    size_t want = (*cap + AF_HUGE_PAGE - 1) & ~(AF_HUGE_PAGE - 1);
    int best = -1;
    pthread_mutex_lock(&af_pool_lock);
    for (int i = 0; i < AF_POOL_SLOTS; i++)
        if (af_pool[i].p && af_pool[i].cap >= want && (best < 0 || af_pool[i].cap < af_pool[best].cap)) best = i;
    if (best >= 0) {
        void *p = af_pool[best].p;
        *cap = af_pool[best].cap;
        af_pool_bytes -= *cap;
        af_pool[best].p = NULL;
        pthread_mutex_unlock(&af_pool_lock);
        return p;
    }
    pthread_mutex_unlock(&af_pool_lock);
    void *p = NULL;
    if (posix_memalign(&p, AF_HUGE_PAGE, want)) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, want, MADV_HUGEPAGE);
#endif
    *cap = want;
    return p;
}

/* A child forked while another thread held the pool lock must not deadlock on it. */
static void af_pool_after_fork(void) { pthread_mutex_init(&af_pool_lock, NULL); }

static void af_big_free(void *p, size_t cap) {
    pthread_mutex_lock(&af_pool_lock);
    if (af_pool_bytes + cap <= AF_POOL_BYTES)
        for (int i = 0; i < AF_POOL_SLOTS; i++)
            if (!af_pool[i].p) {
                af_pool[i].p = p; af_pool[i].cap = cap; af_pool_bytes += cap;
                pthread_mutex_unlock(&af_pool_lock);
                return;
            }
    pthread_mutex_unlock(&af_pool_lock);
    free(p);
}

static int af_buf_reserve(af_buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    unsigned char *d;
    if (cap >= AF_BIG) {
        d = (unsigned char *)af_big_alloc(&cap);
        if (!d) return -1;
        if (b->len) memcpy(d, b->data, b->len);
        if (b->cap >= AF_BIG) af_big_free(b->data, b->cap); else free(b->data);
    } else {
        d = (unsigned char *)realloc(b->data, cap);
        if (!d) return -1;
    }
    b->data = d; b->cap = cap;
    return 0;
}
static inline int af_buf_append(af_buf *b, const void *src, size_t n) {
    if (n == 0) return 0;                 /* an empty buffer has no memory to copy into */
    if (af_buf_reserve(b, n)) return -1;
    memcpy(b->data + b->len, src, n); b->len += n;
    return 0;
}
static void af_buf_free(af_buf *b) {
    if (b->cap >= AF_BIG) af_big_free(b->data, b->cap); else free(b->data);
    b->data = NULL; b->len = b->cap = 0;
}

/* ---- string interning: (bytes) -> dense code, for columnar reads --------- */

/* A slot holds a string's hash and where its copy lies in `bytes` (compact, so lookups
 * stay in cache instead of comparing against records scattered over the map). */
typedef struct { uint64_t hash; uint32_t off, n, code, used; } af_slot;
typedef struct {
    af_slot *slots; size_t mask, count;
    af_buf bytes;     /* interned strings, concatenated */
    af_buf offsets;   /* uint64 offsets into bytes, count + 1 entries */
    int has_last; uint32_t last_code;  /* one-entry cache: the previous string */
} af_intern;

static uint64_t af_hash(const unsigned char *p, size_t n) {
    /* word at a time: a multiply per 8 bytes, not per byte */
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n, w;
    while (n >= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
        p += 8; n -= 8;
    }
    w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 32);
}

static int af_intern_init(af_intern *t) {
    memset(t, 0, sizeof(*t));
    t->mask = 63;
    t->slots = (af_slot *)calloc(t->mask + 1, sizeof(af_slot));
    uint64_t zero = 0;
    if (!t->slots || af_buf_append(&t->offsets, &zero, 8)) return -1;
    return 0;
}
static void af_intern_free(af_intern *t) { free(t->slots); af_buf_free(&t->bytes); af_buf_free(&t->offsets); }

static inline int af_intern_is(const af_intern *t, uint32_t code, const unsigned char *p, uint32_t n) {
    const uint64_t *offs = (const uint64_t *)t->offsets.data;
    return offs[code + 1] - offs[code] == n && memcmp(t->bytes.data + offs[code], p, n) == 0;
}

/* The dense code of string p[0:n], adding it when new; -1 when out of memory. */
static int64_t af_intern_code(af_intern *t, const unsigned char *p, uint32_t n) {
    if (t->has_last && af_intern_is(t, t->last_code, p, n)) return t->last_code;
    uint64_t h = af_hash(p, n);
    size_t i = h & t->mask;
    while (t->slots[i].used) {
        if (t->slots[i].hash == h && t->slots[i].n == n &&
            memcmp(t->bytes.data + t->slots[i].off, p, n) == 0) goto found;
        i = (i + 1) & t->mask;
    }
    if ((t->count + 1) * 2 > t->mask + 1) {  /* grow and rehash */
        size_t nm = t->mask * 2 + 1;
        af_slot *ns = (af_slot *)calloc(nm + 1, sizeof(af_slot));
        if (!ns) return -1;
        for (size_t k = 0; k <= t->mask; k++) if (t->slots[k].used) {
            size_t j = t->slots[k].hash & nm;
            while (ns[j].used) j = (j + 1) & nm;
            ns[j] = t->slots[k];
        }
        free(t->slots); t->slots = ns; t->mask = nm;
        i = h & t->mask;
        while (t->slots[i].used) i = (i + 1) & t->mask;
    }
    t->slots[i].hash = h; t->slots[i].off = (uint32_t)t->bytes.len; t->slots[i].n = n;
    t->slots[i].code = (uint32_t)t->count++; t->slots[i].used = 1;
    if (af_buf_append(&t->bytes, p, n)) return -1;
    uint64_t end = t->bytes.len;
    if (af_buf_append(&t->offsets, &end, 8)) return -1;
found:
    t->has_last = 1; t->last_code = t->slots[i].code;
    return t->last_code;
}

#endif
