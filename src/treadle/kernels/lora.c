/* LoRA on top of any projection for steps of few rows (decode), weights read once per row from cache:
 *
 *   U[t, :] = X[t, :] @ At                       At [K, R] row-major (the parts' A stacked, transposed)
 *   Y[t, n0 : n0 + nl] += U[t, r0 : r0 + rl] @ Bt[r0 : r0 + rl, n0 : n0 + nl]   for each part
 *
 * for rows t < T (T <= lora_max_rows()), parts (r0, rl, n0, nl) given as int32 quadruples. Bt [R, N]
 * row-major is the block-diagonal B (scale folded in) transposed: a fused projection (qkv, gate/up)
 * names one part per adapted module, so none of its zero blocks is read. R % 8 == 0 (activation pads
 * the stacked rank with zeros). U's row is kept in AVX registers, 64 ranks at a time; Y is updated 32
 * columns at a time with FMAs. Why: a one-row decode step is memory-bound, and two torch GEMMs per
 * projection cost more in dispatch than in arithmetic; the block-diagonal zeros were a third of the bytes.
 * Rows are split across OpenMP threads (one row: no parallel region).
 */
#include <immintrin.h>

#define LORA_MAX_ROWS 16
#define LORA_MAX_RANK 1024

int lora_max_rows(void) { return LORA_MAX_ROWS; }
int lora_max_rank(void) { return LORA_MAX_RANK; }

/* u[0 : R] = x[0 : K] @ At, At [K, R], R % 8 == 0 */
static void lora_down(const float *x, const float *at, float *u, int K, int R) {
    for (int r0 = 0; r0 < R; r0 += 64) {
        const int nv = (R - r0 >= 64 ? 64 : R - r0) / 8;
        __m256 acc[8];
        for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
        for (int k = 0; k < K; k++) {
            const __m256 xv = _mm256_set1_ps(x[k]);
            const float *a = at + (long)k * R + r0;
            for (int j = 0; j < nv; j++) acc[j] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(a + 8 * j), acc[j]);
        }
        for (int j = 0; j < nv; j++) _mm256_storeu_ps(u + r0 + 8 * j, acc[j]);
    }
}

/* y[n0 : n0 + nl] += u[r0 : r0 + rl] @ Bt[r0 : r0 + rl, n0 : n0 + nl] */
static void lora_up(const float *u, const float *bt, float *y, int r0, int rl, int n0, int nl, int N) {
    int n = n0;
    for (; n + 32 <= n0 + nl; n += 32) {
        __m256 a0 = _mm256_loadu_ps(y + n), a1 = _mm256_loadu_ps(y + n + 8);
        __m256 a2 = _mm256_loadu_ps(y + n + 16), a3 = _mm256_loadu_ps(y + n + 24);
        for (int r = r0; r < r0 + rl; r++) {
            const __m256 uv = _mm256_set1_ps(u[r]);
            const float *b = bt + (long)r * N + n;
            a0 = _mm256_fmadd_ps(uv, _mm256_loadu_ps(b), a0);
            a1 = _mm256_fmadd_ps(uv, _mm256_loadu_ps(b + 8), a1);
            a2 = _mm256_fmadd_ps(uv, _mm256_loadu_ps(b + 16), a2);
            a3 = _mm256_fmadd_ps(uv, _mm256_loadu_ps(b + 24), a3);
        }
        _mm256_storeu_ps(y + n, a0);
        _mm256_storeu_ps(y + n + 8, a1);
        _mm256_storeu_ps(y + n + 16, a2);
        _mm256_storeu_ps(y + n + 24, a3);
    }
    for (; n < n0 + nl; n++) {
        float s = y[n];
        for (int r = r0; r < r0 + rl; r++) s += u[r] * bt[(long)r * N + n];
        y[n] = s;
    }
}

void lora_add(const float *x, const float *at, const float *bt, const int *parts, int nparts, float *y,
              int T, int K, int R, int N) {
#pragma omp parallel for schedule(static) if (T > 1)
    for (int t = 0; t < T; t++) {
        float u[LORA_MAX_RANK];
        lora_down(x + (long)t * K, at, u, K, R);
        for (int p = 0; p < nparts; p++)
            lora_up(u, bt, y + (long)t * N, parts[4 * p], parts[4 * p + 1], parts[4 * p + 2], parts[4 * p + 3], N);
    }
}
