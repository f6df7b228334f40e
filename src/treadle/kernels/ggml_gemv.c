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
#include <stdint.h>
#include <string.h>

static inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* 8 uint8 -> 8 floats */
static inline __m256 u8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
static inline __m256 i8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

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
        for (int m = 0; m < M; m++) y[(long)m * N + n] = hsum(acc[m]);
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
        for (int m = 0; m < M; m++) y[(long)m * N + n] = hsum(acc[m]);
    }
}

int max_rows(void) { return MAXM; }
