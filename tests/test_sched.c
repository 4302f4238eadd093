/* Tests for the DEBA scheduler (core/sched.c) over scripted epochs whose signals are chosen by
 * hand: constant grad_norm and loss give norm_var = loss_var = 0, and grad_var sets confidence. */
#include "tests/testutil.h"

#include <math.h>

#include "deba/sched.h"

#define TOL 1e-12

#define assert_near(a, b, tol) do { \
        double a_ = (a), b_ = (b); \
        if (!(fabs(a_ - b_) <= (tol))) fail_msg("%s = %.17g, expected %.17g", #a, a_, b_); \
    } while (0)

#define assert_decision(r, want) do { \
        deba_decision d_ = (r).decision; \
        if (d_ != (want)) fail_msg("epoch %d: decision %s, expected %s", (r).epoch, \
                                   deba_decision_name(d_), deba_decision_name(want)); \
    } while (0)

static deba_sched *make(int cooldown, int window, void (*tweak)(deba_sched_config *))
{
    deba_sched_config c;
    deba_sched_config_default(&c);
    c.cooldown = cooldown;
    c.window = window;
    if (tweak) tweak(&c);
    deba_err e;
    deba_sched *s = deba_sched_new(&c, &e);
    if (!s) fail_msg("deba_sched_new: %s", e.msg);
    return s;
}

static deba_epoch_result step(deba_sched *s, double gv, double gn, double loss)
{
    deba_epoch_result r;
    deba_sched_step(s, gv, gn, loss, &r);
    return r;
}

/* grad_var = 4^−t: each epoch's value is below a quarter of the previous one, so confidence
 * (against any window of earlier, larger values) is < 0.25 < θ: always "increase". */
static deba_epoch_result step_calm(deba_sched *s)
{
    return step(s, pow(0.25, deba_sched_epoch(s) + 1), 1.0, 1.0);
}

static void test_defaults(void **state)
{
    (void)state;
    deba_sched_config c;
    deba_sched_config_default(&c);
    assert_int_equal(c.method, DEBA_METHOD_DEBA);
    assert_int_equal(c.b0, 64);
    assert_int_equal(c.bmin, 32);
    assert_int_equal(c.bmax, 1024);
    assert_near(c.tau, 0.25, 0);
    assert_near(c.theta, 0.5, 0);
    assert_near(c.lambda, 0.10, 0);
    assert_int_equal(c.window, 15);
    assert_int_equal(c.cooldown, 10);
    assert_near(c.growth, 1.5, 0);
    assert_near(c.rollback, 0.8, 0);
    assert_near(c.kappa, 2.0, 0);
    assert_true(c.rho <= 0);
    deba_err e;
    assert_int_equal(deba_sched_config_check(&c, &e), DEBA_OK);
}

static void expect_bad(void (*tweak)(deba_sched_config *), const char *msg)
{
    deba_sched_config c;
    deba_sched_config_default(&c);
    tweak(&c);
    deba_err e;
    deba_err_clear(&e);
    assert_int_equal(deba_sched_config_check(&c, &e), DEBA_E_INPUT);
    if (!strstr(e.msg, msg)) fail_msg("message \"%s\" lacks \"%s\"", e.msg, msg);
    assert_null(deba_sched_new(&c, &e));
}

static void bad_tau(deba_sched_config *c) { c->tau = -1; }
static void bad_theta(deba_sched_config *c) { c->theta = NAN; }
static void bad_lambda(deba_sched_config *c) { c->lambda = INFINITY; }
static void bad_bmin(deba_sched_config *c) { c->bmin = 0; }
static void bad_b0(deba_sched_config *c) { c->b0 = 16; }
static void bad_bmax(deba_sched_config *c) { c->bmax = 32; }
static void bad_growth(deba_sched_config *c) { c->growth = 1.0; }
static void bad_rollback(deba_sched_config *c) { c->rollback = 1.0; }
static void bad_window(deba_sched_config *c) { c->window = -1; }
static void bad_cooldown(deba_sched_config *c) { c->cooldown = -2; }
static void bad_kappa(deba_sched_config *c) { c->kappa = 0; }

static void test_config_check(void **state)
{
    (void)state;
    expect_bad(bad_tau, "--tau must be > 0 and finite (got -1)");
    expect_bad(bad_theta, "--theta");
    expect_bad(bad_lambda, "--lambda");
    expect_bad(bad_bmin, "--bmin");
    expect_bad(bad_b0, "--batch");
    expect_bad(bad_bmax, "--bmax");
    expect_bad(bad_growth, "--growth");
    expect_bad(bad_rollback, "--rollback");
    expect_bad(bad_window, "--window");
    expect_bad(bad_cooldown, "--cooldown");
    expect_bad(bad_kappa, "--kappa");
}

static void test_names(void **state)
{
    (void)state;
    static const char *dec[] = {"fixed", "warmup", "cooldown", "hold", "increase", "rollback", "oom"};
    for (int d = 0; d < DEBA_DECISION_COUNT; d++) {
        assert_string_equal(deba_decision_name((deba_decision)d), dec[d]);
        assert_int_equal(deba_decision_parse(dec[d]), d);
    }
    assert_int_equal(deba_decision_parse("INCREASE"), DEBA_DEC_INCREASE);
    assert_int_equal(deba_decision_parse("grow"), -1);
    assert_int_equal(deba_decision_parse(NULL), -1);
    assert_string_equal(deba_method_name(DEBA_METHOD_FIXED), "fixed");
    assert_string_equal(deba_method_name(DEBA_METHOD_DEBA), "deba");
    assert_int_equal(deba_method_parse("deba"), DEBA_METHOD_DEBA);
    assert_int_equal(deba_method_parse("fixed"), DEBA_METHOD_FIXED);
    assert_int_equal(deba_method_parse("adaptive"), -1);
}

/* Flat signals: confidence 1 (between θ = 0.5 and ρ = 2), no variation → warmup, then hold. */
static void test_warmup_then_hold(void **state)
{
    (void)state;
    deba_sched *s = make(10, 15, NULL);
    assert_int_equal(deba_sched_batch(s), 64);
    for (int t = 1; t <= 12; t++) {
        deba_epoch_result r = step(s, 1.0, 1.0, 1.0);
        assert_int_equal(r.epoch, t);
        assert_int_equal(r.batch_size, 64);
        assert_int_equal(r.next_batch_size, 64);
        assert_near(r.norm_var, 0, 0);
        assert_near(r.loss_var, 0, 0);
        assert_near(r.confidence, 1.0, 0);
        assert_decision(r, t < 10 ? DEBA_DEC_WARMUP : DEBA_DEC_HOLD);
    }
    assert_int_equal(deba_sched_epoch(s), 12);
    deba_sched_free(s);
}

static void test_first_epoch_signals(void **state)
{
    (void)state;
    deba_sched *s = make(10, 15, NULL);
    deba_epoch_result r = step(s, 3.0, 2.0, 5.0);
    assert_near(r.norm_var, 0, 0);   /* t = 1: defined as 0 */
    assert_near(r.loss_var, 0, 0);
    assert_near(r.confidence, 1.0, 0); /* empty window */
    r = step(s, 6.0, 3.0, 4.0);
    assert_near(r.norm_var, 1.0 / (2.0 + 1e-8), TOL);  /* |3 − 2| / (2 + ε) */
    assert_near(r.loss_var, 1.0 / (5.0 + 1e-8), TOL);  /* |4 − 5| / (5 + ε) */
    assert_near(r.confidence, 6.0 / 3.0, TOL);
    deba_sched_free(s);
}

/* Nine flat epochs, then epoch 10 with the given signals (grad_var relative to 1). */
static deba_epoch_result epoch10(deba_sched *s, double gv, double gn, double loss)
{
    for (int t = 1; t <= 9; t++) step(s, 1.0, 1.0, 1.0);
    return step(s, gv, gn, loss);
}

static void test_increase_needs_all_three(void **state)
{
    (void)state;
    deba_sched *s = make(10, 15, NULL);
    deba_epoch_result r = epoch10(s, 0.4, 1.0, 1.0);  /* confidence 0.4 < 0.5, no variation */
    assert_near(r.confidence, 0.4, TOL);
    assert_decision(r, DEBA_DEC_INCREASE);
    assert_int_equal(r.batch_size, 64);
    assert_int_equal(r.next_batch_size, 96);          /* floor(1.5·64) */
    assert_int_equal(deba_sched_batch(s), 96);
    assert_int_equal(step(s, 1.0, 1.0, 1.0).batch_size, 96);
    deba_sched_free(s);

    s = make(10, 15, NULL);
    r = epoch10(s, 0.4, 1.3, 1.0);                    /* norm_var 0.3 > τ = 0.25 (< κτ = 0.5) */
    assert_decision(r, DEBA_DEC_HOLD);
    assert_int_equal(r.next_batch_size, 64);
    deba_sched_free(s);

    s = make(10, 15, NULL);
    r = epoch10(s, 0.4, 1.0, 1.2);                    /* loss_var 0.2 > λ = 0.1 */
    assert_decision(r, DEBA_DEC_HOLD);
    deba_sched_free(s);

    s = make(10, 15, NULL);
    r = epoch10(s, 0.5, 1.0, 1.0);                    /* confidence exactly θ: not below */
    assert_decision(r, DEBA_DEC_HOLD);
    deba_sched_free(s);
}

static void test_rollback(void **state)
{
    (void)state;
    deba_sched *s = make(10, 15, NULL);
    deba_epoch_result r = epoch10(s, 2.5, 1.0, 1.0);  /* confidence 2.5 > ρ = max(0.5, 2) */
    assert_decision(r, DEBA_DEC_ROLLBACK);
    assert_int_equal(r.next_batch_size, 51);          /* floor(0.8·64) = floor(51.2) */
    deba_sched_free(s);

    s = make(10, 15, NULL);
    r = epoch10(s, 2.0, 1.0, 1.0);                    /* confidence exactly ρ: not above */
    assert_decision(r, DEBA_DEC_HOLD);
    deba_sched_free(s);

    s = make(10, 15, NULL);
    r = epoch10(s, 1.0, 1.6, 1.0);                    /* norm_var 0.6 > κτ = 0.5 */
    assert_near(r.norm_var, 0.6 / (1 + 1e-8), 1e-9);
    assert_decision(r, DEBA_DEC_ROLLBACK);
    assert_int_equal(r.next_batch_size, 51);
    deba_sched_free(s);

    s = make(10, 15, NULL);
    r = epoch10(s, 1.0, 1.4, 1.0);                    /* norm_var 0.4: unstable, not enough */
    assert_decision(r, DEBA_DEC_HOLD);
    deba_sched_free(s);
}

static void rho_three(deba_sched_config *c) { c->rho = 3.0; }
static void theta_four(deba_sched_config *c) { c->theta = 4.0; }

static void test_rho(void **state)
{
    (void)state;
    deba_sched *s = make(10, 15, rho_three);
    assert_decision(epoch10(s, 2.5, 1.0, 1.0), DEBA_DEC_HOLD);     /* 2.5 ≤ ρ = 3 */
    deba_sched_free(s);
    /* θ = 4: ρ = max(4, 1/4) = 4, so confidence 3 is an increase and 4.5 a rollback. */
    s = make(10, 15, theta_four);
    assert_decision(epoch10(s, 3.0, 1.0, 1.0), DEBA_DEC_INCREASE);
    deba_sched_free(s);
    s = make(10, 15, theta_four);
    assert_decision(epoch10(s, 4.5, 1.0, 1.0), DEBA_DEC_ROLLBACK);
    deba_sched_free(s);
}

/* C = 10: increase at 10, cooldown 11..19, increase at 20, cooldown 21..29, increase at 30. */
static void test_cooldown(void **state)
{
    (void)state;
    deba_sched *s = make(10, 15, NULL);
    int b = 64;
    for (int t = 1; t <= 31; t++) {
        deba_epoch_result r = step_calm(s);
        assert_int_equal(r.batch_size, b);
        if (t < 10) assert_decision(r, DEBA_DEC_WARMUP);
        else if (t % 10 == 0) { assert_decision(r, DEBA_DEC_INCREASE); b = b * 3 / 2; }
        else assert_decision(r, DEBA_DEC_COOLDOWN);
        assert_int_equal(r.next_batch_size, b);
    }
    assert_int_equal(deba_sched_batch(s), 216);  /* 64 → 96 → 144 → 216 */
    deba_sched_free(s);
}

/* A rollback starts a cooldown just like an increase. */
static void test_cooldown_after_rollback(void **state)
{
    (void)state;
    deba_sched *s = make(3, 15, NULL);
    step(s, 1, 1, 1);
    step(s, 1, 1, 1);
    assert_decision(step(s, 5, 1, 1), DEBA_DEC_ROLLBACK);   /* t = 3: 5 / 1 > 2 */
    assert_decision(step(s, 50, 1, 1), DEBA_DEC_COOLDOWN);  /* t = 4 < 3 + 3 */
    assert_decision(step(s, 500, 1, 1), DEBA_DEC_COOLDOWN); /* t = 5 */
    deba_epoch_result r = step(s, 5000, 1, 1);              /* t = 6 */
    assert_decision(r, DEBA_DEC_ROLLBACK);
    assert_int_equal(r.batch_size, 51);
    assert_int_equal(r.next_batch_size, 40);                /* floor(0.8·51) = floor(40.8) */
    deba_sched_free(s);
}

static void ladder(int cooldown)
{
    static const int want[] = {96, 144, 216, 324, 486, 729, 1024};
    deba_sched *s = make(cooldown, 15, NULL);
    deba_epoch_result r = step_calm(s);
    assert_decision(r, DEBA_DEC_HOLD);          /* t = 1: empty window, confidence 1 */
    for (int i = 0; i < 7; i++) {
        r = step_calm(s);
        assert_decision(r, DEBA_DEC_INCREASE);
        assert_int_equal(r.next_batch_size, want[i]);
    }
    /* At B_max: increase would not change B → hold, and no cooldown follows. */
    for (int i = 0; i < 3; i++) {
        r = step_calm(s);
        assert_decision(r, DEBA_DEC_HOLD);
        assert_int_equal(r.next_batch_size, 1024);
    }
    deba_sched_free(s);
}

static void test_ladder_cooldown1(void **state) { (void)state; ladder(1); }
static void test_ladder_cooldown0(void **state) { (void)state; ladder(0); }

static void small_start(deba_sched_config *c) { c->b0 = 32; }
static void big_start(deba_sched_config *c) { c->b0 = 1024; }

static void test_bmin_bound(void **state)
{
    (void)state;
    deba_sched *s = make(3, 15, small_start);
    step(s, 1, 1, 1);
    step(s, 1, 1, 1);
    /* Rollback signal at B = B_min: logged hold, and the next epoch is not a cooldown. */
    deba_epoch_result r = step(s, 10, 1, 1);
    assert_decision(r, DEBA_DEC_HOLD);
    assert_int_equal(r.next_batch_size, 32);
    r = step(s, 4, 1, 1);                        /* window {1,1,10}: confidence 4/4 = 1 */
    assert_decision(r, DEBA_DEC_HOLD);
    /* An increase is still possible right away. */
    r = step(s, 0.01, 1, 1);
    assert_decision(r, DEBA_DEC_INCREASE);
    assert_int_equal(r.next_batch_size, 48);
    deba_sched_free(s);
}

static void test_bmax_bound(void **state)
{
    (void)state;
    deba_sched *s = make(3, 15, big_start);
    step(s, 1, 1, 1);
    step(s, 1, 1, 1);
    deba_epoch_result r = step(s, 0.1, 1, 1);
    assert_decision(r, DEBA_DEC_HOLD);
    assert_int_equal(r.next_batch_size, 1024);
    r = step(s, 1, 1, 1);                        /* not cooldown */
    assert_decision(r, DEBA_DEC_HOLD);
    r = step(s, 100, 1, 1);                      /* rollback still possible: floor(819.2) */
    assert_decision(r, DEBA_DEC_ROLLBACK);
    assert_int_equal(r.next_batch_size, 819);
    deba_sched_free(s);
}

/* grad_var 1,1,1,1,4,4 then 5: with W = 2 the window at epoch 7 is {4,4} → 5/4; with W = 0 it is
 * all six, mean 12/6 = 2 → 5/2, which is above ρ = 2. */
static void test_window_w2_vs_full(void **state)
{
    (void)state;
    const double gv[7] = {1, 1, 1, 1, 4, 4, 5};
    /* confidence by hand, epoch by epoch */
    const double w2[7] = {1, 1, 1, 1, 4.0 / 1, 4.0 / 2.5, 5.0 / 4};
    const double w0[7] = {1, 1, 1, 1, 4.0 / 1, 4.0 / (8.0 / 5), 5.0 / 2};
    deba_sched *a = make(1, 2, NULL), *b = make(1, 0, NULL);
    deba_epoch_result ra, rb;
    for (int i = 0; i < 7; i++) {
        ra = step(a, gv[i], 1, 1);
        rb = step(b, gv[i], 1, 1);
        assert_near(ra.confidence, w2[i], TOL);
        assert_near(rb.confidence, w0[i], TOL);
    }
    assert_decision(ra, DEBA_DEC_HOLD);
    assert_decision(rb, DEBA_DEC_ROLLBACK);
    deba_sched_free(a);
    deba_sched_free(b);
}

static void fixed_method(deba_sched_config *c) { c->method = DEBA_METHOD_FIXED; }

static void test_method_fixed(void **state)
{
    (void)state;
    deba_sched *s = make(1, 15, fixed_method);
    deba_epoch_result r = step(s, 1.0, 2.0, 4.0);
    assert_decision(r, DEBA_DEC_FIXED);
    r = step(s, 0.01, 2.0, 4.0);                  /* would be an increase */
    assert_decision(r, DEBA_DEC_FIXED);
    assert_near(r.confidence, 0.01, TOL);
    r = step(s, 10.0, 3.0, 3.0);                  /* would be a rollback */
    assert_decision(r, DEBA_DEC_FIXED);
    assert_near(r.norm_var, 1.0 / (2 + 1e-8), TOL);
    assert_near(r.loss_var, 1.0 / (4 + 1e-8), TOL);
    assert_near(r.confidence, 10.0 / ((1.0 + 0.01) / 2), TOL);
    assert_int_equal(r.next_batch_size, 64);
    for (int t = 0; t < 20; t++) assert_int_equal(step_calm(s).next_batch_size, 64);
    assert_int_equal(deba_sched_batch(s), 64);
    deba_sched_free(s);
}

static void test_oom(void **state)
{
    (void)state;
    deba_sched *s = make(10, 15, NULL);
    for (int t = 1; t <= 9; t++) step_calm(s);
    deba_epoch_result r = step_calm(s);           /* t = 10: 64 → 96 */
    assert_decision(r, DEBA_DEC_INCREASE);
    assert_int_equal(deba_sched_batch(s), 96);
    /* Epoch 11 cannot allocate 96: back to 64, which becomes B_max. */
    deba_sched_oom(s, 64);
    assert_int_equal(deba_sched_batch(s), 64);
    assert_int_equal(deba_sched_bmax(s), 64);
    /* Epoch 11 is the adaptation epoch: cooldown through epoch 20. */
    for (int t = 11; t <= 20; t++) {
        r = step_calm(s);
        assert_int_equal(r.batch_size, 64);
        assert_decision(r, DEBA_DEC_COOLDOWN);
    }
    r = step_calm(s);                             /* t = 21: increase capped at B_max */
    assert_decision(r, DEBA_DEC_HOLD);
    assert_int_equal(r.next_batch_size, 64);
    r = step(s, 1e6, 1, 1);                       /* rollbacks still work */
    assert_decision(r, DEBA_DEC_ROLLBACK);
    assert_int_equal(r.next_batch_size, 51);
    assert_int_equal(deba_sched_bmax(s), 64);
    deba_sched_free(s);
}

/* Field by field (the struct has padding); doubles bit for bit. */
static void assert_same(const deba_epoch_result *a, const deba_epoch_result *b)
{
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->batch_size, b->batch_size);
    assert_int_equal(a->next_batch_size, b->next_batch_size);
    assert_int_equal(a->decision, b->decision);
    const double x[6] = {a->grad_var, a->grad_norm, a->train_loss, a->norm_var, a->loss_var, a->confidence};
    const double y[6] = {b->grad_var, b->grad_norm, b->train_loss, b->norm_var, b->loss_var, b->confidence};
    assert_memory_equal(x, y, sizeof x);
}

/* A deterministic but irregular sequence of signals that exercises every decision. */
static void wobble(int t, double *gv, double *gn, double *loss)
{
    uint32_t x = (uint32_t)t * 2654435761u;
    x ^= x >> 13;
    *gv = 0.05 + (double)(x % 1000) / 400.0;
    *gn = 1.0 + (double)((x >> 10) % 100) / 150.0;
    *loss = 2.0 / (1.0 + 0.05 * t) + (double)((x >> 20) % 10) / 100.0;
}

static void save_load_continue(int window)
{
    deba_sched *a = make(2, window, NULL);
    double gv, gn, loss;
    int t = 1;
    for (; t <= 17; t++) {
        wobble(t, &gv, &gn, &loss);
        step(a, gv, gn, loss);
    }
    FILE *f = tmpfile();
    assert_non_null(f);
    deba_err e;
    assert_int_equal(deba_sched_save(a, f, &e), DEBA_OK);
    rewind(f);
    deba_sched *b = deba_sched_load(f, &e);
    fclose(f);
    if (!b) fail_msg("load: %s", e.msg);
    assert_int_equal(deba_sched_epoch(b), 17);
    assert_int_equal(deba_sched_batch(b), deba_sched_batch(a));
    assert_int_equal(deba_sched_config_of(b)->window, window);
    int seen[DEBA_DECISION_COUNT] = {0};
    for (; t <= 80; t++) {
        wobble(t, &gv, &gn, &loss);
        deba_epoch_result ra = step(a, gv, gn, loss), rb = step(b, gv, gn, loss);
        assert_same(&ra, &rb);
        seen[ra.decision]++;
    }
    assert_true(seen[DEBA_DEC_INCREASE] > 0);
    assert_true(seen[DEBA_DEC_ROLLBACK] > 0);
    assert_true(seen[DEBA_DEC_COOLDOWN] > 0);
    deba_sched_free(a);
    deba_sched_free(b);
}

static void test_save_load_w15(void **state) { (void)state; save_load_continue(15); }
static void test_save_load_full_history(void **state) { (void)state; save_load_continue(0); }

static void test_save_load_after_oom(void **state)
{
    (void)state;
    deba_sched *a = make(10, 15, NULL);
    for (int t = 1; t <= 10; t++) step_calm(a);
    deba_sched_oom(a, 64);
    FILE *f = tmpfile();
    assert_non_null(f);
    deba_err e;
    assert_int_equal(deba_sched_save(a, f, &e), DEBA_OK);
    rewind(f);
    deba_sched *b = deba_sched_load(f, &e);
    fclose(f);
    if (!b) fail_msg("load: %s", e.msg);
    assert_int_equal(deba_sched_bmax(b), 64);
    for (int t = 11; t <= 25; t++) {
        deba_epoch_result ra = step_calm(a), rb = step_calm(b);
        assert_same(&ra, &rb);
    }
    deba_sched_free(a);
    deba_sched_free(b);
}

/* Saves a scheduler with some history and returns the blob. */
static unsigned char *saved_blob(size_t *n)
{
    deba_sched *s = make(3, 4, NULL);
    double gv, gn, loss;
    for (int t = 1; t <= 9; t++) {
        wobble(t, &gv, &gn, &loss);
        step(s, gv, gn, loss);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    deba_err e;
    assert_int_equal(deba_sched_save(s, f, &e), DEBA_OK);
    fclose(f);
    deba_sched_free(s);
    *n = len;
    return (unsigned char *)buf;
}

static deba_sched *load_bytes(const unsigned char *p, size_t n, deba_err *e)
{
    FILE *f = n ? fmemopen((void *)p, n, "rb") : tmpfile();
    assert_non_null(f);
    deba_sched *s = deba_sched_load(f, e);
    fclose(f);
    return s;
}

static void test_load_truncated(void **state)
{
    (void)state;
    size_t n;
    unsigned char *blob = saved_blob(&n);
    deba_err e;
    deba_sched *s = load_bytes(blob, n, &e);
    assert_non_null(s);
    deba_sched_free(s);
    for (size_t len = 0; len < n; len++) {
        deba_err_clear(&e);
        s = load_bytes(blob, len, &e);
        if (s) fail_msg("a blob cut to %zu of %zu bytes loaded", len, n);
        assert_int_equal(e.status, DEBA_E_INPUT);
        assert_non_null(strstr(e.msg, "scheduler state"));
    }
    free(blob);
}

static void test_load_corrupt(void **state)
{
    (void)state;
    size_t n;
    unsigned char *blob = saved_blob(&n);
    deba_err e;
    for (size_t i = 0; i < n; i++) {
        blob[i] ^= 0x5a;
        deba_err_clear(&e);
        deba_sched *s = load_bytes(blob, n, &e);
        if (s) fail_msg("a blob with byte %zu of %zu changed loaded", i, n);
        assert_int_equal(e.status, DEBA_E_INPUT);
        blob[i] ^= 0x5a;
    }
    const char foreign[] = "epoch,batch_size,steps\n1,64,782\n";
    assert_null(load_bytes((const unsigned char *)foreign, sizeof foreign - 1, &e));
    assert_non_null(strstr(e.msg, "magic"));
    free(blob);
}

static void test_aggressiveness(void **state)
{
    (void)state;
    const deba_decision d[] = {
        DEBA_DEC_WARMUP, DEBA_DEC_WARMUP, DEBA_DEC_HOLD, DEBA_DEC_INCREASE, DEBA_DEC_COOLDOWN,
        DEBA_DEC_INCREASE, DEBA_DEC_ROLLBACK, DEBA_DEC_OOM, DEBA_DEC_HOLD,
    };
    /* possible: hold, increase, increase, rollback, hold = 5; (2 − 1) / 5 */
    assert_near(deba_aggressiveness(d, 9), 0.2, TOL);
    const deba_decision rb[] = {DEBA_DEC_ROLLBACK, DEBA_DEC_COOLDOWN, DEBA_DEC_ROLLBACK, DEBA_DEC_HOLD};
    assert_near(deba_aggressiveness(rb, 4), -2.0 / 3.0, TOL);
    const deba_decision none[] = {DEBA_DEC_WARMUP, DEBA_DEC_FIXED};
    assert_near(deba_aggressiveness(none, 2), 0.0, 0);  /* max(1, 0) denominator */
    assert_near(deba_aggressiveness(NULL, 0), 0.0, 0);
}

static void test_convergence_stability(void **state)
{
    (void)state;
    const double loss[4] = {1, 2, 3, 4};
    /* mean 2.5, squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, population: 5/4 */
    assert_near(deba_convergence_stability(loss, 4), sqrt(1.25), TOL);
    assert_near(deba_convergence_stability(loss, 1), 0.0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_config_check),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_warmup_then_hold),
        cmocka_unit_test(test_first_epoch_signals),
        cmocka_unit_test(test_increase_needs_all_three),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_rho),
        cmocka_unit_test(test_cooldown),
        cmocka_unit_test(test_cooldown_after_rollback),
        cmocka_unit_test(test_ladder_cooldown1),
        cmocka_unit_test(test_ladder_cooldown0),
        cmocka_unit_test(test_bmin_bound),
        cmocka_unit_test(test_bmax_bound),
        cmocka_unit_test(test_window_w2_vs_full),
        cmocka_unit_test(test_method_fixed),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_save_load_w15),
        cmocka_unit_test(test_save_load_full_history),
        cmocka_unit_test(test_save_load_after_oom),
        cmocka_unit_test(test_load_truncated),
        cmocka_unit_test(test_load_corrupt),
        cmocka_unit_test(test_aggressiveness),
        cmocka_unit_test(test_convergence_stability),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
