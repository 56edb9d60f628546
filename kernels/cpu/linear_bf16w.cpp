// y = x @ W^T for CPUs without bf16 arithmetic (AVX2 + FMA, e.g. AMD Zen 2/3): x [M, K] and y
// in fp32, W held in bf16 (half the bytes of fp32: a decode step streams every weight once, so
// the bytes set its speed) and widened to fp32 in registers. oneDNN emulates bf16 GEMMs on
// these CPUs at a fraction of their fp32 rate, and its fp32 GEMV reached about half of the
// memory bandwidth here.
//
// W is packed once (`kernels.cpu_ops.pack_bf16_weight`) into panels of 16 outputs:
// [ceil(N/16), K, 16] bf16, the 16 values of a k interleaved as outputs 0,8,1,9,..,7,15, so
// one 32-byte load widens into outputs 0-7 (low halves shifted up) and 8-15 (high halves
// masked). A tile of up to 6 rows x 16 outputs (or 3 rows x 32) keeps 12 accumulators in
// registers over all of K.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "simd.h"

namespace {

using namespace gateway_kernels;

constexpr int64_t kPanel = 16;  // outputs per packed panel
constexpr int kTileRows = 6;    // rows per register tile (12 accumulators)

GK_AVX2 inline void widen(const uint16_t* p, __m256& lo, __m256& hi) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  lo = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  hi = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

// R rows of x (stride K) against P consecutive panels (P = 2 gives few rows enough
// independent accumulators to hide the FMA latency). Every output is one fused multiply-add
// chain over k from zero, whatever R and P: a row's result does not depend on the batch.
template <int R, int P>
GK_AVX2 void tile(const float* x, int64_t K, const uint16_t* panel, float* y, int64_t ldy, int64_t count) {
  __m256 lo[P][R], hi[P][R];
#pragma GCC unroll 2
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) lo[p][r] = hi[p][r] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m256 w0[P], w1[P];
#pragma GCC unroll 2
    for (int p = 0; p < P; ++p) widen(panel + (p * K + k) * kPanel, w0[p], w1[p]);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(x + r * K + k);
#pragma GCC unroll 2
      for (int p = 0; p < P; ++p) {
        lo[p][r] = _mm256_fmadd_ps(a, w0[p], lo[p][r]);
        hi[p][r] = _mm256_fmadd_ps(a, w1[p], hi[p][r]);
      }
    }
  }
#pragma GCC unroll 2
  for (int p = 0; p < P; ++p) {
    const int64_t n = std::min(kPanel, count - p * kPanel);  // outputs of this panel to store
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      float* out = y + r * ldy + p * kPanel;
      if (n == kPanel) {
        _mm256_storeu_ps(out, lo[p][r]);
        _mm256_storeu_ps(out + 8, hi[p][r]);
      } else {
        alignas(32) float buf[kPanel];
        _mm256_store_ps(buf, lo[p][r]);
        _mm256_store_ps(buf + 8, hi[p][r]);
        std::copy(buf, buf + n, out);
      }
    }
  }
}

// `rows` rows against `panels` (1 or 2) panels; count = the outputs they hold (<= 16 * panels)
GK_AVX2 void rows_tile(int rows, int panels, const float* x, int64_t K, const uint16_t* panel, float* y,
                       int64_t ldy, int64_t count) {
  if (panels == 2) {
    switch (rows) {
      case 1: return tile<1, 2>(x, K, panel, y, ldy, count);
      case 2: return tile<2, 2>(x, K, panel, y, ldy, count);
      default: return tile<3, 2>(x, K, panel, y, ldy, count);
    }
  }
  switch (rows) {
    case 1: return tile<1, 1>(x, K, panel, y, ldy, count);
    case 2: return tile<2, 1>(x, K, panel, y, ldy, count);
    case 3: return tile<3, 1>(x, K, panel, y, ldy, count);
    case 4: return tile<4, 1>(x, K, panel, y, ldy, count);
    case 5: return tile<5, 1>(x, K, panel, y, ldy, count);
    default: return tile<6, 1>(x, K, panel, y, ldy, count);
  }
}

at::Tensor linear_bf16w(const at::Tensor& x, const at::Tensor& packed, int64_t N) {
  TORCH_CHECK(has_avx2_fma(), "linear_bf16w needs AVX2 and FMA");
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.stride(1) == 1, "x: float32 [M, K], rows dense");
  TORCH_CHECK(packed.dim() == 3 && packed.scalar_type() == at::kBFloat16 && packed.is_contiguous() &&
                  packed.size(2) == kPanel,
              "packed: dense bfloat16 [ceil(N/16), K, 16]");
  const int64_t M = x.size(0), K = x.size(1), panels = packed.size(0);
  TORCH_CHECK(packed.size(1) == K, "x and the packed weight disagree on K");
  TORCH_CHECK(N > (panels - 1) * kPanel && N <= panels * kPanel, "N does not match the packed panels");
  auto y = at::empty({M, N}, x.options());
  if (M == 0 || N == 0) return y;
  const auto xc = x.stride(0) == K ? x : x.contiguous();
  const float* xp = xc.const_data_ptr<float>();
  const auto* wp = reinterpret_cast<const uint16_t*>(packed.const_data_ptr<at::BFloat16>());
  float* yp = y.mutable_data_ptr<float>();
  // rows in blocks whose x stays in L2 (~256 KB) while the panels pass over them; a tile's
  // rows stay in L1 across its run of panels, the run (<= 8 x 16 x K bf16) in L2 across the
  // block's tiles
  const int64_t block_rows =
      std::max<int64_t>(kTileRows, (256 * 1024 / (4 * K)) / kTileRows * kTileRows);
  const int64_t row_blocks = (M + block_rows - 1) / block_rows;
  // a task: one row block x a run of up to 8 panels; the runs are as even as they can be and
  // a multiple of the thread count, so each thread gets the same share of a row block
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t per_thread = (panels + threads * 8 - 1) / (threads * 8);
  const int64_t run = std::max<int64_t>(1, (panels + threads * per_thread - 1) / (threads * per_thread));
  const int64_t runs = (panels + run - 1) / run;
  at::parallel_for(0, row_blocks * runs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t rb = task / runs, p0 = (task % runs) * run;
      const int64_t m0 = rb * block_rows, m1 = std::min(M, m0 + block_rows);
      const int64_t p1 = std::min(panels, p0 + run);
      for (int64_t m = m0; m < m1;) {
        const int64_t left = m1 - m;
        // 1-3 rows: two panels at a time (more accumulators in flight); else up to 6 rows
        const int rows = static_cast<int>(std::min<int64_t>(left <= 3 ? left : kTileRows, left));
        for (int64_t p = p0; p < p1;) {
          const int np = rows <= 3 && p + 1 < p1 ? 2 : 1;
          const int64_t n0 = p * kPanel, count = std::min(np * kPanel, N - n0);
          rows_tile(rows, np, xp + m * K, K, wp + p * K * kPanel, yp + m * N + n0, N, count);
          p += np;
        }
        m += rows;
      }
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gateway_kernels, m) {
  m.def("avx2_fma() -> bool", [] { return gateway_kernels::has_avx2_fma(); });
  m.def("linear_bf16w(Tensor x, Tensor packed, int n) -> Tensor");
}

TORCH_LIBRARY_IMPL(gateway_kernels, CPU, m) { m.impl("linear_bf16w", linear_bf16w); }
