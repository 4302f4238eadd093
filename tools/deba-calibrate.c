/* deba-calibrate: DEBA's thresholds τ, θ, λ (SPEC §4) from the fixed-batch traces under one or
 * more run directories, written to thresholds.csv. */
#include "calib/calib.h"
#include "deba/deba.h"
#include "deba/runs.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef DEBA_VERSION
#define DEBA_VERSION "unknown"
#endif

static const char *PROG = "deba-calibrate";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s [OPTION]... RUN_DIR...\n"
            "Calibrate DEBA's thresholds from the completed fixed-batch runs under each RUN_DIR:\n"
            "per (arch, dataset), pooling all seeds and epochs t >= 2,\n"
            "  tau = 75th percentile of norm_var, theta = median of confidence,\n"
            "  lambda = 75th percentile of loss_var.\n"
            "\n"
            "  -o, --out FILE   write the thresholds here (default: thresholds.csv)\n"
            "  -f, --force      overwrite FILE if it exists\n"
            "  -q, --quiet      do not print the table on stdout\n"
            "  -h, --help       show this help and exit\n"
            "  -V, --version    show the version and exit\n"
            "\n"
            "Exit status: 0 success, 1 runtime failure, 2 usage or input error.\n",
            PROG);
}

/* The option at fault as the user typed it: "--name" (without "=value") or "-c". */
static const char *opt_name(const char *arg, int optopt_)
{
    static char buf[128];
    if (strncmp(arg, "--", 2) == 0) snprintf(buf, sizeof buf, "%.*s", (int)strcspn(arg, "="), arg);
    else snprintf(buf, sizeof buf, "-%c", optopt_ ? optopt_ : '?');
    return buf;
}

static int fail(deba_status st, const char *msg)
{
    fprintf(stderr, "%s: error: %s\n", PROG, msg);
    return deba_status_exit_code(st);
}

int main(int argc, char **argv)
{
    const char *out = "thresholds.csv";
    int force = 0, quiet = 0;
    static const struct option opts[] = {
        { "out", required_argument, NULL, 'o' },  { "force", no_argument, NULL, 'f' },
        { "quiet", no_argument, NULL, 'q' },      { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },    { NULL, 0, NULL, 0 },
    };
    int c;
    opterr = 0;   /* our own messages, in the tool's error format */
    while ((c = getopt_long(argc, argv, ":o:fqhV", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("%s %s\n", PROG, DEBA_VERSION); return 0;
        case ':':
            fprintf(stderr, "%s: error: option '%s' needs an argument\n", PROG, opt_name(argv[optind - 1], optopt));
            fprintf(stderr, "Try '%s --help' for more information.\n", PROG);
            return 2;
        default:
            fprintf(stderr, "%s: error: bad option '%s' (unknown, or given an argument it does not take)\n", PROG,
                    opt_name(argv[optind - 1], optopt));
            fprintf(stderr, "Try '%s --help' for more information.\n", PROG);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "%s: error: no RUN_DIR given\nTry '%s --help' for more information.\n", PROG, PROG);
        return 2;
    }
    if (!*out) return fail(DEBA_E_INPUT, "--out: empty file name");
    struct stat sb;
    if (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char msg[4200];
        snprintf(msg, sizeof msg, "--out %s is a directory, not a file", out);
        return fail(DEBA_E_INPUT, msg);
    }
    if (!force && stat(out, &sb) == 0) {
        char msg[4200];
        snprintf(msg, sizeof msg, "%s exists (use --force to overwrite)", out);
        return fail(DEBA_E_INPUT, msg);
    }

    deba_err e;
    deba_err_clear(&e);
    deba_run *runs = NULL;
    size_t nruns = 0;
    char **skipped = NULL;
    size_t nskipped = 0;
    deba_status st = deba_runs_load_walk((const char *const *)argv + optind, (size_t)(argc - optind), &runs,
                                         &nruns, &skipped, &nskipped, &e);
    for (size_t i = 0; i < nskipped; i++) fprintf(stderr, "deba-calibrate: warning: %s\n", skipped[i]);
    deba_strs_free(skipped, nskipped);
    if (st != DEBA_OK) return fail(st, e.msg);

    size_t usable = 0;
    for (size_t i = 0; i < nruns; i++) usable += (size_t)deba_calib_usable(&runs[i]);
    if (usable == 0) {
        char dirs[1024] = "", census[256], msg[1400];
        for (int i = optind; i < argc; i++) {
            size_t l = strlen(dirs);
            snprintf(dirs + l, sizeof dirs - l, "%s%s", i > optind ? " " : "", argv[i]);
        }
        deba_calib_census(runs, nruns, census, sizeof census);
        if (nruns == 0)
            snprintf(msg, sizeof msg, "no runs (directories with meta.csv and trace.csv) under %s", dirs);
        else
            snprintf(msg, sizeof msg, "no completed fixed-batch runs under %s (found %s)", dirs, census);
        deba_runs_free(runs, nruns);
        return fail(DEBA_E_INPUT, msg);
    }

    deba_thresholds_row *rows = NULL;
    size_t nrows = 0;
    st = deba_calib_thresholds(runs, nruns, &rows, &nrows, &e);
    deba_runs_free(runs, nruns);
    if (st == DEBA_OK) st = deba_thresholds_write(out, rows, nrows, &e);
    if (st != DEBA_OK) {
        free(rows);
        return fail(st, e.msg);
    }
    if (!quiet) {
        deba_calib_print(stdout, rows, nrows);
        printf("wrote %s (%zu row%s from %zu run%s)\n", out, nrows, nrows == 1 ? "" : "s", usable,
               usable == 1 ? "" : "s");
    }
    free(rows);
    return 0;
}
