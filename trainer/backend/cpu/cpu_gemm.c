/* sgemm on the OpenMP thread team: OpenBLAS runs single-threaded inside each thread on a slab
 * of C. One pool for GEMMs and loops: with OpenBLAS's own pthreads beside OpenMP's, each pool
 * spins on the cores while the other works (perf showed ~70% of a resnet18 step in libgomp's
 * spin-wait on 2 cores). */
#include "trainer/backend/cpu/cpu_kernels.h"

#include <cblas.h>
#include <omp.h>

/* Below this many multiply-adds a second thread costs more than it saves. */
#define TR_GEMM_SPLIT_MIN 1.5e6

void tr_cpu_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                  int ldb, float beta, float *C, int ldc)
{
    const enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    /* inside any parallel region, a one-thread team included, the caller has shared out the work
     * already: a team opened here would be a nested one, started afresh on every call */
    int nt = omp_get_level() > 0 ? 1 : omp_get_max_threads();
    if ((double)M * N * K < TR_GEMM_SPLIT_MIN || M <= 0 || N <= 0) nt = 1;
    if (nt == 1 || K <= 0) {
        cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* split the larger side of C into slabs, on multiples of 16 (the kernels' vector width) */
    const int by_cols = N >= M;
    const int len = by_cols ? N : M;
    int units = (len + 15) / 16;
    if (nt > units) nt = units;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int u0 = (int)((int64_t)units * t / T), u1 = (int)((int64_t)units * (t + 1) / T);
        int i0 = u0 * 16, i1 = u1 * 16 < len ? u1 * 16 : len;
        if (i1 > i0) {
            if (by_cols)
                cblas_sgemm(CblasRowMajor, TA, TB, M, i1 - i0, K, alpha, A, lda,
                            tb ? B + (int64_t)i0 * ldb : B + i0, ldb, beta, C + i0, ldc);
            else
                cblas_sgemm(CblasRowMajor, TA, TB, i1 - i0, N, K, alpha, ta ? A + i0 : A + (int64_t)i0 * lda,
                            lda, B, ldb, beta, C + (int64_t)i0 * ldc, ldc);
        }
    }
}
