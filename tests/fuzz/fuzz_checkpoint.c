/* libFuzzer harness: checkpoint loader (tr_ckpt_load) into a cnn_small graph built once.
 * The CRC would stop nearly every mutation at the door, so the first input byte picks a mode:
 *   0: the bytes are the whole file (magic, version, length, CRC: the header checks);
 *   1: the bytes are the payload; the harness prepends a valid header with its CRC;
 *   2: the bytes are the run info block then everything after the three float buffers (RNG,
 *      trace rows, scheduler, position); the harness inserts buffers of the model's sizes, so
 *      mutations reach the fields after them while seeds stay small (a real file is ~900 KB). */
#include "tests/fuzz/fuzz.h"

#include <zlib.h>
#include "deba/sched.h"
#include "trainer/backend/backend.h"
#include "trainer/checkpoint.h"
#include "trainer/models/models.h"

static tr_backend *be;
static tr_graph *g;
static deba_sched *sched;
static unsigned char magic_version[12];   /* "DEBACKPT" and the format version tr_ckpt_save writes */
static size_t info_size;                  /* bytes of the info block before the first buffer */

/* The info block's size on disk: where, in a saved payload, the three buffers' counts
 * (n_params, n_params, n_stats, each an int64 before its floats) line up. */
static size_t find_info_size(const unsigned char *p, size_t len)
{
    int64_t want[3] = {g->n_params, g->n_params, g->n_stats};
    for (size_t at = 0; at + 8 <= len && at < 4096; at++) {
        size_t k = at;
        int i = 0;
        for (; i < 3 && k + 8 <= len; i++) {
            int64_t c;
            memcpy(&c, p + k, 8);
            if (c != want[i]) break;
            k += 8 + (size_t)c * sizeof(float);
        }
        if (i == 3) return at;
    }
    fprintf(stderr, "fuzz_checkpoint: cannot find the float buffers in a saved checkpoint\n");
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    deba_err e = {0};
    deba_sched_config c;
    deba_sched_config_default(&c);
    if (!(be = tr_backend_cpu_new(&e)) || !(g = tr_model_build("cnn_small", 1, 28, 10, &e)) ||
        tr_graph_alloc(g, be, 1, &e) || !(sched = deba_sched_new(&c, &e))) {
        fprintf(stderr, "fuzz_checkpoint: cannot build cnn_small: %s\n", e.msg);
        abort();
    }
    /* The header comes from a real save, so a format version bump needs no edit here. */
    char path[4096];
    tr_ckpt_info info = {.arch = "cnn_small", .dataset = "fashion-mnist", .seed = 1};
    deba_trace t = {0};
    FILE *f = NULL;
    unsigned char header[24], *payload = NULL;
    size_t plen = 4 * (size_t)(2 * g->n_params + g->n_stats) + 8192;
    if (tr_ckpt_save(fz_path(path, "checkpoint.bin"), &info, g, sched, &t, &e) ||
        !(f = fopen(path, "rb")) || fread(header, 1, sizeof header, f) != sizeof header ||
        !(payload = malloc(plen))) {
        fprintf(stderr, "fuzz_checkpoint: cannot save a reference checkpoint: %s\n", e.msg);
        abort();
    }
    plen = fread(payload, 1, plen, f);
    fclose(f);
    memcpy(magic_version, header, sizeof magic_version);
    info_size = find_info_size(payload, plen);
    free(payload);
    return 0;
}

static void put(FILE *f, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, f) != n) abort();
}

static void put_zeros(FILE *f, int64_t count)
{
    static const float zero[1024];
    put(f, &count, sizeof count);
    for (int64_t done = 0; done < count;) {
        int64_t k = count - done < 1024 ? count - done : 1024;
        put(f, zero, (size_t)k * sizeof(float));
        done += k;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0] % 3;
    data++, size--;
    char path[4096];
    fz_path(path, "checkpoint.bin");
    if (mode == 0) {
        fz_write("checkpoint.bin", data, size);
    } else {
        char *payload = NULL;
        size_t plen = 0;
        FILE *m = open_memstream(&payload, &plen);
        if (!m) abort();
        if (mode == 1 || size < info_size) {
            put(m, data, size);
        } else {
            put(m, data, info_size);
            put_zeros(m, g->n_params);
            put_zeros(m, g->n_params);
            put_zeros(m, g->n_stats);
            put(m, data + info_size, size - info_size);
        }
        if (fclose(m)) abort();
        uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)payload, (uInt)plen);
        uint64_t len = plen;
        FILE *f = fopen(path, "wb");
        if (!f) abort();
        put(f, magic_version, sizeof magic_version);
        put(f, &len, 8);
        put(f, &crc, 4);
        put(f, payload, plen);
        if (fclose(f)) abort();
        free(payload);
    }
    tr_ckpt_info info;
    deba_trace t = {0};
    deba_err e = {0};
    tr_ckpt_load(path, &info, g, &sched, &t, &e);
    deba_trace_free(&t);
    return 0;
}
