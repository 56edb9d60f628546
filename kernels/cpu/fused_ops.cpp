// The small per-layer steps of a forward pass (bf16 or fp32 outputs), each fused into one pass over its rows:
// rms_norm (optionally after the residual add), silu(gate) * up, and rope with the key/value
// store into the paged cache. In PyTorch each is 3-8 ops with a dispatch and a temporary
// apiece, which at decode batch sizes costs more than the arithmetic. Math in fp32, one
// rounding per output; AVX-512 for bf16 where the CPU has AVX512_BF16, AVX2 for the fp32
// gated activation (its exp), plain loops elsewhere.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "simd.h"

namespace {

using namespace gateway_kernels;
using bf16 = at::BFloat16;

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
}

// ---- rms_norm: out = x / sqrt(mean(x^2) + eps) * w, x fp32, out bf16 -------------------------

GK_AVX512 void rms_norm_row_avx512(const float* x, const float* w, int64_t D, float eps, uint16_t* out) {
  __m512 ss = _mm512_setzero_ps();
  for (int64_t i = 0; i < D; i += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(tail_mask(D - i), x + i);
    ss = _mm512_fmadd_ps(v, v, ss);
  }
  const __m512 inv = _mm512_set1_ps(1.f / std::sqrt(_mm512_reduce_add_ps(ss) / static_cast<float>(D) + eps));
  for (int64_t i = 0; i < D; i += 16) {
    const __mmask16 k = tail_mask(D - i);
    const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv), _mm512_maskz_loadu_ps(k, w + i));
    mask_store_bf16x16(out + i, k, v);
  }
}

template <typename T>
void rms_norm_row(const float* x, const float* w, int64_t D, float eps, T* out) {
  float ss = 0.f;
  for (int64_t i = 0; i < D; ++i) ss += x[i] * x[i];
  const float inv = 1.f / std::sqrt(ss / static_cast<float>(D) + eps);
  for (int64_t i = 0; i < D; ++i) out[i] = static_cast<T>(x[i] * inv * w[i]);
}

void check_norm_args(const at::Tensor& x, const at::Tensor& w) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(), "x: dense float32 [T, D]");
  TORCH_CHECK(w.dim() == 1 && w.scalar_type() == at::kFloat && w.is_contiguous() && w.size(0) == x.size(1),
              "weight: dense float32 [D]");
}

void rms_norm_into(const at::Tensor& x, const at::Tensor& w, double eps, at::Tensor& out) {
  const int64_t T = x.size(0), D = x.size(1);
  const float* xp = x.const_data_ptr<float>();
  const float* wp = w.const_data_ptr<float>();
  const float e = static_cast<float>(eps);
  if (out.scalar_type() == at::kFloat) {
    float* op = out.mutable_data_ptr<float>();
    at::parallel_for(0, T, 64, [&](int64_t b, int64_t end) {
      for (int64_t t = b; t < end; ++t) rms_norm_row(xp + t * D, wp, D, e, op + t * D);
    });
    return;
  }
  bf16* op = out.mutable_data_ptr<bf16>();
  const bool fast = has_avx512_bf16();
  at::parallel_for(0, T, 64, [&](int64_t b, int64_t end) {
    for (int64_t t = b; t < end; ++t) {
      if (fast)
        rms_norm_row_avx512(xp + t * D, wp, D, e, reinterpret_cast<uint16_t*>(op + t * D));
      else
        rms_norm_row(xp + t * D, wp, D, e, op + t * D);
    }
  });
}

template <typename T>
void add_into(float* x, const T* y, int64_t n) {
  at::parallel_for(0, n, 1 << 16, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) x[i] += static_cast<float>(y[i]);
  });
}

void check_out_dtype(at::ScalarType dtype) {
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kFloat, "output dtype: bfloat16 or float32");
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps, at::ScalarType dtype) {
  check_norm_args(x, w);
  check_out_dtype(dtype);
  auto out = at::empty(x.sizes(), x.options().dtype(dtype));
  rms_norm_into(x, w, eps, out);
  return out;
}

// x += y (the residual stream takes a layer's output), then rms_norm(x) in y's dtype
at::Tensor add_rms_norm(at::Tensor& x, const at::Tensor& y, const at::Tensor& w, double eps) {
  check_norm_args(x, w);
  TORCH_CHECK(y.sizes() == x.sizes() && y.is_contiguous(), "y: dense, shaped like x");
  check_out_dtype(y.scalar_type());
  const int64_t n = x.numel();
  float* xp = x.mutable_data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, y.scalar_type(), "add_rms_norm", [&] {
    add_into(xp, y.const_data_ptr<scalar_t>(), n);
  });
  auto out = at::empty(x.sizes(), x.options().dtype(y.scalar_type()));
  rms_norm_into(x, w, eps, out);
  return out;
}

// ---- silu(gate) * up: gu [T, 2F] bf16 (gate, then up) -> [T, F] bf16 --------------------------

GK_AVX512 void silu_mul_row_avx512(const uint16_t* g, const uint16_t* u, int64_t F, uint16_t* out) {
  const __m512 one = _mm512_set1_ps(1.f);
  for (int64_t i = 0; i < F; i += 16) {
    const __mmask16 k = tail_mask(F - i);
    const __m512 gv = mask_load_bf16x16(g + i, k);
    const __m512 silu = _mm512_div_ps(gv, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
    mask_store_bf16x16(out + i, k, _mm512_mul_ps(silu, mask_load_bf16x16(u + i, k)));
  }
}

GK_AVX2 void silu_mul_row_avx2(const float* g, const float* u, int64_t F, float* out) {
  const __m256 one = _mm256_set1_ps(1.f);
  int64_t i = 0;
  for (; i + 8 <= F; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 silu = _mm256_div_ps(gv, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
  }
  for (; i < F; ++i) out[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

template <typename T>
void silu_mul_row(const T* g, const T* u, int64_t F, T* out) {
  for (int64_t i = 0; i < F; ++i) {
    const float x = static_cast<float>(g[i]);
    out[i] = static_cast<T>(x / (1.f + std::exp(-x)) * static_cast<float>(u[i]));
  }
}

at::Tensor silu_mul(const at::Tensor& gu) {
  TORCH_CHECK(gu.dim() == 2 && gu.is_contiguous() && gu.size(1) % 2 == 0, "gu: dense [T, 2F]");
  check_out_dtype(gu.scalar_type());
  const int64_t T = gu.size(0), F = gu.size(1) / 2;
  auto out = at::empty({T, F}, gu.options());
  if (gu.scalar_type() == at::kFloat) {
    const float* gp = gu.const_data_ptr<float>();
    float* op = out.mutable_data_ptr<float>();
    const bool fast = has_avx2_fma();
    at::parallel_for(0, T, 32, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const float* g = gp + t * 2 * F;
        if (fast)
          silu_mul_row_avx2(g, g + F, F, op + t * F);
        else
          silu_mul_row(g, g + F, F, op + t * F);
      }
    });
    return out;
  }
  const bf16* gp = gu.const_data_ptr<bf16>();
  bf16* op = out.mutable_data_ptr<bf16>();
  const bool fast = has_avx512_bf16();
  at::parallel_for(0, T, 32, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const bf16* g = gp + t * 2 * F;
      if (fast)
        silu_mul_row_avx512(reinterpret_cast<const uint16_t*>(g), reinterpret_cast<const uint16_t*>(g + F), F,
                            reinterpret_cast<uint16_t*>(op + t * F));
      else
        silu_mul_row(g, g + F, F, op + t * F);
    }
  });
  return out;
}

// ---- rope on the query and key heads, keys and values stored into the paged cache ----------------
// qkv [T, nh + 2 nkv, hd] bf16 -> returns the roped [T, nh + nkv, hd]; cache [2 nkv, slots, hd]
// receives keys (rows 0..nkv) and values (nkv..2 nkv) at each token's slot. Rope is the
// rotate-half form: x * cos + swap_halves(x) * sin_signed, in fp32, rounded once.

GK_AVX512 void rope_head_avx512(const uint16_t* x, const float* c, const float* s, int64_t hd, uint16_t* out) {
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < hd; i += 16) {
    const int64_t j = i < half ? i + half : i - half;
    const __m512 r = _mm512_add_ps(_mm512_mul_ps(load_bf16x16(x + i), _mm512_loadu_ps(c + i)),
                                   _mm512_mul_ps(load_bf16x16(x + j), _mm512_loadu_ps(s + i)));
    store_bf16x16(out + i, r);
  }
}

template <typename T>
void rope_head(const T* x, const float* c, const float* s, int64_t hd, T* out) {
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < hd; ++i) {
    const int64_t j = i < half ? i + half : i - half;
    out[i] = static_cast<T>(static_cast<float>(x[i]) * c[i] + static_cast<float>(x[j]) * s[i]);
  }
}

// T: qkv's (and the roped output's) dtype; C: the cache's
template <typename T, typename C>
void rope_store_rows(const at::Tensor& qkv, const float* cosp, const float* sinp, at::Tensor& out, at::Tensor& cache,
                     const int64_t* pp, const int64_t* sp, int64_t tokens, int64_t rot, int64_t nkv, int64_t hd, int64_t S,
                     int64_t n_heads) {
  const T* xp = qkv.const_data_ptr<T>();
  T* op = out.mutable_data_ptr<T>();
  C* cp = cache.mutable_data_ptr<C>();
  const bool fast = std::is_same_v<T, bf16> && has_avx512_bf16();
  at::parallel_for(0, tokens, 32, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* c = cosp + pp[t] * hd;
      const float* s = sinp + pp[t] * hd;
      const T* row = xp + t * (rot + nkv) * hd;
      for (int64_t h = 0; h < rot; ++h) {
        T* o = op + (t * rot + h) * hd;
        if (fast)
          rope_head_avx512(reinterpret_cast<const uint16_t*>(row + h * hd), c, s, hd, reinterpret_cast<uint16_t*>(o));
        else
          rope_head(row + h * hd, c, s, hd, o);
        if (h >= n_heads) {  // key
          C* dst = cp + ((h - n_heads) * S + sp[t]) * hd;
          for (int64_t i = 0; i < hd; ++i) dst[i] = static_cast<C>(o[i]);
        }
      }
      for (int64_t h = 0; h < nkv; ++h) {  // value
        const T* v = row + (rot + h) * hd;
        C* dst = cp + ((nkv + h) * S + sp[t]) * hd;
        for (int64_t i = 0; i < hd; ++i) dst[i] = static_cast<C>(v[i]);
      }
    }
  });
}

at::Tensor rope_store_kv(const at::Tensor& qkv, const at::Tensor& positions, const at::Tensor& cos,
                         const at::Tensor& sin_signed, at::Tensor& cache, const at::Tensor& slots, int64_t n_heads) {
  TORCH_CHECK(qkv.dim() == 3 && qkv.is_contiguous(), "qkv: dense [T, H, hd]");
  check_out_dtype(qkv.scalar_type());
  // fp32 compute may keep its cache in bf16 (half the bytes): keys and values rounded once
  const bool narrow = qkv.scalar_type() == at::kFloat && cache.scalar_type() == at::kBFloat16;
  TORCH_CHECK(cache.dim() == 3 && (cache.scalar_type() == qkv.scalar_type() || narrow) && cache.is_contiguous(),
              "cache: dense [2 nkv, slots, hd], qkv's dtype (or bf16 under fp32)");
  const int64_t T = qkv.size(0), hd = qkv.size(2), nkv = cache.size(0) / 2, S = cache.size(1);
  TORCH_CHECK(qkv.size(1) == n_heads + 2 * nkv && cache.size(2) == hd && hd % 32 == 0, "head layout mismatch");
  TORCH_CHECK(cos.scalar_type() == at::kFloat && sin_signed.scalar_type() == at::kFloat && cos.is_contiguous() &&
                  sin_signed.is_contiguous() && cos.size(1) == hd && sin_signed.sizes() == cos.sizes(),
              "cos/sin: dense float32 [positions, hd]");
  const auto pos = positions.to(at::kLong).contiguous();
  const auto sl = slots.to(at::kLong).contiguous();
  TORCH_CHECK(pos.numel() == T && sl.numel() == T, "one position and one slot per token");
  const int64_t* pp = pos.const_data_ptr<int64_t>();
  const int64_t* sp = sl.const_data_ptr<int64_t>();
  for (int64_t t = 0; t < T; ++t) {
    TORCH_CHECK(pp[t] >= 0 && pp[t] < cos.size(0), "position out of range");
    TORCH_CHECK(sp[t] >= 0 && sp[t] < S, "slot out of range");
  }
  const int64_t rot = n_heads + nkv;
  auto out = at::empty({T, rot, hd}, qkv.options());
  const float* cosp = cos.const_data_ptr<float>();
  const float* sinp = sin_signed.const_data_ptr<float>();
  if (narrow)
    rope_store_rows<float, bf16>(qkv, cosp, sinp, out, cache, pp, sp, T, rot, nkv, hd, S, n_heads);
  else if (qkv.scalar_type() == at::kFloat)
    rope_store_rows<float, float>(qkv, cosp, sinp, out, cache, pp, sp, T, rot, nkv, hd, S, n_heads);
  else
    rope_store_rows<bf16, bf16>(qkv, cosp, sinp, out, cache, pp, sp, T, rot, nkv, hd, S, n_heads);
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gateway_kernels, m) {
  m.def("rms_norm(Tensor x, Tensor weight, float eps, ScalarType dtype) -> Tensor");
  m.def("add_rms_norm(Tensor(a!) x, Tensor y, Tensor weight, float eps) -> Tensor");
  m.def("silu_mul(Tensor gu) -> Tensor");
  m.def(
      "rope_store_kv(Tensor qkv, Tensor positions, Tensor cos, Tensor sin_signed, Tensor(a!) cache, Tensor slots, "
      "int n_heads) -> Tensor");
}

TORCH_LIBRARY_IMPL(gateway_kernels, CPU, m) {
  m.impl("rms_norm", rms_norm);
  m.impl("add_rms_norm", add_rms_norm);
  m.impl("silu_mul", silu_mul);
  m.impl("rope_store_kv", rope_store_kv);
}
