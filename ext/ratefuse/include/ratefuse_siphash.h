/* SipHash-1-3 (Aumasson and Bernstein), the keyed hash that fingerprints
 * limiter keys. Its twin is src/ratefuse/_siphash_py.py; the tests compare
 * them. Header-only so the key table inlines it on the hot path. */
#ifndef RATEFUSE_SIPHASH_H
#define RATEFUSE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RATEFUSE_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define RATEFUSE_SIPROUND                                                    \
    do {                                                                     \
        v0 += v1; v1 = RATEFUSE_ROTL(v1, 13); v1 ^= v0;                      \
        v0 = RATEFUSE_ROTL(v0, 32);                                          \
        v2 += v3; v3 = RATEFUSE_ROTL(v3, 16); v3 ^= v2;                      \
        v0 += v3; v3 = RATEFUSE_ROTL(v3, 21); v3 ^= v0;                      \
        v2 += v1; v1 = RATEFUSE_ROTL(v1, 17); v1 ^= v2;                      \
        v2 = RATEFUSE_ROTL(v2, 32);                                          \
    } while (0)

static inline uint64_t ratefuse_load_le64(const unsigned char *p) {
    uint64_t value;
    memcpy(&value, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    value = __builtin_bswap64(value);
#endif
    return value;
}

static inline uint64_t ratefuse_siphash13(uint64_t k0, uint64_t k1,
                                          const void *data, size_t length) {
    const unsigned char *in = (const unsigned char *)data;
    const unsigned char *end = in + (length & ~(size_t)7);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k1 ^ 0x7465646279746573ULL;
    uint64_t b = ((uint64_t)length) << 56;
    uint64_t m;
    int left = (int)(length & 7);
    for (; in != end; in += 8) {
        m = ratefuse_load_le64(in);
        v3 ^= m;
        RATEFUSE_SIPROUND;
        v0 ^= m;
    }
    switch (left) {
    case 7: b |= ((uint64_t)in[6]) << 48; /* fall through */
    case 6: b |= ((uint64_t)in[5]) << 40; /* fall through */
    case 5: b |= ((uint64_t)in[4]) << 32; /* fall through */
    case 4: b |= ((uint64_t)in[3]) << 24; /* fall through */
    case 3: b |= ((uint64_t)in[2]) << 16; /* fall through */
    case 2: b |= ((uint64_t)in[1]) << 8;  /* fall through */
    case 1: b |= ((uint64_t)in[0]); break;
    case 0: break;
    }
    v3 ^= b;
    RATEFUSE_SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    RATEFUSE_SIPROUND;
    RATEFUSE_SIPROUND;
    RATEFUSE_SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

#endif
