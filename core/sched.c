/* The DEBA batch-size scheduler (SPEC §3), its checkpoint format, and the DEBA-run metrics of
 * SPEC §5. One deba_sched_step per epoch; nothing allocates after deba_sched_new. */
#include "deba/sched.h"
#include "deba/stats.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct deba_sched {
    deba_sched_config cfg;
    int batch;          /* B for the coming epoch */
    int bmax;           /* cfg.bmax, lowered by an OOM */
    int epoch;          /* epochs stepped so far */
    int last_adapt;     /* t_last; the run start counts as an adaptation at epoch 0 */
    int adapted;        /* 1 once an increase, rollback or OOM happened: cooldown, not warmup */
    double prev_norm, prev_loss;
    /* grad_var history. W = 0 only ever needs the mean of all of it, kept as a running sum in
     * epoch order (the same additions deba_window_mean would do); W > 0 keeps the last W values,
     * oldest first. Either way step never allocates. */
    double hist_sum;
    double *win;        /* (W) */
    int win_len;
};

/* ---- names ---- */

static const char *const method_names[DEBA_METHOD_COUNT] = {"fixed", "deba"};
static const char *const decision_names[DEBA_DECISION_COUNT] = {
    "fixed", "warmup", "cooldown", "hold", "increase", "rollback", "oom",
};

static int parse_name(const char *s, const char *const *names, int n)
{
    for (int i = 0; s && i < n; i++)
        if (strcasecmp(s, names[i]) == 0) return i;
    return -1;
}

const char *deba_method_name(deba_method m)
{
    return (unsigned)m < DEBA_METHOD_COUNT ? method_names[m] : "unknown";
}

int deba_method_parse(const char *s)
{
    return parse_name(s, method_names, DEBA_METHOD_COUNT);
}

const char *deba_decision_name(deba_decision d)
{
    return (unsigned)d < DEBA_DECISION_COUNT ? decision_names[d] : "unknown";
}

int deba_decision_parse(const char *s)
{
    return parse_name(s, decision_names, DEBA_DECISION_COUNT);
}

/* ---- configuration ---- */

void deba_sched_config_default(deba_sched_config *c)
{
    *c = (deba_sched_config){
        .method = DEBA_METHOD_DEBA,
        .b0 = 64, .bmin = 32, .bmax = 1024,
        .tau = 0.25, .theta = 0.5, .lambda = 0.10,
        .window = 15, .cooldown = 10,
        .growth = 1.5, .rollback = 0.8,
        .rho = 0.0, .kappa = 2.0,
    };
}

static int positive(double x)
{
    return isfinite(x) && x > 0.0;
}

deba_status deba_sched_config_check(const deba_sched_config *c, deba_err *e)
{
    if ((unsigned)c->method >= DEBA_METHOD_COUNT)
        return deba_err_set(e, DEBA_E_INPUT, "--method must be fixed or deba (got %d)", (int)c->method);
    if (c->bmin < 1)
        return deba_err_set(e, DEBA_E_INPUT, "--bmin must be >= 1 (got %d)", c->bmin);
    if (c->b0 < c->bmin)
        return deba_err_set(e, DEBA_E_INPUT, "--batch must be >= --bmin %d (got %d)", c->bmin, c->b0);
    if (c->bmax < c->b0)
        return deba_err_set(e, DEBA_E_INPUT, "--bmax must be >= --batch %d (got %d)", c->b0, c->bmax);
    if (!positive(c->tau))
        return deba_err_set(e, DEBA_E_INPUT, "--tau must be > 0 and finite (got %g)", c->tau);
    if (!positive(c->theta))
        return deba_err_set(e, DEBA_E_INPUT, "--theta must be > 0 and finite (got %g)", c->theta);
    if (!positive(c->lambda))
        return deba_err_set(e, DEBA_E_INPUT, "--lambda must be > 0 and finite (got %g)", c->lambda);
    if (c->window < 0)
        return deba_err_set(e, DEBA_E_INPUT, "--window must be >= 0, 0 for full history (got %d)", c->window);
    if (c->cooldown < 0)
        return deba_err_set(e, DEBA_E_INPUT, "--cooldown must be >= 0 (got %d)", c->cooldown);
    if (!(isfinite(c->growth) && c->growth > 1.0))
        return deba_err_set(e, DEBA_E_INPUT, "--growth must be > 1 and finite (got %g)", c->growth);
    if (!(c->rollback > 0.0 && c->rollback < 1.0))
        return deba_err_set(e, DEBA_E_INPUT, "--rollback must be in (0, 1) (got %g)", c->rollback);
    if (!isfinite(c->rho))
        return deba_err_set(e, DEBA_E_INPUT, "--rho must be finite, <= 0 for max(theta, 1/theta) (got %g)", c->rho);
    if (!positive(c->kappa))
        return deba_err_set(e, DEBA_E_INPUT, "--kappa must be > 0 and finite (got %g)", c->kappa);
    return DEBA_OK;
}

/* ---- lifecycle ---- */

static deba_sched *sched_alloc(const deba_sched_config *c, deba_err *e)
{
    deba_sched *s = calloc(1, sizeof *s);
    double *win = calloc(c->window > 0 ? (size_t)c->window : 1, sizeof *win);
    if (!s || !win) {
        free(s);
        free(win);
        deba_err_set(e, DEBA_E_NOMEM, "scheduler: out of memory");
        return NULL;
    }
    s->cfg = *c;
    s->win = win;
    return s;
}

deba_sched *deba_sched_new(const deba_sched_config *c, deba_err *e)
{
    if (deba_sched_config_check(c, e) != DEBA_OK) return NULL;
    deba_sched *s = sched_alloc(c, e);
    if (!s) return NULL;
    s->batch = c->b0;
    s->bmax = c->bmax;
    return s;
}

void deba_sched_free(deba_sched *s)
{
    if (!s) return;
    free(s->win);
    free(s);
}

const deba_sched_config *deba_sched_config_of(const deba_sched *s) { return &s->cfg; }
int deba_sched_batch(const deba_sched *s) { return s->batch; }
int deba_sched_epoch(const deba_sched *s) { return s->epoch; }
int deba_sched_bmax(const deba_sched *s) { return s->bmax; }

/* ---- one epoch ---- */

static double sched_confidence(const deba_sched *s, double grad_var)
{
    if (s->cfg.window > 0) return deba_confidence(grad_var, s->win, (size_t)s->win_len, 0);
    /* The mean of all previous epochs, with deba_confidence's rules for an empty or zero window. */
    double m = s->epoch > 0 ? s->hist_sum / (double)s->epoch : 0.0;
    return (s->epoch == 0 || m == 0.0) ? 1.0 : grad_var / m;
}

static void sched_remember(deba_sched *s, double grad_var, double grad_norm, double train_loss)
{
    int W = s->cfg.window;
    if (W > 0) {
        if (s->win_len == W) {
            memmove(s->win, s->win + 1, (size_t)(W - 1) * sizeof *s->win);
            s->win_len--;
        }
        s->win[s->win_len++] = grad_var;
    } else {
        s->hist_sum += grad_var;
    }
    s->prev_norm = grad_norm;
    s->prev_loss = train_loss;
    s->epoch++;
}

/* floor(f·B), forgiving the last bits of rounding so that e.g. 0.29·100 gives 29, not 28. */
static double scaled_floor(double f, int b)
{
    double x = f * (double)b;
    return floor(x + 1e-9 * fabs(x));
}

/* Applies an increase or rollback if it changes B; a move stuck at a bound is a hold. */
static deba_decision sched_move(deba_sched *s, deba_decision want, int t)
{
    int nb;
    if (want == DEBA_DEC_INCREASE) {
        double x = scaled_floor(s->cfg.growth, s->batch);
        nb = x >= (double)s->bmax ? s->bmax : (int)x;
        if (nb <= s->batch) return DEBA_DEC_HOLD;
    } else {
        double x = scaled_floor(s->cfg.rollback, s->batch);
        nb = x <= (double)s->cfg.bmin ? s->cfg.bmin : (int)x;
        if (nb >= s->batch) return DEBA_DEC_HOLD;
    }
    s->batch = nb;
    s->last_adapt = t;
    s->adapted = 1;
    return want;
}

static deba_decision sched_decide(deba_sched *s, const deba_epoch_result *r)
{
    const deba_sched_config *c = &s->cfg;
    if (c->method == DEBA_METHOD_FIXED) return DEBA_DEC_FIXED;
    if (r->epoch < s->last_adapt + c->cooldown)
        return s->adapted ? DEBA_DEC_COOLDOWN : DEBA_DEC_WARMUP;
    double rho = c->rho > 0.0 ? c->rho : fmax(c->theta, 1.0 / c->theta);
    int stable_gradients = r->norm_var <= c->tau;
    int stable_loss = r->loss_var <= c->lambda;
    if (r->confidence < c->theta && stable_gradients && stable_loss)
        return sched_move(s, DEBA_DEC_INCREASE, r->epoch);
    if (r->confidence > rho || r->norm_var > c->kappa * c->tau)
        return sched_move(s, DEBA_DEC_ROLLBACK, r->epoch);
    return DEBA_DEC_HOLD;
}

void deba_sched_step(deba_sched *s, double grad_var, double grad_norm, double train_loss,
                     deba_epoch_result *out)
{
    deba_epoch_result r = {
        .epoch = s->epoch + 1,
        .batch_size = s->batch,
        .grad_var = grad_var,
        .grad_norm = grad_norm,
        .train_loss = train_loss,
    };
    if (s->epoch > 0) {
        r.norm_var = deba_rel_change(grad_norm, s->prev_norm);
        r.loss_var = deba_rel_change(train_loss, s->prev_loss);
    }
    r.confidence = sched_confidence(s, grad_var);
    r.decision = sched_decide(s, &r);
    r.next_batch_size = s->batch;
    sched_remember(s, grad_var, grad_norm, train_loss);
    if (out) *out = r;
}

/* Called at the start of epoch t = epoch + 1, which then trains at `fits`: epoch t is the
 * adaptation epoch, so the next adaptation is possible at t + C, as after an increase at t. */
void deba_sched_oom(deba_sched *s, int fits)
{
    if (fits < 1) fits = 1;
    if (fits > s->bmax) fits = s->bmax;
    s->batch = fits;
    s->bmax = fits;
    s->last_adapt = s->epoch + 1;
    s->adapted = 1;
}

/* ---- checkpoint ----
 * Layout, host byte order: "DEBASCH1", u32 version, the config field by field, the state, the
 * window values, then a 64-bit FNV-1a hash of everything after the magic. */

#define SCHED_MAGIC "DEBASCH1"
#define SCHED_VERSION 1u

typedef struct {
    FILE *f;
    uint64_t hash;
    int ok;
} blob_io;

static void hash_bytes(blob_io *b, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) b->hash = (b->hash ^ c[i]) * 0x100000001b3ull;
}

static void put(blob_io *b, const void *p, size_t n)
{
    if (b->ok && fwrite(p, 1, n, b->f) != n) b->ok = 0;
    hash_bytes(b, p, n);
}

static void get(blob_io *b, void *p, size_t n)
{
    if (b->ok && fread(p, 1, n, b->f) != n) b->ok = 0;
    if (!b->ok) memset(p, 0, n);
    hash_bytes(b, p, n);
}

static void put_i32(blob_io *b, int v) { int32_t x = v; put(b, &x, sizeof x); }
static void put_f64(blob_io *b, double v) { put(b, &v, sizeof v); }
static int get_i32(blob_io *b) { int32_t x; get(b, &x, sizeof x); return x; }
static double get_f64(blob_io *b) { double x; get(b, &x, sizeof x); return x; }

/* One list of fields for both directions, so save and load cannot drift apart. */
#define SCHED_CONFIG_FIELDS(I, D, c) \
    I((c)->method) I((c)->b0) I((c)->bmin) I((c)->bmax) \
    D((c)->tau) D((c)->theta) D((c)->lambda) I((c)->window) I((c)->cooldown) \
    D((c)->growth) D((c)->rollback) D((c)->rho) D((c)->kappa)
#define SCHED_STATE_FIELDS(I, D, s) \
    I((s)->batch) I((s)->bmax) I((s)->epoch) I((s)->last_adapt) I((s)->adapted) \
    D((s)->prev_norm) D((s)->prev_loss) D((s)->hist_sum) I((s)->win_len)

deba_status deba_sched_save(const deba_sched *s, FILE *f, deba_err *e)
{
    blob_io b = {f, 0xcbf29ce484222325ull, 1};
    if (fwrite(SCHED_MAGIC, 1, 8, f) != 8) b.ok = 0;
    uint32_t version = SCHED_VERSION;
    put(&b, &version, sizeof version);
#define PI(x) put_i32(&b, (int)(x));
#define PD(x) put_f64(&b, (x));
    SCHED_CONFIG_FIELDS(PI, PD, &s->cfg)
    SCHED_STATE_FIELDS(PI, PD, s)
#undef PI
#undef PD
    for (int i = 0; i < s->win_len; i++) put_f64(&b, s->win[i]);
    uint64_t h = b.hash;
    put(&b, &h, sizeof h);
    if (!b.ok) return deba_err_set(e, DEBA_E_IO, "scheduler state: write failed");
    return DEBA_OK;
}

static deba_status sched_validate(const deba_sched *s, deba_err *e)
{
    const deba_sched_config *c = &s->cfg;
    int want_win = c->window > 0 ? (s->epoch < c->window ? s->epoch : c->window) : 0;
    if (s->epoch < 0 || s->bmax < 1 || s->bmax > c->bmax || s->batch < 1 || s->batch > s->bmax ||
        s->last_adapt < 0 || s->last_adapt > s->epoch + 1 || (s->adapted != 0 && s->adapted != 1) ||
        s->win_len != want_win || !isfinite(s->hist_sum))
        return deba_err_set(e, DEBA_E_INPUT, "scheduler state: inconsistent values (corrupt checkpoint)");
    return DEBA_OK;
}

/* Reads the config and state into a fresh scheduler; the window values follow. */
static deba_sched *load_body(blob_io *b, deba_err *e)
{
    deba_sched_config c;
    memset(&c, 0, sizeof c);
#define GI(x) x = get_i32(b);
#define GD(x) x = get_f64(b);
    SCHED_CONFIG_FIELDS(GI, GD, &c)
    if (!b->ok) {
        deba_err_set(e, DEBA_E_INPUT, "scheduler state: truncated");
        return NULL;
    }
    deba_err ce;
    if (deba_sched_config_check(&c, &ce) != DEBA_OK) {
        deba_err_set(e, DEBA_E_INPUT, "scheduler state: bad config (corrupt checkpoint): %s", ce.msg);
        return NULL;
    }
    deba_sched *s = sched_alloc(&c, e);
    if (!s) return NULL;
    SCHED_STATE_FIELDS(GI, GD, s)
#undef GI
#undef GD
    if (!b->ok || sched_validate(s, e) != DEBA_OK) {
        if (!b->ok) deba_err_set(e, DEBA_E_INPUT, "scheduler state: truncated");
        deba_sched_free(s);
        return NULL;
    }
    return s;
}

deba_sched *deba_sched_load(FILE *f, deba_err *e)
{
    char magic[8];
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, SCHED_MAGIC, 8) != 0) {
        deba_err_set(e, DEBA_E_INPUT, "scheduler state: not a DEBA scheduler checkpoint (bad magic)");
        return NULL;
    }
    blob_io b = {f, 0xcbf29ce484222325ull, 1};
    uint32_t version;
    get(&b, &version, sizeof version);
    if (!b.ok) {
        deba_err_set(e, DEBA_E_INPUT, "scheduler state: truncated");
        return NULL;
    }
    if (version != SCHED_VERSION) {
        deba_err_set(e, DEBA_E_INPUT, "scheduler state: unsupported version %u (expected %u)",
                     version, SCHED_VERSION);
        return NULL;
    }
    deba_sched *s = load_body(&b, e);
    if (!s) return NULL;
    for (int i = 0; i < s->win_len; i++) s->win[i] = get_f64(&b);
    uint64_t want = b.hash, h;
    get(&b, &h, sizeof h);
    if (!b.ok || h != want) {
        deba_err_set(e, DEBA_E_INPUT, b.ok ? "scheduler state: checksum mismatch (corrupt checkpoint)"
                                           : "scheduler state: truncated");
        deba_sched_free(s);
        return NULL;
    }
    return s;
}

/* ---- DEBA-run metrics ---- */

double deba_aggressiveness(const deba_decision *d, size_t n)
{
    long inc = 0, rb = 0, possible = 0;
    for (size_t i = 0; i < n; i++) {
        inc += d[i] == DEBA_DEC_INCREASE;
        rb += d[i] == DEBA_DEC_ROLLBACK;
        possible += d[i] == DEBA_DEC_HOLD || d[i] == DEBA_DEC_INCREASE || d[i] == DEBA_DEC_ROLLBACK;
    }
    return (double)(inc - rb) / (double)(possible > 1 ? possible : 1);
}

double deba_convergence_stability(const double *train_loss, size_t n)
{
    return deba_std_pop(train_loss, n);
}
