/* The CPU backend's table: host memory (64-byte aligned, for the vector loops and OpenBLAS)
 * and the core operation families. */
#include "trainer/backend/cpu/cpu_kernels.h"
#include "trainer/backend/cpu/cpu_ops.h"

#include <stdlib.h>
#include <string.h>

static void *cpu_alloc(tr_backend *be, size_t bytes)
{
    (void)be;
    /* aligned_alloc wants a multiple of the alignment; 0 bytes still gets a distinct block */
    size_t rounded = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, rounded ? rounded : 64);
}

static void cpu_free(tr_backend *be, void *p)
{
    (void)be;
    free(p);
}

static void cpu_copy(tr_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_zero(tr_backend *be, void *dst, size_t bytes)
{
    (void)be;
    if (bytes) memset(dst, 0, bytes);
}

static void cpu_sync(tr_backend *be) { (void)be; }

void tr_cpu_register_core(tr_backend *be)
{
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->upload = cpu_copy;
    be->download = cpu_copy;
    be->zero = cpu_zero;
    be->sync = cpu_sync;
    be->xent = tr_cpu_xent;
    be->sgd = tr_cpu_sgd;
    be->grad_moments = tr_cpu_grad_moments;
    be->sgd_moments = tr_cpu_sgd_moments;
#define OP(op, fam) be->forward[op] = tr_cpu_##fam##_forward, be->backward[op] = tr_cpu_##fam##_backward
    OP(TR_OP_CONV2D, conv2d);
    OP(TR_OP_BATCHNORM, batchnorm);
    OP(TR_OP_ACT, act);
    OP(TR_OP_MAXPOOL, maxpool);
    OP(TR_OP_AVGPOOL, avgpool);
    OP(TR_OP_ADAPTIVE_AVGPOOL, adaptive_avgpool);
    OP(TR_OP_LINEAR, linear);
    OP(TR_OP_ADD, add);
#undef OP
    /* backwards that set the input gradient they are first to write (tr_node.grad_set): the
     * step then zeroes only the rest (tr_graph_loss). Other families register their own ops and
     * keep adding into zeroed gradients. */
    be->grad_set_ops = 1ull << TR_OP_CONV2D | 1ull << TR_OP_BATCHNORM | 1ull << TR_OP_ACT | 1ull << TR_OP_MAXPOOL |
                       1ull << TR_OP_AVGPOOL | 1ull << TR_OP_ADAPTIVE_AVGPOOL | 1ull << TR_OP_LINEAR | 1ull << TR_OP_ADD;
    /* batch norm writes relu(bn(x)) and masks the ReLU's gradient itself (tr_node.relu_out):
     * one pass over the tensor each way instead of two */
    be->fuse_bn_relu = 1;
}
