/* The CPU backend's own vectorised math (trainer/backend/cpu/cpu_kernels.h): its exp, GELU
 * (cpu_basic.c), the attention's softmax rows (attention.c) and LayerNorm's rows (ops_extra.c),
 * against the exact functions in double precision, forward and backward, over the range where
 * it matters, the clamps, special values and the vector loops' tails. */
#include <float.h>
#include <math.h>
#include "trainer/backend/cpu/cpu_kernels.h"
#include "trainer/backend/cpu/ops_extra.h"
#include "trainer/layers.h"
#include "tests/oneop.h"

/* Within 2 ulp (relative 2^-22) of e^v on [-87, 0], the clamp and NaN as documented. */
static void test_exp_against_double(void **state)
{
    (void)state;
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        const float v = -87.f * (float)i / 200000.f;
        const double want = exp((double)v), rel = fabs(tr_cpu_exp_nonpos(v) - want) / want;
        if (!(rel <= 2.0 * FLT_EPSILON / 2))
            fail_msg("exp(%.9g) = %.9g, want %.9g (relative error %.3g)", v, tr_cpu_exp_nonpos(v), want, rel);
        worst = rel > worst ? rel : worst;
    }
    print_message("exp: worst relative error %.3g ulp\n", worst / (FLT_EPSILON / 2));
    assert_float_equal(tr_cpu_exp_nonpos(0.f), 1.f, 0.f);
    assert_float_equal(tr_cpu_exp_nonpos(-0.f), 1.f, 0.f);
    assert_float_equal(tr_cpu_exp_nonpos(-1000.f), expf(-87.f), expf(-87.f) * 1e-6);
    assert_float_equal(tr_cpu_exp_nonpos(-INFINITY), expf(-87.f), expf(-87.f) * 1e-6);
    assert_true(isnan(tr_cpu_exp_nonpos(NAN)));
}

/* Rows of 3 (scalar tail only), 65 (vit_tiny's tokens: vector body and tail) and 1; the
 * backward dp = p (dp - <dp, p>) from the same p. Scores up to +-30 apart, so some
 * exponentials underflow towards 0. */
static void test_softmax_rows_against_double(void **state)
{
    (void)state;
    static const int lens[] = {3, 65, 1, 17};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        const int t = lens[k];
        float p[65], dp[65];
        double want[65], dwant[65], m = -INFINITY, sum = 0, dot = 0;
        for (int j = 0; j < t; j++) {
            p[j] = 30.f * sinf(0.7f * (float)j + (float)k);
            dp[j] = cosf(1.3f * (float)j);
            m = p[j] > m ? p[j] : m;
        }
        for (int j = 0; j < t; j++) sum += want[j] = exp(p[j] - m);
        for (int j = 0; j < t; j++) dot += dp[j] * (want[j] /= sum);
        for (int j = 0; j < t; j++) dwant[j] = want[j] * (dp[j] - dot);
        /* p[j] - m is rounded to float before the exponential, as in any float softmax:
         * a relative error up to |p[j] - m| 2^-24 on top of the exp's own */
        float rel[65];
        for (int j = 0; j < t; j++) rel[j] = 4e-7f + 6e-8f * fabsf(p[j] - (float)m);
        tr_cpu_softmax_row(p, t);
        tr_cpu_softmax_row_backward(dp, p, t);
        for (int j = 0; j < t; j++) {
            if (!(fabs(p[j] - want[j]) <= rel[j] * want[j] + 1e-30))
                fail_msg("softmax of %d: p[%d] = %.9g, want %.9g", t, j, p[j], want[j]);
            if (!(fabs(dp[j] - dwant[j]) <= 3 * (rel[j] + 1e-6) * want[j] + 1e-30))   /* |dp - <dp, p>| <= 2 */
                fail_msg("softmax backward of %d: dp[%d] = %.9g, want %.9g", t, j, dp[j], dwant[j]);
        }
    }
}

/* GELU(x) = x Phi(x) and its derivative Phi(x) + x phi(x), in double. */
static double gelu_ref(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
static double dgelu_ref(double x) { return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI); }

/* 4001 points on [-20, 20] (an odd count: the vector loops end in a scalar tail), the clamp at
 * |x| = 13 among them; forward and backward errors bounded by what A&S 7.1.26 guarantees
 * (|erf error| <= 1.5e-7, so |Phi error| <= 7.5e-8) plus float rounding: 2e-7 (1 + |x|) forward,
 * 3e-7 backward (dy up to 1). */
static void test_gelu_against_double(void **state)
{
    (void)state;
    enum { N = 4001 };
    net o = net_new(1, 1, N);
    const int y = tr_activation(o.g, "gelu", o.g->input, TR_ACT_GELU);
    net_ready(&o, y, 1);
    static float x[N];
    for (int i = 0; i < N; i++) x[i] = -20.f + 40.f * (float)i / (N - 1);
    tr_graph_set_batch(o.g, x, NULL, 1);
    tr_graph_forward(o.g, 1);
    tr_graph_zero_act_grads(o.g);
    float *dy = o.g->tensors[y].grad;
    for (int i = 0; i < N; i++) dy[i] = i % 3 ? 1.f : -0.5f;
    tr_graph_backward(o.g, 1);
    const float *out = o.g->tensors[y].data, *dx = o.g->tensors[o.g->input].grad;
    double worst_f = 0, worst_b = 0;
    for (int i = 0; i < N; i++) {
        const double xi = x[i], ef = fabs(out[i] - gelu_ref(xi)) / (1e-7 * (1 + fabs(xi)));
        const double eb = fabs(dx[i] - dy[i] * dgelu_ref(xi)) / 1e-7;
        if (ef > 2.0 || eb > 3.0)
            fail_msg("gelu at x = %.7g: y %.9g (want %.9g), dx %.9g (want %.9g)", xi, out[i], gelu_ref(xi), dx[i],
                     dy[i] * dgelu_ref(xi));
        worst_f = ef > worst_f ? ef : worst_f;
        worst_b = eb > worst_b ? eb : worst_b;
    }
    print_message("gelu: worst forward error %.3g x 1e-7 (1 + |x|), backward %.3g x 1e-7\n", worst_f, worst_b);
    net_free(&o);
}

/* The ends: +-inf and huge values take the clamp (Phi = 1 or ~0, density 0), NaN stays NaN,
 * and 0 gives 0 with slope 1/2. */
static void test_gelu_special_values(void **state)
{
    (void)state;
    enum { N = 7 };
    const float x[N] = {INFINITY, 1e30f, -1e30f, 0.f, NAN, 13.f, -13.f};
    net o = net_new(1, 1, N);
    const int y = tr_activation(o.g, "gelu", o.g->input, TR_ACT_GELU);
    net_ready(&o, y, 1);
    tr_graph_set_batch(o.g, x, NULL, 1);
    tr_graph_forward(o.g, 1);
    tr_graph_zero_act_grads(o.g);
    float *dy = o.g->tensors[y].grad;
    for (int i = 0; i < N; i++) dy[i] = 1.f;
    tr_graph_backward(o.g, 1);
    const float *out = o.g->tensors[y].data, *dx = o.g->tensors[o.g->input].grad;
    assert_true(isinf(out[0]) && out[0] > 0);
    assert_float_equal(out[1], 1e30f, 0.f);
    assert_true(fabsf(out[2]) <= 1e30f * 1e-37f);
    assert_float_equal(out[3], 0.f, 0.f);
    assert_true(isnan(out[4]) && isnan(dx[4]));
    assert_float_equal(out[5], 13.f, 1e-6);
    assert_true(fabsf(out[6]) < 1e-36f);
    assert_float_equal(dx[0], 1.f, 0.f);
    assert_float_equal(dx[1], 1.f, 0.f);
    assert_true(fabsf(dx[2]) <= 1e30f * 1e-37f);
    assert_float_equal(dx[3], 0.5f, 1e-7);
    assert_float_equal(dx[5], 1.f, 1e-7);
    assert_true(fabsf(dx[6]) < 1e-36f);
    net_free(&o);
}

/* Rows of 192 (vit_tiny's width: vector body) and 7 (tail only), a large mean beside a small
 * spread; forward, dx (accumulated onto 1), dweight and dbias against double. */
static void test_layernorm_rows_against_double(void **state)
{
    (void)state;
    static const int widths[] = {192, 7};
    for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++) {
        enum { ROWS = 5, DMAX = 192 };
        const int d = widths[k];
        const float eps = 1e-6f;
        static float x[ROWS * DMAX], y[ROWS * DMAX], dy[ROWS * DMAX], dx[ROWS * DMAX], w[DMAX], b[DMAX],
            stat[2 * ROWS], dw[DMAX], db[DMAX];
        static double wdw[DMAX], wdb[DMAX];
        for (int i = 0; i < d; i++) {
            w[i] = 1.f + 0.01f * (float)i, b[i] = 0.1f * cosf((float)i);
            dw[i] = db[i] = 0.f, wdw[i] = wdb[i] = 0;
        }
        for (int i = 0; i < ROWS * d; i++) {
            x[i] = 100.f + 3.f * sinf(0.37f * (float)i);
            dy[i] = cosf(0.91f * (float)i), dx[i] = 1.f;
        }
        tr_layernorm_forward(y, stat, x, w, b, ROWS, d, eps);
        tr_layernorm_backward(dx, dw, db, dy, x, w, stat, ROWS, d);
        for (int r = 0; r < ROWS; r++) {
            const float *xr = x + r * d, *dyr = dy + r * d;
            double m = 0, v = 0, s1 = 0, s2 = 0, nrm[DMAX];
            for (int i = 0; i < d; i++) m += xr[i];
            m /= d;
            for (int i = 0; i < d; i++) v += (xr[i] - m) * (xr[i] - m);
            const double rs = 1 / sqrt(v / d + eps);
            for (int i = 0; i < d; i++) {
                nrm[i] = (xr[i] - m) * rs;
                s1 += w[i] * dyr[i], s2 += w[i] * dyr[i] * nrm[i];
                wdw[i] += dyr[i] * nrm[i], wdb[i] += dyr[i];
            }
            for (int i = 0; i < d; i++) {
                const double want = nrm[i] * w[i] + b[i], dwant = 1 + rs * (w[i] * dyr[i] - s1 / d - nrm[i] * s2 / d);
                if (!(fabs(y[r * d + i] - want) <= 2e-5))
                    fail_msg("layernorm %d: y[%d][%d] = %.9g, want %.9g", d, r, i, y[r * d + i], want);
                if (!(fabs(dx[r * d + i] - dwant) <= 2e-5 * rs))
                    fail_msg("layernorm %d: dx[%d][%d] = %.9g, want %.9g", d, r, i, dx[r * d + i], dwant);
            }
        }
        for (int i = 0; i < d; i++)
            if (!(fabs(dw[i] - wdw[i]) <= 1e-4 && fabs(db[i] - wdb[i]) <= 1e-5))
                fail_msg("layernorm %d: dweight[%d] = %.9g (want %.9g), dbias %.9g (want %.9g)", d, i, dw[i], wdw[i],
                         db[i], wdb[i]);
    }
}

int main(void)
{
    (void)param_of;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp_against_double),
        cmocka_unit_test(test_softmax_rows_against_double),
        cmocka_unit_test(test_layernorm_rows_against_double),
        cmocka_unit_test(test_gelu_against_double),
        cmocka_unit_test(test_gelu_special_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
