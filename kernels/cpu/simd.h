// SIMD helpers shared by the CPU kernels: run-time CPU check, bf16 loads, a fast exp.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace gateway_kernels {

// Software prefetch of the cache lines of [p, p + n) into L2 (weights a step reads once:
// kept out of L1, which holds the step's own inputs and sums). `_mm_prefetch` in a forced
// inline: GCC treats a prefetch-only function as free of effects and deletes its calls (a
// helper of this kind compiled to nothing: the sparse FFN kernel ran without any prefetch).
__attribute__((always_inline)) inline void prefetch_lines(const void* p, int64_t n) {
  const char* c = static_cast<const char*>(p);
  for (int64_t o = 0; o < n; o += 64) _mm_prefetch(c + o, _MM_HINT_T2);
  _mm_prefetch(c + n - 1, _MM_HINT_T2);
}

inline bool kernel_mode_is(const char* want) {
  const char* mode = std::getenv("GATEWAY_CPU_KERNELS");
  return mode && std::strcmp(mode, want) == 0;
}

// GATEWAY_CPU_KERNELS=portable takes the portable paths only (tests run both)
inline bool portable_only() {
  static const bool yes = kernel_mode_is("portable");
  return yes;
}

// GATEWAY_CPU_KERNELS=avx2 skips the AVX-512 paths: what a CPU without AVX512_BF16 runs
inline bool avx512_off() {
  static const bool yes = portable_only() || kernel_mode_is("avx2");
  return yes;
}

// every AVX-512 function is compiled for this set; has_avx512_bf16() guards the calls
#define GK_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

// The AVX-512 paths need bf16 conversions and dot products (AVX512_BF16).
inline bool has_avx512_bf16() {
  static const bool yes = !avx512_off() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512bf16");
  return yes;
}

// int8 dot products (`vpdpbusd`): every CPU with AVX512_BF16 so far has them too
inline bool has_avx512_vnni() {
  static const bool yes = has_avx512_bf16() && __builtin_cpu_supports("avx512vnni");
  return yes;
}

// the AVX2 paths (for CPUs without AVX-512 BF16) are compiled for this set; has_avx2_fma()
// guards the calls
#define GK_AVX2 __attribute__((target("avx2,fma")))

inline bool has_avx2_fma() {
  static const bool yes = !portable_only() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

// exp(x) = 2^n * p(r), |rel err| < 2e-7; below -87.3 it is clamped (softmax needs no less),
// above ~88.7 it is +inf
GK_AVX512 inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}

// exp512's polynomial on 8 lanes (AVX2 + FMA); x is clamped to [-86.6, 88.7] (2^n is built
// in the exponent bits below, so n stays in [-125, 128]): below, ~2.6e-38 instead of less
GK_AVX2 inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-86.6f));
  x = _mm256_min_ps(x, _mm256_set1_ps(88.7f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  // 2^(n-1) from the exponent bits, times 2 (2^128 itself has no exponent field)
  const __m256i e = _mm256_cvtps_epi32(n);
  const __m256 half = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(126)), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, half), _mm256_set1_ps(2.f));
}

GK_AVX512 inline __m512 load_bf16x16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// 16 floats rounded to bf16 (nearest even, as torch rounds) and stored
GK_AVX512 inline void store_bf16x16(uint16_t* p, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(v));
}

GK_AVX512 inline void mask_store_bf16x16(uint16_t* p, __mmask16 k, __m512 v) {
  _mm256_mask_storeu_epi16(p, k, (__m256i)_mm512_cvtneps_pbh(v));
}

GK_AVX512 inline __m512 mask_load_bf16x16(const uint16_t* p, __mmask16 k) {
  const __m256i h = _mm256_maskz_loadu_epi16(k, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// r[i] = sum of the 16 lanes of v[i]: a transposing add tree (45 shuffles and adds for 16
// sums instead of 16 full horizontal reductions)
GK_AVX512 inline __m512 hsum16(const float (*v)[16]) {
  __m512 t[8], u[4];
  for (int i = 0; i < 8; ++i) {
    const __m512 a = _mm512_load_ps(v[2 * i]), b = _mm512_load_ps(v[2 * i + 1]);
    t[i] = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[2 * i]), b = _mm512_castps_pd(t[2 * i + 1]);
    u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  const __m512 x0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 x1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(u[2], u[3], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(x0, x1, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(x0, x1, _MM_SHUFFLE(3, 1, 3, 1)));
}

}  // namespace gateway_kernels
