/* The whole decoder stack for one token row, in one call: what LlamaModel.forward does for a
 * one-row decode step without LoRA, when every projection has GGUF blocks and the KV cache is fp32.
 *
 * Per layer (the same operations, in the same order, as LlamaLayer.forward):
 *   x = rms_norm(h) * w_in;  qkv = W_qkv x (+ b);  RoPE on the q and k heads (rotate-half);
 *   k, v written to the cache slot;  a = attention(q, cache) (paged_decode_attention, B = 1);
 *   h += W_o a;  x = rms_norm(h) * w_post;  [g; u] = W_gu x;  h += W_down (silu(g) * u)
 * The projections are the one-row kernel (ggml_gemv1.c); rms_norm is x * (1 / sqrt(mean(x^2) + eps))
 * then times the weight, as torch computes it; silu(g) = g / (1 + exp(-g)). Sums run in another
 * order than torch's, so the hidden state agrees with the per-op path to fp32 rounding (tests).
 * Replacing ~20 torch calls and 5 ctypes calls per layer by nothing is the point: at one row the
 * per-op Python and dispatch work cost as much as a third of the step.
 *
 * Layer descriptor (int64 x DS_FIELDS, built once in Python): pointers to w_in, w_post, the four
 * block matrices, their q8 flags, the qkv bias (0: none), the k and v caches of that layer.
 */
#include <immintrin.h>
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
    float ss = 0.0f, lanes[8];
    _mm256_storeu_ps(lanes, acc);
    for (int j = 0; j < 8; j++) ss += lanes[j];
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

/* h [H] in place through every layer. cfg: H, num_heads, kv_heads, D, I, block_size, max_blocks,
 * context_len; slot: this token's cache slot; num_slots: slots per head in each cache. */
void decode_stack(const int64_t *desc, int layers, float *h, const float *cos, const float *sin, long slot,
                  long num_slots, const int32_t *block_table, const int32_t *cfg, float eps, float scale) {
    const int H = cfg[0], nh = cfg[1], nkv = cfg[2], D = cfg[3], I = cfg[4], bs = cfg[5], mb = cfg[6];
    const int32_t ctx = cfg[7];
    const int nqkv = (nh + 2 * nkv) * D;
    float *x = malloc(sizeof(float) * (size_t)(H + nqkv + nh * D + 2 * I + I + H));
    float *qkv = x + H, *att = qkv + nqkv, *gu = att + nh * D, *act = gu + 2 * I, *tmp = act + I;
    for (int l = 0; l < layers; l++) {
        const int64_t *d = desc + (long)l * DS_FIELDS;
        rms_norm(h, (const float *)d[DS_W_IN], eps, x, H);
        gemv1((const uint8_t *)d[DS_QKV], (int)d[DS_QKV_Q8], x, qkv, nqkv, H);
        if (d[DS_BIAS])
            for (int i = 0; i < nqkv; i++) qkv[i] += ((const float *)d[DS_BIAS])[i];
        rope(qkv, nh + nkv, D, cos, sin);
        float *kc = (float *)d[DS_K], *vc = (float *)d[DS_V];
        for (int g = 0; g < nkv; g++) {
            memcpy(kc + ((long)g * num_slots + slot) * D, qkv + (long)(nh + g) * D, sizeof(float) * D);
            memcpy(vc + ((long)g * num_slots + slot) * D, qkv + (long)(nh + nkv + g) * D, sizeof(float) * D);
        }
        paged_decode_attention(qkv, kc, vc, block_table, &ctx, att, 1, nh, nkv, D, num_slots, bs, mb, scale);
        gemv1((const uint8_t *)d[DS_O], (int)d[DS_O_Q8], att, tmp, H, nh * D);
        for (int i = 0; i < H; i++) h[i] += tmp[i];
        rms_norm(h, (const float *)d[DS_W_POST], eps, x, H);
        gemv1((const uint8_t *)d[DS_GU], (int)d[DS_GU_Q8], x, gu, 2 * I, H);
        for (int i = 0; i < I; i++) {
            const float g = gu[i];
            act[i] = (g / (1.0f + expf(-g))) * gu[I + i];
        }
        gemv1((const uint8_t *)d[DS_DOWN], (int)d[DS_DOWN_Q8], act, tmp, H, I);
        for (int i = 0; i < H; i++) h[i] += tmp[i];
    }
    free(x);
}
