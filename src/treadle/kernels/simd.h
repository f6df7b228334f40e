/* AVX2 helpers shared by the kernels of treadle/kernels (one header, static inline: each .c file
 * gets its own copy, as the library is built from several translation units). */
#ifndef TREADLE_SIMD_H
#define TREADLE_SIMD_H
#include <immintrin.h>

/* The sum of the 8 lanes: (lo + hi) halves, then pairs, then the last two. */
static inline float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* The low 8 bytes of v as 8 floats (unsigned / signed). */
static inline __m256 u8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
static inline __m256 i8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

#endif
