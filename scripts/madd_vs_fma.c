/* Peak multiply-add rate of 16-bit integer pairs (vpmaddwd + vpaddd) against fp32 FMA on this CPU.
 *
 * Usage: gcc -O2 -mavx2 -mfma scripts/madd_vs_fma.c -o /tmp/madd_vs_fma && /tmp/madd_vs_fma
 * Eight independent accumulator chains, so every loop is bound by throughput, not latency:
 * - fma:  vfmadd on 8 fp32 lanes, 8 multiply-adds per instruction;
 * - madd: vpmaddwd (16 int16 x int16 products summed in pairs to 8 int32) + vpaddd, 16 per instruction;
 * - mix:  one of each per chain, which shows whether the two share execution ports.
 * An int16-activation GEMM (the narrowest activations that keep issue 17's greedy-agreement bar,
 * scripts/activation_precision_agreement.py) can be at most madd/fma times faster than fp32 here.
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define R8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define KEEP __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7))

int main(void) {
    const long n = 100000000;
    __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-9f);
    __m256i w = _mm256_set1_epi16(3);
#define DECL(i) __m256 f##i = _mm256_set1_ps(1.0f + i); __m256i a##i = _mm256_set1_epi16(i + 1), b##i = _mm256_set1_epi32(i);
    R8(DECL)
#define FMA(i) f##i = _mm256_fmadd_ps(f##i, m, c);
#define MADD(i) b##i = _mm256_add_epi32(b##i, _mm256_madd_epi16(w, a##i));
#define MIX(i) MADD(i) FMA(i)
    double t = now();
    for (long k = 0; k < n; k++) { R8(FMA) R8(FMA) }
    double t_fma = now() - t;
    t = now();
    for (long k = 0; k < n; k++) { R8(MADD) R8(MADD) KEEP; }
    double t_madd = now() - t;
    t = now();
    for (long k = 0; k < n; k++) { R8(MIX) KEEP; }
    double t_mix = now() - t;
    float s = 0;
    int si = 0;
#define SUM(i) s += f##i[0]; si += _mm256_extract_epi32(b##i, 0);
    R8(SUM)
    double fma = 16.0 * 8 * n / t_fma / 1e9, madd = 16.0 * 16 * n / t_madd / 1e9, mix = 8.0 * 24 * n / t_mix / 1e9;
    printf("multiply-adds per ns, one core: fp32 fma %.1f | int16 madd %.1f (%.2fx) | mixed %.1f  [%g %d]\n",
           fma, madd, madd / fma, mix, s, si);
    return 0;
}
