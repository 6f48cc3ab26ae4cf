/* BLAKE2b (RFC 7693), the hash that names Redis keys (src/ratefuse/redis/
 * _schema.py: hashlib.blake2b with a 16-byte digest and a personalization).
 * Only what the key schema needs: an unkeyed state with a digest length
 * and a personalization, update, copy (a struct copy) and final. Its twin
 * is hashlib's; the tests compare them. Header-only, as the siphash. */
#ifndef RATEFUSE_BLAKE2B_H
#define RATEFUSE_BLAKE2B_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RATEFUSE_B2_BLOCK 128

typedef struct {
    uint64_t h[8];
    uint64_t t[2];
    unsigned char buf[RATEFUSE_B2_BLOCK];
    size_t buflen;
    size_t outlen;
} ratefuse_blake2b;

static const uint64_t ratefuse_b2_iv[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
    0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
    0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

static const unsigned char ratefuse_b2_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

static inline uint64_t ratefuse_b2_load64(const unsigned char *p) {
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) |
           ((uint64_t)p[5] << 40) | ((uint64_t)p[6] << 48) |
           ((uint64_t)p[7] << 56);
}

static inline uint64_t ratefuse_b2_rotr(uint64_t x, int n) {
    return (x >> n) | (x << (64 - n));
}

#define RATEFUSE_B2_G(r, i, a, b, c, d)                                      \
    do {                                                                     \
        a = a + b + m[ratefuse_b2_sigma[r][2 * i]];                          \
        d = ratefuse_b2_rotr(d ^ a, 32);                                     \
        c = c + d;                                                           \
        b = ratefuse_b2_rotr(b ^ c, 24);                                     \
        a = a + b + m[ratefuse_b2_sigma[r][2 * i + 1]];                      \
        d = ratefuse_b2_rotr(d ^ a, 16);                                     \
        c = c + d;                                                           \
        b = ratefuse_b2_rotr(b ^ c, 63);                                     \
    } while (0)

#define RATEFUSE_B2_ROUND(r)                                                 \
    do {                                                                     \
        RATEFUSE_B2_G(r, 0, v[0], v[4], v[8], v[12]);                        \
        RATEFUSE_B2_G(r, 1, v[1], v[5], v[9], v[13]);                        \
        RATEFUSE_B2_G(r, 2, v[2], v[6], v[10], v[14]);                       \
        RATEFUSE_B2_G(r, 3, v[3], v[7], v[11], v[15]);                       \
        RATEFUSE_B2_G(r, 4, v[0], v[5], v[10], v[15]);                       \
        RATEFUSE_B2_G(r, 5, v[1], v[6], v[11], v[12]);                       \
        RATEFUSE_B2_G(r, 6, v[2], v[7], v[8], v[13]);                        \
        RATEFUSE_B2_G(r, 7, v[3], v[4], v[9], v[14]);                        \
    } while (0)

static void ratefuse_b2_compress(ratefuse_blake2b *s, const unsigned char *block,
                                 int last) {
    uint64_t m[16], v[16];
    int i;
    for (i = 0; i < 16; i++) m[i] = ratefuse_b2_load64(block + 8 * i);
    for (i = 0; i < 8; i++) {
        v[i] = s->h[i];
        v[i + 8] = ratefuse_b2_iv[i];
    }
    v[12] ^= s->t[0];
    v[13] ^= s->t[1];
    if (last) v[14] = ~v[14];
    /* Rounds written out: the message schedule is then constant. */
    RATEFUSE_B2_ROUND(0);
    RATEFUSE_B2_ROUND(1);
    RATEFUSE_B2_ROUND(2);
    RATEFUSE_B2_ROUND(3);
    RATEFUSE_B2_ROUND(4);
    RATEFUSE_B2_ROUND(5);
    RATEFUSE_B2_ROUND(6);
    RATEFUSE_B2_ROUND(7);
    RATEFUSE_B2_ROUND(8);
    RATEFUSE_B2_ROUND(9);
    RATEFUSE_B2_ROUND(10);
    RATEFUSE_B2_ROUND(11);
    for (i = 0; i < 8; i++) s->h[i] ^= v[i] ^ v[i + 8];
}

static inline void ratefuse_b2_count(ratefuse_blake2b *s, uint64_t bytes) {
    s->t[0] += bytes;
    if (s->t[0] < bytes) s->t[1]++;
}

/* An unkeyed state of ``outlen`` (1 to 64) bytes of digest, with the
 * 16-byte personalization ``person`` (zero-padded, as hashlib pads it). */
static void ratefuse_b2_init(ratefuse_blake2b *s, size_t outlen,
                             const unsigned char person[16]) {
    int i;
    memset(s, 0, sizeof(*s));
    for (i = 0; i < 8; i++) s->h[i] = ratefuse_b2_iv[i];
    /* digest length, key length 0, fanout 1, depth 1 */
    s->h[0] ^= (uint64_t)outlen | ((uint64_t)1 << 16) | ((uint64_t)1 << 24);
    s->h[6] ^= ratefuse_b2_load64(person);
    s->h[7] ^= ratefuse_b2_load64(person + 8);
    s->outlen = outlen;
}

/* Absorbs ``len`` bytes: the last block stays buffered until final. */
static void ratefuse_b2_update(ratefuse_blake2b *s, const unsigned char *in,
                               size_t len) {
    while (len > 0) {
        size_t take;
        if (s->buflen == RATEFUSE_B2_BLOCK) {
            ratefuse_b2_count(s, RATEFUSE_B2_BLOCK);
            ratefuse_b2_compress(s, s->buf, 0);
            s->buflen = 0;
        }
        take = RATEFUSE_B2_BLOCK - s->buflen;
        if (take > len) take = len;
        memcpy(s->buf + s->buflen, in, take);
        s->buflen += take;
        in += take;
        len -= take;
    }
}

/* Writes the digest as lower-case hex: 2 * outlen characters at ``hex``.
 * Ends ``s`` (work on a copy to keep hashing from the same state). */
static void ratefuse_b2_final_hex(ratefuse_blake2b *s, char *hex) {
    static const char digits[] = "0123456789abcdef";
    size_t i;
    ratefuse_b2_count(s, s->buflen);
    memset(s->buf + s->buflen, 0, RATEFUSE_B2_BLOCK - s->buflen);
    ratefuse_b2_compress(s, s->buf, 1);
    for (i = 0; i < s->outlen; i++) {
        unsigned char byte = (unsigned char)(s->h[i / 8] >> (8 * (i % 8)));
        hex[2 * i] = digits[byte >> 4];
        hex[2 * i + 1] = digits[byte & 15];
    }
}

#endif
