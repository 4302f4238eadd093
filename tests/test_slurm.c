/* A study through a real one-node Slurm cluster (tests/slurm/cluster.sh: munged, slurmctld,
 * slurmd from a scratch directory): deba-profile --submit, a forced requeue mid-run, --watch. */
#include <time.h>
#include "tests/testutil.h"
#include "deba/deba.h"

static char *g_cluster;   /* the cluster's scratch directory; stopped in teardown */
static int g_up;          /* the cluster answers */
static int g_study;       /* 1 once the study is submitted, 2 once every check of it passed */

#define SP(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)

/* Runs a command in the study directory (g_dir) with output to out.txt; its exit status. */
static int sh(const char *fmt, ...)
{
    char body[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    SP(cmd, "cd '%s' && { %s ; } >out.txt 2>&1", g_dir, body);
    return tu_run(cmd);
}

static int out_has_quiet(const char *needle, int quiet)
{
    char p[4200];
    SP(p, "%s/out.txt", g_dir);
    char *s = tu_slurp(p);
    int has = s && strstr(s, needle);
    if (!has && !quiet) fprintf(stderr, "out.txt lacks '%s':\n%s\n", needle, s ? s : "(none)");
    free(s);
    return has;
}

static int out_has(const char *needle) { return out_has_quiet(needle, 0); }

/* The first line of a command's output, trimmed ("" when none). */
static void sh_line(char *buf, size_t cap, const char *cmd)
{
    char full[4096];
    snprintf(full, sizeof full, "cd '%s' && %s 2>/dev/null", g_dir, cmd);
    buf[0] = '\0';
    FILE *p = popen(full, "r");
    if (!p) return;
    if (fgets(buf, (int)cap, p)) buf[strcspn(buf, "\r\n")] = '\0';
    pclose(p);
}

static int cluster_setup(void **state)
{
    (void)state;
    if (tu_dir_setup(state)) return -1;
    char cmd[8192];
    g_cluster = tu_mkdtemp();
    if (!g_cluster) return -1;
    const char *src = getenv("DEBA_SRC");
    SP(cmd, "'%s/tests/slurm/cluster.sh' start '%s'", src && *src ? src : ".", g_cluster);
    int rc = tu_run(cmd);
    if (rc == 77) {
        /* only a missing daemon skips (make deps installs them); anything else is a failure */
        fprintf(stderr, "test_slurm: SKIPPED: Slurm or munge is not installed (see cluster.sh's message)\n");
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "test_slurm: the cluster did not start (cluster.sh start %s exited %d)\n", g_cluster, rc);
        return -1;
    }
    char conf[4200], path[8192], bin[4096];
    SP(conf, "%s/slurm.conf", g_cluster);
    setenv("SLURM_CONF", conf, 1);
    /* the job lines call the tools by name: the jobs inherit this PATH (sbatch --export=ALL) */
    if (!realpath(tu_bindir(), bin)) return -1;
    SP(path, "%s:%s", bin, getenv("PATH"));
    setenv("PATH", path, 1);
    g_up = 1;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    return 0;
}

/* Every daemon stops, by the pid cluster.sh recorded, whatever the test did. */
static int cluster_teardown(void **state)
{
    char cmd[8192];
    const char *src = getenv("DEBA_SRC");
    if (g_cluster && g_study == 1) {
        /* what the daemons said about the jobs: a failure may be seen only in CI */
        SP(cmd, "grep -h -E 'error|Killing|Requeu|revoke' '%s/log/slurmctld.log' '%s/log/slurmd.log' | "
                "grep -v -E 'pmix|MPI|plugin|state file|backup state' | tail -n 40 >&2", g_cluster, g_cluster);
        tu_run(cmd);
    }
    g_study = 0;
    if (g_cluster) {
        SP(cmd, "'%s/tests/slurm/cluster.sh' stop '%s'", src && *src ? src : ".", g_cluster);
        if (tu_run(cmd) != 0) fprintf(stderr, "test_slurm: cluster.sh stop failed\n");
        tu_rmtree(g_cluster);
        g_cluster = NULL;
    }
    g_up = 0;
    return tu_dir_teardown(state);
}

static time_t utc_of(const char *s)
{
    struct tm tm = { 0 };
    assert_non_null(s);
    assert_non_null(strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm));
    return timegm(&tm);
}

static void read_meta(const char *run, deba_meta *m)
{
    char p[8192];
    deba_err e;
    SP(p, "%s/runs/cnn_small/fashion-mnist/%s/meta.csv", g_dir, run);
    if (deba_meta_read(p, m, &e)) fail_msg("%s", e.msg);
}

#define TINY_ARGS "--arch cnn_small --dataset fashion-mnist --subset 2048 --test-subset 256 --epochs 3"

static void test_study_on_slurm(void **state)
{
    (void)state;
    if (!g_up) skip();   /* setup said why */
    if (!tu_exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
        fprintf(stderr, "test_slurm: SKIPPED: no Fashion-MNIST (make deps installs dataset-fashion-mnist)\n");
        skip();
    }
    free(tu_write(g_dir, "tiny.ini",
                  "[study]\narchs = cnn_small\ndatasets = fashion-mnist\nseeds = 1, 2\nepochs = 3\nbatch = 32\n"
                  "subset = 2048\ntest-subset = 256\ndevice = cpu\ncooldown = 1\nout = runs\n"
                  "[condition fixed]\nmethod = fixed\n"
                  "[condition deba]\nmethod = deba\nthresholds = calibrate\n"
                  "[slurm]\ntime = 10\ncpus-per-task = 1\nmem = 300M\n"));
    char buf[8192], cmd[8192], id[64], want2[256];
    time_t t0 = time(NULL);
    g_study = 1;
    int rc = sh("deba-profile --submit tiny.ini");
    char *out = tu_slurp(strcat(strcpy(buf, g_dir), "/out.txt"));
    if (rc) fail_msg("deba-profile --submit exited %d: %s", rc, out);
    assert_non_null(strstr(out, "calibrated job"));
    free(out);
    sh_line(id, sizeof id, "sed -n 's/^runs,\\([0-9]*\\),1,2$/\\1/p' runs/slurm/submitted.csv");
    assert_true(id[0] >= '0' && id[0] <= '9');
    /* the study's files are in use: a second submission is refused, nothing changed */
    assert_int_equal(sh("deba-profile --submit tiny.ini"), 2);
    assert_true(out_has("still queued or running"));

    /* Once each fixed run has its first epoch in trace.csv (so it is inside its second epoch):
     * task 1 is requeued by the administrator (Slurm signals every process of the task), task 2
     * gets SIGTERM in its batch shell only, as --signal=B:TERM@120 sends it before the time
     * limit: the script must pass it on to deba-train and requeue the task itself. */
    char st1[64] = "", st2[64] = "";
    for (int i = 0; i < 600; i++) {
        SP(cmd, "squeue -h -j %s_1 -o %%T", id);
        sh_line(st1, sizeof st1, cmd);
        SP(cmd, "squeue -h -j %s_2 -o %%T", id);
        sh_line(st2, sizeof st2, cmd);
        if (!strcmp(st1, "RUNNING") && !strcmp(st2, "RUNNING") &&
            !sh("[ $(wc -l < runs/cnn_small/fashion-mnist/fixed/seed1/trace.csv) -ge 2 ] && "
                "[ $(wc -l < runs/cnn_small/fashion-mnist/fixed/seed2/trace.csv) -ge 2 ]"))
            break;
        usleep(200000);
    }
    assert_string_equal(st1, "RUNNING");
    assert_string_equal(st2, "RUNNING");
    assert_int_equal(sh("scontrol requeue %s_1 && scancel --batch --signal=TERM %s_2", id, id), 0);
    /* Both go back to the queue and wait out Slurm's own hold (cred_expire + 1 s, 11 s here:
     * cluster.sh). Releasing them at once with StartTime=now, as this test did, lost a task
     * whenever Slurm started it again within the second its old credential was revoked. */
    for (int t = 1; t <= 2; t++) {
        char st[64] = "";
        for (int i = 0; i < 300; i++) {
            SP(cmd, "squeue -h -j %s_%d -o %%T", id, t);
            sh_line(st, sizeof st, cmd);
            if (!strcmp(st, "PENDING")) break;
            usleep(100000);
        }
        assert_string_equal(st, "PENDING");
    }

    /* --watch returns once no job of the study is queued: 0 when every run completed */
    rc = sh("timeout 400 deba-profile --status tiny.ini --watch 2");
    if (rc) {
        SP(cmd, "cat '%s/out.txt'; tail -n 20 '%s'/runs/slurm/logs/*", g_dir, g_dir);
        tu_run(cmd);
    }
    assert_int_equal(rc, 0);
    out = tu_slurp(buf);
    assert_non_null(strstr(out, "runs: 4 done, 0 running, 0 failed, 0 to do"));
    assert_non_null(strstr(out, "study finished: every run completed"));
    free(out);

    /* each requeued task stopped inside epoch 2 and its second start resumed the run; task 2
     * requeued itself */
    for (int t = 1; t <= 2; t++) {
        SP(cmd, "%s/runs/slurm/logs/study-%s_%d.out", g_dir, id, t);
        char *log = tu_slurp(cmd), want[256];
        assert_non_null(log);
        if (!strstr(log, "CANCELLED AT") || !strstr(log, "completed after 3 epochs"))
            fprintf(stderr, "test_slurm: log of task %d:\n%s\n", t, log);
        assert_non_null(strstr(log, "CANCELLED AT"));
        assert_non_null(strstr(log, "interrupted after 1 epochs"));
        SP(want, "resuming cnn_small/fashion-mnist seed %d", t);
        assert_non_null(strstr(log, want));
        assert_non_null(strstr(log, "completed after 3 epochs"));
        if (t == 1) {   /* Slurm requeued it: the task leaves it to Slurm */
            SP(want, "study.sbatch: run stopped at a checkpoint (exit status 3): task %s_1 is COMPLETING", id);
            assert_non_null(strstr(log, want));
            assert_non_null(strstr(log, "not requeued by this task\n"));
        } else {        /* only its batch shell was signalled: it requeued itself */
            SP(want, "study.sbatch: run stopped at a checkpoint (exit status 3): task %s_2 requeued\n", id);
            assert_non_null(strstr(log, want));
            assert_null(strstr(log, "not requeued by this task"));
        }
        free(log);
    }

    /* Every run completed; the calibration ran after every fixed run ended and before any
     * calibrated run started, and those runs use its thresholds. */
    deba_meta m = { 0 };
    time_t fixed_end = 0, deba_start = (time_t)1 << 40;
    const char *runs[] = { "fixed/seed1", "fixed/seed2", "deba/seed1", "deba/seed2" };
    for (int i = 0; i < 4; i++) {
        read_meta(runs[i], &m);
        assert_string_equal(deba_meta_get(&m, "status"), "completed");
        time_t s = utc_of(deba_meta_get(&m, "started_utc")), f = utc_of(deba_meta_get(&m, "finished_utc"));
        if (i < 2 && f > fixed_end) fixed_end = f;
        if (i >= 2 && s < deba_start) deba_start = s;
        deba_meta_free(&m);
    }
    struct stat sb;
    SP(cmd, "%s/runs/cnn_small/fashion-mnist/thresholds.csv", g_dir);
    assert_int_equal(stat(cmd, &sb), 0);
    assert_true(sb.st_mtime >= fixed_end && sb.st_mtime >= t0);
    assert_true(sb.st_mtime <= deba_start);   /* meta times have whole seconds */
    deba_thresholds_row *rows = NULL;
    size_t nrows = 0;
    deba_err e;
    assert_int_equal(deba_thresholds_read(cmd, &rows, &nrows, &e), DEBA_OK);
    assert_int_equal(nrows, 1);
    for (int i = 2; i < 4; i++) {
        read_meta(runs[i], &m);
        double tau, theta, lambda;
        assert_int_equal(deba_meta_get_double(&m, "meta", "tau", &tau, &e), DEBA_OK);
        assert_int_equal(deba_meta_get_double(&m, "meta", "theta", &theta, &e), DEBA_OK);
        assert_int_equal(deba_meta_get_double(&m, "meta", "lambda", &lambda, &e), DEBA_OK);
        assert_float_equal(tau, rows[0].tau, 1e-12);
        assert_float_equal(theta, rows[0].theta, 1e-12);
        assert_float_equal(lambda, rows[0].lambda, 1e-12);
        deba_meta_free(&m);
    }
    free(rows);

    /* The report phase built the report. */
    SP(cmd, "%s/runs/report/index.md", g_dir);
    assert_true(tu_exists(cmd));

    /* scancel stops a task for good: its run checkpoints (a stand-in deba-train that exits 3 on
     * SIGTERM, as the real one does) and the task must not requeue itself, which study.sbatch
     * did until it looked at the task's state first. */
    free(tu_write(g_dir, "c.ini", "[study]\narchs = cnn_small\ndatasets = fashion-mnist\nseeds = 1\nepochs = 3\n"
                                  "device = cpu\nout = cruns\n[condition fixed]\nmethod = fixed\n"
                                  "[slurm]\ntime = 5\ncpus-per-task = 1\nmem = 100M\n"));
    assert_int_equal(sh("mkdir -p fake"), 0);
    free(tu_write(g_dir, "fake/deba-train", "#!/bin/bash\ntrap 'echo checkpointed; exit 3' TERM\necho started\n"
                                            "while :; do sleep 0.2; done\n"));
    assert_int_equal(sh("chmod +x fake/deba-train && deba-profile --plan c.ini --emit-jobs cruns/slurm/jobs.txt"), 0);
    sh_line(id, sizeof id, "PATH=$PWD/fake:$PATH sbatch --parsable --array=1 cruns/slurm/study.sbatch");
    assert_true(id[0] >= '0' && id[0] <= '9');
    char clog[4200], cst[64] = "";
    SP(clog, "%s/cruns/slurm/logs/study-%s_1.out", g_dir, id);
    for (int i = 0; i < 300; i++) {
        char *l = tu_slurp(clog);
        int started = l && strstr(l, "started\n");
        free(l);
        if (started) break;
        usleep(100000);
    }
    assert_int_equal(sh("scancel %s_1", id), 0);
    for (int i = 0; i < 300; i++) {
        SP(cmd, "squeue -h -t all -j %s_1 -o %%T", id);
        sh_line(cst, sizeof cst, cmd);
        if (strcmp(cst, "RUNNING") && strcmp(cst, "COMPLETING")) break;
        usleep(100000);
    }
    char *clogs = tu_slurp(clog);
    if (strcmp(cst, "CANCELLED")) fprintf(stderr, "test_slurm: the cancelled task is %s; its log:\n%s\n", cst, clogs);
    assert_string_equal(cst, "CANCELLED");
    assert_non_null(strstr(clogs, "checkpointed\n"));
    SP(want2, "study.sbatch: run stopped at a checkpoint (exit status 3): task %s_1 is COMPLETING", id);
    assert_non_null(strstr(clogs, want2));
    assert_non_null(strstr(clogs, "not requeued by this task\n"));
    free(clogs);

    /* The requeued run's trace equals an uninterrupted local run's, timing columns aside
     * (one thread, as the task had: cpus-per-task = 1). */
    assert_int_equal(sh("OMP_NUM_THREADS=1 deba-train " TINY_ARGS " --seed 1 --device cpu --method fixed --batch 32 "
                        "--cooldown 1 --label fixed --out ref --quiet"), 0);
    deba_trace a = { 0 }, b = { 0 };
    SP(cmd, "%s/runs/cnn_small/fashion-mnist/fixed/seed1/trace.csv", g_dir);
    assert_int_equal(deba_trace_read(cmd, &a, &e), DEBA_OK);
    SP(cmd, "%s/ref/cnn_small/fashion-mnist/fixed/seed1/trace.csv", g_dir);
    assert_int_equal(deba_trace_read(cmd, &b, &e), DEBA_OK);
    assert_int_equal(a.n, 3);
    assert_int_equal(b.n, 3);
    for (size_t r = 0; r < 3; r++) {
        const deba_trace_row *x = &a.rows[r], *y = &b.rows[r];
        assert_int_equal(x->epoch, y->epoch);
        assert_int_equal(x->batch_size, y->batch_size);
        assert_int_equal(x->steps, y->steps);
        assert_int_equal(x->decision, y->decision);
        const double xs[] = { x->lr, x->train_loss, x->train_acc, x->test_loss, x->test_acc, x->grad_var, x->grad_norm,
                              x->norm_var, x->loss_var, x->confidence };
        const double ys[] = { y->lr, y->train_loss, y->train_acc, y->test_loss, y->test_acc, y->grad_var, y->grad_norm,
                              y->norm_var, y->loss_var, y->confidence };
        for (size_t k = 0; k < sizeof xs / sizeof *xs; k++) {
            if (xs[k] != ys[k]) fail_msg("epoch %zu, column %zu: %.17g (requeued) vs %.17g (uninterrupted)", r + 1, k, xs[k], ys[k]);
        }
    }
    deba_trace_free(&a);
    deba_trace_free(&b);

    /* A task whose run is completed, started again, exits 0 at once without training. */
    time_t t1 = time(NULL);
    assert_int_equal(sh("SLURM_ARRAY_TASK_ID=1 bash runs/slurm/study.sbatch"), 0);
    assert_true(time(NULL) - t1 < 10);
    assert_true(out_has("completed after 3 epochs"));
    assert_false(out_has_quiet("\nepoch ", 1));
    /* and the script refuses to run as a plain (non-array) job */
    assert_int_equal(sh("env -u SLURM_ARRAY_TASK_ID bash runs/slurm/study.sbatch"), 2);
    assert_true(out_has("not an array task"));
    fprintf(stderr, "test_slurm: the study took %ld s on the cluster\n", (long)(t1 - t0));
    g_study = 2;
}

/* A phase after runs that did not complete fails, naming each run, its job line and its log,
 * instead of calibrating from what is there (no cluster needed: the script is plain bash). */
static void test_phase_check(void **state)
{
    (void)state;
    free(tu_write(g_dir, "p.ini",
                  "[study]\narchs = cnn_small\ndatasets = fashion-mnist\nseeds = 1, 2\nepochs = 2\ndevice = cpu\n"
                  "out = r s\n[condition fixed]\nmethod = fixed\n[condition deba]\nmethod = deba\n"
                  "thresholds = calibrate\n[slurm]\npartition = gpu,long\ngres = gpu:a100:1\ntime = 2-00:00:00\n"));
    assert_int_equal(sh("'%s/deba-profile' --plan p.ini --emit-jobs j/jobs.txt", tu_bindir()), 0);
    char p[8192];
    SP(p, "%s/j/study.sbatch", g_dir);
    char *sb = tu_slurp(p);
    assert_non_null(sb);
    assert_non_null(strstr(sb, "#SBATCH --requeue\n#SBATCH --signal=B:TERM@120\n#SBATCH --time=2-00:00:00\n"
                               "#SBATCH --cpus-per-task=4\n#SBATCH --mem=16G\n#SBATCH --gres=gpu:a100:1\n"
                               "#SBATCH --partition=gpu,long\n"));
    assert_null(strstr(sb, "#SBATCH --array"));   /* the array range is the phase's, given at submission */
    free(sb);
    /* run 1 completed, run 2 stopped: calibration must not start */
    assert_int_equal(sh("mkdir -p 'r s/cnn_small/fashion-mnist/fixed/seed1' 'r s/cnn_small/fashion-mnist/fixed/seed2' && "
                        "printf 'key,value\\nstatus,completed\\n' > 'r s/cnn_small/fashion-mnist/fixed/seed1/meta.csv' && "
                        "printf 'key,value\\nstatus,interrupted\\n' > 'r s/cnn_small/fashion-mnist/fixed/seed2/meta.csv' && "
                        "bash j/calibrate.sbatch"), 1);
    SP(p, "%s/out.txt", g_dir);
    char *out = tu_slurp(p);
    char want[8192];
    SP(want, "calibrate.sbatch: run r s/cnn_small/fashion-mnist/fixed/seed2 (line 2 of j/jobs.txt) is interrupted, not "
             "completed; log: %s/j/logs/study-*_2.out\n", g_dir);
    assert_non_null(strstr(out, want));
    assert_null(strstr(out, "seed1"));
    assert_non_null(strstr(out, "calibrate.sbatch: 1 of 2 runs did not complete"));
    free(out);
    /* the report phase lists the two calibrated runs never started as well */
    assert_int_equal(sh("bash j/report.sbatch"), 1);
    out = tu_slurp(p);
    assert_non_null(strstr(out, "report.sbatch: 3 of 4 runs did not complete"));
    assert_non_null(strstr(out, "deba/seed2 (line 4 of j/jobs.txt) is not started"));
    free(out);
    /* a bad [slurm] value is a plan error, with its line */
    free(tu_write(g_dir, "bad.ini", "[study]\narchs = cnn_small\ndatasets = fashion-mnist\nseeds = 1\nepochs = 2\n"
                                    "[condition fixed]\nmethod = fixed\n[slurm]\nmem = 16 G\n"));
    assert_int_equal(sh("'%s/deba-profile' --plan bad.ini --emit-jobs j2/jobs.txt", tu_bindir()), 2);
    out = tu_slurp(p);
    assert_non_null(strstr(out, "bad.ini:9: [slurm] mem: expected a size such as 4000, 500M or 16G, got '16 G'"));
    free(out);
}

/* Runs study.sbatch's task 1 as Slurm would (job 9, array task 7_1) against stand-ins: a deba-train
 * that exits 3 (checkpointed), a squeue that answers the states in squeue.txt one a call (the
 * last one again; '-' = no answer) and a scontrol whose requeue answers as requeue.txt says. Each
 * call goes to calls.txt. Returns the script's exit status. */
static int run_task(const char *states, const char *requeue_rcs)
{
    free(tu_write(g_dir, "squeue.txt", states));
    free(tu_write(g_dir, "requeue.txt", requeue_rcs));
    free(tu_write(g_dir, "calls.txt", ""));
    return sh("PATH=\"$PWD/stub:$PATH\" SLURM_JOB_ID=9 SLURM_ARRAY_JOB_ID=7 SLURM_ARRAY_TASK_ID=1 "
              "bash j/study.sbatch");
}

static char *calls(void)
{
    char p[4200];
    SP(p, "%s/calls.txt", g_dir);
    char *c = tu_slurp(p);
    assert_non_null(c);
    return c;
}

/* What a checkpointed task does about being requeued: only a task Slurm still runs (the time
 * limit's --signal=B:TERM) requeues itself, after checking, and retries when the controller does
 * not answer; one Slurm is ending (scancel, scontrol requeue, pre-emption) is left alone, so that
 * a cancelled study stays cancelled. */
static void test_requeue_decision(void **state)
{
    (void)state;
    free(tu_write(g_dir, "p.ini", "[study]\narchs = cnn_small\ndatasets = fashion-mnist\nseeds = 1\nepochs = 2\n"
                                  "device = cpu\n[condition fixed]\nmethod = fixed\n"));
    assert_int_equal(sh("'%s/deba-profile' --plan p.ini --emit-jobs j/jobs.txt && mkdir stub stub2", tu_bindir()), 0);
    free(tu_write(g_dir, "stub/deba-train", "#!/bin/sh\nexit 3\n"));
    free(tu_write(g_dir, "stub/squeue",
                  "#!/bin/sh\necho \"squeue $*\" >> \"$(dirname \"$0\")/../calls.txt\"\n"
                  "f=\"$(dirname \"$0\")/../squeue.txt\"\ns=$(head -n 1 \"$f\")\n"
                  "if [ $(wc -l < \"$f\") -gt 1 ]; then sed -i 1d \"$f\"; fi\n"
                  "if [ \"$s\" = - ]; then echo 'squeue: error: Socket timed out on send/recv operation' >&2; exit 1; fi\n"
                  "echo \"$s\"\n"));
    free(tu_write(g_dir, "stub/scontrol",
                  "#!/bin/sh\necho \"scontrol $*\" >> \"$(dirname \"$0\")/../calls.txt\"\n"
                  "f=\"$(dirname \"$0\")/../requeue.txt\"\nr=$(head -n 1 \"$f\")\n"
                  "if [ $(wc -l < \"$f\") -gt 1 ]; then sed -i 1d \"$f\"; fi\n"
                  /* T: accepted, and as Slurm does on a requeue, SIGTERM to every process of the task
                   * (the batch shell and this scontrol) before it has exited */
                  "if [ \"$r\" = T ]; then kill -TERM $PPID $$; sleep 0.2; exit 0; fi\n"
                  "if [ \"$r\" != 0 ]; then echo 'scontrol: error: Socket timed out on send/recv operation' >&2; fi\n"
                  "exit \"$r\"\n"));
    assert_int_equal(sh("chmod +x stub/*"), 0);
    const char *msg = "study.sbatch: run stopped at a checkpoint (exit status 3): ";
    char want[512];

    /* the time limit's signal: RUNNING, so it requeues itself, and checks it is no longer running */
    assert_int_equal(run_task("RUNNING\nCOMPLETING\n", "0\n"), 3);
    char *c = calls();
    assert_string_equal(c, "squeue -h -j 7_1 -o %T\nscontrol requeue 7_1\nsqueue -h -j 7_1 -o %T\n");
    free(c);
    SP(want, "%stask 7_1 requeued\n", msg);
    assert_true(out_has(want));

    /* Slurm's SIGTERM for that requeue reaches scontrol before it has exited: still requeued by
     * this task (scontrol died of it one run in ten under make sanitize, and the task said it
     * had been left to Slurm) */
    assert_int_equal(run_task("RUNNING\nCOMPLETING\n", "T\n"), 3);
    c = calls();
    assert_string_equal(c, "squeue -h -j 7_1 -o %T\nscontrol requeue 7_1\nsqueue -h -j 7_1 -o %T\n");
    free(c);
    assert_true(out_has(want));

    /* scancel (or Slurm's own requeue) made it COMPLETING: not requeued from here */
    assert_int_equal(run_task("COMPLETING\n", "0\n"), 3);
    c = calls();
    assert_string_equal(c, "squeue -h -j 7_1 -o %T\n");
    free(c);
    SP(want, "%stask 7_1 is COMPLETING (scancel, scontrol requeue or pre-emption): Slurm decides whether it comes "
             "back; not requeued by this task\n", msg);
    assert_true(out_has(want));

    /* the controller timed out on the first requeue: it tries again a second later */
    assert_int_equal(run_task("RUNNING\nRUNNING\nCOMPLETING\n", "1\n0\n"), 3);
    c = calls();
    assert_string_equal(c, "squeue -h -j 7_1 -o %T\nscontrol requeue 7_1\nsqueue -h -j 7_1 -o %T\n"
                           "scontrol requeue 7_1\nsqueue -h -j 7_1 -o %T\n");
    free(c);
    SP(want, "%stask 7_1 requeued\n", msg);
    assert_true(out_has(want));

    /* no answer at all: five tries 1, 2, 3 and 4 s apart, no requeue of a task whose state is unknown */
    time_t t0 = time(NULL);
    assert_int_equal(run_task("-\n", "0\n"), 3);
    assert_true(time(NULL) - t0 >= 1 + 2 + 3 + 4 - 1);
    c = calls();
    assert_string_equal(c, "squeue -h -j 7_1 -o %T\nsqueue -h -j 7_1 -o %T\nsqueue -h -j 7_1 -o %T\n"
                           "squeue -h -j 7_1 -o %T\nsqueue -h -j 7_1 -o %T\n");
    free(c);
    SP(want, "%scould not requeue task 7_1 (squeue did not answer after 5 tries): the run stays interrupted, and "
             "deba-profile --submit continues it\n", msg);
    assert_true(out_has(want));

    /* a requeue that never takes: it stops after five tries and says the task is still running */
    assert_int_equal(run_task("RUNNING\n", "1\n"), 3);
    c = calls();
    size_t n = 0;
    for (const char *q = c; (q = strstr(q, "scontrol requeue 7_1\n")); q++) n++;
    assert_int_equal(n, 5);
    free(c);
    SP(want, "%scould not requeue task 7_1 (RUNNING after 5 tries)", msg);
    assert_true(out_has(want));

    /* scancel and scontrol requeue signal every process of the task at once, the batch shell
     * and deba-train alike: the shell must still see deba-train's own exit status, 3. While it
     * waited with `wait`, which the trapped signal interrupts, it saw 143 in 2 of 30 such tries. */
    free(tu_write(g_dir, "stub2/deba-train",
                  "#!/bin/sh\necho $$ > child.pid\n"   /* exits 3 the moment SIGTERM comes, as fast as can be */
                  "exec python3 -c 'import os, signal; signal.signal(signal.SIGTERM, lambda *a: os._exit(3)); "
                  "open(\"ready\", \"w\").close(); signal.pause()'\n"));
    assert_int_equal(sh("chmod +x stub2/deba-train && for i in 1 2 3 4 5 6 7 8 9 10; do rm -f child.pid ready; "
                        "PATH=\"$PWD/stub2:$PATH\" SLURM_ARRAY_TASK_ID=1 bash j/study.sbatch 2>/dev/null & p=$!; "
                        "for k in $(seq 250); do [ -e ready ] && break; sleep 0.02; done; "
                        "kill -TERM $p $(cat child.pid) $(pgrep -P $p) 2>/dev/null; wait $p; echo $? >> rcs.txt; done"), 0);
    char p[4200];
    SP(p, "%s/rcs.txt", g_dir);
    c = tu_slurp(p);
    assert_non_null(c);
    assert_string_equal(c, "3\n3\n3\n3\n3\n3\n3\n3\n3\n3\n");
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_phase_check, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_requeue_decision, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_study_on_slurm, cluster_setup, cluster_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
