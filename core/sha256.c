/* SHA-256 as FIPS 180-4 §6.2 writes it: 64-byte blocks, the message schedule W[0..63] and the
 * 64 compression rounds; the padding appends 0x80, zeros and the bit length big-endian. */
#include "deba/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* the first 32 bits of the fractional parts of the cube roots of the first 64 primes (§4.2.2) */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void compress(uint32_t h[8], const uint8_t b[64])
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)b[4 * t] << 24 | (uint32_t)b[4 * t + 1] << 16 | (uint32_t)b[4 * t + 2] << 8 | b[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = ror(w[t - 15], 7) ^ ror(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = ror(w[t - 2], 17) ^ ror(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
        hh = g, g = f, f = e, e = d + t1, d = c, c = bb, bb = a, a = t1 + t2;
    }
    h[0] += a, h[1] += bb, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void deba_sha256_init(deba_sha256 *s)
{
    /* the fractional parts of the square roots of the first 8 primes (§5.3.3) */
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, H0, sizeof H0);
    s->bytes = 0;
    s->fill = 0;
}

void deba_sha256_update(deba_sha256 *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->bytes += n;
    while (n > 0) {
        if (s->fill == 0 && n >= 64) {   /* whole blocks straight from the input */
            compress(s->h, p);
            p += 64, n -= 64;
            continue;
        }
        size_t k = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, k);
        s->fill += k, p += k, n -= k;
        if (s->fill == 64) {
            compress(s->h, s->block);
            s->fill = 0;
        }
    }
}

void deba_sha256_final(deba_sha256 *s, uint8_t digest[32])
{
    uint64_t bits = s->bytes * 8;
    uint8_t pad[72] = {0x80};
    /* 0x80, then zeros up to 56 mod 64, then the 64-bit length */
    size_t npad = (s->fill < 56 ? 56 : 120) - s->fill;
    for (int i = 0; i < 8; i++) pad[npad + i] = (uint8_t)(bits >> (56 - 8 * i));
    deba_sha256_update(s, pad, npad + 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) digest[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
}

static void to_hex(const uint8_t d[32], char hex[65])
{
    static const char X[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) hex[2 * i] = X[d[i] >> 4], hex[2 * i + 1] = X[d[i] & 15];
    hex[64] = '\0';
}

void deba_sha256_hex(const void *data, size_t n, char hex[65])
{
    deba_sha256 s;
    uint8_t d[32];
    deba_sha256_init(&s);
    deba_sha256_update(&s, data, n);
    deba_sha256_final(&s, d);
    to_hex(d, hex);
}

deba_status deba_sha256_file(const char *path, char hex[65], deba_err *e)
{
    hex[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return deba_err_set(e, DEBA_E_INPUT, "%s: %s", path, strerror(errno));
    deba_sha256 s;
    uint8_t buf[1 << 16], d[32];
    deba_sha256_init(&s);
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) deba_sha256_update(&s, buf, got);
    int bad = ferror(f);
    fclose(f);
    if (bad) return deba_err_set(e, DEBA_E_IO, "%s: read error", path);
    deba_sha256_final(&s, d);
    to_hex(d, hex);
    return DEBA_OK;
}
