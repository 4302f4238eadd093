/* Synthetic run directories (meta.csv + trace.csv) with plausible curves, for the report's tests
 * and benchmark: fixed runs at B = 64, DEBA runs whose batch grows 1.5× every 10 epochs. */
#include "analyze/analyze.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static double urand(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static deba_status synth_one(const char *root, int ai, int di, int deba, int seed, int epochs,
                             unsigned base, deba_trace *t, deba_err *e)
{
    char arch[32], data[32], dir[4096], path[4200];
    snprintf(arch, sizeof arch, "arch%d", ai);
    snprintf(data, sizeof data, "data%d", di);
    deba_status s;
    if ((s = deba_run_dir(dir, sizeof dir, root, arch, data, deba ? "deba" : "fixed", seed, e)) ||
        (s = deba_mkdirs(dir, e)))
        return s;
    unsigned long long rng = 0x9E3779B97F4A7C15ull ^ ((unsigned long long)base << 32) ^
                             (unsigned long long)(ai * 7919 + di * 104729 + deba * 15485863 + seed * 2 + 1);
    t->n = 0;
    int B = 64;
    double total = 0, best = 0, prev_norm = 0, prev_loss = 0;
    for (int ep = 1; ep <= epochs; ep++) {
        deba_trace_row r;
        memset(&r, 0, sizeof r);
        r.epoch = ep;
        r.batch_size = B;
        r.steps = (50000 + B - 1) / B;
        r.lr = 0.01;
        double prog = (double)ep / epochs;
        r.train_loss = 2.3 * exp(-3.0 * prog) + 0.05 + 0.02 * urand(&rng);
        r.train_acc = 100.0 * (1.0 - r.train_loss / 2.4);
        r.test_loss = r.train_loss * 1.2;
        r.test_acc = 60.0 + 25.0 * (1.0 - exp(-4.0 * prog)) + ai + (deba ? 1.5 : 0.0) + 2.0 * urand(&rng);
        r.grad_var = 1e-4 * (1.0 + 0.3 * urand(&rng)) * 64.0 / B;
        r.grad_norm = 1.0 + 0.2 * urand(&rng);
        r.norm_var = ep == 1 ? 0.0 : fabs(r.grad_norm - prev_norm) / (prev_norm + DEBA_EPS);
        r.loss_var = ep == 1 ? 0.0 : fabs(r.train_loss - prev_loss) / (prev_loss + DEBA_EPS);
        r.confidence = 1.0;
        if (!deba) r.decision = DEBA_DEC_FIXED;
        else if (ep < 10) r.decision = DEBA_DEC_WARMUP;
        else if (ep % 10 == 0 && B < 1024) r.decision = DEBA_DEC_INCREASE;
        else r.decision = ep % 10 < 10 && ep % 10 != 0 ? DEBA_DEC_COOLDOWN : DEBA_DEC_HOLD;
        r.epoch_time_s = 10.0 * pow(64.0 / B, 0.6) * (1.0 + 0.05 * urand(&rng));
        r.compute_time_s = 0.8 * r.epoch_time_s;
        r.data_time_s = 0.15 * r.epoch_time_s;
        r.signal_time_s = 0.001 * r.epoch_time_s;
        r.eval_time_s = 1.0;
        r.samples_per_s = 50000.0 / r.epoch_time_s;
        total += r.epoch_time_s;
        if (r.test_acc > best) best = r.test_acc;
        prev_norm = r.grad_norm;
        prev_loss = r.train_loss;
        if ((s = deba_trace_push(t, &r, e))) return s;
        if (r.decision == DEBA_DEC_INCREASE) {
            B = (int)floor(1.5 * B);
            if (B > 1024) B = 1024;
        }
    }
    /* plain stdio rather than the atomic writers: a benchmark fixture needs no fsync per file */
    snprintf(path, sizeof path, "%s/trace.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f) return deba_err_set(e, DEBA_E_IO, "cannot write %s", path);
    fprintf(f, "%s\n", DEBA_TRACE_HEADER);
    for (size_t i = 0; i < t->n; i++) {
        const deba_trace_row *r = &t->rows[i];
        fprintf(f, "%d,%d,%d,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%s,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g\n",
                r->epoch, r->batch_size, r->steps, r->lr, r->train_loss, r->train_acc, r->test_loss, r->test_acc,
                r->grad_var, r->grad_norm, r->norm_var, r->loss_var, r->confidence, deba_decision_name(r->decision),
                r->epoch_time_s, r->compute_time_s, r->data_time_s, r->signal_time_s, r->eval_time_s, r->samples_per_s);
    }
    if (fclose(f) != 0) return deba_err_set(e, DEBA_E_IO, "cannot write %s", path);
    snprintf(path, sizeof path, "%s/meta.csv", dir);
    if (!(f = fopen(path, "w"))) return deba_err_set(e, DEBA_E_IO, "cannot write %s", path);
    fprintf(f, "key,value\nformat_version,%d\narch,%s\ndataset,%s\nlabel,%s\nmethod,%s\nseed,%d\nepochs,%d\n"
               "tau,%g\ntheta,0.5\nlambda,0.1\nstatus,completed\nfinal_test_acc,%.17g\nbest_test_acc,%.17g\n"
               "total_train_time_s,%.17g\n",
            DEBA_FORMAT_VERSION, arch, data, deba ? "deba" : "fixed", deba ? "deba" : "fixed", seed, epochs,
            0.25 + 0.05 * ai, t->rows[t->n - 1].test_acc, best, total);
    if (fclose(f) != 0) return deba_err_set(e, DEBA_E_IO, "cannot write %s", path);
    return s;
}

deba_status deba_synth_runs(const char *root, int narch, int ndata, int nseeds, int epochs, unsigned seed,
                            deba_err *e)
{
    if (epochs < 1 || narch < 1 || ndata < 1 || nseeds < 1)
        return deba_err_set(e, DEBA_E_INPUT, "synthetic runs need at least one of everything");
    deba_trace t = {0};
    deba_status s = DEBA_OK;
    for (int a = 0; a < narch && !s; a++)
        for (int d = 0; d < ndata && !s; d++)
            for (int m = 0; m < 2 && !s; m++)
                for (int k = 0; k < nseeds && !s; k++) s = synth_one(root, a, d, m, k + 1, epochs, seed, &t, e);
    deba_trace_free(&t);
    return s;
}
