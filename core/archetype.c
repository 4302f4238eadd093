/* The stability profile of a fixed-batch run and the archetype it puts an architecture in
 * (SPEC §5): will adaptive batching help this (arch, dataset)? */
#include "deba/stats.h"

#include <strings.h>

deba_status deba_stability_score(const double *grad_var, const double *norm_var, const double *loss_var,
                                 size_t n, deba_stability *out, deba_err *e)
{
    if (n < 2)
        return deba_err_set(e, DEBA_E_INPUT,
                            "stability score needs at least 2 epochs (got %zu): epoch 1 has no "
                            "previous epoch to vary from", n);
    /* Epoch 1's norm_var and loss_var are 0 by definition, so it is left out everywhere. */
    size_t m = n - 1;
    double mean_gv = deba_mean(grad_var + 1, m);
    out->cv_grad_var = mean_gv == 0.0 ? 0.0 : deba_std_pop(grad_var + 1, m) / mean_gv;
    out->mean_norm_var = deba_mean(norm_var + 1, m);
    out->mean_loss_var = deba_mean(loss_var + 1, m);
    out->S = 1.0 / (1.0 + out->cv_grad_var + out->mean_norm_var + out->mean_loss_var);
    out->epochs_used = (int)m;
    return DEBA_OK;
}

deba_archetype deba_archetype_classify(double s_mean, double s_std)
{
    if (s_mean < DEBA_ARCH_S_UNSTABLE) return DEBA_ARCHETYPE_NATURALLY_UNSTABLE;
    if (s_std >= DEBA_ARCH_SIGMA_DYN) return DEBA_ARCHETYPE_DYNAMICALLY_STABLE;
    if (s_mean >= DEBA_ARCH_S_OVERLY) return DEBA_ARCHETYPE_OVERLY_STABLE;
    return DEBA_ARCHETYPE_MODERATELY_STABLE;
}

static const char *const arch_names[DEBA_ARCHETYPE_COUNT] = {
    "Naturally Unstable",
    "Dynamically Stable",
    "Overly Stable",
    "Moderately Stable",
};

/* Paper §5.3: what each class did under DEBA. */
static const char *const arch_advice[DEBA_ARCHETYPE_COUNT] = {
    "Unreliable candidate: gradients are unstable even at a fixed batch size, so DEBA's outcome "
    "depends on the seed and adaptive batching may hurt accuracy.",
    "Seed-sensitive: DEBA can help, but through its rollbacks rather than steady growth, so profile "
    "more seeds before relying on it.",
    "Already very stable: DEBA may gain from controlled disruption (rollbacks) but expect small "
    "speedups.",
    "The sweet spot: DEBA should grow the batch steadily and bring speedups without losing accuracy.",
};

const char *deba_archetype_name(deba_archetype a)
{
    return (unsigned)a < DEBA_ARCHETYPE_COUNT ? arch_names[a] : "unknown";
}

const char *deba_archetype_advice(deba_archetype a)
{
    return (unsigned)a < DEBA_ARCHETYPE_COUNT ? arch_advice[a] : "";
}

int deba_archetype_parse(const char *s)
{
    for (int a = 0; s && a < DEBA_ARCHETYPE_COUNT; a++)
        if (strcasecmp(s, arch_names[a]) == 0) return a;
    return -1;
}
