/* The whole decoder stack for a decode-only step, in one call: what LlamaModel.forward does for a
 * step of M decode rows (no prefill) without LoRA, when every projection has GGUF blocks for M rows
 * and the KV cache is fp32.
 *
 * Per layer (the same operations, in the same order, as LlamaLayer.forward):
 *   x = rms_norm(h) * w_in;  qkv = W_qkv x (+ b);  RoPE on the q and k heads (rotate-half);
 *   each row's k, v written to its cache slot;  a = attention(q, cache) (paged_decode_attention, B = M);
 *   h += W_o a;  x = rms_norm(h) * w_post;  [g; u] = W_gu x;  h += W_down (silu(g) * u)
 * The projections are the kernels BlockWeight.matmul picks (one row: ggml_gemv1.c, more: the tiled
 * kernel, the same bits as the per-op path); rms_norm is x * (1 / sqrt(mean(x^2) + eps))
 * then times the weight, as torch computes it; silu(g) = g / (1 + exp(-g)). Sums run in another
 * order than torch's, so the hidden state agrees with the per-op path to fp32 rounding (tests).
 * Replacing ~20 torch calls and 5 ctypes calls per layer by nothing is the point: at one row the
 * per-op Python and dispatch work cost as much as a third of the step, at a few rows a fifth.
 *
 * Layer descriptor (int64 x DS_FIELDS, built once in Python): pointers to w_in, w_post, the four
 * block matrices, their q8 flags, the qkv bias (0: none), the k and v caches of that layer.
 */
#include <immintrin.h>

#include "simd.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void gemv1(const uint8_t *w, int q8, const float *x, float *y, int N, int K);
void paged_decode_attention(const float *q, const float *k_cache, const float *v_cache, const int32_t *block_tables,
                            const int32_t *context_lens, float *out, int B, int num_heads, int kv_heads, int D,
                            long num_slots, int block_size, int max_blocks, float scale);

enum { DS_W_IN, DS_W_POST, DS_QKV, DS_QKV_Q8, DS_O, DS_O_Q8, DS_GU, DS_GU_Q8, DS_DOWN, DS_DOWN_Q8, DS_BIAS, DS_K,
       DS_V, DS_FIELDS };

int decode_stack_fields(void) { return DS_FIELDS; }

static void rms_norm(const float *h, const float *w, float eps, float *out, int H) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= H; i += 8) {
        const __m256 v = _mm256_loadu_ps(h + i);
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    float ss = hsum8(acc);
    for (; i < H; i++) ss += h[i] * h[i];
    const float r = 1.0f / sqrtf(ss / (float)H + eps);
    for (i = 0; i < H; i++) out[i] = (h[i] * r) * w[i];
}

/* rotate-half RoPE on n heads of D, in place: [x1, x2] -> [x1 c - x2 s, x2 c + x1 s] */
static void rope(float *x, int n, int D, const float *c, const float *s) {
    const int half = D / 2;
    for (int hd = 0; hd < n; hd++) {
        float *x1 = x + (long)hd * D, *x2 = x1 + half;
        for (int i = 0; i < half; i++) {
            const float a = x1[i], b = x2[i];
            x1[i] = a * c[i] - b * s[i];
            x2[i] = b * c[i] + a * s[i];
        }
    }
}

void q4_1_gemm_tiled(const uint8_t *w, const float *x, float *y, int M, int N, int K);
void q8_0_gemm_tiled(const uint8_t *w, const float *x, float *y, int M, int N, int K);

/* y [M, N] = x [M, K] W^T: the one-row kernel for one row, else the tiled kernel (as BlockWeight.matmul). */
static void project(const uint8_t *w, int q8, const float *x, float *y, int M, int N, int K) {
    if (M == 1) gemv1(w, q8, x, y, N, K);
    else if (q8) q8_0_gemm_tiled(w, x, y, M, N, K);
    else q4_1_gemm_tiled(w, x, y, M, N, K);
}

/* h [M, H] in place through every layer, M decode rows (one per sequence). cfg: H, num_heads,
 * kv_heads, D, I, block_size, max_blocks; cos/sin [M, D/2]; slots [M] (int64): each row's cache
 * slot; block_tables [M, max_blocks], context_lens [M] as for paged_decode_attention;
 * num_slots: slots per head in each cache. */
void decode_stack(const int64_t *desc, int layers, int M, float *h, const float *cos, const float *sin,
                  const int64_t *slots, long num_slots, const int32_t *block_tables, const int32_t *context_lens,
                  const int32_t *cfg, float eps, float scale) {
    const int H = cfg[0], nh = cfg[1], nkv = cfg[2], D = cfg[3], I = cfg[4], bs = cfg[5], mb = cfg[6];
    const int nqkv = (nh + 2 * nkv) * D, half = D / 2;
    float *x = malloc(sizeof(float) * (size_t)M * (size_t)(H + nqkv + 2 * nh * D + 2 * I + I + H));
    float *qkv = x + (long)M * H, *q = qkv + (long)M * nqkv, *att = q + (long)M * nh * D;
    float *gu = att + (long)M * nh * D, *act = gu + (long)M * 2 * I, *tmp = act + (long)M * I;
    for (int l = 0; l < layers; l++) {
        const int64_t *d = desc + (long)l * DS_FIELDS;
        float *kc = (float *)d[DS_K], *vc = (float *)d[DS_V];
        for (int m = 0; m < M; m++) rms_norm(h + (long)m * H, (const float *)d[DS_W_IN], eps, x + (long)m * H, H);
        project((const uint8_t *)d[DS_QKV], (int)d[DS_QKV_Q8], x, qkv, M, nqkv, H);
        for (int m = 0; m < M; m++) {
            float *r = qkv + (long)m * nqkv;
            if (d[DS_BIAS])
                for (int i = 0; i < nqkv; i++) r[i] += ((const float *)d[DS_BIAS])[i];
            rope(r, nh + nkv, D, cos + (long)m * half, sin + (long)m * half);
            memcpy(q + (long)m * nh * D, r, sizeof(float) * nh * D);
            for (int g = 0; g < nkv; g++) {
                memcpy(kc + ((long)g * num_slots + slots[m]) * D, r + (long)(nh + g) * D, sizeof(float) * D);
                memcpy(vc + ((long)g * num_slots + slots[m]) * D, r + (long)(nh + nkv + g) * D, sizeof(float) * D);
            }
        }
        paged_decode_attention(q, kc, vc, block_tables, context_lens, att, M, nh, nkv, D, num_slots, bs, mb, scale);
        project((const uint8_t *)d[DS_O], (int)d[DS_O_Q8], att, tmp, M, H, nh * D);
        for (long i = 0; i < (long)M * H; i++) h[i] += tmp[i];
        for (int m = 0; m < M; m++) rms_norm(h + (long)m * H, (const float *)d[DS_W_POST], eps, x + (long)m * H, H);
        project((const uint8_t *)d[DS_GU], (int)d[DS_GU_Q8], x, gu, M, 2 * I, H);
        for (int m = 0; m < M; m++) {
            const float *g = gu + (long)m * 2 * I;
            for (int i = 0; i < I; i++) act[(long)m * I + i] = (g[i] / (1.0f + expf(-g[i]))) * g[I + i];
        }
        project((const uint8_t *)d[DS_DOWN], (int)d[DS_DOWN_Q8], act, tmp, M, H, I);
        for (long i = 0; i < (long)M * H; i++) h[i] += tmp[i];
    }
    free(x);
}
