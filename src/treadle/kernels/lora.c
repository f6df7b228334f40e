/* LoRA on top of any projection for steps of a few rows (decode), weights read once per block of 4 rows:
 *
 *   U[t, :] = X[t, :] @ At                        At [K, R] row-major (the parts' A stacked, transposed)
 *   Y[t, n0 : n0 + nl] += U[t, r0 : r0 + rl] @ Bt[r0 : r0 + rl, n0 : n0 + nl]   for each part
 *
 * for rows t < T (T <= lora_max_rows()), parts (r0, rl, n0, nl) given as int32 quadruples. Bt [R, N]
 * row-major is the block-diagonal B (scale folded in) transposed: a fused projection (qkv, gate/up)
 * names one part per adapted module, so none of its zero blocks is read. R % 8 == 0 (activation pads the
 * stacked rank with zeros). Register blocking: 4 rows x 16 ranks (down) and 4 rows x 16 outputs (up) of
 * accumulators, so each weight vector loaded feeds 4 FMAs. Blocks of 4 rows are split across OpenMP
 * threads (a step of at most 4 rows opens no parallel region). Why: a decode step is memory-bound and two
 * torch GEMMs per projection and adapter group cost more in dispatch than in arithmetic; the block-diagonal
 * zeros were a third of the bytes.
 */
#include <immintrin.h>

#define LORA_MAX_ROWS 16
#define LORA_MAX_RANK 1024

int lora_max_rows(void) { return LORA_MAX_ROWS; }
int lora_max_rank(void) { return LORA_MAX_RANK; }

/* u[t][0 : R] = x[t] @ At for the tb (<= 4) rows of one block */
static void lora_down(const float *x, const float *at, float (*u)[LORA_MAX_RANK], int tb, int K, int R) {
    for (int r = 0; r < R; r += 16) {
        const int two = r + 16 <= R;
        __m256 s[4][2];
        for (int t = 0; t < 4; t++) s[t][0] = s[t][1] = _mm256_setzero_ps();
        for (int k = 0; k < K; k++) {
            const float *a = at + (long)k * R + r;
            const __m256 a0 = _mm256_loadu_ps(a), a1 = two ? _mm256_loadu_ps(a + 8) : _mm256_setzero_ps();
            for (int t = 0; t < tb; t++) {
                const __m256 xv = _mm256_set1_ps(x[(long)t * K + k]);
                s[t][0] = _mm256_fmadd_ps(xv, a0, s[t][0]);
                s[t][1] = _mm256_fmadd_ps(xv, a1, s[t][1]);
            }
        }
        for (int t = 0; t < tb; t++) {
            _mm256_storeu_ps(u[t] + r, s[t][0]);
            if (two) _mm256_storeu_ps(u[t] + r + 8, s[t][1]);
        }
    }
}

/* y[t][n0 : n0 + nl] += u[t][r0 : r0 + rl] @ Bt[r0 : r0 + rl, n0 : n0 + nl] for the tb rows of one block */
static void lora_up(float (*u)[LORA_MAX_RANK], const float *bt, float *y, int tb, int r0, int rl, int n0, int nl,
                    int N) {
    int n = n0;
    for (; n + 16 <= n0 + nl; n += 16) {
        __m256 s[4][2];
        for (int t = 0; t < tb; t++) {
            s[t][0] = _mm256_loadu_ps(y + (long)t * N + n);
            s[t][1] = _mm256_loadu_ps(y + (long)t * N + n + 8);
        }
        for (int r = r0; r < r0 + rl; r++) {
            const float *b = bt + (long)r * N + n;
            const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
            for (int t = 0; t < tb; t++) {
                const __m256 uv = _mm256_set1_ps(u[t][r]);
                s[t][0] = _mm256_fmadd_ps(uv, b0, s[t][0]);
                s[t][1] = _mm256_fmadd_ps(uv, b1, s[t][1]);
            }
        }
        for (int t = 0; t < tb; t++) {
            _mm256_storeu_ps(y + (long)t * N + n, s[t][0]);
            _mm256_storeu_ps(y + (long)t * N + n + 8, s[t][1]);
        }
    }
    for (; n < n0 + nl; n++)
        for (int t = 0; t < tb; t++) {
            float acc = y[(long)t * N + n];
            for (int r = r0; r < r0 + rl; r++) acc += u[t][r] * bt[(long)r * N + n];
            y[(long)t * N + n] = acc;
        }
}

void lora_add(const float *x, const float *at, const float *bt, const int *parts, int nparts, float *y,
              int T, int K, int R, int N) {
    const int blocks = (T + 3) / 4;
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (int blk = 0; blk < blocks; blk++) {
        float u[4][LORA_MAX_RANK];
        const int t0 = 4 * blk, tb = T - t0 < 4 ? T - t0 : 4;
        lora_down(x + (long)t0 * K, at, u, tb, K, R);
        for (int p = 0; p < nparts; p++)
            lora_up(u, bt, y + (long)t0 * N, tb, parts[4 * p], parts[4 * p + 1], parts[4 * p + 2], parts[4 * p + 3],
                    N);
    }
}
