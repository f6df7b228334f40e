/* GEMV/small-GEMM over GGUF block-quantised weights, for decode steps with few rows.
 *
 * y[m, n] = sum_k x[m, k] * W[n, k], W stored as GGUF blocks of 32 weights per row:
 *   Q4_1: { fp16 d, fp16 m, uint8 qs[16] }, w[j] = d * q[j] + m, q[j] = qs[j] & 15 (j < 16),
 *         qs[j - 16] >> 4 (j >= 16)                                               (20 bytes)
 *   Q8_0: { fp16 d, int8 qs[32] },           w[j] = d * qs[j]                      (34 bytes)
 * Each weight is rebuilt exactly as gguf-py dequantises it (an fp32 multiply, then an fp32 add,
 * no fused rounding), so the weights are bit-identical to the fp32 checkpoint converted from the
 * same file; only the order of the dot-product sums differs from a BLAS GEMM.
 * Rows are split across OpenMP threads. Needs AVX2 + F16C + FMA; built with -ffp-contract=off.
 */
#include <immintrin.h>

#include "simd.h"
#include <stdint.h>
#include <string.h>

static inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

#define MAXM 8

void q4_1_gemm(const uint8_t *w, const float *x, float *y, int M, int N, int K) {
    const int nb = K / 32;
    const long row_bytes = (long)nb * 20;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const uint8_t *row = w + (long)n * row_bytes;
        __m256 acc[MAXM];
        for (int m = 0; m < M; m++) acc[m] = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = row + (long)b * 20;
            uint16_t dh, mh;
            memcpy(&dh, blk, 2);
            memcpy(&mh, blk + 2, 2);
            const __m256 d = _mm256_set1_ps(half_to_float(dh));
            const __m256 mn = _mm256_set1_ps(half_to_float(mh));
            const __m128i qs = _mm_loadu_si128((const __m128i *)(blk + 4));
            const __m128i mask = _mm_set1_epi8(15);
            const __m128i lo = _mm_and_si128(qs, mask);
            const __m128i hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
            __m256 wv[4];
            wv[0] = _mm256_add_ps(_mm256_mul_ps(d, u8_to_ps(lo)), mn);
            wv[1] = _mm256_add_ps(_mm256_mul_ps(d, u8_to_ps(_mm_srli_si128(lo, 8))), mn);
            wv[2] = _mm256_add_ps(_mm256_mul_ps(d, u8_to_ps(hi)), mn);
            wv[3] = _mm256_add_ps(_mm256_mul_ps(d, u8_to_ps(_mm_srli_si128(hi, 8))), mn);
            for (int m = 0; m < M; m++) {
                const float *xb = x + (long)m * K + b * 32;
                __m256 a = acc[m];
                a = _mm256_fmadd_ps(wv[0], _mm256_loadu_ps(xb), a);
                a = _mm256_fmadd_ps(wv[1], _mm256_loadu_ps(xb + 8), a);
                a = _mm256_fmadd_ps(wv[2], _mm256_loadu_ps(xb + 16), a);
                a = _mm256_fmadd_ps(wv[3], _mm256_loadu_ps(xb + 24), a);
                acc[m] = a;
            }
        }
        for (int m = 0; m < M; m++) y[(long)m * N + n] = hsum8(acc[m]);
    }
}

void q8_0_gemm(const uint8_t *w, const float *x, float *y, int M, int N, int K) {
    const int nb = K / 32;
    const long row_bytes = (long)nb * 34;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const uint8_t *row = w + (long)n * row_bytes;
        __m256 acc[MAXM];
        for (int m = 0; m < M; m++) acc[m] = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = row + (long)b * 34;
            uint16_t dh;
            memcpy(&dh, blk, 2);
            const __m256 d = _mm256_set1_ps(half_to_float(dh));
            const __m128i q0 = _mm_loadu_si128((const __m128i *)(blk + 2));
            const __m128i q1 = _mm_loadu_si128((const __m128i *)(blk + 18));
            __m256 wv[4];
            wv[0] = _mm256_mul_ps(d, i8_to_ps(q0));
            wv[1] = _mm256_mul_ps(d, i8_to_ps(_mm_srli_si128(q0, 8)));
            wv[2] = _mm256_mul_ps(d, i8_to_ps(q1));
            wv[3] = _mm256_mul_ps(d, i8_to_ps(_mm_srli_si128(q1, 8)));
            for (int m = 0; m < M; m++) {
                const float *xb = x + (long)m * K + b * 32;
                __m256 a = acc[m];
                a = _mm256_fmadd_ps(wv[0], _mm256_loadu_ps(xb), a);
                a = _mm256_fmadd_ps(wv[1], _mm256_loadu_ps(xb + 8), a);
                a = _mm256_fmadd_ps(wv[2], _mm256_loadu_ps(xb + 16), a);
                a = _mm256_fmadd_ps(wv[3], _mm256_loadu_ps(xb + 24), a);
                acc[m] = a;
            }
        }
        for (int m = 0; m < M; m++) y[(long)m * N + n] = hsum8(acc[m]);
    }
}

int max_rows(void) { return MAXM; }

/* ---- Tiled GEMM for any number of rows ----------------------------------------------------------
 * Each thread takes NT weight rows at a time, rebuilds them into an fp32 scratch (the same two fp32
 * operations as above, so the weights are bit-identical), then multiplies MT rows of x against them
 * with NT x MT register accumulators. Rows of x are taken in blocks of MB so the block stays in L2.
 * Per output element the sum runs over k in the same lane order as the kernels above (8 lanes,
 * k = 0, 8, 16, ... then one horizontal sum), so for any M the result equals q4_1_gemm's bit for bit.
 */
#define NT 4
#define MT 3
#define MB 64

static void deq_q4_1_rows(const uint8_t *w, int n0, int nt, int K, float *out) {
    const int nb = K / 32;
    const __m128i mask = _mm_set1_epi8(15);
    for (int i = 0; i < nt; i++) {
        const uint8_t *row = w + (long)(n0 + i) * nb * 20;
        float *o = out + (long)i * K;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = row + (long)b * 20;
            uint16_t dh, mh;
            memcpy(&dh, blk, 2);
            memcpy(&mh, blk + 2, 2);
            const __m256 d = _mm256_set1_ps(half_to_float(dh));
            const __m256 mn = _mm256_set1_ps(half_to_float(mh));
            const __m128i qs = _mm_loadu_si128((const __m128i *)(blk + 4));
            const __m128i lo = _mm_and_si128(qs, mask);
            const __m128i hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
            _mm256_storeu_ps(o + b * 32, _mm256_add_ps(_mm256_mul_ps(d, u8_to_ps(lo)), mn));
            _mm256_storeu_ps(o + b * 32 + 8, _mm256_add_ps(_mm256_mul_ps(d, u8_to_ps(_mm_srli_si128(lo, 8))), mn));
            _mm256_storeu_ps(o + b * 32 + 16, _mm256_add_ps(_mm256_mul_ps(d, u8_to_ps(hi)), mn));
            _mm256_storeu_ps(o + b * 32 + 24, _mm256_add_ps(_mm256_mul_ps(d, u8_to_ps(_mm_srli_si128(hi, 8))), mn));
        }
    }
}

static void deq_q8_0_rows(const uint8_t *w, int n0, int nt, int K, float *out) {
    const int nb = K / 32;
    for (int i = 0; i < nt; i++) {
        const uint8_t *row = w + (long)(n0 + i) * nb * 34;
        float *o = out + (long)i * K;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = row + (long)b * 34;
            uint16_t dh;
            memcpy(&dh, blk, 2);
            const __m256 d = _mm256_set1_ps(half_to_float(dh));
            const __m128i q0 = _mm_loadu_si128((const __m128i *)(blk + 2));
            const __m128i q1 = _mm_loadu_si128((const __m128i *)(blk + 18));
            _mm256_storeu_ps(o + b * 32, _mm256_mul_ps(d, i8_to_ps(q0)));
            _mm256_storeu_ps(o + b * 32 + 8, _mm256_mul_ps(d, i8_to_ps(_mm_srli_si128(q0, 8))));
            _mm256_storeu_ps(o + b * 32 + 16, _mm256_mul_ps(d, i8_to_ps(q1)));
            _mm256_storeu_ps(o + b * 32 + 24, _mm256_mul_ps(d, i8_to_ps(_mm_srli_si128(q1, 8))));
        }
    }
}

/* y[m, n0 + i] for i < NT, m in [m0, m0 + mt), mt <= MT: one register tile (inlined per constant mt).
 * The NT x mt accumulators are independent chains, interleaved so the FMA latency is hidden even at
 * mt = 1; each chain still sums its output in plain k order. */
static inline __attribute__((always_inline)) void tile_n4(const float *wt, const float *x, float *y, int m0,
                                                          const int mt, int n0, int N, int K) {
    __m256 acc[NT][MT];
    for (int i = 0; i < NT; i++)
        for (int j = 0; j < mt; j++) acc[i][j] = _mm256_setzero_ps();
    const float *x0 = x + (long)m0 * K;
    for (int k = 0; k < K; k += 8) {
        __m256 xv[MT];
        for (int j = 0; j < mt; j++) xv[j] = _mm256_loadu_ps(x0 + (long)j * K + k);
        for (int i = 0; i < NT; i++) {
            const __m256 wv = _mm256_loadu_ps(wt + (long)i * K + k);
            for (int j = 0; j < mt; j++) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < NT; i++)
        for (int j = 0; j < mt; j++) y[(long)(m0 + j) * N + n0 + i] = hsum8(acc[i][j]);
}

/* Fewer than NT weight rows (the last tile when N % NT != 0): one chain per output. */
static void tile_edge(const float *wt, int nt, const float *x, int m0, int mt, float *y, int n0, int N, int K) {
    for (int i = 0; i < nt; i++)
        for (int j = 0; j < mt; j++) {
            const float *xr = x + (long)(m0 + j) * K, *wr = wt + (long)i * K;
            __m256 a = _mm256_setzero_ps();
            for (int k = 0; k < K; k += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(wr + k), _mm256_loadu_ps(xr + k), a);
            y[(long)(m0 + j) * N + n0 + i] = hsum8(a);
        }
}

static void gemm_tiled(const uint8_t *w, int q8, const float *x, float *y, int M, int N, int K) {
    const int ntiles = (N + NT - 1) / NT;
    for (int mb = 0; mb < M; mb += MB) {
        const int me = mb + MB < M ? mb + MB : M;
#pragma omp parallel
        {
            float wt[NT * K];
#pragma omp for schedule(static)
            for (int t = 0; t < ntiles; t++) {
                const int n0 = t * NT, nt = N - n0 < NT ? N - n0 : NT;
                if (q8) deq_q8_0_rows(w, n0, nt, K, wt); else deq_q4_1_rows(w, n0, nt, K, wt);
                if (nt < NT) {
                    tile_edge(wt, nt, x, mb, me - mb, y, n0, N, K);
                    continue;
                }
                int m = mb;
                for (; m + MT <= me; m += MT) tile_n4(wt, x, y, m, MT, n0, N, K);
                if (me - m == 2) tile_n4(wt, x, y, m, 2, n0, N, K);
                else if (me - m == 1) tile_n4(wt, x, y, m, 1, n0, N, K);
            }
        }
    }
}

void q4_1_gemm_tiled(const uint8_t *w, const float *x, float *y, int M, int N, int K) { gemm_tiled(w, 0, x, y, M, N, K); }
void q8_0_gemm_tiled(const uint8_t *w, const float *x, float *y, int M, int N, int K) { gemm_tiled(w, 1, x, y, M, N, K); }
