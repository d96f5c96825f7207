/* MurmurHash3 x86_32 (Austin Appleby's public-domain algorithm), written for aether_fast,
 * and the UCS-4 -> UTF-8 encoding the hash ring needs for numpy 'U' arrays.
 * The same answers as the `mmh3` package's mmh3.hash(key, seed, signed=False) on every
 * byte string (checked by tests/test_ring.py). */
#ifndef AETHER_MURMUR3_H
#define AETHER_MURMUR3_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t af_mm3_rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

/* A little-endian 32-bit block, whatever the machine's byte order. */
static inline uint32_t af_mm3_block(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint32_t af_mm3_fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static inline uint32_t af_murmur3_32(const void *key, size_t len, uint32_t seed) {
    const unsigned char *p = (const unsigned char *)key;
    const size_t nblocks = len / 4;
    const uint32_t c1 = 0xcc9e2d51u, c2 = 0x1b873593u;
    uint32_t h = seed, k;
    for (size_t i = 0; i < nblocks; i++, p += 4) {
        k = af_mm3_block(p);
        k *= c1;
        k = af_mm3_rotl32(k, 15);
        k *= c2;
        h ^= k;
        h = af_mm3_rotl32(h, 13);
        h = h * 5 + 0xe6546b64u;
    }
    k = 0;
    switch (len & 3) {
    case 3: k ^= (uint32_t)p[2] << 16; /* fall through */
    case 2: k ^= (uint32_t)p[1] << 8;  /* fall through */
    case 1: k ^= p[0];
        k *= c1;
        k = af_mm3_rotl32(k, 15);
        k *= c2;
        h ^= k;
    }
    h ^= (uint32_t)len;
    return af_mm3_fmix32(h);
}

/* Encodes n UCS-4 code points as UTF-8 into dst (room for 4 * n bytes); the number of
 * bytes written, or -1 if a code point is a surrogate or above U+10FFFF (which UTF-8,
 * like Python's str.encode, refuses). */
static inline ptrdiff_t af_ucs4_to_utf8(const uint32_t *src, size_t n, unsigned char *dst) {
    unsigned char *out = dst;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = src[i];
        if (c < 0x80) {
            *out++ = (unsigned char)c;
        } else if (c < 0x800) {
            *out++ = (unsigned char)(0xC0 | (c >> 6));
            *out++ = (unsigned char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            if (c >= 0xD800 && c <= 0xDFFF) return -1;
            *out++ = (unsigned char)(0xE0 | (c >> 12));
            *out++ = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
            *out++ = (unsigned char)(0x80 | (c & 0x3F));
        } else if (c <= 0x10FFFF) {
            *out++ = (unsigned char)(0xF0 | (c >> 18));
            *out++ = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
            *out++ = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
            *out++ = (unsigned char)(0x80 | (c & 0x3F));
        } else {
            return -1;
        }
    }
    return out - dst;
}

#endif
