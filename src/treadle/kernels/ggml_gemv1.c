/* One-row GEMV over GGUF blocks, with the block scale factored out of the dot product.
 *
 * A decode step with one token row is bound by rebuilding weights, not by memory: the tiled kernel
 * (ggml_gemv.c) turns every 4-bit value into an fp32 weight (convert, multiply, add), stores it and
 * reads it back. Here a block's 32 values are only converted to floats and the block's constants
 * are applied once per block:
 *   Q4_1: y = sum_b d_b * ((q_b - 8) . x_b) + (m_b + 8 d_b) * s_b,   s_b = sum of x over block b
 *         (once per row); centring q (0..15) on 8 keeps the two terms from cancelling when x has
 *         a nonzero mean (m_b is about -8 d_b), which factoring out m_b alone did (errors of 6e-6).
 *   Q8_0: y = sum_b d_b * (q_b . x_b)
 * with q_b . x_b summed in 8 lanes as (q0 x0 + q2 x2) + (q1 x1 + q3 x3) over the block's four groups
 * of 8, d_b times that added into 8-lane accumulators, one horizontal sum at the end; the m_b s_b
 * terms of four weight rows are kept in one 4-lane accumulator. All in fp32 from the same weights
 * (d*q + m exactly: no weight is rounded first), so a result differs from the tiled kernel's only
 * in rounding (relative to the largest output, under 1e-6 in the tests); the kernel is
 * deterministic. Four weight rows are interleaved (independent chains), each prefetched FX_AHEAD
 * bytes ahead, and tiles of four rows are split across OpenMP threads. Speed against the tiled
 * kernel: scripts/bench_linear_formats.py (docs/BENCHMARKS.md "One-row decode").
 */
#include <immintrin.h>

#include "simd.h"
#include <stdint.h>
#include <string.h>

#define FX_NT 4
#define FX_MAX_K 16384 /* GEMV1_MAX_K in ggml.py (test-pinned): the stack holds K / 32 block sums */
/* Four interleaved rows defeat the hardware prefetcher on matrices that stream from memory (the
 * 30 MB lm_head ran slower than the tiled kernel without this); 8 KiB ahead was the fastest of
 * 128 B - 16 KiB tried on the reference machine. */
#define FX_AHEAD 8192
#define FX_PREFETCH4(r0, r1, r2, r3, o)                                                                        \
    _mm_prefetch((const char *)(r0) + (o) + FX_AHEAD, _MM_HINT_T0),                                            \
        _mm_prefetch((const char *)(r1) + (o) + FX_AHEAD, _MM_HINT_T0),                                        \
        _mm_prefetch((const char *)(r2) + (o) + FX_AHEAD, _MM_HINT_T0),                                        \
        _mm_prefetch((const char *)(r3) + (o) + FX_AHEAD, _MM_HINT_T0)

/* d * ((q0 x0 + q2 x2) + (q1 x1 + q3 x3)) + acc */
static inline __m256 fx_block(__m256 q0, __m256 q1, __m256 q2, __m256 q3, const float *xb, __m256 d, __m256 acc) {
    __m256 s0 = _mm256_mul_ps(q0, _mm256_loadu_ps(xb)), s1 = _mm256_mul_ps(q1, _mm256_loadu_ps(xb + 8));
    s0 = _mm256_fmadd_ps(q2, _mm256_loadu_ps(xb + 16), s0);
    s1 = _mm256_fmadd_ps(q3, _mm256_loadu_ps(xb + 24), s1);
    return _mm256_fmadd_ps(d, _mm256_add_ps(s0, s1), acc);
}

/* Q4_1 block b of weight row n: d * (q . x_b) + acc; the row's d and m are read by the caller. */
static inline __m256 fx_q4_1_block(const uint8_t *blk, const float *xb, __m256 d, __m256 acc) {
    const __m128i mask = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    const __m128i qs = _mm_loadu_si128((const __m128i *)(blk + 4));
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(qs, mask), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), mask), eight);
    return fx_block(i8_to_ps(lo), i8_to_ps(_mm_srli_si128(lo, 8)), i8_to_ps(hi), i8_to_ps(_mm_srli_si128(hi, 8)), xb, d, acc);
}

static inline __m256 fx_q8_0_block(const uint8_t *blk, const float *xb, __m256 acc) {
    uint16_t dh;
    memcpy(&dh, blk, 2);
    const __m128i q0 = _mm_loadu_si128((const __m128i *)(blk + 2));
    const __m128i q1 = _mm_loadu_si128((const __m128i *)(blk + 18));
    return fx_block(i8_to_ps(q0), i8_to_ps(_mm_srli_si128(q0, 8)), i8_to_ps(q1), i8_to_ps(_mm_srli_si128(q1, 8)), xb,
                    _mm256_set1_ps(_cvtsh_ss(dh)), acc);
}

/* Weight rows n0..n0+3 of a Q4_1 matrix against one row x (block sums xs): four accumulators in
 * registers, the four rows' d and m converted together, the m * s terms in one 4-lane accumulator. */
static void fx_q4_1_rows4(const uint8_t *w, const float *x, const float *xs, float *y, int n0, int K) {
    const int nb = K / 32;
    const long rb = (long)nb * 20;
    const uint8_t *r0 = w + (long)n0 * rb, *r1 = r0 + rb, *r2 = r1 + rb, *r3 = r2 + rb;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m128 macc = _mm_setzero_ps();
    const __m256i dsel = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int b = 0; b < nb; b++) {
        const long o = (long)b * 20;
        FX_PREFETCH4(r0, r1, r2, r3, o);
        uint32_t dm[4];
        memcpy(dm, r0 + o, 4), memcpy(dm + 1, r1 + o, 4), memcpy(dm + 2, r2 + o, 4), memcpy(dm + 3, r3 + o, 4);
        /* d0 d1 d2 d3 | m0 m1 m2 m3 */
        const __m256 dmf = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dm)), dsel);
        const __m128 dv = _mm256_castps256_ps128(dmf);
        const __m128 mc = _mm_fmadd_ps(_mm_set1_ps(8.0f), dv, _mm256_extractf128_ps(dmf, 1)); /* m + 8 d */
        macc = _mm_fmadd_ps(mc, _mm_set1_ps(xs[b]), macc);
        const float *xb = x + (long)b * 32;
        a0 = fx_q4_1_block(r0 + o, xb, _mm256_broadcastss_ps(dv), a0);
        a1 = fx_q4_1_block(r1 + o, xb, _mm256_broadcastss_ps(_mm_shuffle_ps(dv, dv, 1)), a1);
        a2 = fx_q4_1_block(r2 + o, xb, _mm256_broadcastss_ps(_mm_shuffle_ps(dv, dv, 2)), a2);
        a3 = fx_q4_1_block(r3 + o, xb, _mm256_broadcastss_ps(_mm_shuffle_ps(dv, dv, 3)), a3);
    }
    float mt[4];
    _mm_storeu_ps(mt, macc);
    y[n0] = hsum8(a0) + mt[0], y[n0 + 1] = hsum8(a1) + mt[1];
    y[n0 + 2] = hsum8(a2) + mt[2], y[n0 + 3] = hsum8(a3) + mt[3];
}

/* One Q4_1 weight row (the edge when N % 4 != 0): the same sums in the same order as fx_q4_1_rows4. */
static void fx_q4_1_row1(const uint8_t *w, const float *x, const float *xs, float *y, int n, int K) {
    const int nb = K / 32;
    const uint8_t *r = w + (long)n * nb * 20;
    __m256 a = _mm256_setzero_ps();
    __m128 macc = _mm_setzero_ps();
    for (int b = 0; b < nb; b++) {
        uint16_t dm[2];
        memcpy(dm, r + (long)b * 20, 4);
        const float d = _cvtsh_ss(dm[0]);
        const __m128 mc = _mm_fmadd_ps(_mm_set1_ps(8.0f), _mm_set1_ps(d), _mm_set1_ps(_cvtsh_ss(dm[1])));
        macc = _mm_fmadd_ps(mc, _mm_set1_ps(xs[b]), macc);
        a = fx_q4_1_block(r + (long)b * 20, x + (long)b * 32, _mm256_set1_ps(d), a);
    }
    y[n] = hsum8(a) + _mm_cvtss_f32(macc);
}

static void fx_q8_0_rows4(const uint8_t *w, const float *x, float *y, int n0, int K) {
    const int nb = K / 32;
    const long rb = (long)nb * 34;
    const uint8_t *r0 = w + (long)n0 * rb, *r1 = r0 + rb, *r2 = r1 + rb, *r3 = r2 + rb;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int b = 0; b < nb; b++) {
        const long o = (long)b * 34;
        const float *xb = x + (long)b * 32;
        FX_PREFETCH4(r0, r1, r2, r3, o);
        a0 = fx_q8_0_block(r0 + o, xb, a0);
        a1 = fx_q8_0_block(r1 + o, xb, a1);
        a2 = fx_q8_0_block(r2 + o, xb, a2);
        a3 = fx_q8_0_block(r3 + o, xb, a3);
    }
    y[n0] = hsum8(a0), y[n0 + 1] = hsum8(a1), y[n0 + 2] = hsum8(a2), y[n0 + 3] = hsum8(a3);
}

static void fx_q8_0_row1(const uint8_t *w, const float *x, float *y, int n, int K) {
    const int nb = K / 32;
    const uint8_t *r = w + (long)n * nb * 34;
    __m256 a = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) a = fx_q8_0_block(r + (long)b * 34, x + (long)b * 32, a);
    y[n] = hsum8(a);
}

/* y[m, :] = W x[m, :] for each of the M rows in turn (the kernel is meant for M = 1). */
static void fx_gemm(const uint8_t *w, int q8, const float *x, float *y, int M, int N, int K) {
    const int ntiles = (N + FX_NT - 1) / FX_NT, nb = K / 32;
    float xs[FX_MAX_K / 32];
    for (int m = 0; m < M; m++) {
        const float *xm = x + (long)m * K;
        float *ym = y + (long)m * N;
        if (!q8)
            for (int b = 0; b < nb; b++) {
                __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(xm + b * 32), _mm256_loadu_ps(xm + b * 32 + 8)),
                                         _mm256_add_ps(_mm256_loadu_ps(xm + b * 32 + 16), _mm256_loadu_ps(xm + b * 32 + 24)));
                xs[b] = hsum8(s);
            }
#pragma omp parallel for schedule(static)
        for (int t = 0; t < ntiles; t++) {
            const int n0 = t * FX_NT;
            if (n0 + FX_NT <= N) {
                if (q8) fx_q8_0_rows4(w, xm, ym, n0, K); else fx_q4_1_rows4(w, xm, xs, ym, n0, K);
            } else {
                for (int n = n0; n < N; n++)
                    if (q8) fx_q8_0_row1(w, xm, ym, n, K); else fx_q4_1_row1(w, xm, xs, ym, n, K);
            }
        }
    }
}

int gemv1_max_k(void) { return FX_MAX_K; }
/* For decode_stack.c: y[N] = W x for one row; q8: Q8_0 blocks, else Q4_1. */
void gemv1(const uint8_t *w, int q8, const float *x, float *y, int N, int K) { fx_gemm(w, q8, x, y, 1, N, K); }
void q4_1_gemv1(const uint8_t *w, const float *x, float *y, int M, int N, int K) { fx_gemm(w, 0, x, y, M, N, K); }
void q8_0_gemv1(const uint8_t *w, const float *x, float *y, int M, int N, int K) { fx_gemm(w, 1, x, y, M, N, K); }
