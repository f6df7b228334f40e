/* LoRA on top of any projection for steps of few rows (decode), in the layout the torch path uses:
 *
 *   u[r] = X[t, :] . A[r, :]                       A [R, K] row-major (the parts' A stacked)
 *   Y[t, n] += u[r0 : r0 + rl] . B[n, r0 : r0 + rl]  for n in [n0, n0 + nl), for each part
 *
 * for rows t < T (T <= lora_max_rows()), parts (r0, rl, n0, nl) given as int32 quadruples. B [N, R]
 * row-major is the block-diagonal B (scale folded in): a fused projection (qkv, gate/up) names one part
 * per adapted module, so none of its zero blocks is read. Dot products on AVX2 FMAs (four A rows share each
 * load of x; a part's u slice sits in registers while its B rows stream by). Why: a one-row decode step is
 * memory-bound, and two torch GEMMs per projection cost more in dispatch than in arithmetic; the
 * block-diagonal zeros were a third of the bytes. Rows are split across OpenMP threads (one row: none).
 */
#include <immintrin.h>

#define LORA_MAX_ROWS 16
#define LORA_MAX_RANK 1024

int lora_max_rows(void) { return LORA_MAX_ROWS; }
int lora_max_rank(void) { return LORA_MAX_RANK; }

static inline float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* u[0 : R] = A @ x, A [R, K] */
static void lora_down(const float *x, const float *a, float *u, int K, int R) {
    const int kv = K & ~7;
    int r = 0;
    for (; r + 4 <= R; r += 4) {
        const float *a0 = a + (long)r * K, *a1 = a0 + K, *a2 = a1 + K, *a3 = a2 + K;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
        for (int k = 0; k < kv; k += 8) {
            const __m256 xv = _mm256_loadu_ps(x + k);
            s0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(a0 + k), s0);
            s1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(a1 + k), s1);
            s2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(a2 + k), s2);
            s3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(a3 + k), s3);
        }
        float f0 = hsum8(s0), f1 = hsum8(s1), f2 = hsum8(s2), f3 = hsum8(s3);
        for (int k = kv; k < K; k++) {
            f0 += x[k] * a0[k];
            f1 += x[k] * a1[k];
            f2 += x[k] * a2[k];
            f3 += x[k] * a3[k];
        }
        u[r] = f0, u[r + 1] = f1, u[r + 2] = f2, u[r + 3] = f3;
    }
    for (; r < R; r++) {
        const float *ar = a + (long)r * K;
        __m256 s = _mm256_setzero_ps();
        for (int k = 0; k < kv; k += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(ar + k), s);
        float f = hsum8(s);
        for (int k = kv; k < K; k++) f += x[k] * ar[k];
        u[r] = f;
    }
}

/* y[n] += u[r0 : r0 + rl] . B[n, r0 : r0 + rl] for n in [n0, n0 + nl), B [N, R] */
static void lora_up(const float *u, const float *b, float *y, int r0, int rl, int n0, int nl, int R) {
    const int nvec = rl / 8 < 8 ? rl / 8 : 8;  /* up to 64 ranks of u kept in registers */
    __m256 uv[8];
    for (int j = 0; j < nvec; j++) uv[j] = _mm256_loadu_ps(u + r0 + 8 * j);
    for (int n = n0; n < n0 + nl; n++) {
        const float *bn = b + (long)n * R + r0;
        __m256 s = _mm256_setzero_ps();
        for (int j = 0; j < nvec; j++) s = _mm256_fmadd_ps(uv[j], _mm256_loadu_ps(bn + 8 * j), s);
        float f = hsum8(s);
        for (int r = 8 * nvec; r < rl; r++) f += u[r0 + r] * bn[r];
        y[n] += f;
    }
}

void lora_add(const float *x, const float *a, const float *b, const int *parts, int nparts, float *y,
              int T, int K, int R, int N) {
#pragma omp parallel for schedule(static) if (T > 1)
    for (int t = 0; t < T; t++) {
        float u[LORA_MAX_RANK];
        lora_down(x + (long)t * K, a, u, K, R);
        for (int p = 0; p < nparts; p++)
            lora_up(u, b, y + (long)t * N, parts[4 * p], parts[4 * p + 1], parts[4 * p + 2], parts[4 * p + 3], R);
    }
}
