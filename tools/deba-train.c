/* deba-train: one training run, fixed batch or DEBA (or an ablation), on CPU or CUDA, of a built-in
 * network or of one exported to ONNX (--model). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "deba/deba.h"
#include "deba/escape.h"
#include "tools/cli.h"
#include "trainer/data/dataset.h"
#include "trainer/models/models.h"
#include "trainer/train.h"

#define TOOL "deba-train"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " --arch A --dataset D [options]\n"
            "       " TOOL " --model FILE.onnx [--name N] [--init onnx|seeded] --dataset D [options]\n"
            "       " TOOL " --arch A [--num-classes N] [--image-size S] --summary\n"
            "       " TOOL " --model FILE.onnx [--dataset D] [--image-size S] --summary\n"
            "\n"
            "Trains one network with a fixed batch size or the DEBA scheduler and writes\n"
            "OUT/<arch>/<dataset>/<label>/seed<seed>/{trace.csv,meta.csv,checkpoint.bin}.\n"
            "A --model run's meta.csv records the file, its SHA-256, opset and producer; --resume\n"
            "refuses a model file whose SHA-256 changed.\n"
            "\n"
            "model and data:\n"
            "  --arch A            cnn_small, resnet18, resnet50, densenet121, efficientnet_b0,\n"
            "                      mobilenet_v3_large (mobilenet_v3), vit_b_16, vit_tiny\n"
            "  --model FILE.onnx   instead of --arch: an image classifier exported to ONNX\n"
            "                      (docs/onnx.md); grey images feed a 3-channel model\n"
            "  --name N            with --model: the run's architecture name (default the\n"
            "                      file's stem)\n"
            "  --init onnx|seeded  with --model: keep the file's weights (default) or draw them\n"
            "                      from --seed with PyTorch's default initialisers\n"
            "  --dataset D         cifar10, cifar100, fashion-mnist, mnist\n"
            "  --data DIR          dataset directory (default for fashion-mnist:\n"
            "                      /usr/share/datasets/fashion-mnist)\n"
            "  --subset N          use the first N training images (default all)\n"
            "  --test-subset N     use the first N test images (default all)\n"
            "  --image-size S      resize images to SxS (bilinear)\n"
            "  --no-augment        no random crop/flip (on by default for CIFAR)\n"
            "  --num-classes N     with --summary: classes of the output layer (default 10)\n"
            "  --summary           print the layer table and 'params <N>' and exit\n"
            "training:\n"
            "  --epochs N          (default 10)        --seed S       (default 42)\n"
            "  --lr X (0.01)  --momentum X (0.9)  --weight-decay X (5e-4)\n"
            "  --lr-scaling none|linear|sqrt  scale lr with B/B0 (default none)\n"
            "  --eval-batch N      evaluation batch size (default: up to 128 by the model's\n"
            "                      inference memory; resume with the same N)\n"
            "  --device cpu|cuda|auto         (default auto)\n"
            "scheduler:\n"
            "  --method fixed|deba (default deba)   --batch B0 (64)  --bmin (32)  --bmax (1024)\n"
            "  --tau X --theta X --lambda X   thresholds (default universal 0.25, 0.5, 0.10)\n"
            "  --thresholds FILE   thresholds.csv from deba-calibrate; row (arch, dataset)\n"
            "  --window W (15, 0 = full history)  --cooldown C (10)\n"
            "  --growth A (1.5)  --rollback B (0.8)\n"
            "output:\n"
            "  --label L           run label (default the method: fixed or deba)\n"
            "  --out DIR           root of run directories (default runs)\n"
            "  --resume            continue an interrupted run from its checkpoint\n"
            "  --force             overwrite an existing run (not one another process is running)\n"
            "  --checkpoint-every N  also checkpoint every N steps (default 0: at epoch ends)\n"
            "  --quiet             no per-epoch lines, no progress bar\n"
            "  --help, --version\n"
            "\n"
            "SIGTERM, SIGINT or SIGUSR1 stop the run after the current step with a checkpoint at that\n"
            "position; --resume continues it. Exit status: 0 completed or diverged, 1 runtime failure,\n"
            "2 usage or input error (also: the run directory is in use), 3 interrupted.\n");
}

enum {
    O_ARCH = 256, O_DATASET, O_DATA, O_SUBSET, O_TEST_SUBSET, O_IMAGE, O_NO_AUG, O_CLASSES, O_SUMMARY,
    O_EPOCHS, O_SEED, O_LR, O_MOM, O_WD, O_LRS, O_DEVICE, O_METHOD, O_BATCH, O_BMIN, O_BMAX, O_TAU,
    O_THETA, O_LAMBDA, O_THRESH, O_WINDOW, O_COOLDOWN, O_GROWTH, O_ROLLBACK, O_LABEL, O_OUT, O_RESUME,
    O_FORCE, O_QUIET, O_CKPT_EVERY, O_EVAL_BATCH, O_HELP, O_VERSION, O_MODEL, O_NAME, O_INIT,
};

static const struct option OPTS[] = {
    {"arch", 1, 0, O_ARCH}, {"dataset", 1, 0, O_DATASET}, {"data", 1, 0, O_DATA},
    {"subset", 1, 0, O_SUBSET}, {"test-subset", 1, 0, O_TEST_SUBSET}, {"image-size", 1, 0, O_IMAGE},
    {"no-augment", 0, 0, O_NO_AUG}, {"num-classes", 1, 0, O_CLASSES}, {"summary", 0, 0, O_SUMMARY},
    {"epochs", 1, 0, O_EPOCHS}, {"seed", 1, 0, O_SEED}, {"lr", 1, 0, O_LR}, {"momentum", 1, 0, O_MOM},
    {"weight-decay", 1, 0, O_WD}, {"lr-scaling", 1, 0, O_LRS}, {"device", 1, 0, O_DEVICE},
    {"method", 1, 0, O_METHOD}, {"batch", 1, 0, O_BATCH}, {"bmin", 1, 0, O_BMIN}, {"bmax", 1, 0, O_BMAX},
    {"tau", 1, 0, O_TAU}, {"theta", 1, 0, O_THETA}, {"lambda", 1, 0, O_LAMBDA},
    {"thresholds", 1, 0, O_THRESH}, {"window", 1, 0, O_WINDOW}, {"cooldown", 1, 0, O_COOLDOWN},
    {"growth", 1, 0, O_GROWTH}, {"rollback", 1, 0, O_ROLLBACK}, {"label", 1, 0, O_LABEL},
    {"out", 1, 0, O_OUT}, {"resume", 0, 0, O_RESUME}, {"force", 0, 0, O_FORCE}, {"quiet", 0, 0, O_QUIET},
    {"checkpoint-every", 1, 0, O_CKPT_EVERY}, {"eval-batch", 1, 0, O_EVAL_BATCH}, {"model", 1, 0, O_MODEL}, {"name", 1, 0, O_NAME},
    {"init", 1, 0, O_INIT},
    {"help", 0, 0, O_HELP}, {"version", 0, 0, O_VERSION}, {0, 0, 0, 0},
};

static const char *opt_name(int code) { return cli_opt_name(OPTS, code); }

static int die_usage(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, TOOL ": error: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see " TOOL " --help)\n");
    return 2;
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

/* Async-signal-safe: only the flag; the training loop checks it between steps. */
static void on_signal(int sig)
{
    (void)sig;
    tr_train_stop_requested = 1;
}

static int summary(const char *arch, const char *dataset, int image, int classes)
{
    int in_c = 3;
    deba_err e = {0};
    const tr_model_desc *m = tr_model_find(arch);
    if (!m) {
        tr_graph_free(tr_model_build(arch, 3, 32, 10, &e));
        fprintf(stderr, TOOL ": error: %s\n", e.msg);
        return 2;
    }
    if (dataset) {
        int k = tr_dataset_parse(dataset);
        if (k < 0) return die_usage("--dataset: unknown dataset '%s'%s", dataset, "");
        in_c = tr_dataset_channels(k);
        if (!image) image = tr_dataset_image_size(k);
        if (!classes) classes = tr_dataset_classes(k);
    }
    if (!image) image = m->default_image;
    if (!classes) classes = 10;
    tr_graph *g = tr_model_build(arch, in_c, image, classes, &e);
    if (!g) {
        fprintf(stderr, TOOL ": error: %s\n", e.msg);
        return deba_status_exit_code(e.status);
    }
    printf("%s (%s), input (%d, %d, %d), %d classes\n", m->name, m->source, in_c, image, image, classes);
    tr_graph_summary(g, stdout);
    tr_graph_free(g);
    return 0;
}

/* --summary of a model file: for the dataset's images when one is named, else for the model's
 * own input. */
static int summary_model(const tr_train_config *c, int image, int classes)
{
    int in_c = 0;
    deba_err e = {0};
    if (c->dataset[0]) {
        int k = tr_dataset_parse(c->dataset);
        if (k < 0) return die_usage("--dataset: unknown dataset '%s'%s", c->dataset, "");
        in_c = tr_dataset_channels(k);
        if (!image) image = tr_dataset_image_size(k);
        if (!classes) classes = tr_dataset_classes(k);
    }
    tr_onnx_model_info info;
    tr_graph *g = tr_train_model_build(c, in_c, image, classes, &info, &e);
    if (!g) {
        fprintf(stderr, TOOL ": error: %s\n", e.msg);
        return deba_status_exit_code(e.status);
    }
    printf("%s (%s, opset %d%s%s), input (%d, %d, %d)%s, %d classes\n", c->arch, c->model, info.opset,
           info.producer[0] ? ", " : "", info.producer, in_c ? in_c : info.in_c, info.in_h, info.in_w,
           in_c == 1 && info.in_c == 3 ? " replicated to 3 channels" : "", g->classes);
    tr_graph_summary(g, stdout);
    tr_graph_free(g);
    return 0;
}

int main(int argc, char **argv)
{
    cli_omp_wait_policy(argv);
    tr_train_config c;
    tr_train_config_default(&c);
    const char *thresholds = NULL;
    int want_summary = 0, classes = 0, set_tau = 0, set_theta = 0, set_lambda = 0, set_label = 0;
    int set_arch = 0, set_init = 0, set_model = 0;
    const char *name = NULL;
    double tau = 0, theta = 0, lambda = 0;
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", OPTS, NULL)) != -1) {
        long v;
        double d;
        int bad = 0;
        switch (ch) {
        case O_ARCH: bad = copy_opt(ch, c.arch, sizeof c.arch, optarg); set_arch = 1; break;
        case O_MODEL: bad = copy_opt(ch, c.model, sizeof c.model, optarg); set_model = 1; break;
        case O_NAME: name = optarg; break;
        case O_INIT:
            if ((v = tr_onnx_init_parse(optarg)) < 0) return die_usage("--init: expected onnx or seeded, got '%s'%s", optarg, "");
            c.init = (onnx_init_mode)v;
            set_init = 1;
            break;
        case O_DATASET: bad = copy_opt(ch, c.dataset, sizeof c.dataset, optarg); break;
        case O_DATA: bad = copy_opt(ch, c.data_dir, sizeof c.data_dir, optarg); break;
        case O_SUBSET: bad = parse_long(ch, optarg, 1, 100000000, &v); c.subset = (int)v; break;
        case O_TEST_SUBSET: bad = parse_long(ch, optarg, 1, 100000000, &v); c.test_subset = (int)v; break;
        case O_IMAGE: bad = parse_long(ch, optarg, 1, 4096, &v); c.image_size = (int)v; break;
        case O_NO_AUG: c.augment = 0; break;
        case O_CLASSES: bad = parse_long(ch, optarg, 2, 100000, &v); classes = (int)v; break;
        case O_SUMMARY: want_summary = 1; break;
        case O_EPOCHS: bad = parse_long(ch, optarg, 1, 100000, &v); c.epochs = (int)v; break;
        case O_SEED: bad = parse_long(ch, optarg, 0, 2147483647, &v); c.seed = (uint64_t)v; break;
        case O_LR: bad = parse_double(ch, optarg, &c.lr); break;
        case O_MOM: bad = parse_double(ch, optarg, &c.momentum); break;
        case O_WD: bad = parse_double(ch, optarg, &c.weight_decay); break;
        case O_LRS:
            if ((v = tr_lr_scaling_parse(optarg)) < 0) return die_usage("--lr-scaling: expected none, linear or sqrt, got '%s'%s", optarg, "");
            c.lr_scaling = (tr_lr_scaling)v;
            break;
        case O_DEVICE: bad = copy_opt(ch, c.device, sizeof c.device, optarg); break;
        case O_METHOD:
            if ((v = deba_method_parse(optarg)) < 0) return die_usage("--method: expected fixed or deba, got '%s'%s", optarg, "");
            c.sched.method = (deba_method)v;
            break;
        case O_BATCH: bad = parse_long(ch, optarg, 1, 1 << 20, &v); c.sched.b0 = (int)v; break;
        case O_BMIN: bad = parse_long(ch, optarg, 1, 1 << 20, &v); c.sched.bmin = (int)v; break;
        case O_BMAX: bad = parse_long(ch, optarg, 1, 1 << 20, &v); c.sched.bmax = (int)v; break;
        case O_TAU: bad = parse_double(ch, optarg, &tau); set_tau = 1; break;
        case O_THETA: bad = parse_double(ch, optarg, &theta); set_theta = 1; break;
        case O_LAMBDA: bad = parse_double(ch, optarg, &lambda); set_lambda = 1; break;
        case O_THRESH: thresholds = optarg; break;
        case O_WINDOW: bad = parse_long(ch, optarg, 0, 100000, &v); c.sched.window = (int)v; break;
        case O_COOLDOWN: bad = parse_long(ch, optarg, 0, 100000, &v); c.sched.cooldown = (int)v; break;
        case O_GROWTH: bad = parse_double(ch, optarg, &d); c.sched.growth = d; break;
        case O_ROLLBACK: bad = parse_double(ch, optarg, &d); c.sched.rollback = d; break;
        case O_LABEL: bad = copy_opt(ch, c.label, sizeof c.label, optarg); set_label = 1; break;
        case O_OUT: bad = copy_opt(ch, c.out, sizeof c.out, optarg); break;
        case O_CKPT_EVERY: bad = parse_long(ch, optarg, 0, 2147483647, &v); c.checkpoint_every = (int)v; break;
        case O_EVAL_BATCH: bad = parse_long(ch, optarg, 1, 65536, &v); c.eval_batch = (int)v; break;
        case O_RESUME: c.resume = 1; break;
        case O_FORCE: c.force = 1; break;
        case O_QUIET: c.quiet = 1; break;
        case O_HELP: usage(stdout); return 0;
        case O_VERSION: printf(TOOL " %s\n", DEBA_VERSION); return 0;
        default:
            return die_usage("unknown or incomplete option '%s'%s", argv[optind - 1], "");
        }
        if (bad) return 2;
    }
    if (optind < argc) return die_usage("unexpected argument '%s'%s", argv[optind], "");
    if (set_arch && set_model)
        return die_usage("--arch %s and --model %s exclude each other: a run trains one network", c.arch, c.model);
    if (!set_model && !c.arch[0]) return die_usage("--arch or --model is required%s%s", "", "");
    if (set_model && !c.model[0]) return die_usage("--model: empty file name%s%s", "", "");
    if (name && !set_model) return die_usage("--name is for --model%s%s; a built-in network is named by --arch", "", "");
    if (set_init && !set_model) return die_usage("--init is for --model%s%s; a built-in network is seeded", "", "");
    if (name && !*name) return die_usage("--name: empty name%s%s", "", "");
    if (name && copy_opt(O_NAME, c.arch, sizeof c.arch, name)) return 2;
    {
        deba_err ne = {0};
        if (tr_train_resolve_name(&c, &ne)) {
            fprintf(stderr, TOOL ": error: %s\n", ne.msg);
            return 2;
        }
    }
    if (want_summary && c.model[0]) return summary_model(&c, c.image_size, classes);
    if (want_summary) return summary(c.arch, c.dataset[0] ? c.dataset : NULL, c.image_size, classes);
    if (!c.dataset[0]) return die_usage("--dataset is required%s%s", "", "");
    if (c.label[0] && !deba_name_ok(c.label))   /* it becomes a directory name */
        return die_usage("--label: '%s' must be 1-63 characters from A-Z a-z 0-9 . _ - (not . or ..)%s", c.label, "");
    if (set_label && !c.label[0]) return die_usage("--label: empty label%s%s", "", "");
    if (!c.out[0]) return die_usage("--out: empty directory name%s%s", "", "");
    if (c.resume && c.force)
        return die_usage("--resume and --force exclude each other%s%s: --resume continues the run, --force deletes it",
                         "", "");

    deba_err e = {0};
    if (thresholds) {
        deba_thresholds_row *rows = NULL;
        size_t n = 0;
        const deba_thresholds_row *row;
        if (deba_thresholds_read(thresholds, &rows, &n, &e) ||
            deba_thresholds_find(rows, n, thresholds, c.arch, c.dataset, &row, &e)) {
            free(rows);
            fprintf(stderr, TOOL ": error: %s\n", e.msg);
            return 2;
        }
        const double *v[3] = {&row->tau, &row->theta, &row->lambda};
        static const char *const names[3] = {"tau", "theta", "lambda"};
        const int set[3] = {set_tau, set_theta, set_lambda};
        for (int i = 0; i < 3; i++)
            if (!set[i] && !(isfinite(*v[i]) && *v[i] > 0)) {
                fprintf(stderr, TOOL ": error: %s: the %s/%s row has %s = %g, which must be > 0 (recalibrate, or "
                                "pass --%s)\n", thresholds, c.arch, c.dataset, names[i], *v[i], names[i]);
                free(rows);
                return 2;
            }
        c.sched.tau = row->tau, c.sched.theta = row->theta, c.sched.lambda = row->lambda;
        free(rows);
        if (copy_opt(O_THRESH, c.thresholds_src, sizeof c.thresholds_src, thresholds)) return 2;
    }
    if (set_tau) c.sched.tau = tau;
    if (set_theta) c.sched.theta = theta;
    if (set_lambda) c.sched.lambda = lambda;
    if (c.sched.method == DEBA_METHOD_DEBA && !thresholds && !(set_tau && set_theta && set_lambda) && !c.quiet)
        fprintf(stderr, TOOL ": note: no --thresholds given: using universal thresholds tau=%g theta=%g lambda=%g for "
                        "the ones not set\n", c.sched.tau, c.sched.theta, c.sched.lambda);
    c.progress = !c.quiet && isatty(STDERR_FILENO);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);   /* what schedulers send first on pre-emption */
    sigaction(SIGUSR1, &sa, NULL);   /* Slurm's --signal=USR1@T warning before the time limit */
    /* over `ulimit -f` a write fails with EFBIG and is reported, instead of killing the process */
    signal(SIGXFSZ, SIG_IGN);

    tr_train_result res;
    deba_status st = tr_train_run(&c, &res, &e);
    if (st) {
        fprintf(stderr, TOOL ": error: %s\n", e.msg);
        return deba_status_exit_code(st);
    }
    if (!c.quiet)
        fprintf(stderr, "%s: %s after %d epochs, final test accuracy %.2f%% (best %.2f%%), train time %.1fs\n",
                res.run_dir, res.status, res.epochs_done, res.final_test_acc, res.best_test_acc, res.total_train_time_s);
    if (!strcmp(res.status, "interrupted")) {
        if (!c.quiet) fprintf(stderr, "%s: run the same command with --resume to continue\n", res.run_dir);
        return DEBA_EXIT_INTERRUPTED;
    }
    return 0;
}
