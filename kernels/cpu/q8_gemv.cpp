// The output projection for a few rows from the model file's Q8_0 blocks: y = x @ W^T in
// fp32, W [N, K] as each row's K int8 weights then its K / 32 fp16 block scales (w = d q, the
// file's values exactly). SmolLM2's head is Q8_0 in the file: 30 MB a decode step instead of
// the 56 MB of a bf16 copy (which also rounds d q to 8 bits), and the step is bound by
// memory. Each block's 32 products are exact in fp32 (a bf16 or fp32 x times a small
// integer), summed in fp32 and scaled once; a row's result does not depend on the others.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "simd.h"

namespace {

using namespace gateway_kernels;

constexpr int kMaxRows = 4;
constexpr int64_t kBlock = 32;
constexpr int64_t kTile = 16;  // outputs reduced together
// A decode step's head comes from memory (the layers evict it), and the arithmetic between
// loads kept too few of them in flight: 12 GB/s where a plain read of the same bytes runs at
// ~21 (cold cache, a 2-core Xeon). Each row asks for the lines of the row this far ahead:
// 17-18 GB/s.
constexpr int64_t kAheadBytes = 8 * 1024;

inline float half_to_float(uint16_t h) { return c10::detail::fp16_ieee_to_fp32_value(h); }

#define GK_AVX512_F16C __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c,fma")))
#define GK_AVX2_F16C __attribute__((target("avx2,fma,f16c")))

// outputs [n0, n0 + count) of every row (count <= 16)
GK_AVX512_F16C void tile_avx512(const float* x, int M, int64_t K, const uint8_t* w, int64_t rb, int64_t n0,
                                int64_t count, float* y, int64_t N) {
  alignas(64) float part[kMaxRows][16][16];
  const int64_t nb = K / kBlock;
  for (int64_t i = 0; i < 16; ++i) {
    __m512 acc[kMaxRows];
    for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    if (i < count) {
      const uint8_t* row = w + (n0 + i) * rb;
      if ((n0 + i) * rb + kAheadBytes + rb <= N * rb) prefetch_lines(row + kAheadBytes, rb);
      const uint16_t* d = reinterpret_cast<const uint16_t*>(row + K);
      for (int64_t b = 0; b < nb; ++b) {
        const __m128i* q = reinterpret_cast<const __m128i*>(row + b * kBlock);
        const __m512 q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q)));
        const __m512 q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q + 1)));
        const __m512 scale = _mm512_set1_ps(_cvtsh_ss(d[b]));
        for (int m = 0; m < M; ++m) {
          const float* xb = x + m * K + b * kBlock;
          const __m512 t = _mm512_fmadd_ps(q1, _mm512_loadu_ps(xb + 16), _mm512_mul_ps(q0, _mm512_loadu_ps(xb)));
          acc[m] = _mm512_fmadd_ps(scale, t, acc[m]);
        }
      }
    }
    for (int m = 0; m < M; ++m) _mm512_store_ps(part[m][i], acc[m]);
  }
  const __mmask16 k = count >= 16 ? __mmask16(0xffff) : __mmask16((1u << count) - 1);
  for (int m = 0; m < M; ++m) _mm512_mask_storeu_ps(y + m * N + n0, k, hsum16(part[m]));
}

GK_AVX2_F16C void tile_avx2(const float* x, int M, int64_t K, const uint8_t* w, int64_t rb, int64_t n0, int64_t count,
                            float* y, int64_t N) {
  const int64_t nb = K / kBlock;
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* row = w + (n0 + i) * rb;
    if ((n0 + i) * rb + kAheadBytes + rb <= N * rb) prefetch_lines(row + kAheadBytes, rb);
    const uint16_t* d = reinterpret_cast<const uint16_t*>(row + K);
    __m256 acc[kMaxRows];
    for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256 q[4];
      for (int j = 0; j < 4; ++j)
        q[j] = _mm256_cvtepi32_ps(
            _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + b * kBlock + 8 * j))));
      const __m256 scale = _mm256_set1_ps(_cvtsh_ss(d[b]));
      for (int m = 0; m < M; ++m) {
        const float* xb = x + m * K + b * kBlock;
        __m256 t = _mm256_mul_ps(q[0], _mm256_loadu_ps(xb));
        for (int j = 1; j < 4; ++j) t = _mm256_fmadd_ps(q[j], _mm256_loadu_ps(xb + 8 * j), t);
        acc[m] = _mm256_fmadd_ps(scale, t, acc[m]);
      }
    }
    for (int m = 0; m < M; ++m) {
      const __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[m]), _mm256_extractf128_ps(acc[m], 1));
      const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
      y[m * N + n0 + i] = _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
    }
  }
}

void tile_portable(const float* x, int M, int64_t K, const uint8_t* w, int64_t rb, int64_t n0, int64_t count, float* y,
                   int64_t N) {
  const int64_t nb = K / kBlock;
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* row = w + (n0 + i) * rb;
    for (int m = 0; m < M; ++m) {
      float acc = 0.f;
      for (int64_t b = 0; b < nb; ++b) {
        uint16_t h;
        std::memcpy(&h, row + K + 2 * b, 2);
        float t = 0.f;
        for (int64_t j = 0; j < kBlock; ++j)
          t += float(static_cast<int8_t>(row[b * kBlock + j])) * x[m * K + b * kBlock + j];
        acc += half_to_float(h) * t;
      }
      y[m * N + n0 + i] = acc;
    }
  }
}

at::Tensor q8_gemv(const at::Tensor& x, const at::Tensor& w) {
  TORCH_CHECK(x.dim() == 2 && (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kFloat),
              "x [M, K] bfloat16 or float32");
  const int64_t M = x.size(0), K = x.size(1);
  TORCH_CHECK(M >= 1 && M <= kMaxRows, "1 to 4 rows");
  TORCH_CHECK(K % kBlock == 0, "K must be a multiple of 32");
  const int64_t rb = K + K / 16;  // K int8 weights, then K / 32 fp16 scales
  TORCH_CHECK(w.scalar_type() == at::kByte && w.dim() == 2 && w.size(1) == rb && w.is_contiguous(),
              "w [N, K + K / 16] uint8 (Q8_0 rows)");
  const int64_t N = w.size(0);
  const at::Tensor xf = x.to(at::kFloat).contiguous();
  auto y = at::empty({M, N}, x.options().dtype(at::kFloat));
  const float* xp = xf.const_data_ptr<float>();
  const uint8_t* wp = w.const_data_ptr<uint8_t>();
  float* yp = y.mutable_data_ptr<float>();
  const int Mi = static_cast<int>(M);
  const bool avx512 = has_avx512_bf16(), avx2 = has_avx2_fma();
  const int64_t tiles = (N + kTile - 1) / kTile;
  at::parallel_for(0, tiles, 64, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t n0 = t * kTile, count = std::min(kTile, N - n0);
      if (avx512)
        tile_avx512(xp, Mi, K, wp, rb, n0, count, yp, N);
      else if (avx2)
        tile_avx2(xp, Mi, K, wp, rb, n0, count, yp, N);
      else
        tile_portable(xp, Mi, K, wp, rb, n0, count, yp, N);
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gateway_kernels, m) { m.def("q8_gemv(Tensor x, Tensor w) -> Tensor"); }

TORCH_LIBRARY_IMPL(gateway_kernels, CPU, m) { m.impl("q8_gemv", q8_gemv); }
