// y = x @ W^T in bf16 on AVX-512 BF16 CPUs, for every step of more than 4 rows (decode
// batches, prefill, the output projection): x [M, K] and y bf16, W packed once
// (`kernels.cpu_ops.pack_bf16_pairs`) into panels of 16 outputs, [ceil(N/16), K/2, 16, 2]:
// one 64-byte load holds two k of 16 outputs, the operand `vdpbf16ps` multiplies by a
// broadcast pair of x. A tile of up to 8 rows x 3 panels keeps 24 fp32 accumulators in
// registers over all of K; the output is rounded to bf16 once (nearest even), as oneDNN's.
//
// oneDNN's bf16 GEMM, which this replaces, ran a 32-row step's layers at ~290 GFLOP/s where
// this CPU's dot products allow ~460; these tiles reach ~440 with the weights in cache and
// ~380 with them coming from memory (bench/linear_bf16.py). Every output is one chain of dot
// products over k from zero, whatever the tile: a row's result does not depend on the batch.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "simd.h"

namespace {

using namespace gateway_kernels;

constexpr int64_t kPanel = 16;  // outputs per packed panel
constexpr int kTileRows = 8;
constexpr int kTilePanels = 3;

// R rows of x (stride ldx elements) against P consecutive panels of K/2 pairs each; `next`
// (or nullptr): the panel group to fetch into L2 meanwhile
template <int R, int P>
GK_AVX512 void tile(const uint16_t* x, int64_t ldx, int64_t pairs, const uint16_t* panel, uint16_t* y,
                    int64_t ldy, int64_t count, const char* next) {
  __m512 acc[R][P];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
    for (int p = 0; p < P; ++p) acc[r][p] = _mm512_setzero_ps();
  const int64_t panel_elems = pairs * 2 * kPanel;
  for (int64_t kk = 0; kk < pairs; ++kk) {
    __m512bh w[P];
#pragma GCC unroll 3
    for (int p = 0; p < P; ++p) w[p] = (__m512bh)_mm512_loadu_si512(panel + p * panel_elems + kk * 2 * kPanel);
    if (next != nullptr) {
#pragma GCC unroll 3
      for (int p = 0; p < kTilePanels; ++p) _mm_prefetch(next + (p * panel_elems + kk * 2 * kPanel) * 2, _MM_HINT_T1);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, x + r * ldx + 2 * kk, sizeof(pair));
      const __m512bh a = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 3
      for (int p = 0; p < P; ++p) acc[r][p] = _mm512_dpbf16_ps(acc[r][p], a, w[p]);
    }
  }
#pragma GCC unroll 3
  for (int p = 0; p < P; ++p) {
    const int64_t n = std::min(kPanel, count - p * kPanel);  // outputs of this panel to store
    const __mmask16 keep = n >= kPanel ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) mask_store_bf16x16(y + r * ldy + p * kPanel, keep, acc[r][p]);
  }
}

template <int P>
GK_AVX512 void rows_tile(int rows, const uint16_t* x, int64_t ldx, int64_t pairs, const uint16_t* panel,
                         uint16_t* y, int64_t ldy, int64_t count, const char* next) {
  switch (rows) {
    case 1: return tile<1, P>(x, ldx, pairs, panel, y, ldy, count, next);
    case 2: return tile<2, P>(x, ldx, pairs, panel, y, ldy, count, next);
    case 3: return tile<3, P>(x, ldx, pairs, panel, y, ldy, count, next);
    case 4: return tile<4, P>(x, ldx, pairs, panel, y, ldy, count, next);
    case 5: return tile<5, P>(x, ldx, pairs, panel, y, ldy, count, next);
    case 6: return tile<6, P>(x, ldx, pairs, panel, y, ldy, count, next);
    case 7: return tile<7, P>(x, ldx, pairs, panel, y, ldy, count, next);
    default: return tile<8, P>(x, ldx, pairs, panel, y, ldy, count, next);
  }
}

GK_AVX512 void panels_tile(int rows, int panels, const uint16_t* x, int64_t ldx, int64_t pairs,
                           const uint16_t* panel, uint16_t* y, int64_t ldy, int64_t count, const char* next) {
  switch (panels) {
    case 1: return rows_tile<1>(rows, x, ldx, pairs, panel, y, ldy, count, next);
    case 2: return rows_tile<2>(rows, x, ldx, pairs, panel, y, ldy, count, next);
    default: return rows_tile<3>(rows, x, ldx, pairs, panel, y, ldy, count, next);
  }
}

at::Tensor linear_bf16(const at::Tensor& x, const at::Tensor& packed, int64_t N) {
  TORCH_CHECK(has_avx512_bf16(), "linear_bf16 needs AVX-512 BF16");
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kBFloat16 && x.stride(1) == 1,
              "x: bfloat16 [M, K], rows dense");
  TORCH_CHECK(packed.dim() == 4 && packed.scalar_type() == at::kBFloat16 && packed.is_contiguous() &&
                  packed.size(2) == kPanel && packed.size(3) == 2,
              "packed: dense bfloat16 [ceil(N/16), ceil(K/2), 16, 2]");
  const int64_t M = x.size(0), K = x.size(1), panels = packed.size(0), pairs = packed.size(1);
  TORCH_CHECK(K % 2 == 0 && pairs * 2 == K, "K must be even and match the packed weight");
  TORCH_CHECK(N > (panels - 1) * kPanel && N <= panels * kPanel, "N does not match the packed panels");
  auto y = at::empty({M, N}, x.options());
  if (M == 0 || N == 0) return y;
  const auto* xp = reinterpret_cast<const uint16_t*>(x.const_data_ptr<at::BFloat16>());
  const int64_t ldx = x.stride(0);
  const auto* wp = reinterpret_cast<const uint16_t*>(packed.const_data_ptr<at::BFloat16>());
  auto* yp = reinterpret_cast<uint16_t*>(y.mutable_data_ptr<at::BFloat16>());
  // a thread takes an even share of the groups of 3 panels and runs each against every row:
  // the group stays in L2 while the row tiles pass over it, and the first tile fetches the
  // next group
  const int64_t groups = (panels + kTilePanels - 1) / kTilePanels;
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), groups));
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t g0 = groups * t / threads, g1 = groups * (t + 1) / threads;
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t p = g * kTilePanels;
        const int np = static_cast<int>(std::min<int64_t>(kTilePanels, panels - p));
        const int64_t n0 = p * kPanel, count = std::min(np * kPanel, N - n0);
        for (int64_t m = 0; m < M; m += kTileRows) {
          const int rows = static_cast<int>(std::min<int64_t>(kTileRows, M - m));
          // the first row tile fetches the next full group into L2 meanwhile
          const char* next = m == 0 && g + 1 < g1 && p + 2 * kTilePanels <= panels
                                 ? reinterpret_cast<const char*>(wp + (p + kTilePanels) * pairs * 2 * kPanel)
                                 : nullptr;
          panels_tile(rows, np, xp + m * ldx, ldx, pairs, wp + p * pairs * 2 * kPanel, yp + m * N + n0, N, count,
                      next);
        }
      }
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gateway_kernels, m) { m.def("linear_bf16(Tensor x, Tensor packed, int n) -> Tensor"); }

TORCH_LIBRARY_IMPL(gateway_kernels, CPU, m) { m.impl("linear_bf16", linear_bf16); }
