/* SHA-256 (FIPS 180-4) of bytes and files: the fingerprint meta.csv keeps of an imported model,
 * so a resumed or reused run can tell that the model file changed under it. */
#ifndef DEBA_SHA256_H
#define DEBA_SHA256_H

#include <stddef.h>
#include <stdint.h>
#include "deba/error.h"

typedef struct {
    uint32_t h[8];          /* the running hash value */
    uint64_t bytes;         /* message length so far */
    uint8_t block[64];      /* a partial block waiting for more bytes */
    size_t fill;            /* bytes in block */
} deba_sha256;

void deba_sha256_init(deba_sha256 *s);
void deba_sha256_update(deba_sha256 *s, const void *data, size_t n);
/* The 32-byte digest; s must be initialised again before reuse. */
void deba_sha256_final(deba_sha256 *s, uint8_t digest[32]);
/* The digest of n bytes as 64 lowercase hex digits and a NUL, as sha256sum prints it. */
void deba_sha256_hex(const void *data, size_t n, char hex[65]);
/* The same for a whole file; DEBA_E_INPUT naming the file when it cannot be opened, DEBA_E_IO
 * when a read fails. */
deba_status deba_sha256_file(const char *path, char hex[65], deba_err *e);

#endif
