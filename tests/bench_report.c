/* Benchmark of deba-report on 1,000 synthetic runs × 100 epochs (--no-figures), against reading
 * the same CSV bytes raw and parsing them with deba_runs_load, measured in the same run. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deba/deba.h"
#include "analyze/analyze.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static size_t total_bytes;

static int read_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag != FTW_F) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) total_bytes += n;
    fclose(f);
    return 0;
}

int main(void)
{
    const char *bin = getenv("DEBA_BIN");
    if (!bin || !*bin) bin = "build/bin";
    const char *tmp = getenv("TMPDIR");
    char root[4096], runs[4200], out[4200], cmd[9000];
    snprintf(root, sizeof root, "%s/deba-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(runs, sizeof runs, "%s/runs", root);
    snprintf(out, sizeof out, "%s/report", root);
    const int narch = 10, ndata = 5, nseeds = 10, epochs = 100; /* 10 × 5 × 2 methods × 10 = 1000 runs */
    deba_err e = {0};
    double t0 = now();
    if (deba_synth_runs(runs, narch, ndata, nseeds, epochs, 42u, &e)) {
        fprintf(stderr, "bench_report: %s\n", e.msg);
        return 1;
    }
    double t_gen = now() - t0;
    int nruns = narch * ndata * 2 * nseeds;

    /* reference 1: the raw bytes (page cache warm, as for the report) */
    t0 = now();
    nftw(runs, read_one, 64, FTW_PHYS);
    double t_raw = now() - t0;

    /* reference 2: parsing them into runs */
    const char *roots[1] = {runs};
    deba_run *rr = NULL;
    size_t n = 0;
    t0 = now();
    if (deba_runs_load(roots, 1, &rr, &n, &e)) {
        fprintf(stderr, "bench_report: %s\n", e.msg);
        return 1;
    }
    double t_load = now() - t0;
    deba_runs_free(rr, n);

    /* the report, as users run it */
    snprintf(cmd, sizeof cmd, "'%s/deba-report' --no-figures --quiet --out '%s' '%s'", bin, out, runs);
    t0 = now();
    int rc = system(cmd);
    double t_report = now() - t0;
    if (rc != 0) {
        fprintf(stderr, "bench_report: '%s' failed (%d)\n", cmd, rc);
        return 1;
    }
    printf("bench_report: %d runs × %d epochs, %.1f MB of CSV (generated in %.2f s)\n", nruns, epochs,
           total_bytes / 1e6, t_gen);
    printf("  raw read of the CSV bytes      %8.3f s  (%.0f MB/s)\n", t_raw, total_bytes / 1e6 / t_raw);
    printf("  deba_runs_load (parse only)    %8.3f s  (%.0f MB/s)\n", t_load, total_bytes / 1e6 / t_load);
    printf("  deba-report --no-figures       %8.3f s  (%.0f MB/s) = %.2f× parse-only, %.1f× raw read\n", t_report,
           total_bytes / 1e6 / t_report, t_report / t_load, t_report / t_raw);
    printf("  target: under 2 s for the report: %s\n", t_report < 2.0 ? "met" : "NOT MET");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "bench_report: could not remove %s\n", root);
    return t_report < 2.0 ? 0 : 1;
}
