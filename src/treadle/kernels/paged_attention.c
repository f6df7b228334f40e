/* Decode attention read straight from the paged KV cache (no gather into a workspace).
 *
 * One query row per sequence. Cache of one layer: k/v [kv_heads, num_slots, D] fp32, slot =
 * block * block_size + offset. Sequence b has context_lens[b] tokens, its blocks in
 * block_tables[b * max_blocks ...]. Query heads h * group .. h * group + group - 1 share KV head h.
 * For each (sequence, query head), on one OpenMP thread:
 *   s[g, t] = scale * (q[b, h*group+g] . k[h, slot(t)])       t < L
 *   p = softmax over t (max subtracted, exp, divided by the sum)
 *   out[b, h*group+g] = sum_t p[g, t] * v[h, slot(t)]
 * exp is a polynomial (Cephes-style, ~1 ulp over the range softmax uses). Needs AVX2 + FMA; D % 8 == 0.
 */
#include <immintrin.h>

#include "simd.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* The cache's element type: fp32, or IEEE fp16 converted to fp32 on load (F16C) when built with -DKV_FP16.
 * Only a benchmark builds the fp16 variant so far (scripts/kv_precision_attention.c). */
#ifdef KV_FP16
typedef uint16_t kv_t;
#define LOAD_KV(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define PAGED_DECODE_ATTENTION paged_decode_attention_f16
#else
typedef float kv_t;
#define LOAD_KV(p) _mm256_loadu_ps(p)
#define PAGED_DECODE_ATTENTION paged_decode_attention
#endif

/* exp(x) for x <= 0 (softmax after max subtraction); inputs below -87 give 0. */
static inline __m256 exp256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.3f);
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 c1 = _mm256_set1_ps(0.693359375f), c2 = _mm256_set1_ps(-2.12194440e-4f);
    __m256 below = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_sub_ps(x, _mm256_mul_ps(fx, c1));
    x = _mm256_sub_ps(x, _mm256_mul_ps(fx, c2));
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(below, y);
}

static void softmax_inplace(float *s, int n) {
    float mx = -INFINITY;
    for (int t = 0; t < n; t++) mx = s[t] > mx ? s[t] : mx;
    const __m256 m = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    int t = 0;
    for (; t + 8 <= n; t += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + t), m));
        _mm256_storeu_ps(s + t, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum8(acc);
    if (t < n) {
        float tail[8] = {0};
        for (int i = t; i < n; i++) tail[i - t] = s[i] - mx;
        __m256 e = exp256(_mm256_loadu_ps(tail));
        _mm256_storeu_ps(tail, e);
        for (int i = t; i < n; i++) { s[i] = tail[i - t]; sum += tail[i - t]; }
    }
    const float inv = 1.0f / sum;
    for (t = 0; t < n; t++) s[t] *= inv;
}

#define MAXD 256

/* Scores of query row qg against the L cached keys, two keys at a time, each dot product in two
 * 8-lane halves (even and odd chunks of 8): four independent FMA chains instead of one. */
static void scores(const float *qg, const kv_t *kh, const int32_t *table, int block_size, int L, int D,
                   float scale, float *s) {
    int t = 0;
    for (; t + 2 <= L; t += 2) {
        const kv_t *k0 = kh + ((long)table[t / block_size] * block_size + t % block_size) * D;
        const kv_t *k1 = kh + ((long)table[(t + 1) / block_size] * block_size + (t + 1) % block_size) * D;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
        int d = 0;
        for (; d + 16 <= D; d += 16) {
            const __m256 q0 = _mm256_loadu_ps(qg + d), q1 = _mm256_loadu_ps(qg + d + 8);
            a0 = _mm256_fmadd_ps(q0, LOAD_KV(k0 + d), a0);
            a1 = _mm256_fmadd_ps(q1, LOAD_KV(k0 + d + 8), a1);
            b0 = _mm256_fmadd_ps(q0, LOAD_KV(k1 + d), b0);
            b1 = _mm256_fmadd_ps(q1, LOAD_KV(k1 + d + 8), b1);
        }
        if (d < D) {
            const __m256 q0 = _mm256_loadu_ps(qg + d);
            a0 = _mm256_fmadd_ps(q0, LOAD_KV(k0 + d), a0);
            b0 = _mm256_fmadd_ps(q0, LOAD_KV(k1 + d), b0);
        }
        s[t] = hsum8(_mm256_add_ps(a0, a1)) * scale;
        s[t + 1] = hsum8(_mm256_add_ps(b0, b1)) * scale;
    }
    if (t < L) {
        const kv_t *k0 = kh + ((long)table[t / block_size] * block_size + t % block_size) * D;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        int d = 0;
        for (; d + 16 <= D; d += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), LOAD_KV(k0 + d), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d + 8), LOAD_KV(k0 + d + 8), a1);
        }
        if (d < D) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), LOAD_KV(k0 + d), a0);
        s[t] = hsum8(_mm256_add_ps(a0, a1)) * scale;
    }
}

/* out = sum_t p[t] * v[slot(t)] with ND = D / 8 accumulators (registers when ND is a constant). */
static inline __attribute__((always_inline)) void weighted_values(const float *p, const kv_t *vh,
                                                                  const int32_t *table, int block_size, int L,
                                                                  const int nd, float *o) {
    __m256 acc[MAXD / 8];
    for (int d = 0; d < nd; d++) acc[d] = _mm256_setzero_ps();
    for (int t = 0; t < L; t++) {
        const kv_t *vt = vh + ((long)table[t / block_size] * block_size + t % block_size) * nd * 8;
        const __m256 pt = _mm256_set1_ps(p[t]);
        for (int d = 0; d < nd; d++) acc[d] = _mm256_fmadd_ps(pt, LOAD_KV(vt + d * 8), acc[d]);
    }
    for (int d = 0; d < nd; d++) _mm256_storeu_ps(o + d * 8, acc[d]);
}

/* One job per (sequence, query head), so one sequence's heads spread over the threads; each job
 * reads its KV head's rows (shared by the group's heads, so they are warm in cache for the others). */
void PAGED_DECODE_ATTENTION(const float *q, const kv_t *k_cache, const kv_t *v_cache, const int32_t *block_tables,
                            const int32_t *context_lens, float *out, int B, int num_heads, int kv_heads, int D,
                            long num_slots, int block_size, int max_blocks, float scale) {
    const int group = num_heads / kv_heads;
#pragma omp parallel for schedule(dynamic, 1)
    for (int job = 0; job < B * num_heads; job++) {
        const int b = job / num_heads, qh = job % num_heads, h = qh / group;
        const int L = context_lens[b];
        const int32_t *table = block_tables + (long)b * max_blocks;
        const kv_t *kh = k_cache + (long)h * num_slots * D, *vh = v_cache + (long)h * num_slots * D;
        float *s = malloc(sizeof(float) * (size_t)L);
        scores(q + ((long)b * num_heads + qh) * D, kh, table, block_size, L, D, scale, s);
        softmax_inplace(s, L);
        float *o = out + ((long)b * num_heads + qh) * D;
        if (D == 64) weighted_values(s, vh, table, block_size, L, 8, o);
        else if (D == 128) weighted_values(s, vh, table, block_size, L, 16, o);
        else weighted_values(s, vh, table, block_size, L, D / 8, o);
        free(s);
    }
}

#ifndef KV_FP16
int paged_attention_max_head_dim(void) { return MAXD; }
#endif
