/* Decode attention over an fp32 against an fp16 KV cache: the kernel of src/treadle/kernels/paged_attention.c
 * built both ways (-DKV_FP16 reads IEEE half and converts with F16C), same queries, same block tables.
 *
 * Usage (docs/BENCHMARKS.md, "What the 90% agreement bar admits"):
 *   K=src/treadle/kernels; F="-O3 -mavx2 -mfma -mf16c -fopenmp -ffp-contract=off"
 *   gcc $F -c $K/paged_attention.c -o /tmp/pa32.o && gcc $F -DKV_FP16 -c $K/paged_attention.c -o /tmp/pa16.o
 *   gcc $F scripts/kv_precision_attention.c /tmp/pa32.o /tmp/pa16.o -lm -o /tmp/kv_attention
 *   OMP_NUM_THREADS=2 flock /tmp/treadle-cpu.lock /tmp/kv_attention [SEQS] [CONTEXT] [STEPS]
 * SmolLM2-135M's shapes: 30 layers, 9 query heads on 3 KV heads of 64; SEQS sequences (default 64) of CONTEXT
 * tokens (default 180: a 52-token prompt plus 128 generated), blocks of 16 scattered over the cache, each layer
 * its own cache (as in a real step, so the cache streams from memory). One "step" = the 30 layers' decode
 * attention. Prints ms per step for both (fp32 and fp16 taken in turn, STEPS times each, default 20: the medians)
 * and the largest difference between their outputs relative to the largest output.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void paged_decode_attention(const float *q, const float *k_cache, const float *v_cache, const int32_t *block_tables,
                            const int32_t *context_lens, float *out, int B, int num_heads, int kv_heads, int D,
                            long num_slots, int block_size, int max_blocks, float scale);
void paged_decode_attention_f16(const float *q, const uint16_t *k_cache, const uint16_t *v_cache,
                                const int32_t *block_tables, const int32_t *context_lens, float *out, int B,
                                int num_heads, int kv_heads, int D, long num_slots, int block_size, int max_blocks,
                                float scale);

enum { LAYERS = 30, HEADS = 9, KV_HEADS = 3, D = 64, BS = 16 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float frand(unsigned *s) { *s = *s * 1664525u + 1013904223u; return (float)(*s >> 8) / (1 << 24) - 0.5f; }

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    const int seqs = argc > 1 ? atoi(argv[1]) : 64, ctx = argc > 2 ? atoi(argv[2]) : 180;
    const int steps = argc > 3 ? atoi(argv[3]) : 20;
    const int max_blocks = (ctx + BS - 1) / BS, blocks = seqs * max_blocks;
    const long slots = (long)blocks * BS, per_layer = (long)KV_HEADS * slots * D;
    unsigned seed = 1;
    int32_t *tables = malloc(sizeof(int32_t) * blocks), *lens = malloc(sizeof(int32_t) * seqs);
    for (int i = 0; i < blocks; i++) tables[i] = i;
    for (int i = blocks - 1; i > 0; i--) {  /* blocks scattered over the cache, as after a long run */
        frand(&seed);
        int j = (int)(seed % (unsigned)(i + 1)), t = tables[i];
        tables[i] = tables[j];
        tables[j] = t;
    }
    for (int b = 0; b < seqs; b++) lens[b] = ctx;
    float *k32 = malloc(sizeof(float) * per_layer * LAYERS * 2), *v32 = k32 + per_layer * LAYERS;
    uint16_t *k16 = malloc(sizeof(uint16_t) * per_layer * LAYERS * 2), *v16 = k16 + per_layer * LAYERS;
    for (long i = 0; i < per_layer * LAYERS * 2; i++) k32[i] = frand(&seed) * 4.0f;
    for (long i = 0; i + 8 <= per_layer * LAYERS * 2; i += 8) {  /* the fp16 cache holds the fp32 values rounded */
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(k32 + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(k16 + i), h);
        _mm256_storeu_ps(k32 + i, _mm256_cvtph_ps(h));  /* so both read identical values */
    }
    const long qn = (long)seqs * HEADS * D;
    float *q = malloc(sizeof(float) * qn * LAYERS), *o32 = malloc(sizeof(float) * qn * LAYERS), *o16 = malloc(sizeof(float) * qn * LAYERS);
    for (long i = 0; i < qn * LAYERS; i++) q[i] = frand(&seed);
    double t32[256], t16[256];
    const int n = steps < 256 ? steps : 256;
    for (int r = -1; r < n; r++) {  /* r = -1: warm-up */
        double t = now();
        for (int l = 0; l < LAYERS; l++)
            paged_decode_attention(q + l * qn, k32 + l * per_layer, v32 + l * per_layer, tables, lens, o32 + l * qn,
                                   seqs, HEADS, KV_HEADS, D, slots, BS, max_blocks, 0.125f);
        double m = now() - t;
        t = now();
        for (int l = 0; l < LAYERS; l++)
            paged_decode_attention_f16(q + l * qn, k16 + l * per_layer, v16 + l * per_layer, tables, lens,
                                       o16 + l * qn, seqs, HEADS, KV_HEADS, D, slots, BS, max_blocks, 0.125f);
        if (r >= 0) { t32[r] = m * 1e3; t16[r] = (now() - t) * 1e3; }
    }
    float big = 0, diff = 0;
    for (long i = 0; i < qn * LAYERS; i++) {
        big = fabsf(o32[i]) > big ? fabsf(o32[i]) : big;
        diff = fabsf(o32[i] - o16[i]) > diff ? fabsf(o32[i] - o16[i]) : diff;
    }
    qsort(t32, n, sizeof(double), cmp);
    qsort(t16, n, sizeof(double), cmp);
    printf("%d sequences x %d tokens, 30 layers: KV %.0f MB fp32 / %.0f MB fp16 per step; ms per step (median of %d): "
           "fp32 %.2f, fp16 %.2f (%.2fx); max |diff| / max |out| = %.1e\n", seqs, ctx,
           per_layer * LAYERS * 2 * 4 / 1e6 * ((double)seqs * ctx / slots), per_layer * LAYERS * 2 * 2 / 1e6 * ((double)seqs * ctx / slots),
           n, t32[n / 2], t16[n / 2], t32[n / 2] / t16[n / 2], diff / big);
    return 0;
}
