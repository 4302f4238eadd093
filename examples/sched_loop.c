/* The DEBA scheduler driven from a hand-written training loop, linked against the shared libdeba
 * as an outside program would (cc sched_loop.c $(pkg-config --cflags --libs deba)). The gradients
 * are synthetic: each epoch's steps share one gradient whose variance and norm the loop designs,
 * so the batch-size sequence can be worked out by hand (tests/test_libdeba.c checks it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "deba/deba.h"

#define D 4          /* gradient entries */
#define SAMPLES 1000 /* training samples per epoch */

/* Entries {m+s, m-s, m+s, m-s}·k: Σg = 4mk, Σg² = 4(m²+s²)k², so var = (sk)² and norm = 2k·sqrt(m²+s²). */
static void make_grad(float *g, double m, double s, double k)
{
    for (int i = 0; i < D; i++) g[i] = (float)(k * (i % 2 ? m - s : m + s));
}

int main(void)
{
    /* Per epoch: s (the spread; m = sqrt(1 - s²) keeps the norm at 2), the scale k, the loss. */
    static const struct { double s, k, loss; } plan[] = {
        {1.0, 1, 1.00},   /* var 1                                       -> warmup (t < C = 2) */
        {1.0, 1, 0.99},   /* var 1, confidence 1                         -> hold */
        {0.6, 1, 0.98},   /* var .36, confidence .36 < θ, stable         -> increase 64 -> 96 */
        {0.6, 1, 0.97},   /*                                             -> cooldown */
        {0.4, 1, 0.96},   /* var .16, confidence .16/.68 = .24 < θ       -> increase 96 -> 144 */
        {0.4, 1, 0.95},   /*                                             -> cooldown */
        {1.0, 2, 0.94},   /* norm 2 -> 4: norm_var 1 > κτ = .5           -> rollback 144 -> 115 */
        {1.0, 1, 0.93},   /*                                             -> cooldown */
    };
    deba_sched_config cfg;
    deba_sched_config_default(&cfg);   /* B0 64, τ .25, θ .5, λ .1, α 1.5, β .8 */
    cfg.cooldown = 2;
    deba_err e;
    deba_sched *s = deba_sched_new(&cfg, &e);
    if (!s) {
        fprintf(stderr, "sched_loop: %s\n", e.msg);
        return 1;
    }
    float g[D];
    for (size_t t = 0; t < sizeof plan / sizeof *plan; t++) {
        int B = deba_sched_batch(s);
        deba_epochacc acc;
        deba_epochacc_reset(&acc);
        make_grad(g, sqrt(1.0 - plan[t].s * plan[t].s), plan[t].s, plan[t].k);
        for (int start = 0; start < SAMPLES; start += B) {   /* the training steps of the epoch */
            int nb = SAMPLES - start < B ? SAMPLES - start : B;
            double sum, sumsq;
            deba_grad_moments(g, D, &sum, &sumsq);            /* after backward(), before the update */
            if (deba_epochacc_add(&acc, sum, sumsq, D, plan[t].loss * nb, nb, 0, &e)) {
                fprintf(stderr, "sched_loop: %s\n", e.msg);
                deba_sched_free(s);
                return 1;
            }
        }
        deba_trace_row row;
        if (deba_epochacc_fill(&acc, &row, &e)) {
            fprintf(stderr, "sched_loop: %s\n", e.msg);
            deba_sched_free(s);
            return 1;
        }
        deba_epoch_result r;
        deba_sched_step(s, row.grad_var, row.grad_norm, row.train_loss, &r);
        printf("epoch %d batch %d steps %d decision %s next %d\n", r.epoch, r.batch_size, row.steps,
               deba_decision_name(r.decision), r.next_batch_size);
    }
    deba_sched_free(s);
    return 0;
}
