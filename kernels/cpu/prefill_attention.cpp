// Causal attention for a prefill chunk, straight from the paged KV cache, on the CPU.
//
// The chunk's n queries are the last n positions of a context of ctx tokens whose keys and
// values (this chunk's included) are already in the cache at `slots` (bottom-right causal,
// like SDPA with that mask; a fresh prompt is ctx == n). Flash-attention style: per kv head
// the keys and values are gathered once into blocks laid out for bf16 dot products; then
// tasks of 12 query rows (tokens x the query heads of a group) walk the key blocks with an
// online softmax in fp32, the probabilities rounded to bf16 for the value products (as
// PyTorch's CPU flash attention does). A row's result does not depend on n or on the other
// rows, so a chunked prefill computes what a whole one does. AVX-512 BF16, head size 64;
// the engine uses SDPA elsewhere (`avx512_bf16()`).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "simd.h"

namespace {

using namespace gateway_kernels;

constexpr int kD = 64;        // head size of the fast path
constexpr int kPairs = kD / 2;
constexpr int kRows = 12;     // query rows per task: 24 score accumulators of 16 lanes
constexpr int kKeys = 32;     // keys per block: two vectors of 16
constexpr int kHalf = kRows / 2;

inline int32_t load_pair(const uint16_t* p) {  // two bf16 as one 32-bit lane
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Keys of one block as [d pair][key][2]: one 512-bit load holds a d pair of 16 keys.
GK_AVX512 void pack_keys(const uint16_t* k_base, int64_t slot_stride, const int64_t* slots, int64_t first,
                         int64_t count, uint16_t* dst) {
  alignas(64) int32_t out[kPairs][kKeys];
  for (int j = 0; j < kKeys; ++j) {
    const uint16_t* row = first + j < count ? k_base + slots[first + j] * slot_stride : nullptr;
    for (int p = 0; p < kPairs; ++p) out[p][j] = row ? load_pair(row + 2 * p) : 0;
  }
  std::memcpy(dst, out, sizeof out);
}

// Values of one block as [key pair][d][2]: one 512-bit load holds 16 d of two keys.
GK_AVX512 void pack_values(const uint16_t* v_base, int64_t slot_stride, const int64_t* slots, int64_t first,
                           int64_t count, uint16_t* dst) {
  alignas(64) static constexpr uint16_t lo_idx[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                      8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  const __m512i lo = _mm512_load_si512(lo_idx);
  const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
  for (int j = 0; j < kKeys; j += 2) {
    __m512i a[2], b[2];
    for (int r = 0; r < 2; ++r) {
      __m512i* x = r ? b : a;
      if (first + j + r < count) {
        const uint16_t* row = v_base + slots[first + j + r] * slot_stride;
        x[0] = _mm512_loadu_si512(row);
        x[1] = _mm512_loadu_si512(row + 32);
      } else {  // padding: zeros (a zero probability times garbage could be NaN)
        x[0] = x[1] = _mm512_setzero_si512();
      }
    }
    uint16_t* o = dst + j * kD;  // 2 keys x 64 d
    for (int h = 0; h < 2; ++h) {
      _mm512_storeu_si512(o + 64 * h, _mm512_permutex2var_epi16(a[h], lo, b[h]));
      _mm512_storeu_si512(o + 64 * h + 32, _mm512_permutex2var_epi16(a[h], hi, b[h]));
    }
  }
}

struct Task {
  const uint16_t* q[kRows];  // query rows (unused rows repeat a real one)
  int64_t pos[kRows];        // their positions in the context
  uint16_t* out[kRows];      // nullptr: not written
  int64_t max_pos;
};

GK_AVX512 void attend_rows(const Task& t, const uint16_t* kp, const uint16_t* vp, float scale) {
  alignas(64) int32_t qb[kPairs][kRows];  // the rows' d pairs side by side: one base address
  for (int r = 0; r < kRows; ++r)
    for (int p = 0; p < kPairs; ++p) qb[p][r] = load_pair(t.q[r] + 2 * p);
  alignas(64) float o[kRows][kD] = {};
  alignas(64) uint16_t pb[kRows][kKeys];  // probabilities, bf16
  float m[kRows], l[kRows], alpha[kRows];
  for (int r = 0; r < kRows; ++r) m[r] = -std::numeric_limits<float>::infinity(), l[r] = 0.f;
  const __m512 scale_v = _mm512_set1_ps(scale);
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const int64_t blocks = t.max_pos / kKeys + 1;
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const uint16_t* kb = kp + blk * kKeys * kD;
    const uint16_t* vb = vp + blk * kKeys * kD;
    __m512 s[kRows][2];
    for (int r = 0; r < kRows; ++r) s[r][0] = s[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < kPairs; ++p) {
      const __m512bh k0 = (__m512bh)_mm512_load_si512(kb + p * 2 * kKeys);
      const __m512bh k1 = (__m512bh)_mm512_load_si512(kb + p * 2 * kKeys + 32);
      for (int r = 0; r < kRows; ++r) {
        const __m512bh qq = (__m512bh)_mm512_set1_epi32(qb[p][r]);
        s[r][0] = _mm512_dpbf16_ps(s[r][0], qq, k0);
        s[r][1] = _mm512_dpbf16_ps(s[r][1], qq, k1);
      }
    }
    const int64_t first = blk * kKeys;
    for (int r = 0; r < kRows; ++r) {
      __m512 a = _mm512_mul_ps(s[r][0], scale_v), b = _mm512_mul_ps(s[r][1], scale_v);
      const int64_t last = t.pos[r] - first;  // keys past it are in this row's future
      if (last < kKeys - 1) {
        const __m512i lim = _mm512_set1_epi32(static_cast<int32_t>(last < -1 ? -1 : last));
        const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
        a = _mm512_mask_mov_ps(a, _mm512_cmpgt_epi32_mask(lane, lim), ninf);
        b = _mm512_mask_mov_ps(b, _mm512_cmpgt_epi32_mask(_mm512_add_epi32(lane, _mm512_set1_epi32(16)), lim),
                               ninf);
      }
      const float mx = std::max(m[r], _mm512_reduce_max_ps(_mm512_max_ps(a, b)));
      // a row with no visible key yet (only where it repeats another row) keeps m = -inf
      alpha[r] = mx == -std::numeric_limits<float>::infinity() ? 1.f : std::exp(m[r] - mx);
      const __m512 mv = _mm512_set1_ps(mx == -std::numeric_limits<float>::infinity() ? 0.f : mx);
      a = exp512(_mm512_sub_ps(a, mv));
      b = exp512(_mm512_sub_ps(b, mv));
      // exp512 clamps its input: masked lanes must be exactly zero
      if (last < kKeys - 1) {
        const __m512i lim = _mm512_set1_epi32(static_cast<int32_t>(last < -1 ? -1 : last));
        a = _mm512_maskz_mov_ps(~_mm512_cmpgt_epi32_mask(lane, lim), a);
        b = _mm512_maskz_mov_ps(~_mm512_cmpgt_epi32_mask(_mm512_add_epi32(lane, _mm512_set1_epi32(16)), lim), b);
      }
      l[r] = l[r] * alpha[r] + _mm512_reduce_add_ps(_mm512_add_ps(a, b));
      m[r] = mx;
      store_bf16x16(pb[r], a);
      store_bf16x16(pb[r] + 16, b);
    }
    for (int h = 0; h < 2; ++h) {
      __m512 acc[kHalf][4];
      for (int r = 0; r < kHalf; ++r) {
        const __m512 al = _mm512_set1_ps(alpha[h * kHalf + r]);
        for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_mul_ps(_mm512_load_ps(o[h * kHalf + r] + 16 * c), al);
      }
      for (int p = 0; p < kKeys / 2; ++p) {
        __m512bh v[4];
        for (int c = 0; c < 4; ++c) v[c] = (__m512bh)_mm512_load_si512(vb + p * 2 * kD + 32 * c);
        for (int r = 0; r < kHalf; ++r) {
          const __m512bh pp = (__m512bh)_mm512_set1_epi32(load_pair(pb[h * kHalf + r] + 2 * p));
          for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], pp, v[c]);
        }
      }
      for (int r = 0; r < kHalf; ++r)
        for (int c = 0; c < 4; ++c) _mm512_store_ps(o[h * kHalf + r] + 16 * c, acc[r][c]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    if (!t.out[r]) continue;
    const __m512 inv = _mm512_set1_ps(1.f / l[r]);
    for (int c = 0; c < 4; ++c) store_bf16x16(t.out[r] + 16 * c, _mm512_mul_ps(_mm512_load_ps(o[r] + 16 * c), inv));
  }
}

// Runs fn(task) for tasks [0, n) on the intra-op threads, each thread taking the next task
// when it is done (causal tasks differ in size; a static split leaves threads idle).
template <typename F>
void for_each_task(int64_t n, const F& fn) {
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t i; (i = next.fetch_add(1)) < n;) fn(i);
  });
}

at::Tensor prefill_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                             const at::Tensor& slots, double scale) {
  TORCH_CHECK(has_avx512_bf16(), "prefill_attention needs AVX-512 BF16");
  TORCH_CHECK(q.dim() == 3 && k_cache.dim() == 3 && v_cache.dim() == 3,
              "q is [n, H, D], the caches [KVH, slots, D]");
  TORCH_CHECK(q.scalar_type() == at::kBFloat16 && k_cache.scalar_type() == at::kBFloat16 &&
                  v_cache.scalar_type() == at::kBFloat16,
              "bfloat16 only");
  const int64_t n = q.size(0), H = q.size(1), KVH = k_cache.size(0);
  TORCH_CHECK(q.size(2) == kD && k_cache.size(2) == kD && v_cache.size(2) == kD, "head size 64 only");
  TORCH_CHECK(KVH > 0 && H % KVH == 0 && H / KVH <= kRows, "query heads must group over the kv heads");
  TORCH_CHECK(q.stride(2) == 1 && k_cache.stride(2) == 1 && v_cache.stride(2) == 1, "rows must be dense");
  TORCH_CHECK(k_cache.sizes() == v_cache.sizes(), "keys and values must share a shape");
  TORCH_CHECK(slots.dim() == 1, "slots [ctx]");
  const auto sl = slots.to(at::kLong).contiguous();
  const int64_t ctx = sl.numel(), num_slots = k_cache.size(1);
  TORCH_CHECK(ctx >= n, "the context must hold the chunk");
  const int64_t* slp = sl.data_ptr<int64_t>();
  for (int64_t i = 0; i < ctx; ++i)  // a bad slot would read outside the cache
    TORCH_CHECK(slp[i] >= 0 && slp[i] < num_slots, "slot out of range");
  auto out = at::empty({n, H * kD}, q.options());
  if (n == 0) return out;

  const int g = static_cast<int>(H / KVH);
  const int64_t nblk = (ctx + kKeys - 1) / kKeys, blk_elems = kKeys * kD;
  auto packed = at::empty({2, KVH, nblk * blk_elems}, q.options());
  auto* kp = reinterpret_cast<uint16_t*>(packed.mutable_data_ptr<at::BFloat16>());
  uint16_t* vp = kp + KVH * nblk * blk_elems;
  const auto* kc = reinterpret_cast<const uint16_t*>(k_cache.const_data_ptr<at::BFloat16>());
  const auto* vc = reinterpret_cast<const uint16_t*>(v_cache.const_data_ptr<at::BFloat16>());
  const int64_t ks0 = k_cache.stride(0), ks1 = k_cache.stride(1), vs0 = v_cache.stride(0), vs1 = v_cache.stride(1);
  at::parallel_for(0, KVH * nblk, 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t h = i / nblk, blk = i % nblk;
      pack_keys(kc + h * ks0, ks1, slp, blk * kKeys, ctx, kp + (h * nblk + blk) * blk_elems);
      pack_values(vc + h * vs0, vs1, slp, blk * kKeys, ctx, vp + (h * nblk + blk) * blk_elems);
    }
  });

  const auto* qp = reinterpret_cast<const uint16_t*>(q.const_data_ptr<at::BFloat16>());
  auto* op = reinterpret_cast<uint16_t*>(out.mutable_data_ptr<at::BFloat16>());
  const int tokens_per_task = kRows / g;
  const int64_t tasks_per_head = (n + tokens_per_task - 1) / tokens_per_task;
  const int64_t p0 = ctx - n, qs0 = q.stride(0), qs1 = q.stride(1);
  const float sc = static_cast<float>(scale);
  // the longest tasks (last queries) first
  for_each_task(KVH * tasks_per_head, [&](int64_t i) {
    const int64_t h = i % KVH, first = (tasks_per_head - 1 - i / KVH) * tokens_per_task;
    Task t;
    for (int r = 0; r < kRows; ++r) {
      const int64_t tok = first + r / g;
      const bool real = r < tokens_per_task * g && tok < n;
      const int64_t tk = real ? tok : first, head = h * g + (real ? r % g : 0);
      t.q[r] = qp + tk * qs0 + head * qs1;
      t.pos[r] = p0 + tk;
      t.out[r] = real ? op + (tk * H + head) * kD : nullptr;
    }
    t.max_pos = p0 + std::min(first + tokens_per_task, n) - 1;
    attend_rows(t, kp + h * nblk * blk_elems, vp + h * nblk * blk_elems, sc);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gateway_kernels, m) {
  m.def("prefill_attention(Tensor q, Tensor k_cache, Tensor v_cache, Tensor slots, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(gateway_kernels, CPU, m) { m.impl("prefill_attention", prefill_attention); }
