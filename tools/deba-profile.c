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
#include "profiler/plan.h"
#include "trainer/train.h"

#define TOOL "deba-profile"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " --arch A --dataset D [--seeds 2,42,199] [--epochs N] [options]\n"
            "       " TOOL " --model FILE.onnx [--name N] --dataset D [--seeds ...] [options]\n"
            "       " TOOL " --arch A --dataset D --sweep 32,64,128,... [--sweep-steps K] [options]\n"
            "       " TOOL " --plan STUDY.ini (--run | --emit-jobs JOBS.txt)\n"
            "       " TOOL " --submit STUDY.ini | --status STUDY.ini [--watch [SECONDS]]\n"
            "\n"
            "Profiling trains one fixed-batch run per seed (label fixed) into\n"
            "OUT/<arch>/<dataset>/fixed/seed<seed>/, reusing completed runs and resuming interrupted\n"
            "ones, then writes OUT/<arch>/<dataset>/{profile,profile_summary,thresholds}.csv and prints\n"
            "the stability score S-bar +- sigma_S, the archetype and the calibrated tau, theta, lambda.\n"
            "\n"
            "model and data (as deba-train):\n"
            "  --arch A  --dataset D  --data DIR  --subset N  --test-subset N  --image-size S\n"
            "  --no-augment\n"
            "  --model FILE.onnx   instead of --arch: a network exported to ONNX (docs/onnx.md)\n"
            "  --name N            with --model: its architecture name (default the file's stem)\n"
            "  --init seeded|onnx  with --model: seeded (the default here: sigma_S is the spread\n"
            "                      over seeds, so each seed draws its own initial weights) or onnx\n"
            "                      (every seed starts from the file's weights)\n"
            "profiling:\n"
            "  --seeds LIST        comma-separated seeds (default 2,42,199)\n"
            "  --epochs N          epochs per run, at least 2 (default 10)\n"
            "  --batch B           fixed batch size (default 64)\n"
            "  --lr X (0.01)  --momentum X (0.9)  --weight-decay X (5e-4)\n"
            "  --device cpu|cuda|auto (default auto)\n"
            "  --force             retrain every seed from scratch\n"
            "  --checkpoint-every N  also checkpoint every N steps (default 0: at epoch ends)\n"
            "  --bootstrap B       resamples behind the verdict's archetype shares (default 1000)\n"
            "  --bootstrap-seed S  their random seed (default 1): the same seed, the same shares\n"
            "batch-size sweep (writes OUT/<arch>/<dataset>/sweep.csv):\n"
            "  --sweep LIST        batch sizes, e.g. 32,64,128,256,512,1024\n"
            "  --sweep-steps K     at least K measured steps per repeat (default 10)\n"
            "  --sweep-min-time S  and at least S seconds measured in the first repeat (default 0.5;\n"
            "                      every repeat of a size then takes the same steps)\n"
            "  --repeats R         timed repeats per size (default 3): sweep.csv holds the median\n"
            "                      and the min and max samples/s\n"
            "  --seed S            initial weights and data order (default: first of --seeds, else 42)\n"
            "  --force             overwrite an existing sweep.csv\n"
            "study plans (docs/studies.md):\n"
            "  --plan FILE         the study\n"
            "  --run               run every run in order (completed runs are skipped)\n"
            "  --emit-jobs FILE    one deba-train line per run, plus study.sbatch (and profiles.sh)\n"
            "                      next to FILE; --force overwrites them\n"
            "Slurm (docs/studies.md):\n"
            "  --submit FILE       write the study's job files to OUT/slurm/ and sbatch every phase\n"
            "                      (runs, calibration, calibrated runs, report) after the one before\n"
            "  --status FILE       runs done, running, failed and to do, epochs, ETA, failed tasks' logs\n"
            "  --watch [SECONDS]   with --status: again every SECONDS (default 10) until no job of the\n"
            "                      study is queued; exit 0 if every run completed, else 1\n"
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
    O_VERSION, O_CKPT_EVERY, O_REPEATS, O_MIN_TIME, O_BOOT, O_BOOT_SEED, O_MODEL, O_NAME, O_INIT,
};

/* the Slurm options (--submit, --status, --watch) */
enum { O_SUBMIT = 512, O_STATUS, O_WATCH };

static const struct option OPTS[] = {
    {"arch", 1, 0, O_ARCH}, {"dataset", 1, 0, O_DATASET}, {"data", 1, 0, O_DATA}, {"subset", 1, 0, O_SUBSET},
    {"test-subset", 1, 0, O_TEST_SUBSET}, {"image-size", 1, 0, O_IMAGE}, {"no-augment", 0, 0, O_NO_AUG},
    {"seeds", 1, 0, O_SEEDS}, {"seed", 1, 0, O_SEED}, {"epochs", 1, 0, O_EPOCHS}, {"batch", 1, 0, O_BATCH},
    {"lr", 1, 0, O_LR}, {"momentum", 1, 0, O_MOM}, {"weight-decay", 1, 0, O_WD}, {"device", 1, 0, O_DEVICE},
    {"out", 1, 0, O_OUT}, {"force", 0, 0, O_FORCE}, {"quiet", 0, 0, O_QUIET}, {"sweep", 1, 0, O_SWEEP},
    {"sweep-steps", 1, 0, O_SWEEP_STEPS}, {"plan", 1, 0, O_PLAN}, {"run", 0, 0, O_RUN}, {"emit-jobs", 1, 0, O_EMIT},
    {"help", 0, 0, O_HELP}, {"version", 0, 0, O_VERSION}, {"checkpoint-every", 1, 0, O_CKPT_EVERY},
    {"repeats", 1, 0, O_REPEATS}, {"sweep-min-time", 1, 0, O_MIN_TIME}, {"bootstrap", 1, 0, O_BOOT},
    {"bootstrap-seed", 1, 0, O_BOOT_SEED}, {"model", 1, 0, O_MODEL}, {"name", 1, 0, O_NAME},
    {"init", 1, 0, O_INIT},
    {"submit", 1, 0, O_SUBMIT}, {"status", 1, 0, O_STATUS}, {"watch", 2, 0, O_WATCH},
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

/* --submit PLAN, --status PLAN [--watch [SECONDS]]: a study on Slurm (profiler/plan.h). */
static int slurm_mode(const char *submit, const char *status, int watch)
{
    deba_err e = { 0 };
    deba_plan *p = deba_plan_load(submit ? submit : status, &e);
    if (!p) return fail(&e);
    int rc = 0;
    if (submit) rc = deba_plan_submit(p, NULL, stdout, &e) ? fail(&e) : 0;
    else
        for (int tty = isatty(STDOUT_FILENO);;) {
            int finished, all_done;
            char now[32];
            if (watch && tty) fputs("\033[H\033[2J", stdout);   /* the screen shows the latest only */
            else if (watch) {
                deba_utc_now(now, sizeof now);
                printf("---- %s\n", now);
            }
            if (deba_plan_status(p, NULL, stdout, &finished, &all_done, &e)) {
                rc = fail(&e);
                break;
            }
            fflush(stdout);
            if (!watch) break;
            if (finished) {
                printf("%s\n", all_done ? "study finished: every run completed" : "study stopped: not every run completed");
                rc = all_done ? 0 : 1;
                break;
            }
            for (int s = 0; s < watch && !tr_train_stop_requested; s++) sleep(1);
            if (tr_train_stop_requested) break;   /* Ctrl-C ends the watch, not the study */
        }
    deba_plan_free(p);
    return rc;
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
    printf("%10s  %6s  %7s  %12s  %25s  %12s  %12s  %8s\n", "batch_size", "steps", "repeats", "samples/s",
           "(min - max)", "epoch_time_s", "grad_var", "compute");
    for (size_t i = 0; i < n; i++) {
        const deba_sweep_row *r = &rows[i];
        char range[64];
        snprintf(range, sizeof range, "(%.1f - %.1f)", r->samples_per_s_min, r->samples_per_s_max);
        if (!r->steps) printf("%10d  %6d  does not fit in memory\n", r->batch_size, 0);
        else
            printf("%10d  %6d  %7d  %12.1f  %25s  %12.3f  %12.4g  %7.1f%%\n", r->batch_size, r->steps, r->repeats,
                   r->samples_per_s, range, r->epoch_time_s, r->grad_var, 100 * r->compute_util);
    }
    deba_sweep_cmp cmp;
    char reading[512];
    deba_sweep_compare(rows, n, sc->train.arch, sc->train.dataset, &cmp);
    if (!deba_sweep_reading(reading, sizeof reading, &cmp)) printf("%s\n", reading);
    printf("wrote %s (%zu batch sizes; samples/s and epoch_time_s are medians over the repeats)\n", path, n);
    free(rows);
    return 0;
}

int main(int argc, char **argv)
{
    cli_omp_wait_policy(argv);
    tr_train_config c;
    tr_train_config_default(&c);
    deba_sweep_config sc;
    memset(&sc, 0, sizeof sc);
    sc.steps = 10;
    sc.repeats = DEBA_SWEEP_REPEATS;
    sc.min_time_s = DEBA_SWEEP_MIN_TIME_S;
    int bootstrap = DEBA_BOOTSTRAP_B, boot_seed = DEBA_BOOTSTRAP_SEED, boot_given = 0, repeats_given = 0;
    int seeds[DEBA_PROFILE_MAX_SEEDS] = { 2, 42, 199 }, n_seeds = 3, seeds_given = 0, seed_given = 0, seed = 42;
    const char *plan = NULL, *emit = NULL, *submit = NULL, *status = NULL;
    int watch = 0;
    int run = 0, sweep = 0, steps_given = 0, other = 0;   /* other: a training option (not for --plan) */
    int set_arch = 0, set_model = 0, set_init = 0;
    const char *name = NULL;
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", OPTS, NULL)) != -1) {
        long v;
        int bad = 0;
        other += ch != O_PLAN && ch != O_RUN && ch != O_EMIT && ch != O_FORCE && ch != O_QUIET && ch != O_SUBMIT &&
                 ch != O_STATUS && ch != O_WATCH;
        switch (ch) {
        case O_ARCH: bad = copy_opt(ch, c.arch, sizeof c.arch, optarg); set_arch = 1; break;
        case O_MODEL: bad = copy_opt(ch, c.model, sizeof c.model, optarg); set_model = 1; break;
        case O_NAME: name = optarg; break;
        case O_INIT:
            if ((v = tr_onnx_init_parse(optarg)) < 0) return die_usage("--init: expected seeded or onnx, got '%s'", optarg);
            c.init = (onnx_init_mode)v;
            set_init = 1;
            break;
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
        case O_REPEATS: bad = parse_long(ch, optarg, 1, 1000, &v); sc.repeats = (int)v; repeats_given = 1; break;
        case O_MIN_TIME:
            bad = parse_double(ch, optarg, &sc.min_time_s);
            if (!bad && !(sc.min_time_s >= 0 && sc.min_time_s <= 3600))
                bad = die_usage("--sweep-min-time: expected 0 to 3600 seconds, got '%s'", optarg);
            repeats_given = 1;
            break;
        case O_BOOT: bad = parse_long(ch, optarg, 1, 1000000, &v); bootstrap = (int)v; boot_given = 1; break;
        case O_BOOT_SEED: bad = parse_long(ch, optarg, 0, 2147483647, &v); boot_seed = (int)v; boot_given = 1; break;
        case O_PLAN: plan = optarg; break;
        case O_RUN: run = 1; break;
        case O_EMIT: emit = optarg; break;
        case O_SUBMIT: submit = optarg; break;
        case O_STATUS: status = optarg; break;
        case O_WATCH:
            /* --watch, --watch=S or --watch S */
            if (!optarg && optind < argc && argv[optind][0] >= '0' && argv[optind][0] <= '9') optarg = argv[optind++];
            v = 10;
            if (optarg) bad = parse_long(ch, optarg, 1, 86400, &v);
            watch = (int)v;
            break;
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

    if (submit || status || watch) {
        if (!!submit + !!status != 1) return die_usage("use one of --submit PLAN and --status PLAN%s", "");
        if (watch && !status) return die_usage("--watch goes with --status PLAN%s", "");
        if (plan || run || emit || other || c.force || c.quiet)
            return die_usage("--submit and --status take only the plan%s (and --status --watch)", "");
        return slurm_mode(submit, status, watch);
    }
    if (plan) {
        if (other) return die_usage("--plan takes only --run or --emit-jobs, --force and --quiet%s: the plan file "
                                    "says the rest", "");
        return plan_mode(plan, run, emit, c.force, c.quiet);
    }
    if (run || emit) return die_usage("--run and --emit-jobs need --plan FILE%s", "");
    if (!c.out[0]) return die_usage("--out: empty directory name%s", "");
    if (set_arch && set_model) return die_usage("--arch and --model %s exclude each other: a profile is of one network", c.model);
    if (!set_model && !c.arch[0]) return die_usage("--arch or --model is required%s", "");
    if (set_model && !c.model[0]) return die_usage("--model: empty file name%s", "");
    if (name && !set_model) return die_usage("--name is for --model%s; a built-in network is named by --arch", "");
    if (set_init && !set_model) return die_usage("--init is for --model%s; a built-in network is seeded", "");
    if (name && !*name) return die_usage("--name: empty name%s", "");
    if (name && copy_opt(O_NAME, c.arch, sizeof c.arch, name)) return 2;
    if (!c.dataset[0]) return die_usage("--dataset is required%s", "");
    if (set_model) {
        deba_err ne = { 0 };
        if (tr_train_resolve_name(&c, &ne)) return fail(&ne);
        if (!set_init) {
            /* sigma_S measures how the stability score varies with the seed: with the file's
             * weights every seed would start from the same point and only the data order vary */
            c.init = ONNX_INIT_SEEDED;
            fprintf(stderr, TOOL ": note: --model %s: each seed re-initialises the weights (--init seeded, "
                            "recorded in meta.csv): the profile's sigma_S is the spread over seeds; --init onnx "
                            "keeps the file's weights\n", c.model);
        }
    }
    if (steps_given && !sweep) return die_usage("--sweep-steps needs --sweep LIST%s", "");
    if (repeats_given && !sweep) return die_usage("--repeats and --sweep-min-time need --sweep LIST%s", "");
    if (boot_given && sweep) return die_usage("--bootstrap and --bootstrap-seed are for a profile%s, not --sweep", "");
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
    pc.bootstrap = bootstrap;
    pc.bootstrap_seed = (uint64_t)boot_seed;
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
