/* deba-report: SPEC §6 numbers on hand-written traces checked against values worked out by hand,
 * the table formats, paper mode against the paper's printed values, bad inputs and figures. */
#include "tests/testutil.h"

#include <math.h>
#include "deba/deba.h"
#include "analyze/analyze.h"

static const char *HDR =
    "epoch,batch_size,steps,lr,train_loss,train_acc,test_loss,test_acc,grad_var,grad_norm,norm_var,loss_var,"
    "confidence,decision,epoch_time_s,compute_time_s,data_time_s,signal_time_s,eval_time_s,samples_per_s\n";

/* One run directory <root>/<arch>/<data>/<label>/seed<seed> with `n` epochs: epoch time t,
 * throughput sps, the given decisions, train loss 1.0, 0.5, 0.3, ..., and test accuracy acc at the end. */
static void write_run(const char *root, const char *arch, const char *data, const char *label, int seed,
                      const char *status, int n, double t, double sps, const char *const *dec, double acc)
{
    char dir[2000], cmd[2200];
    snprintf(dir, sizeof dir, "%s/%s/%s/%s/seed%d", root, arch, data, label, seed);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(tu_run(cmd), 0);
    static const double loss[] = {1.0, 0.5, 0.3, 0.25, 0.2};
    char trace[8192];
    size_t l = (size_t)snprintf(trace, sizeof trace, "%s", HDR);
    for (int i = 0; i < n; i++)
        l += (size_t)snprintf(trace + l, sizeof trace - l,
                              "%d,64,10,0.01,%g,50,1.0,%g,0.001,1.0,0.1,0.1,1.0,%s,%g,%g,0.1,0.01,0.5,%g\n", i + 1,
                              loss[i], i == n - 1 ? acc : 50.0, dec ? dec[i] : "fixed", t, 0.8 * t, sps);
    free(tu_write(dir, "trace.csv", trace));
    char meta[2048];
    snprintf(meta, sizeof meta,
             "key,value\nformat_version,1\narch,%s\ndataset,%s\nlabel,%s\nmethod,%s\nseed,%d\nepochs,%d\n"
             "tau,0.5\ntheta,0.6\nlambda,0.1\nstatus,%s\nfinal_test_acc,%g\nbest_test_acc,%g\n",
             arch, data, label, strcmp(label, "fixed") ? "deba" : "fixed", seed, n, status, acc, acc);
    free(tu_write(dir, "meta.csv", meta));
}

static const char *const DEC1[] = {"warmup", "increase", "hold"};
static const char *const DEC2[] = {"warmup", "rollback", "increase"};

/* fixed: seed 1 30 s, 80%, 100 samples/s; seed 2 36 s, 82%, 90/s.
 * deba:  seed 1 18 s, 83%, 200/s;         seed 2 21 s, 84%, 180/s; seed 3 diverged. */
static void write_known(const char *root)
{
    write_run(root, "a", "d", "fixed", 1, "completed", 3, 10, 100, NULL, 80);
    write_run(root, "a", "d", "fixed", 2, "completed", 3, 12, 90, NULL, 82);
    write_run(root, "a", "d", "deba", 1, "completed", 3, 6, 200, DEC1, 83);
    write_run(root, "a", "d", "deba", 2, "completed", 3, 7, 180, DEC2, 84);
    write_run(root, "a", "d", "deba", 3, "diverged", 2, 7, 180, DEC2, 10);
}

static int file_has(const char *dir, const char *name, const char *needle)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *s = tu_slurp(p);
    int ok = s && strstr(s, needle) != NULL;
    if (!ok) fprintf(stderr, "%s does not contain '%s'\n", p, needle);
    free(s);
    return ok;
}

static int file_lacks(const char *dir, const char *name, const char *needle)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *s = tu_slurp(p);
    int ok = s && strstr(s, needle) == NULL;
    free(s);
    return ok;
}

static int report(const char *args, const char *tmp)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s/deba-report' %s >'%s/stdout' 2>'%s/stderr'", tu_bindir(), args, tmp, tmp);
    return tu_run(cmd);
}

static void test_known_answers(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    write_known(tmp);
    const char *roots[1] = {tmp};
    deba_run *runs;
    size_t n;
    deba_err e = {0};
    assert_int_equal(deba_runs_load(roots, 1, &runs, &n, &e), DEBA_OK);
    assert_int_equal(n, 5);
    deba_analysis a;
    assert_int_equal(deba_analysis_run(runs, n, &a, &e), DEBA_OK);
    assert_int_equal(a.ngroups, 2);
    assert_int_equal(a.nwarnings, 0);
    int fi = deba_analysis_find(&a, "a", "d", "fixed"), di = deba_analysis_find(&a, "a", "d", "deba");
    assert_true(fi >= 0 && di >= 0);
    const deba_group *f = &a.groups[fi], *g = &a.groups[di];
    assert_int_equal(f->nseeds, 2);
    assert_int_equal(g->nseeds, 2); /* the diverged seed is not averaged */
    assert_float_equal(f->final_acc.mean, 81.0, 1e-9);
    assert_float_equal(f->final_acc.std, sqrt(2.0), 1e-9);
    assert_float_equal(g->final_acc.mean, 83.5, 1e-9);
    assert_float_equal(g->final_acc.std, sqrt(0.5), 1e-9);
    assert_float_equal(f->time.mean, 33.0, 1e-9);
    assert_float_equal(g->time.mean, 19.5, 1e-9);
    assert_true(g->has_baseline);
    assert_float_equal(g->dacc.mean, 2.5, 1e-9);
    assert_float_equal(g->dacc.std, sqrt(0.5), 1e-9);          /* paired: 3 and 2 */
    /* 95% CI: 2.5 ± t(0.975, 1) · √0.5/√2 = 2.5 ± 12.7062047362 · 0.5 */
    assert_int_equal(g->dacc.n, 2);
    assert_float_equal(g->dacc.lo, 2.5 - 6.3531023681, 1e-8);
    assert_float_equal(g->dacc.hi, 2.5 + 6.3531023681, 1e-8);
    /* per seed: (30 − 18)/30 = 40%, (36 − 21)/36 = 41.67%; paired mean, not the ratio of group means */
    assert_float_equal(g->speedup_pct.mean, (40.0 + 125.0 / 3.0) / 2.0, 1e-9);
    assert_float_equal(g->speedup_x, 66.0 / 39.0, 1e-9);
    assert_float_equal(g->speedup_pct.std, (125.0 / 3.0 - 40.0) / sqrt(2.0), 1e-9); /* 40% and 41.67% */
    assert_float_equal(g->speedup_pct.hi - g->speedup_pct.mean, 12.7062047362 * (5.0 / 6.0), 1e-8);
    assert_float_equal(g->throughput_x, 190.0 / 95.0, 1e-9);
    assert_int_equal(g->unpaired + g->baseline_unpaired, 0);
    assert_float_equal(g->aggressiveness.mean, (0.5 + 0.0) / 2.0, 1e-9);
    /* train loss 1.0, 0.5, 0.3: mean 0.6, population variance 0.26/3 */
    assert_float_equal(g->conv_stability.mean, sqrt(0.26 / 3.0), 1e-9);
    int excluded = 0;
    for (size_t i = 0; i < a.nruns; i++) excluded += !a.runs[i].included;
    assert_int_equal(excluded, 1);
    deba_analysis_free(&a);
    deba_runs_free(runs, n);
    tu_rmtree(tmp);
}

static void test_formats(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    char runs[2000], out[2000], args[9000];
    snprintf(runs, sizeof runs, "%s/runs", tmp);
    snprintf(out, sizeof out, "%s/out", tmp);
    write_known(runs);
    snprintf(args, sizeof args, "--no-figures --out '%s' '%s'", out, runs);
    assert_int_equal(report(args, tmp), 0);
    /* Table 4: 81.00 ± 1.41, 83.50 ± 0.71, ΔAcc +2.50 [2.5 ∓ 6.353], 33.0, 19.5, speedup 40.83 [∓ 10.589],
     * 66/39 = 1.69×, 2.00× (known_answers works the intervals out) */
    assert_true(file_has(out, "tables/table4.md", "| a | d | 81.00 ± 1.41 | 83.50 ± 0.71 | +2.50 \\[-3.85, +8.85\\] | 33.0 ± 4.2 | 19.5 ± 2.1 | 40.8 \\[+30.2, +51.4\\] | 1.69× | 2.00× |"));
    assert_true(file_has(out, "tables/table4.tex", "a & d & 81.00 $\\pm$ 1.41 & 83.50 $\\pm$ 0.71 & +2.50 [-3.85, +8.85]"));
    assert_true(file_has(out, "tables/table4.tex", "\\toprule"));
    assert_true(file_has(out, "tables/table4.tex", "\\bottomrule"));
    assert_true(file_has(out, "tables/table4.csv", "a,d,81,1.4142135623730951,83.5,0.7071067811865476,2.5,"));
    /* Table 3: one condition, Baseline */
    assert_true(file_has(out, "tables/table3.md", "| a | +2.50 \\[-3.85, +8.85\\] | 40.8 \\[+30.2, +51.4\\] |"));
    assert_true(file_has(out, "tables/table3.md", "| Degraded (≥1pt) | 0/1 |"));
    assert_true(file_has(out, "tables/table3.md", "| Mean \\|ΔAcc\\| | 2.50 |"));
    assert_true(file_has(out, "tables/table3.tex", "\\multicolumn{2}{c}{Baseline}"));
    assert_true(file_has(out, "tables/table3_summary.csv", "deba,Baseline,0,1,2.5,"));
    /* Table 1 from the DEBA runs' meta */
    assert_true(file_has(out, "tables/table1.md", "| a | d | 0.5 | 0.6 | 0.1 |"));
    assert_true(file_has(out, "tables/table1.csv", "a,d,0.5,0.6,0.1"));
    /* the diverged run is listed, not averaged; readings are computed */
    assert_true(file_has(out, "index.md", "| diverged | 2 |"));
    /* one pair: its numbers, no superlative; ΔAcc's interval spans 0, the speedup's does not */
    assert_true(file_has(out, "index.md", "a/d: speedup +40.8% (95% CI +30.2 to +51.4, n = 2); ΔAcc no measurable "
                                          "difference (95% CI −3.85 to +8.85 points, n = 2)."));
    assert_true(file_lacks(out, "index.md", "fastest"));
    assert_true(file_has(out, "index.html", "<td class=\"n\">+2.50 [-3.85, +8.85]</td>"));
    assert_true(file_has(out, "tables/runs.csv", ",diverged,0,2,"));
    /* only the chosen formats */
    char out2[4300];
    snprintf(out2, sizeof out2, "%s/out2", tmp);
    snprintf(args, sizeof args, "--no-figures --format csv --out '%s' '%s'", out2, runs);
    assert_int_equal(report(args, tmp), 0);
    char p[4400];
    snprintf(p, sizeof p, "%s/tables/table2.csv", out2);
    assert_true(tu_exists(p));
    snprintf(p, sizeof p, "%s/tables/table2.md", out2);
    assert_false(tu_exists(p));
    tu_rmtree(tmp);
}

static void test_paper(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    const char *src = getenv("DEBA_SRC");
    char out[4200], args[9000];
    snprintf(out, sizeof out, "%s/out", tmp);
    snprintf(args, sizeof args, "--paper '%s/data/paper' --out '%s'", src && *src ? src : ".", out);
    assert_int_equal(report(args, tmp), 0);
    /* Table 2: archetypes from (S̄, σ_S) with S̄ < 0.26, σ ≥ 0.10, S̄ ≥ 0.54 in that order, by hand */
    assert_true(file_has(out, "tables/table2.csv", "MobileNet-V3,unspecified,3,0.59,0.028,Overly Stable,"));
    assert_true(file_has(out, "tables/table2.md", "| ViT-B16 | unspecified | 3 | 0.546 | 0.012 | Overly Stable |"));
    assert_true(file_has(out, "tables/table2.md", "| DenseNet-121 | unspecified | 3 | 0.495 | 0.019 | Moderately Stable |"));
    assert_true(file_has(out, "tables/table2.md", "| ResNet-18 | unspecified | 3 | 0.487 | 0.015 | Moderately Stable |"));
    assert_true(file_has(out, "tables/table2.md", "| EfficientNet-B0 | unspecified | 3 | 0.331 | 0.182 | Dynamically Stable |"));
    assert_true(file_has(out, "tables/table2.md", "| ResNet-50 | unspecified | 3 | 0.185 | 0.079 | Naturally Unstable |"));
    assert_true(file_lacks(out, "tables/table2.md", "printed:"));
    /* Table 3's Mean |ΔAcc| row, from the printed per-architecture values */
    double base = (2.43 + 0.59 + 1.40 + 2.37 + 6.98 + 0.61) / 6, univ = (0.16 + 0.43 + 0.26 + 0.95 + 7.02 + 0.02) / 6;
    double cd2 = (2.75 + 12.62 + 4.30 + 2.29 + 0.64 + 1.80) / 6, cd5 = (0.83 + 2.35 + 0.24 + 1.97 + 5.24 + 0.59) / 6;
    double full = (1.94 + 0.14 + 1.02 + 0.24 + 5.48 + 0.43) / 6;
    char row[256];
    snprintf(row, sizeof row, "| Mean \\|ΔAcc\\| | %.2f | — | %.2f | — | %.2f | — | %.2f (printed 1.20) | — | %.2f | — |",
             base, univ, cd2, cd5, full);
    assert_true(file_has(out, "tables/table3.md", row));
    /* Degraded (ΔAcc ≤ −1): Universal has none of −0.16, +0.43, −0.26, −0.95, +7.02, −0.02 */
    assert_true(file_has(out, "tables/table3.md", "| Degraded (≥1pt) | 0/6 | — | 0/6 (printed 3/6) | — | 5/6 | — | 1/6 | — | 0/6 | — |"));
    /* Table 4: 8.3% speedup is 100/91.7 = 1.09×, not the printed 1.01× */
    assert_true(file_has(out, "tables/table4.md", "| ViT-B16 | CIFAR-10 | — | — | -0.61 | — | — | 8.3 | 1.09× | 1.01× |"));
    assert_true(file_has(out, "inconsistencies.md", "ViT-B16/CIFAR-10: a speedup of 8.3% (Table 3, Baseline column) is "
                                                     "1.09× faster, but Table 4 prints a 1.01× throughput"));
    /* Markdown: | and [ ] of the notes are escaped (deba_esc_markdown) */
    assert_true(file_has(out, "inconsistencies.md", "Cooldown=5: \"Mean \\|ΔAcc\\|\" is printed 1.20"));
    assert_true(file_has(tmp, "stdout", "Mean |ΔAcc|\" is printed 1.20, but"));
    /* Table 4's ΔAcc > 0: all but ResNet-50/CIFAR-10 (−0.59) and ViT-B16/CIFAR-10 (−0.61), against "9/12" (§4.4) */
    assert_true(file_has(out, "inconsistencies.md", "accuracy gains in 9/12 cases"));
    assert_true(file_has(out, "inconsistencies.md", "Table 4 has 10/12 (arch, dataset) pairs with ΔAcc > 0"));
    /* Table 3's Baseline ΔAcc > 0: +2.43, +1.40, +2.37, +6.98 (not −0.59, −0.61), against "5/6" (§6.2) */
    assert_true(file_has(out, "inconsistencies.md", "Table 3 has 4/6 architectures with ΔAcc > 0 under Baseline"));
    /* Cooldown=2 losses of ≥ 2.3 points: −2.75, −12.62, −4.30, −2.29 (not +0.64, −1.80), against "all models" */
    assert_true(file_has(out, "inconsistencies.md", "Table 3 has 4/6 architectures with ΔAcc ≤ -2.25 under Cooldown=2"));
    /* "36–43 %" (ResNet-18 34.2, DenseNet-121 54.9), "45–62 %" (EfficientNet-B0 43.3), "50–67 %" (ViT-B16 10.0) */
    assert_true(file_has(out, "inconsistencies.md", "Table 3 gives Baseline ResNet-18 speedup (%) 34.2"));
    assert_true(file_has(out, "inconsistencies.md", "Table 3 gives Baseline DenseNet-121 speedup (%) 54.9"));
    assert_true(file_has(out, "inconsistencies.md", "among those architectures is EfficientNet-B0/CIFAR-10's 43.3"));
    assert_true(file_has(out, "inconsistencies.md", "Table 3's smallest speedup (%) under Cooldown=5 is ViT-B16's 10 "));
    /* "8 % to 62 %" over Table 4: ViT-B16/CIFAR-100 prints no speedup (%), its 1.05× throughput is
     * (1 − 1/1.05)·100 = 4.762 %; "30–50 %" (§4.4) against DenseNet-121/CIFAR-100's 62.4 % (§4.3) */
    char want[256];
    snprintf(want, sizeof want, "ViT-B16/CIFAR-100's (1 − 1/1.05)·100 = %.4g \\[check t4_min_speedup:*\\]", 100.0 / 21.0);
    assert_true(file_has(out, "inconsistencies.md", want));
    assert_true(file_has(out, "inconsistencies.md", "30–50% reductions"));
    assert_true(file_has(out, "inconsistencies.md", "Table 4's largest speedup (%) is DenseNet-121/CIFAR-100's 62.4"));
    /* Table 2 against Table 4 and the prose: ResNet-50 S̄ 0.185 (not 0.203), ViT-B16 0.546 < 0.55 */
    assert_true(file_has(out, "inconsistencies.md", "Table 2 gives ResNet-50 S̄ 0.185"));
    assert_true(file_has(out, "inconsistencies.md", "Table 2 gives ViT-B16 S̄ 0.546"));
    assert_true(file_has(out, "inconsistencies.md", "for 5 of 6 architectures"));
    /* §8.3's "60 runs": (12 Table 4 pairs + 24 ablation cells of Table 3) × 5 seeds = 180 */
    assert_true(file_has(out, "inconsistencies.md", "and Table 3's 24 ablation cells, × 5 seeds, make 180 runs"));
    /* claims that hold are not listed: 12.0/0.25 = 48, 3/6 drops ≥ 1 from Baseline (2.59, 1.66, 3.32),
     * ViT-B16's 4.76–8.3 % within "5–8 %", +3.24 ≈ "3.2 %", full history's 7.1 % and 37.1 % */
    assert_true(file_lacks(out, "inconsistencies.md", "t1_tau_ratio"));
    assert_true(file_lacks(out, "inconsistencies.md", "t3_count_drop"));
    assert_true(file_lacks(out, "inconsistencies.md", "t4_min_speedup:ViT-B16"));
    assert_true(file_lacks(out, "inconsistencies.md", "t4:DenseNet-121:CIFAR-100:dacc"));
    assert_true(file_lacks(out, "inconsistencies.md", "deba-fullhistory"));
    assert_true(file_lacks(out, "inconsistencies.md", "Table 2: "));
    /* 6 archetypes + 5 × 2 summary cells + 6 CIFAR-10 ΔAcc + 7 speedup/throughput pairs + Table 2 vs 4,
     * and 75 claims; 27 disagree (the 4 derived ones above and 23 claims), from 19 root causes: the 4
     * derived ones and causes.csv's 15 */
    assert_true(file_has(out, "inconsistencies.md", "105 checks"));
    assert_true(file_has(out, "inconsistencies.md", "; 27 disagree, from 19 root causes."));
    tu_rmtree(tmp);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    char d1[2000], d2[2000], d3[2000], out[2000], args[9000];
    /* missing baseline */
    snprintf(d1, sizeof d1, "%s/nobase", tmp);
    write_run(d1, "a", "d", "deba", 1, "completed", 3, 6, 200, DEC1, 83);
    snprintf(out, sizeof out, "%s/o1", tmp);
    snprintf(args, sizeof args, "--no-figures --strict --out '%s' '%s'", out, d1);
    assert_int_equal(report(args, tmp), 2);
    assert_true(file_has(tmp, "stderr", "deba-report: error: missing baseline: a/d/deba"));
    snprintf(args, sizeof args, "--no-figures --out '%s' '%s'", out, d1);
    assert_int_equal(report(args, tmp), 0);
    assert_true(file_has(out, "index.md", "missing baseline: a/d/deba"));
    /* mismatched epochs */
    snprintf(d2, sizeof d2, "%s/epochs", tmp);
    write_run(d2, "a", "d", "fixed", 1, "completed", 3, 10, 100, NULL, 80);
    write_run(d2, "a", "d", "deba", 1, "completed", 2, 6, 200, DEC1, 83);
    snprintf(out, sizeof out, "%s/o2", tmp);
    snprintf(args, sizeof args, "--no-figures --strict --out '%s' '%s'", out, d2);
    assert_int_equal(report(args, tmp), 2);
    /* meta.csv's epochs differ (3 vs 2): not the same configuration, so no baseline at all */
    assert_true(file_has(tmp, "stderr", "no comparable baseline: a/d/deba "));
    assert_true(file_has(tmp, "stderr", "differ in epochs (deba 2, fixed 3); its ΔAcc and speedup are not reported"));
    /* corrupt trace: a non-numeric epoch_time_s */
    snprintf(d3, sizeof d3, "%s/corrupt", tmp);
    write_run(d3, "a", "d", "fixed", 1, "completed", 3, 10, 100, NULL, 80);
    char tp[4400], cmd[9000];
    snprintf(tp, sizeof tp, "%s/a/d/fixed/seed1/trace.csv", d3);
    snprintf(cmd, sizeof cmd, "sed -i '3s/,10,8,/,ten,8,/' '%s'", tp);
    assert_int_equal(tu_run(cmd), 0);
    snprintf(out, sizeof out, "%s/o3", tmp);
    snprintf(args, sizeof args, "--no-figures --out '%s' '%s'", out, d3);
    assert_int_equal(report(args, tmp), 2);
    assert_true(file_has(tmp, "stderr", "deba-report: error: "));
    assert_true(file_has(tmp, "stderr", "trace.csv:3"));
    assert_true(file_has(tmp, "stderr", "epoch_time_s"));
    /* existing non-empty output directory */
    snprintf(out, sizeof out, "%s/o1", tmp);
    snprintf(args, sizeof args, "--no-figures --out '%s' '%s'", out, d1);
    assert_int_equal(report(args, tmp), 2);
    assert_true(file_has(tmp, "stderr", "exists and is not empty"));
    snprintf(args, sizeof args, "--no-figures --force --out '%s' '%s'", out, d1);
    assert_int_equal(report(args, tmp), 0);
    /* usage */
    assert_int_equal(report("", tmp), 2);
    snprintf(args, sizeof args, "--format md,pdf '%s'", d1);
    assert_int_equal(report(args, tmp), 2);
    assert_true(file_has(tmp, "stderr", "unknown format 'pdf'"));
    snprintf(args, sizeof args, "--out '%s/o9' '%s/does-not-exist'", tmp, tmp);
    assert_int_equal(report(args, tmp), 2);
    assert_int_equal(report("--bogus x", tmp), 2);
    /* --out below a file: an input error (exit 2), like --out naming a file */
    free(tu_write(tmp, "afile", "x\n"));
    snprintf(args, sizeof args, "--no-figures --out '%s/afile/sub' '%s'", tmp, d1);
    assert_int_equal(report(args, tmp), 2);
    assert_true(file_has(tmp, "stderr", "afile: exists and is not a directory"));
    tu_rmtree(tmp);
}

static void test_figures(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    char runs[2000], out[2000], args[9000], p[4400];
    snprintf(runs, sizeof runs, "%s/runs", tmp);
    write_known(runs);
    free(tu_write(runs, "sweep.csv",
                  "arch,dataset,batch_size,steps,samples_per_s,epoch_time_s,grad_var,compute_util\n"
                  "a,d,64,782,5000,10,1e-4,0.5\na,d,256,196,20000,2.5,4e-5,0.9\n"));
    snprintf(out, sizeof out, "%s/out", tmp);
    snprintf(args, sizeof args, "--out '%s' '%s'", out, runs);
    assert_int_equal(report(args, tmp), 0);
    static const char *const stems[] = {"fig1_time_vs_batch", "fig2_grad_var_vs_batch", "fig3_batch_trajectory_d",
                                        "fig4_train_loss_a_d", "fig5_test_acc_a_d"};
    int have_gnuplot = tu_run("command -v gnuplot >/dev/null 2>&1") == 0;
    for (size_t i = 0; i < sizeof stems / sizeof stems[0]; i++) {
        snprintf(p, sizeof p, "%s/figures/%s.dat", out, stems[i]);
        assert_true(tu_exists(p));
        snprintf(p, sizeof p, "%s/figures/%s.gp", out, stems[i]);
        assert_true(tu_exists(p));
        snprintf(p, sizeof p, "%s/figures/%s.png", out, stems[i]);
        if (have_gnuplot) assert_true(tu_exists(p));
    }
    /* time per epoch 10 s → 2.5 s, but measured once per size: no gain is claimed */
    assert_true(file_has(out, "index.md", "Each batch size was measured once: no spread to tell a throughput gain"));
    assert_true(file_has(out, "figures/fig1_time_vs_batch.dat", "64 10 10 10\n256 2.5 2.5 2.5\n"));
    if (have_gnuplot) {
        assert_true(file_has(out, "index.html", "<svg"));
        snprintf(p, sizeof p, "%s/figures/fig1_time_vs_batch.png", out);
        char *png = tu_slurp(p);
        assert_non_null(png);
        assert_memory_equal(png, "\x89PNG", 4);
        free(png);
    }
    /* without gnuplot on PATH: data and scripts, no images, and the report says so */
    snprintf(out, sizeof out, "%s/out-nognuplot", tmp);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "PATH=/nonexistent '%s/deba-report' --out '%s' '%s' >/dev/null 2>'%s/stderr'", tu_bindir(),
             out, runs, tmp);
    assert_int_equal(tu_run(cmd), 0);
    snprintf(p, sizeof p, "%s/figures/fig4_train_loss_a_d.gp", out);
    assert_true(tu_exists(p));
    snprintf(p, sizeof p, "%s/figures/fig4_train_loss_a_d.png", out);
    assert_false(tu_exists(p));
    assert_true(file_has(out, "index.md", "gnuplot was not found on PATH"));
    assert_true(file_has(tmp, "stderr", "gnuplot not found on PATH"));
    tu_rmtree(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers), cmocka_unit_test(test_formats), cmocka_unit_test(test_paper),
        cmocka_unit_test(test_bad_inputs),    cmocka_unit_test(test_figures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
