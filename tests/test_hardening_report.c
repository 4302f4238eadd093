/* Hardening of the report side (issue 13): data never becomes code in a generated gnuplot, shell,
 * LaTeX, Markdown or HTML file, huge numbers never overflow a table cell, symlink loops never
 * multiply runs, and plans with NUL bytes are refused; each escaper against hand-written output. */
#include "tests/testutil.h"

#include <math.h>
#include "deba/deba.h"
#include "deba/escape.h"
#include "deba/runs.h"
#include "analyze/analyze.h"

/* A CSV cell quoted as RFC 4180 says: "" for each quote. */
static void csv_quote(char *q, size_t cap, const char *s)
{
    size_t k = 0;
    q[k++] = '"';
    for (; *s && k < cap - 3; s++) {
        if (*s == '"') q[k++] = '"';
        q[k++] = *s;
    }
    q[k++] = '"';
    q[k] = '\0';
}

/* snprintf into an array, failing the test instead of cutting */
#define SP(buf, ...) assert_true(snprintf((buf), sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))

static const char *HDR =
    "epoch,batch_size,steps,lr,train_loss,train_acc,test_loss,test_acc,grad_var,grad_norm,norm_var,loss_var,"
    "confidence,decision,epoch_time_s,compute_time_s,data_time_s,signal_time_s,eval_time_s,samples_per_s\n";

/* <root>/<arch>/<dsdir>/<dirlabel>/seed<seed>: 3 epochs of time t and throughput sps; meta.csv
 * names `dataset` and `label` (written as quoted CSV cells, so they may hold a newline or a
 * quote). */
static void write_run_m(const char *root, const char *arch, const char *dsdir, const char *dataset,
                        const char *dirlabel, const char *label, int seed, double t, double sps, double acc)
{
    char dir[2000], cmd[2200];
    SP(dir, "%s/%s/%s/%s/seed%d", root, arch, dsdir, dirlabel, seed);
    SP(cmd, "mkdir -p '%s'", dir);
    assert_int_equal(tu_run(cmd), 0);
    char trace[4096];
    size_t l = strlen(HDR);
    SP(trace, "%s", HDR);
    static const char *const dec[] = {"warmup", "increase", "hold"};
    for (int i = 0; i < 3; i++)
        l += (size_t)snprintf(trace + l, sizeof trace - l,
                              "%d,64,10,0.01,%g,50,1.0,%g,0.001,1.0,0.1,0.1,1.0,%s,%g,%g,0.1,0.01,0.5,%g\n", i + 1,
                              1.0 / (i + 1), i == 2 ? acc : 50.0, strcmp(label, "fixed") ? dec[i] : "fixed", t, 0.8 * t,
                              sps);
    free(tu_write(dir, "trace.csv", trace));
    char qd[1024], ql[1024];
    csv_quote(qd, sizeof qd, dataset);
    csv_quote(ql, sizeof ql, label);
    char meta[4096];
    snprintf(meta, sizeof meta,
             "key,value\nformat_version,1\narch,%s\ndataset,%s\nlabel,%s\nmethod,%s\nseed,%d\nepochs,3\n"
             "tau,0.5\ntheta,0.6\nlambda,0.1\nstatus,completed\nfinal_test_acc,%g\nbest_test_acc,%g\n",
             arch, qd, ql, strcmp(label, "fixed") ? "deba" : "fixed", seed, acc, acc);
    free(tu_write(dir, "meta.csv", meta));
}

static void write_run(const char *root, const char *arch, const char *dsdir, const char *dataset, const char *label,
                      int seed, double t, double sps, double acc)
{
    write_run_m(root, arch, dsdir, dataset, label, label, seed, t, sps, acc);
}

/* fixed and deba, two seeds each, on a/d: 5 runs' worth of known numbers (4 runs) */
static void write_pair(const char *root)
{
    write_run(root, "a", "d", "d", "fixed", 1, 10, 100, 80);
    write_run(root, "a", "d", "d", "fixed", 2, 12, 90, 82);
    write_run(root, "a", "d", "d", "deba", 1, 6, 200, 83);
    write_run(root, "a", "d", "d", "deba", 2, 7, 180, 84);
}

static int file_has(const char *dir, const char *name, const char *needle)
{
    char p[4300];
    SP(p, "%s/%s", dir, name);
    char *s = tu_slurp(p);
    int ok = s && strstr(s, needle) != NULL;
    if (!ok) fprintf(stderr, "%s does not contain '%s'\n", p, needle);
    free(s);
    return ok;
}

static int report_env(const char *env, const char *args, const char *tmp)
{
    char cmd[16384];
    SP(cmd, "%s timeout 120 '%s/deba-report' %s >'%s/stdout' 2>'%s/stderr'", env, tu_bindir(), args, tmp, tmp);
    return tu_run(cmd);
}

static int report(const char *args, const char *tmp)
{
    return report_env("", args, tmp);
}

static int have_gnuplot(void)
{
    return tu_run("command -v gnuplot >/dev/null 2>&1") == 0;
}

/* ---- the escapers, against output written by hand ---- */

static void esc_is(deba_escaper esc, const char *in, const char *want)
{
    char buf[512];
    int n = esc(buf, sizeof buf, in);
    if (n < 0 || strcmp(buf, want)) fail_msg("escaped '%s' to '%s' (%d), want '%s'", in, buf, n, want);
    assert_int_equal(n, (int)strlen(want));
    char *d = deba_esc_dup(esc, in);
    assert_string_equal(d, want);
    free(d);
}

static void test_escapers(void **state)
{
    (void)state;
    /* gnuplot: quotes doubled, control characters never reach the script */
    esc_is(deba_esc_gnuplot, "plain", "'plain'");
    esc_is(deba_esc_gnuplot, "it's", "'it''s'");
    esc_is(deba_esc_gnuplot, "d\nsystem('x')", "'d system(''x'')'");
    esc_is(deba_esc_gnuplot, "a\r\tb\x7f", "'a  b '");
    esc_is(deba_esc_gnuplot, "", "''");
    /* comment lines: no newline, no trailing backslash (gnuplot would continue the comment) */
    esc_is(deba_esc_comment, "t\nsystem('x')", "t system('x')");
    esc_is(deba_esc_comment, "ends in \\", "ends in /");
    esc_is(deba_esc_comment, "a\\b", "a\\b");
    /* shell: safe words as they are, everything else single-quoted */
    esc_is(deba_esc_shell, "runs/a-b_c.d:1=2+3,4@5%", "runs/a-b_c.d:1=2+3,4@5%");
    esc_is(deba_esc_shell, "", "''");
    esc_is(deba_esc_shell, "my runs", "'my runs'");
    esc_is(deba_esc_shell, "it's", "'it'\\''s'");
    esc_is(deba_esc_shell, "$(touch x) `y` \"z\" ;&|<>*?~#!", "'$(touch x) `y` \"z\" ;&|<>*?~#!'");
    esc_is(deba_esc_shell, "a\tb", "'a\tb'");
    char buf[64] = "untouched";
    assert_int_equal(deba_esc_shell(buf, sizeof buf, "a\nb"), -1);
    assert_string_equal(buf, "");
    assert_int_equal(deba_esc_shell(buf, sizeof buf, "a\rb"), -1);
    assert_null(deba_esc_dup(deba_esc_shell, "x\x1b[31m"));
    /* LaTeX: every special character of text mode, and the report's symbols */
    esc_is(deba_esc_latex, "_&%$#{}~^\\", "\\_\\&\\%\\$\\#\\{\\}\\textasciitilde{}\\textasciicircum{}\\textbackslash{}");
    esc_is(deba_esc_latex, "81.00 ± 1.41 → 2×", "81.00 $\\pm$ 1.41 $\\rightarrow$ 2$\\times$");
    esc_is(deba_esc_latex, "a<b>c|d\ne", "a$<$b$>$c$|$d e");
    /* Markdown: no link, image, HTML, code span or extra column from data */
    esc_is(deba_esc_markdown, "a|b", "a\\|b");
    esc_is(deba_esc_markdown, "![x](javascript:y) <script>`c`\\", "!\\[x\\](javascript:y) \\<script>\\`c\\`\\\\");
    esc_is(deba_esc_markdown, "line\nbreak", "line break");
    esc_is(deba_esc_markdown, "ΔAcc > 0, a_b * c", "ΔAcc > 0, a_b * c");
    /* HTML */
    esc_is(deba_esc_html, "<a href='x' title=\"y\">&amp;</a>",
           "&lt;a href=&#39;x&#39; title=&quot;y&quot;&gt;&amp;amp;&lt;/a&gt;");
    /* snprintf semantics: the length needed, a cut copy never mistaken for the whole */
    char small[4];
    assert_int_equal(deba_esc_shell(small, sizeof small, "abcdef"), 6);
    assert_string_equal(small, "abc");
    assert_int_equal(deba_esc_gnuplot(NULL, 0, "it's"), 7);
    /* messages show control characters instead of printing them */
    char m[64];
    assert_string_equal(deba_esc_msg(m, sizeof m, "d\n\tx\x01"), "d\\n\\tx\\x01");
}

static void test_name_ok(void **state)
{
    (void)state;
    char n63[64], n64[65];
    memset(n63, 'a', 63);
    n63[63] = '\0';
    memset(n64, 'a', 64);
    n64[64] = '\0';
    const char *good[] = {"a", "resnet18", "fashion-mnist", "deba-cooldown2", "A.b_c-9", "...", ".a", "-", "_", n63};
    const char *bad[] = {"", ".", "..", n64, "a/b", "a b", "a\nb", "a+b", "é", "a'b", "$(x)", "a\\b", "a\tb"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!deba_name_ok(good[i])) fail_msg("'%s' refused", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (deba_name_ok(bad[i])) fail_msg("'%s' accepted", bad[i]);
    /* the same rule names run directories */
    char dir[4096];
    deba_err e;
    assert_int_equal(deba_run_dir(dir, sizeof dir, "runs", "a", "d", "ok-label", 1, &e), DEBA_OK);
    assert_string_equal(dir, "runs/a/d/ok-label/seed1");
    assert_int_equal(deba_run_dir(dir, sizeof dir, "runs", "a", "d", "..", 1, &e), DEBA_E_INPUT);
    assert_int_equal(deba_run_dir(dir, sizeof dir, "runs", "a", "d\n", "x", 1, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "dataset 'd\\n' cannot name a run directory"));
}

/* ---- gnuplot: the reported injection, end to end ---- */

static void test_gnuplot_injection(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    assert_non_null(tmp);
    char runs[2000], out[2000], pwned[2000], payload[2400], args[9000];
    SP(runs, "%s/runs", tmp);
    SP(out, "%s/out", tmp);
    SP(pwned, "%s/pwned", tmp);
    /* the audit's reproducer: dataset = "d<newline>system('touch <scratch>/pwned')" */
    SP(payload, "d\nsystem('touch %s')", pwned);
    write_run(runs, "a", "d", payload, "fixed", 1, 10, 100, 80);
    write_run(runs, "a", "d", payload, "deba", 1, 6, 200, 83);
    /* Before the fix the injected line also held the script's own `gnuplot X.gp` in backquotes,
     * which gnuplot runs: each gnuplot started another. A gnuplot first on PATH that refuses to
     * nest keeps a regression of this test from doing that to the machine. */
    char env[4400] = "";
    if (have_gnuplot()) {
        char bindir[2200], real[2048] = "", script[5000];
        FILE *pp = popen("command -v gnuplot", "r");
        assert_non_null(pp);
        assert_non_null(fgets(real, sizeof real, pp));
        pclose(pp);
        real[strcspn(real, "\n")] = '\0';
        SP(bindir, "%s/bin", tmp);
        assert_int_equal(mkdir(bindir, 0777), 0);
        SP(script, "#!/bin/sh\n[ -n \"$DEBA_TEST_NESTED\" ] && exit 1\nDEBA_TEST_NESTED=1 exec '%s' \"$@\"\n", real);
        char *g = tu_write(bindir, "gnuplot", script);
        assert_non_null(g);
        assert_int_equal(chmod(g, 0755), 0);
        free(g);
        SP(env, "PATH='%s':\"$PATH\"", bindir);
    }
    SP(args, "--out '%s' '%s'", out, runs);
    assert_int_equal(report_env(env, args, tmp), 2);
    assert_false(tu_exists(pwned));
    assert_true(file_has(tmp, "stderr", "/meta.csv: key 'dataset': 'd\\nsystem('touch "));
    assert_true(file_has(tmp, "stderr", "is not a name"));
    char p[4300];
    SP(p, "%s/figures", out);
    assert_false(tu_exists(p));   /* nothing half-written */
    /* a label is a name too */
    write_run_m(runs, "a", "d", "d", "lbl", "x'y", 2, 6, 200, 83);
    char tmp2[2000];
    SP(tmp2, "rm -rf '%s/a/d/fixed' '%s/a/d/deba'", runs, runs);
    assert_int_equal(tu_run(tmp2), 0);
    assert_int_equal(report_env(env, args, tmp), 2);
    assert_true(file_has(tmp, "stderr", "key 'label': 'x'y' is not a name"));
    tu_rmtree(tmp);
}

/* The escapers in a real gnuplot script: the payload is inert, while the same payload
 * unescaped does run (so the check can see an injection when there is one). */
static void test_gnuplot_escapers_in_gnuplot(void **state)
{
    (void)state;
    if (!have_gnuplot()) skip();
    char *tmp = tu_mkdtemp();
    assert_non_null(tmp);
    char pw1[2000], pw2[2000], pw3[2000], pw4[2000], title[9000], cmt[4000], cmd[9000];
    SP(pw1, "%s/pwned1", tmp);
    SP(pw2, "%s/pwned2", tmp);
    SP(pw3, "%s/pwned3", tmp);
    SP(pw4, "%s/pwned4", tmp);
    /* gnuplot runs `...` outside single quotes and comments: both are tried */
    SP(title, "t\nsystem('touch %s')\n' . system('touch %s') . '`touch %s`", pw1, pw2, pw4);
    SP(cmt, "c `touch %s`\nsystem('touch %s') \\", pw4, pw3);
    char p[2200];
    SP(p, "%s/safe.gp", tmp);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("# ", f);
    assert_int_equal(deba_esc_fput(f, deba_esc_comment, cmt), 0);
    fputs("\nset title ", f);
    assert_int_equal(deba_esc_fput(f, deba_esc_gnuplot, title), 0);
    fputs("\nprint 'done'\n", f);
    fclose(f);
    SP(cmd, "cd '%s' && gnuplot safe.gp >gp.out 2>&1", tmp);
    assert_int_equal(tu_run(cmd), 0);
    assert_false(tu_exists(pw1));
    assert_false(tu_exists(pw2));
    assert_false(tu_exists(pw3));
    assert_false(tu_exists(pw4));
    assert_true(file_has(tmp, "gp.out", "done"));
    /* control: the comment written raw runs its second line */
    SP(p, "%s/raw.gp", tmp);
    f = fopen(p, "w");
    fprintf(f, "# %s\nprint 'done'\n", cmt);
    fclose(f);
    SP(cmd, "cd '%s' && gnuplot raw.gp >/dev/null 2>&1", tmp);
    tu_run(cmd);
    assert_true(tu_exists(pw3));
    tu_rmtree(tmp);
}

/* gnuplot renders into a private directory: names planted in figures/ are replaced, never
 * followed, and nothing of the private directory is left. */
static void test_figures_private_dir(void **state)
{
    (void)state;
    if (!have_gnuplot()) skip();
    char *tmp = tu_mkdtemp();
    assert_non_null(tmp);
    char runs[2000], out[2000], args[9000], cmd[9000];
    SP(runs, "%s/runs", tmp);
    SP(out, "%s/out", tmp);
    write_pair(runs);
    free(tu_write(tmp, "victim", "precious\n"));
    /* the old temporary names and the final names, as symlinks to the victim */
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/figures' && for s in fig4_train_loss_a_d fig5_test_acc_a_d fig3_batch_trajectory_d; do "
             "for x in png svg png.tmp svg.tmp dat gp; do ln -s '%s/victim' \"%s/figures/$s.$x\"; done; done",
             out, tmp, out);
    assert_int_equal(tu_run(cmd), 0);
    SP(args, "--force --out '%s' '%s'", out, runs);
    assert_int_equal(report(args, tmp), 0);
    SP(cmd, "%s/victim", tmp);
    char *v = tu_slurp(cmd);
    assert_string_equal(v, "precious\n");
    free(v);
    char p[4300];
    SP(p, "%s/figures/fig4_train_loss_a_d.png", out);
    char *png = tu_slurp(p);
    assert_non_null(png);
    assert_memory_equal(png, "\x89PNG", 4);   /* the real image, where the link was */
    free(png);
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    SP(cmd, "ls -A '%s/figures' | grep -q '^\\.deba-figures'", out);
    assert_int_not_equal(tu_run(cmd), 0);
    tu_rmtree(tmp);
}

/* ---- Table 4: a huge throughput ---- */

static void test_huge_throughput(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    assert_non_null(tmp);
    char runs[2000], out[2000], args[9000];
    SP(runs, "%s/runs", tmp);
    SP(out, "%s/out", tmp);
    write_run(runs, "a", "d", "d", "fixed", 1, 10, 100, 80);
    write_run(runs, "a", "d", "d", "deba", 1, 6, 1e300, 83);
    SP(args, "--no-figures --out '%s' '%s'", out, runs);
    assert_int_equal(report(args, tmp), 0);
    /* throughput × = 1e300 / 100 = 1e298, in exponent notation; speedup 40% = 1.67× */
    assert_true(file_has(out, "tables/table4.md", "| 40.0 (n=1) | 1.67× | 1.00e+298× |"));
    assert_true(file_has(out, "tables/table4.tex", "1.00e+298$\\times$"));
    tu_rmtree(tmp);
}

/* ---- symlink loops ---- */

static void test_symlink_loop(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    assert_non_null(tmp);
    char runs[2000], other[2000], out[2000], args[9000], cmd[9000];
    SP(runs, "%s/runs", tmp);
    SP(other, "%s/elsewhere", tmp);
    SP(out, "%s/out", tmp);
    write_pair(runs);
    write_run(other, "b", "d", "d", "fixed", 1, 10, 100, 80);
    /* two loops (exponential before: each level doubles the paths) and a link to a real tree */
    SP(cmd, "ln -s . '%s/loop' && ln -s .. '%s/a/up' && ln -s '%s' '%s/linked'", runs, runs, other, runs);
    assert_int_equal(tu_run(cmd), 0);
    const char *roots[1] = {runs};
    deba_run *r;
    size_t n;
    char **skipped = NULL;
    size_t nskipped = 0;
    deba_err e = {0};
    assert_int_equal(deba_runs_load_walk(roots, 1, &r, &n, &skipped, &nskipped, &e), DEBA_OK);
    assert_int_equal(n, 5);   /* 4 under runs/, 1 through runs/linked: each once */
    char want[2200];
    SP(want, "%s/linked/b/d/fixed/seed1", runs);
    assert_string_equal(r[4].dir, want);   /* a path through the link, sorted last */
    assert_int_equal(nskipped, 2);
    SP(want, "%s/a/up: symbolic link to %s, already walked; not followed", runs, runs);
    assert_string_equal(skipped[0], want);
    SP(want, "%s/loop: symbolic link to %s, already walked; not followed", runs, runs);
    assert_string_equal(skipped[1], want);
    deba_strs_free(skipped, nskipped);
    deba_runs_free(r, n);
    /* the tool: counted once, and the warning names the link */
    SP(args, "--no-figures --out '%s' '%s'", out, runs);
    assert_int_equal(report(args, tmp), 0);
    assert_true(file_has(tmp, "stdout", "5 runs (5 averaged, 0 left out), 3 groups, 2 warning(s)"));
    SP(want, "deba-report: warning: %s/loop: symbolic link to %s, already walked; not followed", runs,
             runs);
    assert_true(file_has(tmp, "stderr", want));
    assert_true(file_has(out, "index.md", "/loop: symbolic link to "));
    tu_rmtree(tmp);
}

/* ---- no profile, thresholds or sweep files ---- */

static void test_no_extras(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    assert_non_null(tmp);
    char runs[2000], out[2000], args[9000];
    SP(runs, "%s/runs", tmp);
    SP(out, "%s/out", tmp);
    write_pair(runs);
    const char *roots[1] = {runs};
    deba_analysis a;
    memset(&a, 0, sizeof a);
    deba_err e = {0};
    /* qsort(NULL, 0) was undefined behaviour here (UBSan, make sanitize) */
    assert_int_equal(deba_analysis_load_extras(&a, roots, 1, &e), DEBA_OK);
    assert_int_equal(a.nsummary_files + a.nthresholds_files + a.nsweep_files, 0);
    assert_int_equal(a.nwarnings, 0);
    deba_analysis_free(&a);
    SP(args, "--no-figures --out '%s' '%s'", out, runs);
    assert_int_equal(report(args, tmp), 0);
    /* Table 1 falls back to the DEBA runs' meta: tau 0.5 */
    assert_true(file_has(out, "tables/table1.md", "| a | d | 0.5 | 0.6 | 0.1 |"));
    tu_rmtree(tmp);
}

/* ---- paper mode: names from its CSVs in LaTeX, Markdown and HTML ---- */

static void test_paper_names_escaped(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    assert_non_null(tmp);
    const char *src = getenv("DEBA_SRC");
    char cmd[9000], out[2000], args[9000];
    /* a copy of data/paper whose first Table 1 row names an odd architecture */
    SP(cmd, "cp -r '%s/data/paper' '%s/paper'", src && *src ? src : ".", tmp);
    assert_int_equal(tu_run(cmd), 0);
    SP(cmd, "%s/paper/table1.csv", tmp);
    char *t1 = tu_slurp(cmd);
    assert_non_null(t1);
    char *row2 = strchr(t1, '\n') + 1, *comma = strchr(row2, ',');
    FILE *f = fopen(cmd, "wb");
    fprintf(f, "%.*sR&D_50%%$#{}~^\\<b>|[x](y)%s", (int)(row2 - t1), t1, comma);
    fclose(f);
    free(t1);
    assert_true(file_has(tmp, "paper/table1.csv", "\nR&D_50%$#{}~^\\<b>|[x](y),"));
    SP(out, "%s/out", tmp);
    SP(args, "--paper '%s/paper' --out '%s'", tmp, out);
    assert_int_equal(report(args, tmp), 0);
    assert_true(file_has(out, "tables/table1.tex",
                         "R\\&D\\_50\\%\\$\\#\\{\\}\\textasciitilde{}\\textasciicircum{}\\textbackslash{}$<$b$>$$|$[x](y) &"));
    assert_true(file_has(out, "tables/table1.md", "| R&D_50%$#{}~^\\\\\\<b>\\|\\[x\\](y) |"));
    assert_true(file_has(out, "index.html", "<td>R&amp;D_50%$#{}~^\\&lt;b&gt;|[x](y)</td>"));
    tu_rmtree(tmp);
}

/* ---- study plans ---- */

static int profile_in(const char *dir, const char *args)
{
    char cmd[16384];
    SP(cmd, "cd '%s' && '%s/deba-profile' %s >out.txt 2>err.txt", dir, tu_bindir(), args);
    return tu_run(cmd);
}

static void test_plan_nul_byte(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    assert_non_null(tmp);
    static const char plan[] = "[study]\narchs = cnn_small\ndatasets = fashion-mnist\0# rest\nseeds = 1\nepochs = 2\n"
                               "[condition fixed]\nmethod = fixed\n";
    char p[2200];
    SP(p, "%s/nul.ini", tmp);
    FILE *f = fopen(p, "wb");
    fwrite(plan, 1, sizeof plan - 1, f);
    fclose(f);
    assert_int_equal(profile_in(tmp, "--plan nul.ini --emit-jobs jobs.txt"), 2);
    assert_true(file_has(tmp, "err.txt", "deba-profile: error: nul.ini:3:25: NUL byte in the line"));
    SP(p, "%s/jobs.txt", tmp);
    assert_false(tu_exists(p));
    /* other control characters inside a line are refused the same way */
    free(tu_write(tmp, "esc.ini", "[study]\narchs = cnn_small\ndatasets = fashion-mnist\nseeds = 1\nepochs = 2\n"
                                  "out = runs\x1b[2J\n[condition fixed]\nmethod = fixed\n"));
    assert_int_equal(profile_in(tmp, "--plan esc.ini --emit-jobs jobs.txt"), 2);
    assert_true(file_has(tmp, "err.txt", "esc.ini:6:11: control character 0x1b in the line"));
    /* a CRLF file is still fine */
    free(tu_write(tmp, "crlf.ini", "[study]\r\narchs = cnn_small\r\ndatasets = fashion-mnist\r\nseeds = 1\r\nepochs = 2\r\n"
                                   "[condition fixed]\r\nmethod = fixed\r\n"));
    assert_int_equal(profile_in(tmp, "--plan crlf.ini --emit-jobs jobs.txt"), 0);
    tu_rmtree(tmp);
}

/* Every value the plan and the command line put into jobs.txt, study.sbatch and profiles.sh
 * comes back out of bash as exactly one argument, and none of them runs. */
static void test_emit_shell_escaping(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    assert_non_null(tmp);
    char cmd[16384];
    const char *out_val = "my \"runs\" $(touch PWNED1) `touch PWNED2` 'q' \\ ;x";
    const char *data_val = "/data/a b'c$HOME";
    const char *th_val = "th 'x' $(touch PWNED3).csv";
    char plan[4096];
    snprintf(plan, sizeof plan,
             "[study]\narchs = cnn_small\ndatasets = fashion-mnist\nseeds = 1\nepochs = 2\nout = %s\n"
             "data.fashion-mnist = %s\n[condition fixed]\nmethod = fixed\n"
             "[condition deba]\nmethod = deba\nthresholds = %s\n"
             "[condition cal]\nmethod = deba\nthresholds = calibrate\n",
             out_val, data_val, th_val);
    free(tu_write(tmp, "s.ini", plan));
    /* the jobs file's own name, with a space, a quote and a command substitution */
    assert_int_equal(profile_in(tmp, "--plan s.ini --emit-jobs \"o u't/j \\$(touch PWNED4).txt\""), 0);
    char dir[2200];
    SP(dir, "%s/o u't", tmp);
    /* a fake deba-train and deba-profile that print their arguments one per line, in [] */
    char bindir[2200];
    SP(bindir, "%s/bin", tmp);
    assert_int_equal(mkdir(bindir, 0777), 0);
    static const char *const fakes[] = {"deba-train", "deba-profile"};
    for (int i = 0; i < 2; i++) {
        char *p = tu_write(bindir, fakes[i], "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done >> \"$ARGS_OUT\"\n");
        assert_non_null(p);
        assert_int_equal(chmod(p, 0755), 0);
        free(p);
    }
    /* each line parses, then runs through bash as the sbatch script runs it */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && while IFS= read -r l; do bash -n -c \"$l\" || exit 1; done < \"o u't/j \\$(touch PWNED4).txt\"",
             tmp);
    assert_int_equal(tu_run(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && export PATH=\"%s/bin:$PATH\" ARGS_OUT='%s/args.txt' && "
             "for i in 1 2 3; do SLURM_ARRAY_TASK_ID=$i bash \"o u't/study.sbatch\" >/dev/null || exit 1; done && "
             "sh \"o u't/profiles.sh\"",
             tmp, tmp, tmp);
    assert_int_equal(tu_run(cmd), 0);
    /* a task with no line: the error message names the jobs file, and runs nothing in it */
    SP(cmd, "cd '%s' && SLURM_ARRAY_TASK_ID=99 bash \"o u't/study.sbatch\" 2>sbatch.err", tmp);
    assert_int_equal(tu_run(cmd), 2);
    assert_true(file_has(tmp, "sbatch.err", "study.sbatch: no line 99 in o u't/j $(touch PWNED4).txt\n"));
    for (int i = 1; i <= 4; i++) {
        char p[2200];
        SP(p, "%s/PWNED%d", tmp, i);
        assert_false(tu_exists(p));
    }
    char want[1024];
    SP(want, "[--out]\n[%s]\n", out_val);
    assert_true(file_has(tmp, "args.txt", want));
    SP(want, "[--data]\n[%s]\n", data_val);
    assert_true(file_has(tmp, "args.txt", want));
    SP(want, "[--thresholds]\n[%s]\n", th_val);
    assert_true(file_has(tmp, "args.txt", want));
    SP(want, "[--thresholds]\n[%s/cnn_small/fashion-mnist/thresholds.csv]\n", out_val);
    assert_true(file_has(tmp, "args.txt", want));
    /* three deba-train runs and one deba-profile: 4 × --out */
    SP(cmd, "%s/args.txt", tmp);
    char *args = tu_slurp(cmd);
    assert_non_null(args);
    int nout = 0;
    for (char *q = args; (q = strstr(q, "[--out]\n")); q++) nout++;
    free(args);
    assert_int_equal(nout, 4);
    /* the comment lines hold the paths but stay comments (bash -n above ran the whole files) */
    SP(cmd, "cd '%s' && bash -n \"o u't/study.sbatch\" && sh -n \"o u't/profiles.sh\"", tmp);
    assert_int_equal(tu_run(cmd), 0);
    assert_true(file_has(dir, "study.sbatch", "in \"'o u'\\''t/j $(touch PWNED4).txt' >&2; exit 2; fi\n"));
    /* a jobs path that cannot be one line of a script is refused, nothing written */
    assert_int_equal(profile_in(tmp, "--plan s.ini --emit-jobs \"$(printf 'x\\ny')/jobs.txt\""), 2);
    assert_true(file_has(tmp, "err.txt", "--emit-jobs: the path holds a control character"));
    SP(cmd, "%s/x\ny", tmp);
    assert_false(tu_exists(cmd));
    tu_rmtree(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapers),
        cmocka_unit_test(test_name_ok),
        cmocka_unit_test(test_gnuplot_injection),
        cmocka_unit_test(test_gnuplot_escapers_in_gnuplot),
        cmocka_unit_test(test_figures_private_dir),
        cmocka_unit_test(test_huge_throughput),
        cmocka_unit_test(test_symlink_loop),
        cmocka_unit_test(test_no_extras),
        cmocka_unit_test(test_paper_names_escaped),
        cmocka_unit_test(test_plan_nul_byte),
        cmocka_unit_test(test_emit_shell_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
