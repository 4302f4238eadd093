/* The report's figures: every figure as PNG, SVG, PDF and cairolatex; scripts without figure
 * numbers, with legends inside, Okabe-Ito colours, power-of-ten log ticks, step plots of the batch
 * size (per seed and a median that is a batch size some seed used), decision markers; the paper
 * style; and the readings' templates on one, two and many series. */
#include "tests/testutil.h"

#include <math.h>

#include "analyze/analyze.h"
#include "deba/deba.h"

static char *slurp2(const char *dir, const char *name)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return tu_slurp(p);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle)) fail_msg("missing '%s' in '%.300s'", needle, hay ? hay : "(null)");
}

static void assert_lacks(const char *hay, const char *needle)
{
    if (hay && strstr(hay, needle)) fail_msg("unexpected '%s' in '%.300s'", needle, hay);
}

static int report(const char *args)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "'%s/deba-report' %s >'%s/stdout' 2>'%s/stderr'", tu_bindir(), args, g_dir, g_dir);
    return tu_run(cmd);
}

static int have_gnuplot(void) { return tu_run("command -v gnuplot >/dev/null 2>&1") == 0; }

/* Rewrites column col of rows first..last (1-based epochs) of a trace to value. */
static void set_cells(const char *trace, const char *col, int first, int last, const char *value)
{
    char *text = tu_slurp(trace);
    assert_non_null(text);
    FILE *f = fopen(trace, "w");
    assert_non_null(f);
    int ci = -1, line = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save), line++) {
        char cells[40][64];
        int n = 0;
        for (char *s2 = NULL, *c = strtok_r(l, ",", &s2); c && n < 40; c = strtok_r(NULL, ",", &s2))
            snprintf(cells[n++], sizeof cells[0], "%s", c);
        for (int k = 0; k < n; k++) {
            if (line == 0 && !strcmp(cells[k], col)) ci = k;
            const char *v = line >= first && line <= last && k == ci ? value : cells[k];
            fprintf(f, "%s%s", k ? "," : "", v);
        }
        fputc('\n', f);
    }
    fclose(f);
    free(text);
}

static double final_acc(const char *runs, const char *arch, const char *label, int seed)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/%s/data0/%s/seed%d/trace.csv", runs, arch, label, seed);
    deba_trace t;
    deba_err e;
    assert_int_equal(deba_trace_read(p, &t, &e), DEBA_OK);
    double v = t.rows[t.n - 1].test_acc;
    deba_trace_free(&t);
    return v;
}

/* Synthetic runs (analyze/synth.c: 2 archs × 3 seeds × 40 epochs; the DEBA batch grows 64 → 96
 * at epoch 11); arch0's DEBA seed 1 keeps 64 until epoch 20 and rolls back at epoch 25. */
static void make_runs(const char *runs, int nseeds)
{
    deba_err e = {0};
    if (deba_synth_runs(runs, 2, 1, nseeds, 40, 7u, &e)) fail_msg("%s", e.msg);
    char p[4400];
    snprintf(p, sizeof p, "%s/arch0/data0/deba/seed1/trace.csv", runs);
    if (!tu_exists(p)) fail_msg("no %s", p);
    set_cells(p, "batch_size", 11, 20, "64");
    set_cells(p, "decision", 25, 25, "rollback");
}

static const char *const STEMS[] = {"fig1_time_vs_batch",         "fig2_grad_var_vs_batch",
                                    "fig3_batch_trajectory_data0", "fig4_train_loss_arch0_data0",
                                    "fig5_test_acc_arch0_data0",  "fig4_train_loss_arch1_data0",
                                    "fig5_test_acc_arch1_data0"};

static void test_figure_files_and_scripts(void **state)
{
    (void)state;
    char runs[2000], out[2000], args[9000], fig[2100];
    snprintf(runs, sizeof runs, "%s/runs", g_dir);
    make_runs(runs, 3);
    /* arch0 only: the min-max intervals of B = 16 and 64 are apart */
    free(tu_write(runs, "sweep.csv",
                  "arch,dataset,batch_size,steps,samples_per_s,epoch_time_s,grad_var,compute_util,repeats,"
                  "samples_per_s_min,samples_per_s_max\n"
                  "arch0,data0,16,40,1000,50,1e-3,0.9,3,950,1040\narch0,data0,64,40,1900,26.3,2.5e-4,0.9,3,1800,1950\n"));
    snprintf(out, sizeof out, "%s/out", g_dir);
    snprintf(args, sizeof args, "--out '%s' '%s'", out, runs);
    assert_int_equal(report(args), 0);
    snprintf(fig, sizeof fig, "%s/figures", out);
    int gp = have_gnuplot();
    for (size_t i = 0; i < sizeof STEMS / sizeof STEMS[0]; i++) {
        static const char *const ext[] = {".dat", ".gp", ".png", ".svg", ".pdf", "_latex.tex", "_latex.pdf"};
        for (size_t k = 0; k < sizeof ext / sizeof ext[0]; k++) {
            char p[4500];
            snprintf(p, sizeof p, "%s/%s%s", fig, STEMS[i], ext[k]);
            if (k < 2 || gp) {
                if (!tu_exists(p)) fail_msg("missing %s", p);
            }
        }
        char name[256];
        snprintf(name, sizeof name, "%s.gp", STEMS[i]);
        char *g = slurp2(fig, name);
        assert_lacks(g, "Figure");
        assert_lacks(g, "set key outside");
        assert_contains(g, "set key inside");
        assert_contains(g, "set terminal pdfcairo");
        assert_contains(g, "set terminal cairolatex pdf");
        assert_contains(g, "#0072B2");      /* Okabe-Ito blue, the first series colour */
        assert_lacks(g, "#1f77b4");         /* the old, not colour-blind-safe palette */
        free(g);
        if (gp) {
            snprintf(name, sizeof name, "%s.pdf", STEMS[i]);
            char *pdf = slurp2(fig, name);
            assert_memory_equal(pdf, "%PDF", 4);
            free(pdf);
            snprintf(name, sizeof name, "%s_latex.tex", STEMS[i]);
            char *tex = slurp2(fig, name);
            char inc[300];
            snprintf(inc, sizeof inc, "]{%s_latex}}", STEMS[i]);   /* the picture's includegraphics */
            assert_contains(tex, inc);
            free(tex);
        }
    }
    /* log ticks as powers of ten, plain and in LaTeX; batch axes as integers */
    char *g = slurp2(fig, "fig2_grad_var_vs_batch.gp");
    assert_contains(g, "set format y '10^{%T}'");
    assert_contains(g, "set format y '$10^{%T}$'");
    assert_contains(g, "set logscale x 2\nset format x '%g'");
    free(g);
    /* the sweep with error bars from min-max: epoch time 50 s at 1000 samples/s spans
     * 50·1000/1040 = 48.08 to 50·1000/950 = 52.63 */
    g = slurp2(fig, "fig1_time_vs_batch.gp");
    assert_contains(g, "with yerrorlines");
    free(g);
    char *dat = slurp2(fig, "fig1_time_vs_batch.dat");
    assert_contains(dat, "16 50 48.0769231 52.6315789\n");
    free(dat);
    /* batch trajectories: step plots; the median at epoch 11 is 96 (two seeds of three), never
     * the mean 85.33 of 64, 96, 96 */
    g = slurp2(fig, "fig3_batch_trajectory_data0.gp");
    assert_contains(g, "with steps");
    assert_lacks(g, "with lines");
    assert_contains(g, "one seed (thin)");
    free(g);
    dat = slurp2(fig, "fig3_batch_trajectory_data0.dat");
    assert_contains(dat, "\n11 96 96 96\n");
    assert_contains(dat, "\n11 64 64 64\n");   /* the seed that stayed at 64 */
    assert_lacks(dat, "85.3");
    free(dat);
    /* decision markers: ▲ increases and ▼ the rollback on the loss and accuracy figures */
    for (int which = 0; which < 2; which++) {
        g = slurp2(fig, which ? "fig5_test_acc_arch0_data0.gp" : "fig4_train_loss_arch0_data0.gp");
        assert_contains(g, "with points pt 9");
        assert_contains(g, "with points pt 11");
        assert_contains(g, "t2 = 'batch increase'");
        assert_contains(g, "t3 = 'rollback'");
        assert_contains(g, "filledcurves");
        /* the fixed line is drawn after every band: plotted in the second pass */
        const char *band = strstr(g, "filledcurves"), *fixed_line = strstr(g, "lc rgb '#000000' title t0");
        assert_non_null(fixed_line);
        assert_true(band < fixed_line);
        free(g);
        g = slurp2(fig, which ? "fig5_test_acc_arch1_data0.gp" : "fig4_train_loss_arch1_data0.gp");
        assert_contains(g, "with points pt 9");
        assert_lacks(g, "with points pt 11");   /* no rollback in arch1 */
        free(g);
    }
    /* readings */
    char *md = slurp2(out, "index.md");
    assert_contains(md, "**Reading:** Throughput rises with the batch size: B = 64 gives 1.90x the samples/s of B = 16");
    assert_contains(md, "Every architecture ends at the same median batch size (216).");
    /* index.md links every output format of a figure */
    assert_contains(md, "[PDF](figures/fig1_time_vs_batch.pdf) [LaTeX](figures/fig1_time_vs_batch_latex.tex)");
    /* the accuracy reading against mean ± sample std recomputed from the traces */
    double f[3], d[3];
    for (int s = 0; s < 3; s++) {
        f[s] = final_acc(runs, "arch0", "fixed", s + 1);
        d[s] = final_acc(runs, "arch0", "deba", s + 1);
    }
    double mf = deba_mean(f, 3), sf = deba_std_sample(f, 3), md_ = deba_mean(d, 3), sd = deba_std_sample(d, 3);
    if (md_ - sd > mf + sf) assert_contains(md, "Final test accuracy: DEBA's ±1 std band lies above fixed's");
    else if (md_ + sd < mf - sf) assert_contains(md, "Final test accuracy: DEBA's ±1 std band lies below fixed's");
    else assert_contains(md, "the bands overlap at the last epoch, so the figure shows no difference");
    free(md);

    /* the paper style: one column, 8 pt, no title */
    snprintf(out, sizeof out, "%s/out-paper", g_dir);
    snprintf(args, sizeof args, "--style paper --out '%s' '%s'", out, runs);
    assert_int_equal(report(args), 0);
    snprintf(fig, sizeof fig, "%s/figures", out);
    g = slurp2(fig, "fig4_train_loss_arch0_data0.gp");
    assert_contains(g, "set terminal pdfcairo size 3.5in,2.45in enhanced font 'sans,8'");
    assert_contains(g, "unset title");
    assert_lacks(g, "\nset title");
    free(g);
    assert_int_equal(report("--style poster x"), 2);
    char *err = slurp2(g_dir, "stderr");
    assert_contains(err, "--style: expected screen or paper, got 'poster'");
    free(err);
}

/* Readings on one seed (no spread: nothing claimed), one architecture, and many sweep series
 * (as many sentences as fit, then a count). */
static void test_readings_one_and_many(void **state)
{
    (void)state;
    char runs[2000], out[2000], args[9000];
    snprintf(runs, sizeof runs, "%s/runs", g_dir);
    deba_err e = {0};
    if (deba_synth_runs(runs, 1, 1, 1, 20, 3u, &e)) fail_msg("%s", e.msg);
    /* 14 sweep series of one size each */
    char csv[8000] = "arch,dataset,batch_size,steps,samples_per_s,epoch_time_s,grad_var,compute_util,repeats,"
                     "samples_per_s_min,samples_per_s_max\n";
    for (int i = 0; i < 14; i++) {
        size_t l = strlen(csv);
        snprintf(csv + l, sizeof csv - l, "net%02d,data0,32,10,100,10,0.1,0.5,3,90,110\n", i);
    }
    free(tu_write(runs, "sweep.csv", csv));
    snprintf(out, sizeof out, "%s/out", g_dir);
    snprintf(args, sizeof args, "--out '%s' '%s'", out, runs);
    assert_int_equal(report(args), 0);
    char *md = slurp2(out, "index.md");
    assert_contains(md, "net00/data0: Only one batch size was measured (B = 32): nothing to compare.");
    assert_contains(md, "more series in the figure)");
    assert_lacks(md, "net13/data0: Only");
    assert_contains(md, "arch0 ends at a median batch size of");
    assert_contains(md, "(one seed each): one seed gives no spread, so no difference is claimed.");
    free(md);
    /* one series: its sentence, unnamed */
    snprintf(csv, sizeof csv, "arch,dataset,batch_size,steps,samples_per_s,epoch_time_s,grad_var,compute_util\n"
                              "arch0,data0,32,10,100,10,0.1,0.5\narch0,data0,64,10,400,2.5,0.05,0.5\n");
    free(tu_write(runs, "sweep.csv", csv));
    snprintf(args, sizeof args, "--force --out '%s' '%s'", out, runs);
    assert_int_equal(report(args), 0);
    md = slurp2(out, "index.md");
    assert_contains(md, "**Reading:** Each batch size was measured once: no spread to tell a throughput gain from noise");
    assert_lacks(md, "4.00");   /* the 4× medians are not claimed */
    free(md);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_figure_files_and_scripts, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_readings_one_and_many, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
