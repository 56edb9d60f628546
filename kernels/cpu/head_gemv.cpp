// The output projection for a few rows (single and few-stream decode): y = x @ W^T in fp32
// from bf16 x [M, K] and W [N, K]. At these sizes the projection streams W once from memory
// (56 MB for SmolLM2's vocabulary); oneDNN's bf16 GEMM reached ~18 GB/s here and rounds its
// output to bf16, so the top logits needed an exact recomputation. Here each output is a
// bf16 dot product accumulated in fp32 (`vdpbf16ps`), 16 outputs reduced at once, and a
// row's result does not depend on the other rows. AVX-512 BF16; the engine uses the GEMM
// elsewhere (`avx512_bf16()`).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>

#include "simd.h"

namespace {

using namespace gateway_kernels;

constexpr int kMaxRows = 4;
constexpr int64_t kBlock = 16;  // outputs reduced together

// Outputs [n0, n0 + 16) of every row (w rows past N are not read: count < 16 at the end).
GK_AVX512 void block_dot(const uint16_t* x, int M, int64_t K, const uint16_t* w, int64_t n0, int64_t count,
                         float* y, int64_t N) {
  alignas(64) float part[kMaxRows][16][16];
  for (int64_t i = 0; i < 16; ++i) {
    __m512 acc[kMaxRows];
    for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    if (i < count) {
      const uint16_t* wr = w + (n0 + i) * K;
      for (int64_t c = 0; c < K; c += 32) {
        const __m512bh wv = (__m512bh)_mm512_loadu_si512(wr + c);
        for (int m = 0; m < M; ++m)
          acc[m] = _mm512_dpbf16_ps(acc[m], (__m512bh)_mm512_loadu_si512(x + m * K + c), wv);
      }
    }
    for (int m = 0; m < M; ++m) _mm512_store_ps(part[m][i], acc[m]);
  }
  const __mmask16 k = count >= 16 ? __mmask16(0xffff) : __mmask16((1u << count) - 1);
  for (int m = 0; m < M; ++m) _mm512_mask_storeu_ps(y + m * N + n0, k, hsum16(part[m]));
}

at::Tensor head_gemv_bf16(const at::Tensor& x, const at::Tensor& w) {
  TORCH_CHECK(has_avx512_bf16(), "head_gemv needs AVX-512 BF16");
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && x.scalar_type() == at::kBFloat16 && w.scalar_type() == at::kBFloat16,
              "x [M, K] and w [N, K], bfloat16");
  TORCH_CHECK(x.is_contiguous() && w.is_contiguous(), "x and w must be dense");
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  TORCH_CHECK(M >= 1 && M <= kMaxRows, "1 to 4 rows");
  TORCH_CHECK(w.size(1) == K && K % 32 == 0, "K must match and be a multiple of 32");
  auto y = at::empty({M, N}, x.options().dtype(at::kFloat));
  const auto* xp = reinterpret_cast<const uint16_t*>(x.const_data_ptr<at::BFloat16>());
  const auto* wp = reinterpret_cast<const uint16_t*>(w.const_data_ptr<at::BFloat16>());
  float* yp = y.mutable_data_ptr<float>();
  const int64_t blocks = (N + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, 64, [&](int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t n0 = blk * kBlock;
      block_dot(xp, static_cast<int>(M), K, wp, n0, std::min(kBlock, N - n0), yp, N);
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gateway_kernels, m) { m.def("head_gemv_bf16(Tensor x, Tensor w) -> Tensor"); }

TORCH_LIBRARY_IMPL(gateway_kernels, CPU, m) { m.impl("head_gemv_bf16", head_gemv_bf16); }
