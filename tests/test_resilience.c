/* deba-train and deba-profile under stress (issue #13): corrupt checkpoints, stops and kills at
 * random steps resumed to the identical end, concurrent writers, file-size limits, a full disk,
 * over-long options and oversized subsets. Real Fashion-MNIST, small subsets, CPU. */
#include "tests/testutil.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>
#include <zlib.h>
#include "deba/deba.h"
#include "trainer/rng.h"

static char *tmp;
static const char *FMNIST = "/usr/share/datasets/fashion-mnist";
static const char *RUN = "cnn_small/fashion-mnist/deba/seed7";
/* 384 images in batches of 32 for epochs 1-3 (12 steps each); the scheduler rolls back after
 * epoch 3, so epoch 4 runs at B = 25: 15 full steps and one of 9 images. 52 steps in all. */
static const char *COMMON = "--arch cnn_small --dataset fashion-mnist --subset 384 --test-subset 200 --seed 7 "
                            "--method deba --cooldown 0 --window 2 --tau 0.2 --theta 0.9 --lambda 0.5 --batch 32 "
                            "--bmin 16 --device cpu --quiet";
#define TOTAL_STEPS 52
static char ref[4096];           /* the uninterrupted reference run's root, trained once */
static unsigned seed;

/* Checkpoint layout (trainer/checkpoint.c): a 24-byte header (magic 8, version 4, payload length
 * 8 at 12, CRC 4 at 20), then the run info in version 1's C layout (arch 64, dataset 64, seed 8,
 * epoch 4 at 160), then the parameters at 248, each buffer an int64 count and its floats. */
enum { OFF_PLEN = 12, OFF_CRC = 20, OFF_ARCH = 24, OFF_DATASET = 88, OFF_EPOCH = 160, OFF_BUFS = 248 };

static int have_data(void) { return tu_exists(FMNIST); }

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof cmd);
    return tu_run(cmd);
}

/* deba-train with the common options; stderr to tmp/err.txt. */
static int train(const char *out, const char *extra, const char *env)
{
    return sh("%s %s/deba-train %s --out %s %s 2>%s/err.txt", env ? env : "", tu_bindir(), COMMON, out,
              extra ? extra : "", tmp);
}

static int err_has(const char *needle)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/err.txt", tmp);
    FILE *f = fopen(p, "rb");
    if (!f) return 0;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (!strstr(buf, needle)) {
        fprintf(stderr, "expected in stderr: '%s'\nstderr was: %s\n", needle, buf);
        return 0;
    }
    return 1;
}

static void run_path(char *p, size_t cap, const char *out, const char *file)
{
    snprintf(p, cap, "%s/%s/%s", out, RUN, file);
}

/* meta.csv value of key (copied into a static buffer), or NULL. */
static const char *meta(const char *out, const char *run, const char *key)
{
    static char v[512];
    char p[4300];
    snprintf(p, sizeof p, "%s/%s/meta.csv", out, run);
    deba_meta m = {0};
    deba_err e = {0};
    if (deba_meta_read(p, &m, &e)) return NULL;
    const char *x = deba_meta_get(&m, key);
    if (x) snprintf(v, sizeof v, "%s", x);
    deba_meta_free(&m);
    return x ? v : NULL;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void spill(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* A CRC over the payload as the writer computes it, so only the checks after the CRC can
 * catch the edit (as a deliberate forgery would). */
static void fix_crc(unsigned char *b, size_t n)
{
    uint32_t crc = (uint32_t)crc32(0L, b + 24, (uInt)(n - 24));
    memcpy(b + OFF_CRC, &crc, 4);
}

/* Offset of the trace rows: after three float buffers, the model RNG and the row count. */
static size_t rows_offset(const unsigned char *b)
{
    size_t off = OFF_BUFS;
    for (int i = 0; i < 3; i++) {
        int64_t cnt;
        memcpy(&cnt, b + off, 8);
        off += 8 + 4 * (size_t)cnt;
    }
    return off + sizeof(tr_rng) + 8;
}

/* Trace columns that do not measure time, row by row. */
static void assert_same_trace(const char *a, const char *b)
{
    deba_trace x = {0}, y = {0};
    deba_err e = {0};
    assert_int_equal(deba_trace_read(a, &x, &e), DEBA_OK);
    assert_int_equal(deba_trace_read(b, &y, &e), DEBA_OK);
    assert_int_equal(x.n, y.n);
    for (size_t i = 0; i < x.n; i++) {
        const deba_trace_row *p = &x.rows[i], *q = &y.rows[i];
        assert_int_equal(p->epoch, q->epoch);
        assert_int_equal(p->batch_size, q->batch_size);
        assert_int_equal(p->steps, q->steps);
        assert_true(p->lr == q->lr);
        assert_true(p->train_loss == q->train_loss);
        assert_true(p->train_acc == q->train_acc);
        assert_true(p->test_loss == q->test_loss);
        assert_true(p->test_acc == q->test_acc);
        assert_true(p->grad_var == q->grad_var);
        assert_true(p->grad_norm == q->grad_norm);
        assert_true(p->norm_var == q->norm_var);
        assert_true(p->loss_var == q->loss_var);
        assert_true(p->confidence == q->confidence);
        assert_int_equal(p->decision, q->decision);
    }
    deba_trace_free(&x);
    deba_trace_free(&y);
}

/* Parameters, momentum, BN statistics and the model RNG, byte for byte. */
static void assert_same_params(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    size_t ra = rows_offset(x), rb = rows_offset(y);
    assert_int_equal(ra, rb);
    assert_memory_equal(x + OFF_BUFS, y + OFF_BUFS, ra - OFF_BUFS);
    free(x);
    free(y);
}

/* The run under out ends exactly as the reference: trace, parameters, final accuracy. */
static void assert_same_as_ref(const char *out)
{
    char a[4300], b[4300];
    run_path(a, sizeof a, ref, "trace.csv");
    run_path(b, sizeof b, out, "trace.csv");
    assert_same_trace(a, b);
    run_path(a, sizeof a, ref, "checkpoint.bin");
    run_path(b, sizeof b, out, "checkpoint.bin");
    assert_same_params(a, b);
    char fa[64];
    snprintf(fa, sizeof fa, "%s", meta(ref, RUN, "final_test_acc"));
    assert_string_equal(meta(out, RUN, "final_test_acc"), fa);
    assert_string_equal(meta(out, RUN, "status"), "completed");
}

/* Files in dir whose name holds ".tmp." (an atomic writer's temporary file). */
static int temp_files(const char *dir)
{
    return sh("ls -A '%s' | grep -q '\\.tmp\\.'", dir) == 0;
}

static pid_t spawn(const char *cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Waits (up to 60 s) for path to exist and hold at least `min` bytes. */
static int wait_file(const char *path, long min)
{
    for (int i = 0; i < 3000; i++) {
        struct stat sb;
        if (stat(path, &sb) == 0 && sb.st_size >= min) return 1;
        usleep(20000);
    }
    return 0;
}

static void copy_ref(const char *out)
{
    assert_int_equal(sh("rm -rf '%s' && mkdir -p '%s' && cp -r '%s/cnn_small' '%s/'", out, out, ref, out), 0);
}

/* ---- corrupt checkpoints: exit 2 naming the file, meta.csv says failed ---- */

/* A copy of the reference run with its checkpoint edited by `edit`, resumed for one more
 * epoch: exit 2, the message holds `needle` and the checkpoint's path, and meta.csv records the
 * failure with that message. */
static void corrupt_case(const char *name, void (*edit)(unsigned char *, size_t *), const char *needle)
{
    if (!have_data()) skip();
    char out[4096], ck[4300];
    snprintf(out, sizeof out, "%s/%s", tmp, name);
    copy_ref(out);
    run_path(ck, sizeof ck, out, "checkpoint.bin");
    size_t n;
    unsigned char *b = slurp(ck, &n);
    edit(b, &n);
    spill(ck, b, n);
    free(b);
    assert_int_equal(train(out, "--epochs 5 --resume", NULL), 2);
    assert_true(err_has(needle));
    assert_true(err_has("checkpoint.bin"));
    assert_string_equal(meta(out, RUN, "status"), "failed");
    const char *err = meta(out, RUN, "error");
    assert_non_null(err);
    assert_non_null(strstr(err, needle));
}

static void edit_arch_no_nul(unsigned char *b, size_t *n)
{
    memset(b + OFF_ARCH, 'A', 64);
    memset(b + OFF_DATASET, 'D', 64);
    fix_crc(b, *n);
}

static void test_ckpt_name_without_nul(void **state)
{
    (void)state;
    corrupt_case("nonul", edit_arch_no_nul, "arch is not a NUL-terminated printable name");
}

static void edit_epoch_neg(unsigned char *b, size_t *n)
{
    int32_t ep = -5;
    memcpy(b + OFF_EPOCH, &ep, 4);
    fix_crc(b, *n);
}

static void test_ckpt_negative_epoch(void **state)
{
    (void)state;
    corrupt_case("negep", edit_epoch_neg, "epoch -5 outside [0, 100000]");
}

static void edit_epoch_fewer(unsigned char *b, size_t *n)
{
    int32_t ep = 3;   /* the checkpoint holds 4 trace rows */
    memcpy(b + OFF_EPOCH, &ep, 4);
    fix_crc(b, *n);
}

static void test_ckpt_epoch_vs_rows(void **state)
{
    (void)state;
    corrupt_case("rows", edit_epoch_fewer, "4 trace rows for 3 epochs done");
}

static void edit_huge_payload(unsigned char *b, size_t *n)
{
    (void)n;
    uint64_t plen = 60000000000ull;   /* 60 GB declared, ~1 MB there */
    memcpy(b + OFF_PLEN, &plen, 8);
}

static void test_ckpt_huge_payload(void **state)
{
    (void)state;
    corrupt_case("huge", edit_huge_payload, "declares a 60000000000-byte payload");
}

static void edit_row_batch(unsigned char *b, size_t *n)
{
    int32_t bs = -64;
    memcpy(b + rows_offset(b) + offsetof(deba_trace_row, batch_size), &bs, 4);
    fix_crc(b, *n);
}

static void test_ckpt_bad_row(void **state)
{
    (void)state;
    corrupt_case("badrow", edit_row_batch, "trace row 1 has an impossible batch_size");
}

static void edit_trailing(unsigned char *b, size_t *n)
{
    (void)b;
    *n -= 7;   /* cut inside the last field, length field left as it was */
}

static void test_ckpt_truncated(void **state)
{
    (void)state;
    corrupt_case("trunc", edit_trailing, "payload, the file holds");
}

/* A checkpoint of 4 epochs beside a trace.csv of none: which one is the run? Neither is
 * trusted; both files and both numbers are named. */
static void test_ckpt_epoch_vs_trace(void **state)
{
    (void)state;
    if (!have_data()) skip();
    char out[4096], tr[4300];
    snprintf(out, sizeof out, "%s/vstrace", tmp);
    copy_ref(out);
    run_path(tr, sizeof tr, out, "trace.csv");
    assert_int_equal(sh("head -n 1 '%s' > '%s.h' && mv '%s.h' '%s'", tr, tr, tr, tr), 0);
    assert_int_equal(train(out, "--epochs 5 --resume", NULL), 2);
    assert_true(err_has("checkpoint.bin has 4 epochs done but"));
    assert_true(err_has("trace.csv has 0 complete rows"));
    assert_string_equal(meta(out, RUN, "status"), "failed");
    /* one row fewer is the kill between the two writes: resumed, trace rebuilt */
    copy_ref(out);
    assert_int_equal(sh("sed -i '$d' '%s'", tr), 0);
    assert_int_equal(train(out, "--epochs 4 --resume", NULL), 0);
    assert_same_as_ref(out);
}

/* Version 1 files (no position block) are still read: an epoch-end checkpoint rewritten as
 * version 1 resumes to the same end. */
static void test_ckpt_version1(void **state)
{
    (void)state;
    if (!have_data()) skip();
    char out[4096], ck[4300];
    snprintf(out, sizeof out, "%s/v1", tmp);
    assert_int_equal(train(out, "--epochs 4", "DEBA_FAULT_KILL_AFTER_EPOCH=2"), 137);
    run_path(ck, sizeof ck, out, "checkpoint.bin");
    size_t n;
    unsigned char *b = slurp(ck, &n);
    const size_t pos_bytes = 5 * 4 + 2 * 8 + 5 * 8 + 3 * 8 + sizeof(tr_rng);   /* checkpoint.c put_pos */
    uint32_t ver;
    memcpy(&ver, b + 8, 4);
    assert_int_equal(ver, 2);
    for (size_t i = n - pos_bytes; i < n; i++) assert_int_equal(b[i], 0);   /* an epoch end: no position */
    n -= pos_bytes;
    ver = 1;
    uint64_t plen = n - 24;
    memcpy(b + 8, &ver, 4);
    memcpy(b + OFF_PLEN, &plen, 8);
    fix_crc(b, n);
    spill(ck, b, n);
    free(b);
    assert_int_equal(train(out, "--epochs 4 --resume", NULL), 0);
    assert_same_as_ref(out);
}

/* ---- temporary files, file-size limit, full disk ---- */

static void test_stale_temp_removed_on_resume(void **state)
{
    (void)state;
    if (!have_data()) skip();
    char out[1024], dir[2048];   /* tu_write joins dir and a name in 4096 bytes */
    snprintf(out, sizeof out, "%s/stale", tmp);
    copy_ref(out);
    snprintf(dir, sizeof dir, "%s/%s", out, RUN);
    pid_t dead = fork();   /* a pid that is certainly gone: a reaped child */
    if (dead == 0) _exit(0);
    wait_exit(dead);
    char *a = malloc(4400), *b = malloc(4400);
    snprintf(a, 4400, "checkpoint.bin.tmp.%ld", (long)dead);                  /* the old writer's name */
    snprintf(b, 4400, ".trace.csv.tmp.%ld.0123456789abcdef", (long)dead);     /* the current one's */
    free(tu_write(dir, a, "half a checkpoint"));
    free(tu_write(dir, b, "half a trace"));
    char live[64];
    snprintf(live, sizeof live, ".meta.csv.tmp.%ld.0123456789abcdef", (long)getpid());   /* a live writer */
    free(tu_write(dir, live, "being written"));
    assert_int_equal(train(out, "--epochs 4 --resume", NULL), 0);
    char p[4500];
    snprintf(p, sizeof p, "%s/%s", dir, a);
    assert_false(tu_exists(p));
    snprintf(p, sizeof p, "%s/%s", dir, b);
    assert_false(tu_exists(p));
    snprintf(p, sizeof p, "%s/%s", dir, live);
    assert_true(tu_exists(p));
    free(a);
    free(b);
}

/* `ulimit -f` below a checkpoint's size: the write fails with EFBIG and is reported (SIGXFSZ
 * would otherwise kill the process silently), meta.csv says failed, no temporary file is left. */
static void test_file_size_limit(void **state)
{
    (void)state;
    if (!have_data()) skip();
    char out[4096], dir[4300];
    snprintf(out, sizeof out, "%s/fsize", tmp);
    int rc = sh("sh -c 'ulimit -f 64; exec %s/deba-train %s --epochs 2 --out %s' 2>%s/err.txt", tu_bindir(), COMMON,
                out, tmp);
    assert_int_equal(rc, 1);
    assert_true(err_has("File too large"));
    assert_true(err_has("checkpoint.bin"));
    assert_string_equal(meta(out, RUN, "status"), "failed");
    assert_non_null(strstr(meta(out, RUN, "error"), "File too large"));
    snprintf(dir, sizeof dir, "%s/%s", out, RUN);
    assert_false(temp_files(dir));
}

/* A full disk: a 600 KiB tmpfs in a private mount namespace (skipped where unshare is not
 * allowed); the ~900 KB checkpoint cannot be written. */
static void test_full_disk(void **state)
{
    (void)state;
    if (!have_data()) skip();
    if (sh("unshare -r -m true 2>/dev/null") != 0) skip();
    char mnt[4096], keep[4096];
    snprintf(mnt, sizeof mnt, "%s/fullmnt", tmp);
    snprintf(keep, sizeof keep, "%s/fullkeep", tmp);
    assert_int_equal(sh("mkdir -p %s %s", mnt, keep), 0);
    int rc = sh("unshare -r -m sh -c 'mount -t tmpfs -o size=600k tmpfs %s || exit 99; "
                "%s/deba-train %s --epochs 2 --out %s/runs 2>%s/err.txt; echo $? > %s/rc; "
                "cp %s/runs/%s/meta.csv %s/; ls -A %s/runs/%s > %s/ls'",
                mnt, tu_bindir(), COMMON, mnt, tmp, keep, mnt, RUN, keep, mnt, RUN, keep);
    if (rc == 99) skip();
    assert_int_equal(rc, 0);
    assert_int_equal(sh("grep -qx 1 %s/rc", keep), 0);
    assert_true(err_has("No space left on device"));
    char p[4300];
    snprintf(p, sizeof p, "%s/meta.csv", keep);
    deba_meta m = {0};
    deba_err e = {0};
    assert_int_equal(deba_meta_read(p, &m, &e), DEBA_OK);
    assert_string_equal(deba_meta_get(&m, "status"), "failed");
    assert_non_null(strstr(deba_meta_get(&m, "error"), "No space left on device"));
    deba_meta_free(&m);
    assert_int_equal(sh("grep -q '\\.tmp\\.' %s/ls", keep), 1);   /* no temporary file left */
}

/* ---- one writer per run directory ---- */

static void test_concurrent_force(void **state)
{
    (void)state;
    if (!have_data()) skip();
    char out[4096], lock[4300], cmd[8192];
    snprintf(out, sizeof out, "%s/conc", tmp);
    snprintf(cmd, sizeof cmd, "exec %s/deba-train %s --epochs 4 --out %s --force 2>%s/first.txt", tu_bindir(), COMMON,
             out, tmp);
    pid_t first = spawn(cmd);
    run_path(lock, sizeof lock, out, ".lock");
    assert_true(wait_file(lock, 2));   /* "<pid>\n": the first run holds the directory */
    assert_int_equal(train(out, "--epochs 4 --force --lr 0.05", NULL), 2);
    char want[128];
    snprintf(want, sizeof want, "in use by another run (pid %ld)", (long)first);
    assert_true(err_has(want));
    assert_true(err_has(RUN));
    assert_int_equal(wait_exit(first), 0);
    /* the first run's files, whole and consistent with each other */
    assert_string_equal(meta(out, RUN, "lr"), "0.01");
    assert_string_equal(meta(out, RUN, "status"), "completed");
    assert_same_as_ref(out);
}

/* ---- options ---- */

static void test_long_options(void **state)
{
    (void)state;
    char out[4096], label[301], big[5001];
    snprintf(out, sizeof out, "%s/longopt", tmp);
    memset(label, 'l', 300);
    label[300] = '\0';
    memset(big, 'o', 5000);
    big[5000] = '\0';
    char extra[6000];
    snprintf(extra, sizeof extra, "--epochs 1 --label %s", label);
    assert_int_equal(train(out, extra, NULL), 2);
    assert_true(err_has("--label: longer than the limit of 63 characters (got 300)"));
    snprintf(extra, sizeof extra, "--epochs 1 --out %s", big);
    assert_int_equal(train(out, extra, NULL), 2);
    assert_true(err_has("--out: longer than the limit of 4095 characters (got 5000)"));
    assert_int_equal(train(out, "--epochs 1 --device cpucpucpucpucpucpucpu", NULL), 2);
    assert_true(err_has("--device: longer than the limit of 15 characters (got 21)"));
    assert_false(tu_exists(out));
    /* deba-profile: the same fields, and the --seeds list buffer */
    assert_int_equal(sh("%s/deba-profile --arch %s --dataset fashion-mnist --out %s 2>%s/err.txt", tu_bindir(), label,
                        out, tmp), 2);
    assert_true(err_has("--arch: longer than the limit of 63 characters (got 300)"));
    char *seeds = malloc(6000);
    size_t k = 0;
    for (int i = 0; k < 4500; i++) k += (size_t)snprintf(seeds + k, 6000 - k, "%s%d", i ? "," : "", i);
    assert_int_equal(sh("%s/deba-profile --arch cnn_small --dataset fashion-mnist --seeds %s --out %s 2>%s/err.txt",
                        tu_bindir(), seeds, out, tmp), 2);
    assert_true(err_has("--seeds: longer than the limit of 4095 characters"));
    free(seeds);
    assert_false(tu_exists(out));
}

static void test_subset_larger_than_dataset(void **state)
{
    (void)state;
    if (!have_data()) skip();
    char out[4096];
    snprintf(out, sizeof out, "%s/subset", tmp);
    /* bounded in time: a trainer that clamped again would train on all 60000 images */
    assert_int_equal(sh("timeout 60 %s/deba-train --arch cnn_small --dataset fashion-mnist --subset 70000 --epochs 1 "
                        "--out %s 2>%s/err.txt", tu_bindir(), out, tmp), 2);
    assert_true(err_has("--subset 70000: the fashion-mnist training set in"));
    assert_true(err_has("has only 60000 images"));
    assert_int_equal(sh("timeout 60 %s/deba-train --arch cnn_small --dataset fashion-mnist --subset 100 --test-subset "
                        "10001 --epochs 1 --out %s 2>%s/err.txt", tu_bindir(), out, tmp), 2);
    assert_true(err_has("--test-subset 10001: the fashion-mnist test set in"));
    assert_true(err_has("has only 10000 images"));
    assert_false(tu_exists(out));
    /* meta.csv records both subsets as asked */
    assert_string_equal(meta(ref, RUN, "subset"), "384");
    assert_string_equal(meta(ref, RUN, "test_subset"), "200");
}

/* ---- stop without losing work ---- */

/* Stop requests after global steps ks[0] < ks[1] < ... (the test hook raises the flag exactly
 * as the signal handler does), each followed by --resume: exit 3 and status interrupted at every
 * stop, a trace every reader accepts, and the same end as the uninterrupted reference. */
static void stop_chain(const char *name, const int *ks, int n)
{
    char out[4096], env[64], tr[4300];
    snprintf(out, sizeof out, "%s/%s", tmp, name);
    run_path(tr, sizeof tr, out, "trace.csv");
    for (int i = 0; i < n; i++) {
        snprintf(env, sizeof env, "DEBA_TEST_STOP_AT_STEP=%d", ks[i]);
        fprintf(stderr, "  stop after step %d of %d\n", ks[i], TOTAL_STEPS);
        assert_int_equal(train(out, i ? "--epochs 4 --resume" : "--epochs 4", env), 3);
        assert_string_equal(meta(out, RUN, "status"), "interrupted");
        deba_trace t = {0};
        deba_err e = {0};
        assert_int_equal(deba_trace_read(tr, &t, &e), DEBA_OK);
        deba_trace_free(&t);
    }
    assert_int_equal(train(out, "--epochs 4 --resume", NULL), 0);
    assert_same_as_ref(out);
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* n distinct random steps in [1, TOTAL_STEPS - 1], sorted. */
static void random_steps(int *ks, int n)
{
    for (int i = 0; i < n; i++) {
        int k, dup;
        do {
            k = 1 + rand() % (TOTAL_STEPS - 1);
            dup = 0;
            for (int j = 0; j < i; j++) dup |= ks[j] == k;
        } while (dup);
        ks[i] = k;
    }
    qsort(ks, (size_t)n, sizeof *ks, cmp_int);
}

static void test_stop_at_random_steps(void **state)
{
    (void)state;
    if (!have_data()) skip();
    /* two random steps and the edges: the first step, an epoch's last step (the epoch is
     * finished first), a step in the epoch after the rollback (B = 25) */
    int ks[5] = {0}, n = 0;
    random_steps(ks, 2);
    const int edges[] = {1, 12, 45};
    for (int i = 0; i < 3; i++)
        if (ks[0] != edges[i] && ks[1] != edges[i]) ks[2 + n++] = edges[i];
    qsort(ks, (size_t)(2 + n), sizeof *ks, cmp_int);
    stop_chain("stops", ks, 2 + n);
}

/* kill -9 (the hook's _exit(137) after step k) with --checkpoint-every 3: at most 2 steps are
 * lost, and the resumed run ends identical. */
static void test_kill9_with_checkpoint_every(void **state)
{
    (void)state;
    if (!have_data()) skip();
    int ks[2];
    random_steps(ks, 2);
    char out[4096], env[64], ck[4300];
    snprintf(out, sizeof out, "%s/kill9", tmp);
    run_path(ck, sizeof ck, out, "checkpoint.bin");
    for (int i = 0; i < 2; i++) {
        snprintf(env, sizeof env, "DEBA_FAULT_KILL_AT_STEP=%d", ks[i]);
        fprintf(stderr, "  kill -9 after step %d of %d\n", ks[i], TOTAL_STEPS);
        assert_int_equal(train(out, i ? "--epochs 4 --checkpoint-every 3 --resume" : "--epochs 4 --checkpoint-every 3",
                               env), 137);
        if (ks[i] >= 3) assert_true(tu_exists(ck));
    }
    assert_int_equal(train(out, "--epochs 4 --checkpoint-every 3 --resume", NULL), 0);
    assert_same_as_ref(out);
}

/* A real signal at a random moment (the handler, not the hook): the run checkpoints its position
 * and exits 3; --resume ends identical. --checkpoint-every 1 makes the first checkpoint appear
 * after step 1, so the signal lands while training. */
static void real_signal_case(const char *name, int sig)
{
    char out[4096], ck[4300], cmd[8192];
    snprintf(out, sizeof out, "%s/%s", tmp, name);
    run_path(ck, sizeof ck, out, "checkpoint.bin");
    snprintf(cmd, sizeof cmd, "exec %s/deba-train %s --epochs 4 --checkpoint-every 1 --out %s 2>%s/err.txt",
             tu_bindir(), COMMON, out, tmp);
    pid_t pid = spawn(cmd);
    assert_true(wait_file(ck, 1));
    int delay = rand() % 400;
    fprintf(stderr, "  signal %d %d ms after the first checkpoint\n", sig, delay);
    usleep((useconds_t)delay * 1000);
    kill(pid, sig);
    assert_int_equal(wait_exit(pid), 3);
    assert_string_equal(meta(out, RUN, "status"), "interrupted");
    assert_int_equal(train(out, "--epochs 4 --resume", NULL), 0);
    assert_same_as_ref(out);
}

static void test_real_sigterm(void **state)
{
    (void)state;
    if (!have_data()) skip();
    real_signal_case("sigterm", SIGTERM);
    real_signal_case("sigusr1", SIGUSR1);
}

/* deba-profile: SIGTERM checkpoints the current run and exits 3; the same command continues it
 * to the end an uninterrupted profile reaches. */
static void test_profile_sigterm(void **state)
{
    (void)state;
    if (!have_data()) skip();
    const char *opts = "--arch cnn_small --dataset fashion-mnist --subset 384 --test-subset 200 --seeds 7 --epochs 2 "
                       "--batch 16 --device cpu --quiet";
    char a[4096], b[4096], ck[4300], cmd[8192];
    snprintf(a, sizeof a, "%s/prof-ref", tmp);
    snprintf(b, sizeof b, "%s/prof-int", tmp);
    assert_int_equal(sh("%s/deba-profile %s --out %s >/dev/null 2>%s/err.txt", tu_bindir(), opts, a, tmp), 0);
    snprintf(ck, sizeof ck, "%s/cnn_small/fashion-mnist/fixed/seed7/checkpoint.bin", b);
    snprintf(cmd, sizeof cmd, "exec %s/deba-profile %s --checkpoint-every 1 --out %s >/dev/null 2>%s/err.txt",
             tu_bindir(), opts, b, tmp);
    pid_t pid = spawn(cmd);
    assert_true(wait_file(ck, 1));
    int delay = rand() % 300;
    fprintf(stderr, "  deba-profile: SIGTERM %d ms after the first checkpoint\n", delay);
    usleep((useconds_t)delay * 1000);
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid), 3);
    assert_true(err_has("interrupted during seed 7"));
    assert_string_equal(meta(b, "cnn_small/fashion-mnist/fixed/seed7", "status"), "interrupted");
    assert_int_equal(sh("%s/deba-profile %s --out %s >/dev/null 2>%s/err.txt", tu_bindir(), opts, b, tmp), 0);
    char ta[4300], tb[4300];
    snprintf(ta, sizeof ta, "%s/cnn_small/fashion-mnist/fixed/seed7/trace.csv", a);
    snprintf(tb, sizeof tb, "%s/cnn_small/fashion-mnist/fixed/seed7/trace.csv", b);
    assert_same_trace(ta, tb);
    snprintf(ta, sizeof ta, "%s/cnn_small/fashion-mnist/fixed/seed7/checkpoint.bin", a);
    assert_same_params(ta, ck);
}

static int setup(void **state)
{
    (void)state;
    tmp = tu_mkdtemp();
    if (!tmp) return -1;
    const char *s = getenv("DEBA_TEST_SEED");
    seed = s ? (unsigned)strtoul(s, NULL, 10) : (unsigned)time(NULL);
    fprintf(stderr, "random steps and delays from DEBA_TEST_SEED=%u\n", seed);
    srand(seed);
    snprintf(ref, sizeof ref, "%s/ref", tmp);
    if (have_data() && train(ref, "--epochs 4", NULL) != 0) {
        fprintf(stderr, "the reference run failed\n");
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ckpt_name_without_nul),
        cmocka_unit_test(test_ckpt_negative_epoch),
        cmocka_unit_test(test_ckpt_epoch_vs_rows),
        cmocka_unit_test(test_ckpt_huge_payload),
        cmocka_unit_test(test_ckpt_bad_row),
        cmocka_unit_test(test_ckpt_truncated),
        cmocka_unit_test(test_ckpt_epoch_vs_trace),
        cmocka_unit_test(test_ckpt_version1),
        cmocka_unit_test(test_stale_temp_removed_on_resume),
        cmocka_unit_test(test_file_size_limit),
        cmocka_unit_test(test_full_disk),
        cmocka_unit_test(test_concurrent_force),
        cmocka_unit_test(test_long_options),
        cmocka_unit_test(test_subset_larger_than_dataset),
        cmocka_unit_test(test_stop_at_random_steps),
        cmocka_unit_test(test_kill9_with_checkpoint_every),
        cmocka_unit_test(test_real_sigterm),
        cmocka_unit_test(test_profile_sigterm),
    };
    return cmocka_run_group_tests_name("resilience", tests, setup, teardown);
}
