// The compressed KV cache's encoder (inference/hca/codec.py), fused: a token's keys and
// values -> their codes (the nearest centroid per subspace under the codec's metric) and
// what those codes decode to, in one call per layer. In PyTorch ops it was ~10 small ops
// per layer (gather, stack, scale, matmul, sub, argmin, gather, ...), ~28% of a decode step
// in op overhead at 2 dims per subspace; the arithmetic is ~100k multiply-adds per token.
//
// Distances are computed directly, sum_j (x_j - e_j)^2 over the weighted centroids e (not
// the expansion |e|^2 - 2 x.e), so a tie is broken by the first centroid as torch.argmin
// does, and only an exact tie of two rounded distances can differ from the PyTorch path.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "simd.h"

namespace {

using namespace gateway_kernels;

// argmin_c sum_j (x[j] - bt[j * C + c])^2 over C centroids whose dims are stored dim-major
// (bt [d][C]); the first of equal distances.
int nearest_portable(const float* x, const float* bt, int64_t d, int64_t C) {
  float best = std::numeric_limits<float>::infinity();
  int arg = 0;
  for (int64_t c = 0; c < C; ++c) {
    float s = 0.f;
    for (int64_t j = 0; j < d; ++j) {
      const float e = x[j] - bt[j * C + c];
      s += e * e;
    }
    if (s < best) {
      best = s;
      arg = static_cast<int>(c);
    }
  }
  return arg;
}

// Lanes' minima -> the first centroid of least distance (equal distances: the lower index).
inline int reduce_lanes(const float* b, const int32_t* a, int n) {
  int out = a[0];
  float v = b[0];
  for (int i = 1; i < n; ++i)
    if (b[i] < v || (b[i] == v && a[i] < out)) {
      v = b[i];
      out = a[i];
    }
  return out;
}

// 32 centroids a step in two independent chains of 16 (C % 32 == 0; AVX-512F, guarded by
// the kernels' AVX-512 check): each lane keeps its first minimum, then the lanes' minima are
// compared, equal ones by index, so the answer is the portable one's. The sum runs over j in
// the same order with one rounding per multiply and add (no FMA), as there.
GK_AVX512 int nearest_avx512(const float* x, const float* bt, int64_t d, int64_t C) {
  __m512 best[2], xb[8];
  __m512i arg[2];
  for (int64_t j = 0; j < d; ++j) xb[j] = _mm512_set1_ps(x[j]);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int r = 0; r < 2; ++r) {
    best[r] = _mm512_set1_ps(std::numeric_limits<float>::infinity());
    arg[r] = _mm512_setzero_si512();
  }
  for (int64_t c = 0; c < C; c += 32) {
    for (int r = 0; r < 2; ++r) {
      const int64_t c0 = c + 16 * r;
      __m512 s = _mm512_setzero_ps();
      for (int64_t j = 0; j < d; ++j) {
        const __m512 e = _mm512_sub_ps(xb[j], _mm512_loadu_ps(bt + j * C + c0));
        s = _mm512_add_ps(s, _mm512_mul_ps(e, e));
      }
      const __mmask16 less = _mm512_cmp_ps_mask(s, best[r], _CMP_LT_OQ);
      best[r] = _mm512_mask_mov_ps(best[r], less, s);
      arg[r] = _mm512_mask_mov_epi32(arg[r], less, _mm512_add_epi32(lane, _mm512_set1_epi32(static_cast<int>(c0))));
    }
  }
  alignas(64) float b[32];
  alignas(64) int32_t a[32];
  for (int r = 0; r < 2; ++r) {
    _mm512_store_ps(b + 16 * r, best[r]);
    _mm512_store_si512(reinterpret_cast<__m512i*>(a + 16 * r), arg[r]);
  }
  return reduce_lanes(b, a, 32);
}

// The same on 8 lanes, two chains (AVX2; C % 16 == 0).
GK_AVX2 int nearest_avx2(const float* x, const float* bt, int64_t d, int64_t C) {
  __m256 best[2], xb[8];
  __m256i arg[2];
  for (int64_t j = 0; j < d; ++j) xb[j] = _mm256_set1_ps(x[j]);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int r = 0; r < 2; ++r) {
    best[r] = _mm256_set1_ps(std::numeric_limits<float>::infinity());
    arg[r] = _mm256_setzero_si256();
  }
  for (int64_t c = 0; c < C; c += 16) {
    for (int r = 0; r < 2; ++r) {
      const int64_t c0 = c + 8 * r;
      __m256 s = _mm256_setzero_ps();
      for (int64_t j = 0; j < d; ++j) {
        const __m256 e = _mm256_sub_ps(xb[j], _mm256_loadu_ps(bt + j * C + c0));
        s = _mm256_add_ps(s, _mm256_mul_ps(e, e));
      }
      const __m256 less = _mm256_cmp_ps(s, best[r], _CMP_LT_OQ);
      const __m256i id = _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(c0)));
      best[r] = _mm256_blendv_ps(best[r], s, less);
      arg[r] = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(arg[r]), _mm256_castsi256_ps(id), less));
    }
  }
  alignas(32) float b[16];
  alignas(32) int32_t a[16];
  for (int r = 0; r < 2; ++r) {
    _mm256_store_ps(b + 8 * r, best[r]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(a + 8 * r), arg[r]);
  }
  return reduce_lanes(b, a, 16);
}

enum class Path { kPortable, kAvx2, kAvx512 };

inline int nearest(Path path, const float* x, const float* bt, int64_t d, int64_t C) {
  if (path == Path::kAvx512) return nearest_avx512(x, bt, d, C);
  if (path == Path::kAvx2) return nearest_avx2(x, bt, d, C);
  return nearest_portable(x, bt, d, C);
}

template <typename T>
void roundtrip_impl(const float* k, const float* v, const int64_t* order, const float* w, const float* enc_t,
                    const float* books, int64_t Tn, int64_t KVH, int64_t M, int64_t C, int64_t d, uint8_t* codes,
                    T* dk, T* dv) {
  const int64_t hd = M * d;
  // the SIMD paths hold up to 8 dims per subspace in registers
  const Path path = d > 8                              ? Path::kPortable
                    : has_avx512_bf16() && C % 32 == 0 ? Path::kAvx512
                    : has_avx2_fma() && C % 16 == 0    ? Path::kAvx2
                                                       : Path::kPortable;
  // one (keys|values, head, token) per item: its M subspaces
  const int64_t items = 2 * KVH * Tn;
  const int64_t grain = std::max<int64_t>(1, 4096 / (M * C * d + 1));
  at::parallel_for(0, items, grain, [&](int64_t b, int64_t e) {
    std::vector<float> x(hd);
    for (int64_t it = b; it < e; ++it) {
      const int64_t kv = it / (KVH * Tn), h = (it / Tn) % KVH, t = it % Tn;
      const float* src = (kv == 0 ? k : v) + (t * KVH + h) * hd;
      const float* wr = w + (kv * KVH + h) * hd;
      for (int64_t j = 0; j < hd; ++j) x[j] = (kv == 0 ? src[order[j]] : src[j]) * wr[j];
      uint8_t* out = codes + ((kv * KVH + h) * Tn + t) * M;
      T* dst = (kv == 0 ? dk : dv) + (t * KVH + h) * hd;
      for (int64_t m = 0; m < M; ++m) {
        const int64_t p = (kv * KVH + h) * M + m;
        const float* bt = enc_t + p * d * C;
        const int c = nearest(path, x.data() + m * d, bt, d, C);
        out[m] = static_cast<uint8_t>(c);
        const float* cent = books + (p * C + c) * d;  // the unweighted centroid
        for (int64_t j = 0; j < d; ++j) {
          const int64_t col = kv == 0 ? order[m * d + j] : m * d + j;
          dst[col] = static_cast<T>(cent[j]);
        }
      }
    }
  });
}

// k, v [T, KVH, hd] float32; order [hd] int64 (stored key dim j = key dim order[j]); w [2,
// KVH, hd] the metric's weights in stored order; enc_t [2, KVH, M, d, C] the weighted
// centroids dim-major; books [2, KVH, M, C, d] the centroids -> codes [2 KVH, T, M] uint8,
// decoded keys and values [T, KVH, hd] in `dtype` (keys in their natural dim order).
std::tuple<at::Tensor, at::Tensor, at::Tensor> pq_roundtrip(const at::Tensor& k, const at::Tensor& v,
                                                            const at::Tensor& order, const at::Tensor& w,
                                                            const at::Tensor& enc_t, const at::Tensor& books,
                                                            at::ScalarType dtype) {
  TORCH_CHECK(k.dim() == 3 && v.sizes() == k.sizes(), "k and v [T, KVH, hd] of one shape");
  TORCH_CHECK(books.dim() == 5 && books.size(0) == 2, "books [2, KVH, M, C, d]");
  const int64_t Tn = k.size(0), KVH = k.size(1), hd = k.size(2);
  const int64_t M = books.size(2), C = books.size(3), d = books.size(4);
  TORCH_CHECK(books.size(1) == KVH && M * d == hd && C <= 256, "books do not match the heads");
  TORCH_CHECK(enc_t.sizes() == at::IntArrayRef({2, KVH, M, d, C}), "enc_t [2, KVH, M, d, C]");
  TORCH_CHECK(w.sizes() == at::IntArrayRef({2, KVH, hd}) && order.numel() == hd, "w [2, KVH, hd], order [hd]");
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "dtype float32 or bfloat16");
  const auto kf = k.to(at::kFloat).contiguous(), vf = v.to(at::kFloat).contiguous();
  const auto of = order.to(at::kLong).contiguous(), wf = w.to(at::kFloat).contiguous();
  const auto ef = enc_t.to(at::kFloat).contiguous(), bf = books.to(at::kFloat).contiguous();
  auto codes = at::empty({2 * KVH, Tn, M}, k.options().dtype(at::kByte));
  auto dk = at::empty({Tn, KVH, hd}, k.options().dtype(dtype));
  auto dv = at::empty({Tn, KVH, hd}, k.options().dtype(dtype));
  if (Tn == 0) return {codes, dk, dv};
  const float *kp = kf.const_data_ptr<float>(), *vp = vf.const_data_ptr<float>();
  if (dtype == at::kFloat)
    roundtrip_impl<float>(kp, vp, of.const_data_ptr<int64_t>(), wf.const_data_ptr<float>(), ef.const_data_ptr<float>(),
                          bf.const_data_ptr<float>(), Tn, KVH, M, C, d, codes.mutable_data_ptr<uint8_t>(),
                          dk.mutable_data_ptr<float>(), dv.mutable_data_ptr<float>());
  else
    roundtrip_impl<c10::BFloat16>(kp, vp, of.const_data_ptr<int64_t>(), wf.const_data_ptr<float>(),
                                  ef.const_data_ptr<float>(), bf.const_data_ptr<float>(), Tn, KVH, M, C, d,
                                  codes.mutable_data_ptr<uint8_t>(), dk.mutable_data_ptr<c10::BFloat16>(),
                                  dv.mutable_data_ptr<c10::BFloat16>());
  return {codes, dk, dv};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gateway_kernels, m) {
  m.def(
      "pq_roundtrip(Tensor k, Tensor v, Tensor order, Tensor w, Tensor enc_t, Tensor books, ScalarType dtype)"
      " -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(gateway_kernels, CPU, m) { m.impl("pq_roundtrip", pq_roundtrip); }
