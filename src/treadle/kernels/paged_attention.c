/* Decode attention read straight from the paged KV cache (no gather into a workspace).
 *
 * One query row per sequence. Cache of one layer: k/v [kv_heads, num_slots, D] fp32, slot =
 * block * block_size + offset. Sequence b has context_lens[b] tokens, its blocks in
 * block_tables[b * max_blocks ...]. Query heads h * group .. h * group + group - 1 share KV head h.
 * For each (sequence, KV head), on one OpenMP thread:
 *   s[g, t] = scale * (q[b, h*group+g] . k[h, slot(t)])       t < L
 *   p = softmax over t (max subtracted, exp, divided by the sum)
 *   out[b, h*group+g] = sum_t p[g, t] * v[h, slot(t)]
 * exp is a polynomial (Cephes-style, ~1 ulp over the range softmax uses). Needs AVX2 + FMA; D % 8 == 0.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static inline float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

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

#define MAXG 16
#define MAXD 256

void paged_decode_attention(const float *q, const float *k_cache, const float *v_cache, const int32_t *block_tables,
                            const int32_t *context_lens, float *out, int B, int num_heads, int kv_heads, int D,
                            long num_slots, int block_size, int max_blocks, float scale) {
    const int group = num_heads / kv_heads;
#pragma omp parallel for schedule(dynamic, 1)
    for (int job = 0; job < B * kv_heads; job++) {
        const int b = job / kv_heads, h = job % kv_heads;
        const int L = context_lens[b];
        const int32_t *table = block_tables + (long)b * max_blocks;
        const float *kh = k_cache + (long)h * num_slots * D, *vh = v_cache + (long)h * num_slots * D;
        const float *qb = q + ((long)b * num_heads + (long)h * group) * D;
        float *s = malloc(sizeof(float) * (size_t)group * (size_t)L);
        for (int t = 0; t < L; t++) {
            const float *kt = kh + ((long)table[t / block_size] * block_size + t % block_size) * D;
            for (int g = 0; g < group; g++) {
                const float *qg = qb + (long)g * D;
                __m256 a = _mm256_setzero_ps();
                for (int d = 0; d < D; d += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), _mm256_loadu_ps(kt + d), a);
                s[(long)g * L + t] = hsum8(a) * scale;
            }
        }
        for (int g = 0; g < group; g++) softmax_inplace(s + (long)g * L, L);
        __m256 acc[MAXG][MAXD / 8];
        for (int g = 0; g < group; g++)
            for (int d = 0; d < D / 8; d++) acc[g][d] = _mm256_setzero_ps();
        for (int t = 0; t < L; t++) {
            const float *vt = vh + ((long)table[t / block_size] * block_size + t % block_size) * D;
            for (int g = 0; g < group; g++) {
                const __m256 p = _mm256_set1_ps(s[(long)g * L + t]);
                for (int d = 0; d < D / 8; d++) acc[g][d] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vt + d * 8), acc[g][d]);
            }
        }
        float *ob = out + ((long)b * num_heads + (long)h * group) * D;
        for (int g = 0; g < group; g++)
            for (int d = 0; d < D / 8; d++) _mm256_storeu_ps(ob + (long)g * D + d * 8, acc[g][d]);
        free(s);
    }
}

int paged_attention_max_group(void) { return MAXG; }
int paged_attention_max_head_dim(void) { return MAXD; }
