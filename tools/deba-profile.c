/* deba-profile: will DEBA help this network? Fixed-batch runs over seeds give the stability
 * profile (S̄ ± σ_S, archetype) and calibrated thresholds; --sweep times batch sizes; --plan runs
 * or emits a whole study. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "deba/deba.h"
#include "tools/cli.h"
#include "profiler/profile.h"
#include "trainer/train.h"

#define TOOL "deba-profile"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " --arch A --dataset D [--seeds 2,42,199] [--epochs N] [options]\n"
            "       " TOOL " --arch A --dataset D --sweep 32,64,128,... [--sweep-steps K] [options]\n"
            "       " TOOL " --plan STUDY.ini (--run | --emit-jobs JOBS.txt)\n"
            "\n"
            "Profiling trains one fixed-batch run per seed (label fixed) into\n"
            "OUT/<arch>/<dataset>/fixed/seed<seed>/, reusing completed runs and resuming interrupted\n"
            "ones, then writes OUT/<arch>/<dataset>/{profile,profile_summary,thresholds}.csv and prints\n"
            "the stability score S-bar +- sigma_S, the archetype and the calibrated tau, theta, lambda.\n"
            "\n"
            "model and data (as deba-train):\n"
            "  --arch A  --dataset D  --data DIR  --subset N  --test-subset N  --image-size S\n"
            "  --no-augment\n"
            "profiling:\n"
            "  --seeds LIST        comma-separated seeds (default 2,42,199)\n"
            "  --epochs N          epochs per run, at least 2 (default 10)\n"
            "  --batch B           fixed batch size (default 64)\n"
            "  --lr X (0.01)  --momentum X (0.9)  --weight-decay X (5e-4)\n"
            "  --device cpu|cuda|auto (default auto)\n"
            "  --force             retrain every seed from scratch\n"
            "  --checkpoint-every N  also checkpoint every N steps (default 0: at epoch ends)\n"
            "batch-size sweep (writes OUT/<arch>/<dataset>/sweep.csv):\n"
            "  --sweep LIST        batch sizes, e.g. 32,64,128,256,512,1024\n"
            "  --sweep-steps K     measured steps per size (default 10)\n"
            "  --seed S            initial weights and data order (default: first of --seeds, else 42)\n"
            "  --force             overwrite an existing sweep.csv\n"
            "study plans (docs/studies.md):\n"
            "  --plan FILE         the study\n"
            "  --run               run every run in order (completed runs are skipped)\n"
            "  --emit-jobs FILE    one deba-train line per run, plus study.sbatch (and profiles.sh)\n"
            "                      next to FILE; --force overwrites them\n"
            "output:\n"
            "  --out DIR           root of run directories (default runs)\n"
            "  --quiet             no per-epoch lines, no progress bar\n"
            "  --help, --version\n"
            "\n"
            "SIGTERM, SIGINT or SIGUSR1 checkpoint the current run after its current step and stop;\n"
            "the same command continues. Exit status: 0 success, 1 runtime failure, 2 usage or input\n"
            "error, 3 interrupted.\n");
}

enum {
    O_ARCH = 256, O_DATASET, O_DATA, O_SUBSET, O_TEST_SUBSET, O_IMAGE, O_NO_AUG, O_SEEDS, O_SEED, O_EPOCHS, O_BATCH,
    O_LR, O_MOM, O_WD, O_DEVICE, O_OUT, O_FORCE, O_QUIET, O_SWEEP, O_SWEEP_STEPS, O_PLAN, O_RUN, O_EMIT, O_HELP,
    O_VERSION, O_CKPT_EVERY,
};

static const struct option OPTS[] = {
    {"arch", 1, 0, O_ARCH}, {"dataset", 1, 0, O_DATASET}, {"data", 1, 0, O_DATA}, {"subset", 1, 0, O_SUBSET},
    {"test-subset", 1, 0, O_TEST_SUBSET}, {"image-size", 1, 0, O_IMAGE}, {"no-augment", 0, 0, O_NO_AUG},
    {"seeds", 1, 0, O_SEEDS}, {"seed", 1, 0, O_SEED}, {"epochs", 1, 0, O_EPOCHS}, {"batch", 1, 0, O_BATCH},
    {"lr", 1, 0, O_LR}, {"momentum", 1, 0, O_MOM}, {"weight-decay", 1, 0, O_WD}, {"device", 1, 0, O_DEVICE},
    {"out", 1, 0, O_OUT}, {"force", 0, 0, O_FORCE}, {"quiet", 0, 0, O_QUIET}, {"sweep", 1, 0, O_SWEEP},
    {"sweep-steps", 1, 0, O_SWEEP_STEPS}, {"plan", 1, 0, O_PLAN}, {"run", 0, 0, O_RUN}, {"emit-jobs", 1, 0, O_EMIT},
    {"help", 0, 0, O_HELP}, {"version", 0, 0, O_VERSION}, {"checkpoint-every", 1, 0, O_CKPT_EVERY},
    {0, 0, 0, 0},
};

static const char *opt_name(int code) { return cli_opt_name(OPTS, code); }

static int die_usage(const char *fmt, const char *a)
{
    fprintf(stderr, TOOL ": error: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, " (see " TOOL " --help)\n");
    return 2;
}

static int fail(const deba_err *e)
{
    fprintf(stderr, TOOL ": error: %s\n", e->msg);
    /* a stop request ends a profile, sweep or plan with DEBA_E_RUNTIME "interrupted ...", the
     * current run checkpointed: said by its own exit status, as deba-train does */
    if (e->status == DEBA_E_RUNTIME && tr_train_stop_requested) return DEBA_EXIT_INTERRUPTED;
    return deba_status_exit_code(e->status);
}

static int parse_long(int code, const char *s, long lo, long hi, long *v)
{
    return cli_parse_long(TOOL, opt_name(code), s, lo, hi, v);
}

static int parse_double(int code, const char *s, double *v)
{
    return cli_parse_double(TOOL, opt_name(code), s, v);
}

static int copy_opt(int code, char *dst, size_t cap, const char *s)
{
    return cli_copy(TOOL, opt_name(code), dst, cap, s);
}

/* "2,42,199": integers in [lo, hi], at most max of them, distinct unless dups. */
static int parse_list(int code, const char *s, long lo, long hi, int dups, int *out, int max, int *n)
{
    char buf[4096];
    *n = 0;
    if (cli_copy(TOOL, opt_name(code), buf, sizeof buf, s)) return -1;
    char *save = NULL;
    if (!*s || s[strlen(s) - 1] == ',' || *s == ',' || strstr(s, ",,")) {
        fprintf(stderr, TOOL ": error: --%s: expected a comma-separated list of integers, got '%s'\n", opt_name(code), s);
        return -1;
    }
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long v;
        if (*n == max) {
            fprintf(stderr, TOOL ": error: --%s: more than %d values\n", opt_name(code), max);
            return -1;
        }
        if (parse_long(code, tok, lo, hi, &v)) return -1;
        for (int i = 0; i < *n && !dups; i++)
            if (out[i] == v) {
                fprintf(stderr, TOOL ": error: --%s: %ld listed twice\n", opt_name(code), v);
                return -1;
            }
        out[(*n)++] = (int)v;
    }
    return 0;
}

/* Async-signal-safe: only the flag; the training loop checks it between steps. */
static void on_signal(int sig)
{
    (void)sig;
    tr_train_stop_requested = 1;
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int plan_mode(const char *plan, int run, const char *emit, int force, int quiet)
{
    if (!!run + !!emit != 1) return die_usage("--plan needs exactly one of --run and --emit-jobs FILE%s", "");
    if (emit && !*emit) return die_usage("--emit-jobs: empty file name%s", "");
    if (run && force)
        return die_usage("--force does not apply to --plan --run%s: completed runs are kept; delete a run directory "
                         "to retrain it", "");
    deba_err e = { 0 };
    deba_plan *p = deba_plan_load(plan, &e);
    if (!p) return fail(&e);
    deba_status st = emit ? deba_plan_emit(p, emit, force, stdout, &e) : deba_plan_run(p, quiet, stderr, &e);
    deba_plan_free(p);
    return st ? fail(&e) : 0;
}

static int sweep_mode(deba_sweep_config *sc, int force, int quiet)
{
    char dir[4300], path[4400];   /* never truncated: --out is at most 4095 characters, names 63 */
    deba_err e = { 0 };
    snprintf(dir, sizeof dir, "%s/%s/%s", sc->train.out, sc->train.arch, sc->train.dataset);
    snprintf(path, sizeof path, "%s/sweep.csv", dir);
    if (!force && exists(path)) return die_usage("%s exists: use --force to overwrite it", path);
    sc->log = quiet ? NULL : stderr;
    deba_sweep_row *rows;
    size_t n;
    if (deba_sweep_run(sc, &rows, &n, &e) || deba_mkdirs(dir, &e) || deba_sweep_write(path, rows, n, &e)) return fail(&e);
    printf("%10s  %6s  %12s  %12s  %12s  %8s\n", "batch_size", "steps", "samples/s", "epoch_time_s", "grad_var",
           "compute");
    for (size_t i = 0; i < n; i++) {
        if (!rows[i].steps) printf("%10d  %6d  does not fit in memory\n", rows[i].batch_size, 0);
        else
            printf("%10d  %6d  %12.1f  %12.3f  %12.4g  %7.1f%%\n", rows[i].batch_size, rows[i].steps,
                   rows[i].samples_per_s, rows[i].epoch_time_s, rows[i].grad_var, 100 * rows[i].compute_util);
    }
    printf("wrote %s (%zu batch sizes)\n", path, n);
    free(rows);
    return 0;
}

int main(int argc, char **argv)
{
    cli_prefer_passive_omp(argv);
    tr_train_config c;
    tr_train_config_default(&c);
    deba_sweep_config sc;
    memset(&sc, 0, sizeof sc);
    sc.steps = 10;
    int seeds[DEBA_PROFILE_MAX_SEEDS] = { 2, 42, 199 }, n_seeds = 3, seeds_given = 0, seed_given = 0, seed = 42;
    const char *plan = NULL, *emit = NULL;
    int run = 0, sweep = 0, steps_given = 0, other = 0;   /* other: a training option (not for --plan) */
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", OPTS, NULL)) != -1) {
        long v;
        int bad = 0;
        other += ch != O_PLAN && ch != O_RUN && ch != O_EMIT && ch != O_FORCE && ch != O_QUIET;
        switch (ch) {
        case O_ARCH: bad = copy_opt(ch, c.arch, sizeof c.arch, optarg); break;
        case O_DATASET: bad = copy_opt(ch, c.dataset, sizeof c.dataset, optarg); break;
        case O_DATA: bad = copy_opt(ch, c.data_dir, sizeof c.data_dir, optarg); break;
        case O_SUBSET: bad = parse_long(ch, optarg, 1, 100000000, &v); c.subset = (int)v; break;
        case O_TEST_SUBSET: bad = parse_long(ch, optarg, 1, 100000000, &v); c.test_subset = (int)v; break;
        case O_IMAGE: bad = parse_long(ch, optarg, 1, 4096, &v); c.image_size = (int)v; break;
        case O_NO_AUG: c.augment = 0; break;
        case O_SEEDS:
            bad = parse_list(ch, optarg, 0, 2147483647, 0, seeds, DEBA_PROFILE_MAX_SEEDS, &n_seeds);
            seeds_given = 1;
            break;
        case O_SEED: bad = parse_long(ch, optarg, 0, 2147483647, &v); seed = (int)v; seed_given = 1; break;
        case O_EPOCHS: bad = parse_long(ch, optarg, 2, 100000, &v); c.epochs = (int)v; break;
        case O_BATCH: bad = parse_long(ch, optarg, 1, 1 << 20, &v); c.sched.b0 = (int)v; break;
        case O_LR: bad = parse_double(ch, optarg, &c.lr); break;
        case O_MOM: bad = parse_double(ch, optarg, &c.momentum); break;
        case O_WD: bad = parse_double(ch, optarg, &c.weight_decay); break;
        case O_DEVICE: bad = copy_opt(ch, c.device, sizeof c.device, optarg); break;
        case O_OUT: bad = copy_opt(ch, c.out, sizeof c.out, optarg); break;
        case O_CKPT_EVERY: bad = parse_long(ch, optarg, 0, 2147483647, &v); c.checkpoint_every = (int)v; break;
        case O_FORCE: c.force = 1; break;
        case O_QUIET: c.quiet = 1; break;
        case O_SWEEP:
            bad = parse_list(ch, optarg, 1, 1 << 20, 1, sc.sizes, DEBA_SWEEP_MAX_SIZES, &sc.n_sizes);
            sweep = 1;
            break;
        case O_SWEEP_STEPS: bad = parse_long(ch, optarg, 1, 1000000, &v); sc.steps = (int)v; steps_given = 1; break;
        case O_PLAN: plan = optarg; break;
        case O_RUN: run = 1; break;
        case O_EMIT: emit = optarg; break;
        case O_HELP: usage(stdout); return 0;
        case O_VERSION: printf(TOOL " %s\n", DEBA_VERSION); return 0;
        default:
            return die_usage("unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (bad) return 2;
    }
    if (optind < argc) return die_usage("unexpected argument '%s'", argv[optind]);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGXFSZ, SIG_IGN);   /* over `ulimit -f`: EFBIG, reported, instead of a silent kill */

    if (plan) {
        if (other) return die_usage("--plan takes only --run or --emit-jobs, --force and --quiet%s: the plan file "
                                    "says the rest", "");
        return plan_mode(plan, run, emit, c.force, c.quiet);
    }
    if (run || emit) return die_usage("--run and --emit-jobs need --plan FILE%s", "");
    if (!c.out[0]) return die_usage("--out: empty directory name%s", "");
    if (!c.arch[0]) return die_usage("--arch is required%s", "");
    if (!c.dataset[0]) return die_usage("--dataset is required%s", "");
    if (steps_given && !sweep) return die_usage("--sweep-steps needs --sweep LIST%s", "");
    if (seed_given && !sweep) return die_usage("--seed is for --sweep%s; a profile takes --seeds LIST", "");
    c.progress = !c.quiet && isatty(STDERR_FILENO);
    if (c.sched.b0 > c.sched.bmax) c.sched.bmax = c.sched.b0;   /* a fixed run never leaves B0 */
    if (c.sched.b0 < c.sched.bmin) c.sched.bmin = c.sched.b0;

    if (sweep && c.checkpoint_every) return die_usage("--checkpoint-every is for profiling runs%s, not --sweep", "");
    if (sweep) {
        sc.train = c;
        sc.train.seed = (uint64_t)(seed_given ? seed : seeds_given ? seeds[0] : 42);
        return sweep_mode(&sc, c.force, c.quiet);
    }

    deba_profile_config pc;
    memset(&pc, 0, sizeof pc);
    pc.train = c;
    memcpy(pc.seeds, seeds, sizeof seeds);
    pc.n_seeds = n_seeds;
    pc.log = stderr;
    deba_profile p;
    deba_err e = { 0 };
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/%s/%s", c.out, c.arch, c.dataset);
    if (deba_profile_run(&pc, &p, &e) || deba_profile_save(dir, &p, &e)) return fail(&e);
    deba_profile_print(stdout, &p);
    printf("wrote %s/profile.csv, profile_summary.csv, thresholds.csv\n", dir);
    deba_profile_free(&p);
    return 0;
}
