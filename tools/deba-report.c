/* deba-report: the paper's tables and figures regenerated from run directories' CSV traces, or
 * from the paper's own published numbers (--paper) with its inconsistencies listed. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "deba/deba.h"
#include "analyze/analyze.h"
#include "report/report.h"

#ifndef DEBA_VERSION
#define DEBA_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
    fputs("usage: deba-report [--out DIR] [--format md,tex,csv] [--ci t|bootstrap] [--no-figures] [--strict] [--force]\n"
          "                   [--quiet]\n"
          "                   RUN_DIR...\n"
          "       deba-report --paper DATA_DIR [--out DIR] [--format ...] [--force] [--quiet]\n"
          "\n"
          "Regenerates the DEBA paper's tables and figures from run directories (meta.csv + trace.csv,\n"
          "found recursively under each RUN_DIR, with profile_summary.csv, thresholds.csv, sweep.csv).\n"
          "\n"
          "  -o, --out DIR        where to write the report (default: report)\n"
          "  -f, --format LIST    table formats, any of md,tex,csv (default: md,tex,csv)\n"
          "      --ci METHOD      95% confidence intervals of the paired differences: t (Student t, the\n"
          "                       default) or bootstrap (percentile, 10000 resamples, fixed seed)\n"
          "      --no-figures     skip figures (no .dat, .gp, gnuplot)\n"
          "      --style S        figures for the screen (default: 960x600, 10 pt, titled) or for a\n"
          "                       paper (one column, 3.5 in, 8 pt, untitled): screen or paper\n"
          "  -p, --paper DIR      paper mode: render the paper's published numbers from DIR\n"
          "                       (data/paper) and list where the paper disagrees with itself\n"
          "      --strict         treat warnings (runs that differ in configuration, no comparable\n"
          "                       baseline, unpaired seeds, ...) as errors: exit 2, nothing written\n"
          "      --force          write into an existing non-empty output directory\n"
          "  -q, --quiet          print nothing but warnings and errors\n"
          "  -h, --help           this help\n"
          "  -V, --version        print the version\n"
          "\n"
          "Exit status: 0 success, 1 runtime failure, 2 usage or input error.\n",
          f);
}

static int die(int code, const char *msg)
{
    fprintf(stderr, "deba-report: error: %s\n", msg);
    return code;
}

/* 1 when path exists and holds anything, 0 when missing or empty, -1 when not a directory */
static int nonempty_dir(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) return -1;
    DIR *d = opendir(path);
    if (!d) return 1;
    struct dirent *de;
    int any = 0;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) { any = 1; break; }
    closedir(d);
    return any;
}

int main(int argc, char **argv)
{
    const char *out = "report", *paper = NULL, *formats = "md,tex,csv", *ci = "t";
    int figures = 1, force = 0, quiet = 0, strict = 0;
    enum { OPT_NO_FIGURES = 256, OPT_FORCE, OPT_STRICT, OPT_STYLE, OPT_CI };
    deba_fig_style style = DEBA_FIG_SCREEN;
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},      {"format", required_argument, 0, 'f'},
        {"no-figures", no_argument, 0, OPT_NO_FIGURES}, {"paper", required_argument, 0, 'p'},
        {"force", no_argument, 0, OPT_FORCE},    {"strict", no_argument, 0, OPT_STRICT},
        {"quiet", no_argument, 0, 'q'},          {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},        {"style", required_argument, 0, OPT_STYLE},
        {"ci", required_argument, 0, OPT_CI},    {0, 0, 0, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:f:p:qhV", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'f': formats = optarg; break;
        case 'p': paper = optarg; break;
        case 'q': quiet = 1; break;
        case OPT_NO_FIGURES: figures = 0; break;
        case OPT_FORCE: force = 1; break;
        case OPT_STRICT: strict = 1; break;
        case OPT_CI: ci = optarg; break;
        case OPT_STYLE:
            if (!strcmp(optarg, "paper")) style = DEBA_FIG_PAPER;
            else if (!strcmp(optarg, "screen")) style = DEBA_FIG_SCREEN;
            else {
                fprintf(stderr, "deba-report: error: --style: expected screen or paper, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("deba-report %s\n", DEBA_VERSION); return 0;
        case ':':
            fprintf(stderr, "deba-report: error: option '%s' needs an argument\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        default:
            fprintf(stderr, "deba-report: error: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    deba_err e = {0};
    unsigned fmt;
    if (deba_report_parse_formats(formats, &fmt, &e)) return die(2, e.msg);
    deba_analysis_opts aopt;
    deba_analysis_opts_default(&aopt);
    if (!strcmp(ci, "bootstrap")) aopt.ci = DEBA_CI_BOOTSTRAP;
    else if (strcmp(ci, "t")) {
        fprintf(stderr, "deba-report: error: --ci: '%s' is not t or bootstrap\n", ci);
        return 2;
    }
    if (!paper && optind >= argc) {
        fputs("deba-report: error: no RUN_DIR given (or use --paper DIR)\n", stderr);
        usage(stderr);
        return 2;
    }
    if (paper && optind < argc) return die(2, "--paper renders the paper's numbers: give no RUN_DIR with it");
    if (!*out) return die(2, "--out: empty directory name");
    int ne = nonempty_dir(out);
    if (ne < 0) {
        fprintf(stderr, "deba-report: error: --out %s exists and is not a directory\n", out);
        return 2;
    }
    if (ne > 0 && !force) {
        fprintf(stderr, "deba-report: error: output directory %s exists and is not empty (use --force to write into it)\n",
                out);
        return 2;
    }

    deba_run *runs = NULL;
    size_t nruns = 0;
    deba_analysis a;
    memset(&a, 0, sizeof a);
    deba_report_data d;
    memset(&d, 0, sizeof d);
    deba_status s;
    int rc = 0;
    if (paper) {
        if ((s = deba_report_from_paper(paper, &d, &e))) return die(deba_status_exit_code(s), e.msg);
    } else {
        const char *const *roots = (const char *const *)(argv + optind);
        size_t nroots = (size_t)(argc - optind);
        if ((s = deba_runs_load(roots, nroots, &runs, &nruns, &e))) return die(deba_status_exit_code(s), e.msg);
        if (nruns == 0) {
            deba_runs_free(runs, nruns);
            return die(2, "no run directories (meta.csv + trace.csv) found under the given RUN_DIRs");
        }
        if ((s = deba_analysis_run_opts(runs, nruns, &aopt, &a, &e)) || (s = deba_analysis_load_extras(&a, roots, nroots, &e)) ||
            (s = deba_report_from_analysis(&a, &d, &e))) {
            rc = die(deba_status_exit_code(s), e.msg);
            goto done;
        }
        for (size_t i = 0; i < a.nwarnings; i++)
            fprintf(stderr, "deba-report: %s: %s\n", strict ? "error" : "warning", a.warnings[i]);
        if (strict && a.nwarnings) {
            fprintf(stderr, "deba-report: error: %zu problem(s) with --strict; nothing written\n", a.nwarnings);
            rc = 2;
            goto done;
        }
    }
    if ((s = deba_mkdirs(out, &e))) {
        rc = die(deba_status_exit_code(s), e.msg);
        goto done;
    }
    deba_report_opts o = {out, fmt, figures, quiet, style};
    deba_report_result res;
    if ((s = deba_report_write(&d, &o, &res, &e))) {
        rc = die(deba_status_exit_code(s), e.msg);
        goto done;
    }
    if (res.gnuplot_missing)
        fprintf(stderr, "deba-report: warning: gnuplot not found on PATH: figures' .dat and .gp written, no PNG/SVG\n");
    if (res.gnuplot_failed)
        fprintf(stderr, "deba-report: warning: gnuplot failed on %d figure(s); their .dat and .gp are kept\n",
                res.gnuplot_failed);
    if (!quiet) {
        if (paper) {
            printf("Paper mode: %zu checks; the paper disagrees with itself in %zu places from %zu root causes "
                   "(%s/inconsistencies.md):\n", d.nchecks, d.nnotes, d.ncauses, out);
            for (size_t c = 0; c < d.ncauses; c++) {
                const char *why = strchr(d.causes[c], '\t');
                printf("%2zu. %s\n", c + 1, why ? why + 1 : d.causes[c]);
                for (size_t i = 0; i < d.nnotes; i++)
                    if (d.note_cause[i] == (int)c) printf("    - %s\n", d.notes[i]);
            }
        } else {
            size_t inc = 0;
            for (size_t i = 0; i < a.nruns; i++) inc += a.runs[i].included != 0;
            printf("%zu runs (%zu averaged, %zu left out), %zu groups, %zu warning(s)\n", a.nruns, inc, a.nruns - inc,
                   a.ngroups, a.nwarnings);
        }
        printf("wrote %d tables and %d figures (%d PNG) to %s; see %s/index.md\n", res.tables, res.figures, res.pngs,
               out, out);
    }
done:
    deba_report_data_free(&d);
    deba_analysis_free(&a);
    deba_runs_free(runs, nruns);
    return rc;
}
