// Decode attention straight from the paged KV cache, on the CPU.
//
// The contract is kernels/decode_attention_ref.py's (also the Triton kernel's): one query
// token per sequence; keys and values read slot by slot from the cache pages, no gather or
// padding copies; the query heads of a group share one key/value head. One task per
// (sequence, kv head): scores, softmax and weighted values in fp32 in the task's scratch,
// so each cache byte is read once. Hand-vectorised paths for head size 64 (AVX-512 with bf16
// dot products for bf16; AVX2 + FMA for fp32) and a portable one for everything else, chosen
// at run time.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "simd.h"

namespace {

using namespace gateway_kernels;

constexpr int kMaxGroup = 16;  // query heads per kv head
constexpr int kMaxHeadDim = 256;
constexpr int kPrefetchAhead = 16;  // tokens: one page of 16 ahead

// The task a thread runs next: its keys and values are fetched into L2 while this one runs
// (a decode step's cache is far bigger than the caches: without it, a task's first pages
// arrive one miss at a time)
struct Next {
  const char* k = nullptr;
  const char* v = nullptr;
  const int64_t* slots = nullptr;
  int64_t n = 0, slot_bytes = 0;

  void fetch(int64_t t) const {
    if (t >= n) return;
    const int64_t off = slots[t] * slot_bytes;
    for (int64_t l = 0; l < 128; l += 64) {  // 64 bf16: two lines per key and per value
      _mm_prefetch(k + off + l, _MM_HINT_T1);
      _mm_prefetch(v + off + l, _MM_HINT_T1);
    }
  }
};

// One (sequence, kv head) task, head_dim 64, AVX-512 with bf16 dot products.
GK_AVX512 void attend_group_avx512(
    const uint16_t* q, int64_t q_head_stride, int g, const uint16_t* k_base, const uint16_t* v_base,
    int64_t slot_stride, const int64_t* slots, int64_t n, float scale, float* scores, uint16_t* out,
    int64_t out_head_stride, const Next& next) {
  constexpr int G_MAX = 8;
  constexpr int PF = kPrefetchAhead;
  __m512bh qv[G_MAX][2];
  for (int j = 0; j < g; ++j)
    for (int c = 0; c < 2; ++c) qv[j][c] = (__m512bh)_mm512_loadu_si512(q + j * q_head_stride + 32 * c);
  const __m512 scale_v = _mm512_set1_ps(scale);  // applied to the fp32 scores: no rounding
  // scores 16 tokens at a time: per-token partial sums, then one transposing reduction
  alignas(64) float part[G_MAX][16][16];
  for (int64_t t0 = 0; t0 < n; t0 += 16) {
    const int m = n - t0 >= 16 ? 16 : static_cast<int>(n - t0);
    for (int i = 0; i < m; ++i) {
      const uint16_t* kr = k_base + slots[t0 + i] * slot_stride;
      next.fetch(t0 + i);
      // the cache is far bigger than the caches: fetch the next tile's keys and this
      // token's values (read by the second pass) ahead of use
      if (t0 + i + PF < n) {
        const char* nk = reinterpret_cast<const char*>(k_base + slots[t0 + i + PF] * slot_stride);
        _mm_prefetch(nk, _MM_HINT_T0);
        _mm_prefetch(nk + 64, _MM_HINT_T0);
      }
      const char* vr = reinterpret_cast<const char*>(v_base + slots[t0 + i] * slot_stride);
      _mm_prefetch(vr, _MM_HINT_T1);
      _mm_prefetch(vr + 64, _MM_HINT_T1);
      const __m512bh k0 = (__m512bh)_mm512_loadu_si512(kr);
      const __m512bh k1 = (__m512bh)_mm512_loadu_si512(kr + 32);
      for (int j = 0; j < g; ++j)
        _mm512_store_ps(part[j][i], _mm512_dpbf16_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), qv[j][0], k0), qv[j][1], k1));
    }
    for (int j = 0; j < g; ++j) {
      for (int i = m; i < 16; ++i) _mm512_store_ps(part[j][i], _mm512_setzero_ps());
      const __mmask16 k = m == 16 ? __mmask16(0xffff) : __mmask16((1u << m) - 1);
      _mm512_mask_storeu_ps(scores + j * n + t0, k, _mm512_mul_ps(hsum16(part[j]), scale_v));
    }
  }
  float sum[G_MAX];
  for (int j = 0; j < g; ++j) {
    float* sj = scores + j * n;
    __m512 m = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(sj + i));
    float mx = _mm512_reduce_max_ps(m);
    for (; i < n; ++i) mx = sj[i] > mx ? sj[i] : mx;
    const __m512 mv = _mm512_set1_ps(mx);
    __m512 z = _mm512_setzero_ps();
    for (i = 0; i < n; i += 16) {
      const __mmask16 k = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
      const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, sj + i), mv));
      _mm512_mask_storeu_ps(sj + i, k, e);
      z = _mm512_add_ps(z, _mm512_maskz_mov_ps(k, e));
    }
    sum[j] = _mm512_reduce_add_ps(z);
  }
  __m512 acc[G_MAX][4];
  for (int j = 0; j < g; ++j)
    for (int c = 0; c < 4; ++c) acc[j][c] = _mm512_setzero_ps();
  for (int64_t t = 0; t < n; ++t) {
    const uint16_t* vr = v_base + slots[t] * slot_stride;
    __m512 vf[4];
    for (int c = 0; c < 4; ++c) vf[c] = load_bf16x16(vr + 16 * c);
    for (int j = 0; j < g; ++j) {
      const __m512 p = _mm512_set1_ps(scores[j * n + t]);
      for (int c = 0; c < 4; ++c) acc[j][c] = _mm512_fmadd_ps(p, vf[c], acc[j][c]);
    }
  }
  for (int j = 0; j < g; ++j) {
    const __m512 inv = _mm512_set1_ps(1.f / sum[j]);
    for (int c = 0; c < 2; ++c) {
      const __m512 lo = _mm512_mul_ps(acc[j][2 * c], inv);
      const __m512 hi = _mm512_mul_ps(acc[j][2 * c + 1], inv);
      _mm512_storeu_si512(out + j * out_head_stride + 32 * c, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
  }
}

// 8 cache values as fp32: loaded, or widened from bf16
GK_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
GK_AVX2 inline __m256 load8(const at::BFloat16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// One (sequence, kv head) task, fp32 queries, head_dim 64, AVX2 + FMA (CPUs without AVX-512
// BF16, whose engine computes in fp32). Each key is loaded (and widened) once for the group's
// query heads; the values pass runs per head, the task's values staying in L2 between heads.
template <typename C>  // the cache's dtype: float, or bf16 under fp32 compute
GK_AVX2 void attend_group_avx2(const float* q, int64_t q_head_stride, int g, const C* k_base,
                               const C* v_base, int64_t slot_stride, const int64_t* slots, int64_t n,
                               float scale, float* scores, float* out, int64_t out_head_stride) {
  constexpr int kChunks = 8;  // 8-float chunks of a 64-float head
  const __m256 scale_v = _mm256_set1_ps(scale);
  // scores: each key is loaded (and widened) once for the whole group of query heads
  alignas(32) float part[kMaxGroup][8][8];
  alignas(32) float mx[kMaxGroup][8];
  for (int j = 0; j < g; ++j) _mm256_store_ps(mx[j], _mm256_set1_ps(-INFINITY));
  for (int64_t t0 = 0; t0 < n; t0 += 8) {
    const int m = n - t0 >= 8 ? 8 : static_cast<int>(n - t0);
    for (int i = 0; i < 8; ++i) {
      if (i >= m) {
        for (int j = 0; j < g; ++j) _mm256_store_ps(part[j][i], _mm256_setzero_ps());
        continue;
      }
      const C* kr = k_base + slots[t0 + i] * slot_stride;
      if (t0 + i + kPrefetchAhead < n) {
        const char* nk = reinterpret_cast<const char*>(k_base + slots[t0 + i + kPrefetchAhead] * slot_stride);
        for (int l = 0; l < static_cast<int>(64 * sizeof(C)); l += 64) _mm_prefetch(nk + l, _MM_HINT_T0);
      }
      __m256 kf[kChunks];
      for (int c = 0; c < kChunks; ++c) kf[c] = load8(kr + 8 * c);
      for (int j = 0; j < g; ++j) {
        const float* qj = q + j * q_head_stride;
        __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
        for (int c = 0; c < kChunks; c += 2) {
          a = _mm256_fmadd_ps(_mm256_loadu_ps(qj + 8 * c), kf[c], a);
          b = _mm256_fmadd_ps(_mm256_loadu_ps(qj + 8 * c + 8), kf[c + 1], b);
        }
        _mm256_store_ps(part[j][i], _mm256_add_ps(a, b));
      }
    }
    for (int j = 0; j < g; ++j) {
      // lane i = the sum of part[j][i]: pairwise horizontal adds, then the two halves
      const __m256 h01 = _mm256_hadd_ps(_mm256_load_ps(part[j][0]), _mm256_load_ps(part[j][1]));
      const __m256 h23 = _mm256_hadd_ps(_mm256_load_ps(part[j][2]), _mm256_load_ps(part[j][3]));
      const __m256 h45 = _mm256_hadd_ps(_mm256_load_ps(part[j][4]), _mm256_load_ps(part[j][5]));
      const __m256 h67 = _mm256_hadd_ps(_mm256_load_ps(part[j][6]), _mm256_load_ps(part[j][7]));
      const __m256 lo = _mm256_hadd_ps(h01, h23), hi = _mm256_hadd_ps(h45, h67);
      const __m256 sc = _mm256_mul_ps(_mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20),
                                                    _mm256_permute2f128_ps(lo, hi, 0x31)),
                                      scale_v);
      float* sj = scores + j * n;
      if (m == 8) {
        _mm256_storeu_ps(sj + t0, sc);
        _mm256_store_ps(mx[j], _mm256_max_ps(_mm256_load_ps(mx[j]), sc));
      } else {
        alignas(32) float tail[8];
        _mm256_store_ps(tail, sc);
        for (int i = 0; i < m; ++i) sj[t0 + i] = tail[i];
        for (int i = m; i < 8; ++i) tail[i] = -INFINITY;
        _mm256_store_ps(mx[j], _mm256_max_ps(_mm256_load_ps(mx[j]), _mm256_load_ps(tail)));
      }
    }
  }
  for (int j = 0; j < g; ++j) {
    float* sj = scores + j * n;
    float m_all = mx[j][0];
    for (int i = 1; i < 8; ++i) m_all = mx[j][i] > m_all ? mx[j][i] : m_all;
    const __m256 mv = _mm256_set1_ps(m_all);
    __m256 z = _mm256_setzero_ps();
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) {
      const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(sj + t), mv));
      _mm256_storeu_ps(sj + t, e);
      z = _mm256_add_ps(z, e);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, z);
    float sum = 0.f;
    for (int i = 0; i < 8; ++i) sum += lanes[i];
    for (; t < n; ++t) {
      sj[t] = std::exp(sj[t] - m_all);
      sum += sj[t];
    }
    __m256 acc[kChunks];
    for (int c = 0; c < kChunks; ++c) acc[c] = _mm256_setzero_ps();
    for (t = 0; t < n; ++t) {
      const C* vr = v_base + slots[t] * slot_stride;
      const __m256 p = _mm256_broadcast_ss(sj + t);
      for (int c = 0; c < kChunks; ++c) acc[c] = _mm256_fmadd_ps(p, load8(vr + 8 * c), acc[c]);
    }
    const __m256 inv = _mm256_set1_ps(1.f / sum);
    for (int c = 0; c < kChunks; ++c) _mm256_storeu_ps(out + j * out_head_stride + 8 * c, _mm256_mul_ps(acc[c], inv));
  }
}

// Portable path: any head size up to kMaxHeadDim, float32 or bfloat16 (T: queries and
// output, C: the cache).
template <typename T, typename C>
void attend_group_generic(const T* q, int64_t q_head_stride, int g, int D, const C* k_base,
                          const C* v_base, int64_t slot_stride, const int64_t* slots, int64_t n,
                          float scale, float* scores, T* out, int64_t out_head_stride) {
  float qf[kMaxGroup][kMaxHeadDim];
  float mx[kMaxGroup];
  for (int j = 0; j < g; ++j) {
    for (int d = 0; d < D; ++d) qf[j][d] = static_cast<float>(q[j * q_head_stride + d]) * scale;
    mx[j] = -INFINITY;
  }
  float row[kMaxHeadDim];
  for (int64_t t = 0; t < n; ++t) {
    const C* kr = k_base + slots[t] * slot_stride;
    for (int d = 0; d < D; ++d) row[d] = static_cast<float>(kr[d]);
    for (int j = 0; j < g; ++j) {
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int d = 0; d < D; ++d) s += qf[j][d] * row[d];
      scores[j * n + t] = s;
      mx[j] = s > mx[j] ? s : mx[j];
    }
  }
  float sum[kMaxGroup];
  for (int j = 0; j < g; ++j) {
    float* sj = scores + j * n;
    float z = 0.f;
    for (int64_t t = 0; t < n; ++t) {
      sj[t] = std::exp(sj[t] - mx[j]);
      z += sj[t];
    }
    sum[j] = z;
  }
  float acc[kMaxGroup][kMaxHeadDim] = {};
  for (int64_t t = 0; t < n; ++t) {
    const C* vr = v_base + slots[t] * slot_stride;
    for (int d = 0; d < D; ++d) row[d] = static_cast<float>(vr[d]);
    for (int j = 0; j < g; ++j) {
      const float p = scores[j * n + t];
#pragma omp simd
      for (int d = 0; d < D; ++d) acc[j][d] += p * row[d];
    }
  }
  for (int j = 0; j < g; ++j)
    for (int d = 0; d < D; ++d) out[j * out_head_stride + d] = static_cast<T>(acc[j][d] / sum[j]);
}

struct Args {
  int64_t B, H, D, KVH, L, qs0, qs1, ks0, ks1;
  int g;
  float scale;
  const int64_t *slots, *lens;
};

// T: the queries' and output's dtype; C: the cache's (T, or bf16 under fp32 compute)
template <typename T, typename C>
void run_tasks(const Args& a, const T* qp, const C* kp, const C* vp, T* op) {
  constexpr bool bf16_all = std::is_same_v<T, at::BFloat16> && std::is_same_v<C, at::BFloat16>;
  const bool fast = bf16_all && a.D == 64 && a.g <= 8 && has_avx512_bf16();
  const bool fast32 = std::is_same_v<T, float> && a.D == 64 && has_avx2_fma();
  at::parallel_for(0, a.B * a.KVH, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / a.KVH, h = task % a.KVH, n = a.lens[b];
      Next next;
      if (task + 1 < end) {
        const int64_t nb = (task + 1) / a.KVH, nh = (task + 1) % a.KVH;
        next = Next{reinterpret_cast<const char*>(kp + nh * a.ks0), reinterpret_cast<const char*>(vp + nh * a.ks0),
                    a.slots + nb * a.L, a.lens[nb], a.ks1 * static_cast<int64_t>(sizeof(C))};
      }
      scores.resize(static_cast<size_t>(a.g * n));
      const T* qh = qp + b * a.qs0 + h * a.g * a.qs1;
      T* oh = op + (b * a.H + h * a.g) * a.D;
      const int64_t* sl = a.slots + b * a.L;
      if constexpr (bf16_all) {
        if (fast) {
          attend_group_avx512(reinterpret_cast<const uint16_t*>(qh), a.qs1, a.g,
                              reinterpret_cast<const uint16_t*>(kp + h * a.ks0),
                              reinterpret_cast<const uint16_t*>(vp + h * a.ks0), a.ks1, sl, n, a.scale,
                              scores.data(), reinterpret_cast<uint16_t*>(oh), a.D, next);
          continue;
        }
      }
      if constexpr (std::is_same_v<T, float>) {
        if (fast32) {
          attend_group_avx2<C>(qh, a.qs1, a.g, kp + h * a.ks0, vp + h * a.ks0, a.ks1, sl, n, a.scale, scores.data(),
                               oh, a.D);
          continue;
        }
      }
      attend_group_generic<T, C>(qh, a.qs1, a.g, static_cast<int>(a.D), kp + h * a.ks0, vp + h * a.ks0, a.ks1, sl,
                                 n, a.scale, scores.data(), oh, a.D);
    }
  });
}

at::Tensor paged_decode_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                  const at::Tensor& slots, const at::Tensor& seq_lens, double scale) {
  TORCH_CHECK(q.dim() == 3 && k_cache.dim() == 3 && v_cache.dim() == 3,
              "q is [B, H, D], the caches [KVH, slots, D]");
  // fp32 compute may keep its cache in bf16 (half the bytes read per step)
  const bool narrow = q.scalar_type() == at::kFloat && k_cache.scalar_type() == at::kBFloat16;
  TORCH_CHECK(k_cache.scalar_type() == v_cache.scalar_type() && (k_cache.scalar_type() == q.scalar_type() || narrow),
              "q and the caches must share a dtype (or bf16 caches under fp32 queries)");
  TORCH_CHECK(q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kFloat, "bfloat16 or float32");
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2), KVH = k_cache.size(0);
  TORCH_CHECK(KVH > 0 && H % KVH == 0 && H / KVH <= kMaxGroup, "query heads must group over the kv heads");
  TORCH_CHECK(D <= kMaxHeadDim && k_cache.size(2) == D && v_cache.size(2) == D, "head size mismatch");
  TORCH_CHECK(q.stride(2) == 1 && k_cache.stride(2) == 1 && v_cache.stride(2) == 1, "rows must be dense");
  TORCH_CHECK(k_cache.strides() == v_cache.strides() && k_cache.sizes() == v_cache.sizes(),
              "keys and values must share a layout");
  TORCH_CHECK(slots.dim() == 2 && slots.size(0) == B && seq_lens.numel() == B, "slots [B, L], seq_lens [B]");
  const auto sl = slots.to(at::kLong).contiguous();
  const auto lens = seq_lens.to(at::kLong).contiguous();
  const int64_t L = sl.size(1), num_slots = k_cache.size(1);
  const int64_t* slp = sl.data_ptr<int64_t>();
  const int64_t* lp = lens.data_ptr<int64_t>();
  // validate once up front: a bad slot would read outside the cache
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(lp[b] >= 1 && lp[b] <= L, "sequence length out of range");
    for (int64_t t = 0; t < lp[b]; ++t)
      TORCH_CHECK(slp[b * L + t] >= 0 && slp[b * L + t] < num_slots, "slot out of range");
  }
  auto out = at::empty({B, H, D}, q.options());
  const Args a{B, H, D, KVH, L, q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1),
               static_cast<int>(H / KVH), static_cast<float>(scale), slp, lp};
  using bf16 = at::BFloat16;
  if (narrow)
    run_tasks<float, bf16>(a, q.const_data_ptr<float>(), k_cache.const_data_ptr<bf16>(),
                           v_cache.const_data_ptr<bf16>(), out.mutable_data_ptr<float>());
  else if (q.scalar_type() == at::kFloat)
    run_tasks<float, float>(a, q.const_data_ptr<float>(), k_cache.const_data_ptr<float>(),
                            v_cache.const_data_ptr<float>(), out.mutable_data_ptr<float>());
  else
    run_tasks<bf16, bf16>(a, q.const_data_ptr<bf16>(), k_cache.const_data_ptr<bf16>(),
                          v_cache.const_data_ptr<bf16>(), out.mutable_data_ptr<bf16>());
  return out;
}

}  // namespace

TORCH_LIBRARY(gateway_kernels, m) {
  // whether the AVX-512 BF16 paths run (GATEWAY_CPU_KERNELS=portable says no): the kernels
  // that have no portable path are used only then
  m.def("avx512_bf16() -> bool", [] { return gateway_kernels::has_avx512_bf16(); });
  m.def(
      "paged_decode_attention(Tensor q, Tensor k_cache, Tensor v_cache, Tensor slots, Tensor seq_lens, "
      "float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(gateway_kernels, CPU, m) { m.impl("paged_decode_attention", paged_decode_attention); }
