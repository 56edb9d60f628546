// The gate-first sparse FFN of the routed modes, for a few rows (single- and few-stream
// decode; inference/moe/neurons.py, issue 17). Per row and per shard (a fixed quarter of the
// neurons, whole groups of 32, keeping its share of the counts):
//   1. the gate projection whole: g = W_gate x;
//   2. neurons ranked by |silu(g_i)| * c_i (c_i = |w_up,i| |w_down,:i|); the top `cand`;
//   3. the up projection of those candidates only: u_i = w_up,i . x;
//   4. the top `keep` of them by |silu(g_i) u_i| * n_i (n_i = |w_down,:i|);
//   5. the down projection over the kept neurons only: y = sum_i silu(g_i) u_i w_down,:i,
//      the shards' parts summed in shard order.
// Ranking ties go to the lower neuron id (keys (score, -i) are distinct), as the PyTorch twin's
// stable argsort does. Sums in fp32 over exact products: where x is bf16 on a CPU with
// AVX512_VNNI, x is first rounded to int8 per block of 32 (as llama.cpp's Q8 activations;
// int8 dot products, 2.3x the bf16 ones' speed), fp32 FMAs over x itself elsewhere.
//
// Weights are the model file's Q4_1 blocks, so the weights are the file's exactly (w = d q +
// m, d and m fp16) and a step reads only what it uses: gate and up as one row of 20 bytes
// per block each (the blocks' nibbles, then their d, then their m); down transposed, each
// neuron's column one row of O / 32 such nibble blocks (no scales), the scales kept as fp16
// [F / 32 groups][2 (d, m)][O]: the file groups the down projection's 32 neurons per scale,
// so one group's kept neurons are summed first and scaled once per output:
//   y_o = sum_g d_go (sum_{i in g} a_i q_oi) + m_go (sum_{i in g} a_i).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "simd.h"

namespace {

using namespace gateway_kernels;

constexpr int64_t kBlock = 32;       // weights per Q4_1 block
constexpr int64_t kBlockBytes = 20;  // a block in a row: 16 bytes of nibbles, fp16 d, fp16 m
constexpr int64_t kChunk = 4;        // down-projection output blocks (of 32) per pass
constexpr int64_t kMaxRows = 16;

inline float half_to_float(uint16_t h) { return c10::detail::fp16_ieee_to_fp32_value(h); }

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline float silu(float g) { return g / (1.f + std::exp(-g)); }

// ---------------------------------------------------------------- the row's input
// x in float32 and its per-block sums (the m term: sum_j (d q_j + m) x_j = d q.x + m sum x).
struct RowInput {
  std::vector<float> x, xs;
  // x rounded to int8 per block for the int8 dot products (x = dx q, dx = the block's
  // max |x| / 127, as llama.cpp's Q8 activations), in the nibbles' order: ql = the blocks'
  // elements 0-15, qh = 16-31, 16 bytes a block; dx4 = each block's dx 4 times (one per int32
  // lane of a block's sums); zeros pad to whole steps of 4 blocks. xs holds dx sum q then.
  std::vector<int8_t> ql, qh;
  std::vector<float> dx4;

  void set(const float* src, int64_t nb) {
    x.assign(src, src + nb * kBlock);
    xs.resize(nb);
    for (int64_t b = 0; b < nb; ++b) {
      float s = 0.f;
      for (int j = 0; j < kBlock; ++j) s += src[b * kBlock + j];
      xs[b] = s;
    }
  }

  void set_bf16(const c10::BFloat16* src, int64_t nb) {
    std::vector<float> f(nb * kBlock);
    for (int64_t j = 0; j < nb * kBlock; ++j) f[j] = float(src[j]);
    set(f.data(), nb);
  }

  void set_int8(const c10::BFloat16* src, int64_t nb) {
    set_bf16(src, nb);
    const int64_t padded = (nb + 3) / 4 * 4;
    ql.assign(padded * 16, 0);
    qh.assign(padded * 16, 0);
    dx4.assign(padded * 4, 0.f);
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = x.data() + b * kBlock;
      float amax = 0.f;
      for (int j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(xb[j]));
      const float dx = amax / 127.f;
      int32_t sum = 0;
      for (int j = 0; j < kBlock; ++j) {
        const int32_t q = dx > 0.f ? static_cast<int32_t>(std::nearbyint(xb[j] / dx)) : 0;
        (j < 16 ? ql[b * 16 + j] : qh[b * 16 + j - 16]) = static_cast<int8_t>(q);
        sum += q;
      }
      for (int l = 0; l < 4; ++l) dx4[b * 4 + l] = dx;
      xs[b] = dx * static_cast<float>(sum);
    }
  }
};

// A gate or up row: [nb * 16 nibble bytes | nb fp16 d | nb fp16 m] (block b's element j in
// the low nibble of byte 16 b + j, element 16 + j in its high one).
inline int64_t row_bytes_of(int64_t nb) { return nb * kBlockBytes; }

// ---------------------------------------------------------------- one row . x, portable
float row_dot_portable(const uint8_t* row, const RowInput& in, int64_t nb) {
  const uint8_t* d = row + nb * 16;
  const uint8_t* m = d + nb * 2;
  float acc = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* qs = row + b * 16;
    const float* xb = in.x.data() + b * kBlock;
    float t = 0.f;
    for (int j = 0; j < 16; ++j) t += float(qs[j] & 0x0F) * xb[j] + float(qs[j] >> 4) * xb[16 + j];
    acc += half_to_float(load_u16(d + 2 * b)) * t + half_to_float(load_u16(m + 2 * b)) * in.xs[b];
  }
  return acc;
}

// ---------------------------------------------------------------- rows . x, AVX-512
#define GK_AVX512_F16C __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c,fma")))
#define GK_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni,f16c,fma")))

GK_AVX512 inline void nibbles_512(const uint8_t* p, __m512& lo, __m512& hi) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0F);
  lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(raw, mask)));
  hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(raw, 4), mask)));
}

// Two rows at once (independent chains, x's loads shared), a block a step; each row's 16
// partial sums go to p0 / p1 (the m terms in lane 0).
GK_AVX512_F16C inline void dot2_avx512(const uint8_t* r0, const uint8_t* r1, const RowInput& in, int64_t nb,
                                       float* p0, float* p1) {
  const uint8_t* rows[2] = {r0, r1};
  __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  float macc[2] = {0.f, 0.f};
  for (int64_t b = 0; b < nb; ++b) {
    const __m512 x0 = _mm512_loadu_ps(in.x.data() + b * kBlock), x1 = _mm512_loadu_ps(in.x.data() + b * kBlock + 16);
    for (int j = 0; j < 2; ++j) {
      const uint8_t* d = rows[j] + nb * 16;
      __m512 lo, hi;
      nibbles_512(rows[j] + b * 16, lo, hi);
      const __m512 t = _mm512_fmadd_ps(hi, x1, _mm512_mul_ps(lo, x0));
      acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(load_u16(d + 2 * b))), t, acc[j]);
      macc[j] += _cvtsh_ss(load_u16(d + 2 * nb + 2 * b)) * in.xs[b];
    }
  }
  const __m512 lane0 = _mm512_castps128_ps512(_mm_set_ss(1.f));
  _mm512_store_ps(p0, _mm512_fmadd_ps(_mm512_set1_ps(macc[0]), _mm512_maskz_mov_ps(1, lane0), acc[0]));
  _mm512_store_ps(p1, _mm512_fmadd_ps(_mm512_set1_ps(macc[1]), _mm512_maskz_mov_ps(1, lane0), acc[1]));
}

// The rows a step reads are scattered (the candidates' up rows, the kept neurons' down
// columns): the hardware prefetcher cannot see the next one, and a row missing every cache
// waits ~100 ns for memory, ~3x the time its arithmetic takes. So each row is prefetched a
// few rows ahead (`prefetch_lines`, into L2: a non-temporal hint was slower; docs/benchmarks.md
// has the engine's figures).
constexpr int kAhead = 12;  // rows
constexpr int32_t kAheadDown = 16;  // kept neurons (their chunk of the down row is 16-64 bytes)

// The same with x in int8 (`RowInput::set_int8`) and int8 dot products (`vpdpbusd`, a
// nibble 0-15 times an int8, 4 products summed a lane, exact in int32): four blocks a step,
// 64 bytes of nibbles; lane 4 i + l of a step's sums belongs to its block i, scaled by d dx.
// w . x = sum_b d_b dx_b (q_b . qx_b) + m_b xs_b. ~12 instructions per 128 weights, against
// ~24 for bf16 dot products over nibbles widened to bf16 (2.3x the speed in cache).
GK_AVX512_VNNI inline void dot2_int8(const uint8_t* r0, const uint8_t* r1, const RowInput& in, int64_t nb,
                                     float* p0, float* p1) {
  const uint8_t* rows[2] = {r0, r1};
  float* outs[2] = {p0, p1};
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int64_t b = 0; b < nb; b += 4) {
    const int64_t n = std::min<int64_t>(4, nb - b);
    const __mmask64 kw = n == 4 ? ~__mmask64(0) : (__mmask64(1) << (16 * n)) - 1;
    const __m512i xl = _mm512_loadu_si512(in.ql.data() + b * 16);
    const __m512i xh = _mm512_loadu_si512(in.qh.data() + b * 16);
    const __m512 dx = _mm512_loadu_ps(in.dx4.data() + b * 4);
    for (int j = 0; j < 2; ++j) {
      const __m512i w = _mm512_maskz_loadu_epi8(kw, rows[j] + b * 16);
      const __m512i lo = _mm512_and_si512(w, low4), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), low4);
      const __m512i t = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xl), hi, xh);
      const __m128 dv = _mm_cvtph_ps(_mm_maskz_loadu_epi16(__mmask8((1u << n) - 1), rows[j] + nb * 16 + 2 * b));
      const __m512 scale = _mm512_mul_ps(_mm512_permutexvar_ps(spread, _mm512_zextps128_ps512(dv)), dx);
      acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), scale, acc[j]);
    }
  }
  for (int j = 0; j < 2; ++j) {  // + sum_b m_b xs_b, 16 blocks at a time
    const uint8_t* m = rows[j] + nb * 16 + 2 * nb;
    __m512 mt = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 16) {
      const __mmask16 k = nb - b >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (nb - b)) - 1);
      const __m512 mv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, m + 2 * b));
      mt = _mm512_fmadd_ps(mv, _mm512_maskz_loadu_ps(k, in.xs.data() + b), mt);
    }
    _mm512_store_ps(outs[j], _mm512_add_ps(acc[j], mt));
  }
}

// out[r] = rows[r] . x for r < n <= 16 (out has 16 slots); rows[n, n_all) are the next
// rows to read (prefetched)
template <bool INT8>
GK_AVX512_VNNI void dots_avx512(const uint8_t* const* rows, int n, int n_all, int64_t rb, const RowInput& in,
                                int64_t nb, float* out) {
  auto* dot2 = INT8 ? dot2_int8 : dot2_avx512;
  alignas(64) float part[16][16];
  int r = 0;
  for (int j = 0; j < std::min(kAhead, n_all); ++j) prefetch_lines(rows[j], rb);
  for (; r + 2 <= n; r += 2) {
    for (int j = r + kAhead; j < std::min(r + kAhead + 2, n_all); ++j) prefetch_lines(rows[j], rb);
    dot2(rows[r], rows[r + 1], in, nb, part[r], part[r + 1]);
  }
  if (r < n) {
    dot2(rows[r], rows[r], in, nb, part[r], part[r + 1]);
    r += 2;
  }
  for (; r < 16; ++r) std::memset(part[r], 0, sizeof(part[r]));
  _mm512_storeu_ps(out, hsum16(part));
}

// ---------------------------------------------------------------- one row . x, AVX2
#define GK_AVX2_F16C __attribute__((target("avx2,fma,f16c")))

GK_AVX2_F16C inline void nibbles_256(const uint8_t* p, __m256& lo0, __m256& lo1, __m256& hi0, __m256& hi1) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i l = _mm_and_si128(raw, mask), h = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
  lo0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(l));
  lo1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(l, 8)));
  hi0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(h));
  hi1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(h, 8)));
}

GK_AVX2_F16C float row_dot_avx2(const uint8_t* row, const RowInput& in, int64_t nb) {
  const uint8_t* d = row + nb * 16;
  __m256 acc = _mm256_setzero_ps();
  float macc = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = in.x.data() + b * kBlock;
    __m256 l0, l1, h0, h1;
    nibbles_256(row + b * 16, l0, l1, h0, h1);
    __m256 t = _mm256_mul_ps(l0, _mm256_loadu_ps(xb));
    t = _mm256_fmadd_ps(l1, _mm256_loadu_ps(xb + 8), t);
    t = _mm256_fmadd_ps(h0, _mm256_loadu_ps(xb + 16), t);
    t = _mm256_fmadd_ps(h1, _mm256_loadu_ps(xb + 24), t);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(load_u16(d + 2 * b))), t, acc);
    macc += _cvtsh_ss(load_u16(d + 2 * nb + 2 * b)) * in.xs[b];
  }
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1))) + macc;
}

// avx512_int8x: the AVX-512 paths with x rounded to int8 and int8 dot products for the gate
// and up rows (bf16 x, on CPUs with AVX512_VNNI)
enum class Path { portable, avx2, avx512, avx512_int8x };

inline bool is_avx512(Path p) { return p == Path::avx512 || p == Path::avx512_int8x; }

// the best path this CPU (and GATEWAY_CPU_KERNELS) allows; bf16_x: x is bf16
inline Path path_here(bool bf16_x) {
  if (has_avx512_bf16()) return bf16_x && has_avx512_vnni() ? Path::avx512_int8x : Path::avx512;
  return has_avx2_fma() ? Path::avx2 : Path::portable;
}

// out[r] = rows[r] . x for r < n <= 16 (out has 16 slots); rows[n, n_all) are read next
void dots(Path p, const uint8_t* const* rows, int n, int n_all, int64_t rb, const RowInput& in, int64_t nb,
          float* out) {
  if (p == Path::avx512_int8x) return dots_avx512<true>(rows, n, n_all, rb, in, nb, out);
  if (p == Path::avx512) return dots_avx512<false>(rows, n, n_all, rb, in, nb, out);
  for (int r = 0; r < n; ++r) {
    if (r + kAhead < n_all) prefetch_lines(rows[r + kAhead], rb);
    out[r] = p == Path::avx2 ? row_dot_avx2(rows[r], in, nb) : row_dot_portable(rows[r], in, nb);
  }
}

// silu(g) for 16 values
GK_AVX512 inline void silu16_avx512(const float* g, float* a) {
  const __m512 v = _mm512_loadu_ps(g);
  const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), v));
  _mm512_storeu_ps(a, _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.f), e)));
}

GK_AVX2 inline void silu8_avx2(const float* g, float* a) {
  const __m256 v = _mm256_loadu_ps(g);
  const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), v));
  _mm256_storeu_ps(a, _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.f), e)));
}

void silu16(Path p, const float* g, float* a, int n) {
  if (is_avx512(p)) return silu16_avx512(g, a);
  for (int r = 0; r < n; ++r) a[r] = silu(g[r]);
}

// a[j] = silu(g[j]) for j < n (vectorized where the path allows)
void silu_n(Path p, const float* g, float* a, int64_t n) {
  int64_t j = 0;
  if (is_avx512(p))
    for (; j + 16 <= n; j += 16) silu16_avx512(g + j, a + j);
  else if (p == Path::avx2)
    for (; j + 8 <= n; j += 8) silu8_avx2(g + j, a + j);
  for (; j < n; ++j) a[j] = silu(g[j]);
}

// ---------------------------------------------------------------- down projection
// What one row's down projection needs: the kept neurons in id order, their activations,
// and where each group of 32 starts in that list (groups[g] .. groups[g + 1]).
struct Kept {
  std::vector<int32_t> ids;
  std::vector<float> act;
  std::vector<int32_t> groups;  // over the shard's groups
  std::vector<float> group_sum;
  int64_t group0 = 0;  // the shard's first group
};

// y[o] for the output blocks [b0, b0 + n) (n <= kChunk), portable
void down_chunk_portable(const Kept& kp, const uint8_t* dq, const uint16_t* dm, int64_t O, int64_t b0, int64_t n,
                         float* y) {
  const int64_t row_bytes = O / 2;
  float yacc[kChunk * kBlock] = {};
  float gacc[kChunk * kBlock];
  const int64_t G = static_cast<int64_t>(kp.groups.size()) - 1;
  const int32_t n_kept = static_cast<int32_t>(kp.ids.size());
  for (int64_t g = 0; g < G; ++g) {
    const int32_t s = kp.groups[g], e = kp.groups[g + 1];
    if (s == e) continue;
    std::fill(gacc, gacc + n * kBlock, 0.f);
    for (int32_t j = s; j < e; ++j) {
      const float a = kp.act[j];
      const uint8_t* r = dq + kp.ids[j] * row_bytes + b0 * 16;
      if (j + kAheadDown < n_kept) prefetch_lines(dq + kp.ids[j + kAheadDown] * row_bytes + b0 * 16, n * 16);
      for (int64_t bb = 0; bb < n; ++bb)
        for (int q = 0; q < 16; ++q) {
          gacc[bb * kBlock + q] += a * float(r[bb * 16 + q] & 0x0F);
          gacc[bb * kBlock + 16 + q] += a * float(r[bb * 16 + q] >> 4);
        }
    }
    const uint16_t* d = dm + (2 * (kp.group0 + g)) * O + b0 * kBlock;
    const uint16_t* m = dm + (2 * (kp.group0 + g) + 1) * O + b0 * kBlock;
    const float sg = kp.group_sum[g];
    for (int64_t o = 0; o < n * kBlock; ++o) yacc[o] += half_to_float(d[o]) * gacc[o] + half_to_float(m[o]) * sg;
  }
  std::memcpy(y + b0 * kBlock, yacc, sizeof(float) * n * kBlock);
}

template <int N>
GK_AVX512 void down_chunk_avx512(const Kept& kp, const uint8_t* dq, const uint16_t* dm, int64_t O, int64_t b0,
                                 float* y) {
  const int64_t row_bytes = O / 2;
  __m512 yacc[2 * N];
  for (int v = 0; v < 2 * N; ++v) yacc[v] = _mm512_setzero_ps();
  const int64_t G = static_cast<int64_t>(kp.groups.size()) - 1;
  const int32_t n_kept = static_cast<int32_t>(kp.ids.size());
  for (int64_t g = 0; g < G; ++g) {
    const int32_t s = kp.groups[g], e = kp.groups[g + 1];
    if (s == e) continue;
    __m512 gacc[2 * N];
    for (int v = 0; v < 2 * N; ++v) gacc[v] = _mm512_setzero_ps();
    for (int32_t j = s; j < e; ++j) {
      const __m512 a = _mm512_set1_ps(kp.act[j]);
      const uint8_t* r = dq + kp.ids[j] * row_bytes + b0 * 16;
      if (j + kAheadDown < n_kept) prefetch_lines(dq + kp.ids[j + kAheadDown] * row_bytes + b0 * 16, N * 16);
      for (int bb = 0; bb < N; ++bb) {
        __m512 lo, hi;
        nibbles_512(r + bb * 16, lo, hi);
        gacc[2 * bb] = _mm512_fmadd_ps(a, lo, gacc[2 * bb]);
        gacc[2 * bb + 1] = _mm512_fmadd_ps(a, hi, gacc[2 * bb + 1]);
      }
    }
    const uint16_t* d = dm + (2 * (kp.group0 + g)) * O + b0 * kBlock;
    const uint16_t* m = dm + (2 * (kp.group0 + g) + 1) * O + b0 * kBlock;
    const __m512 sg = _mm512_set1_ps(kp.group_sum[g]);
    for (int v = 0; v < 2 * N; ++v) {
      const __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + 16 * v)));
      const __m512 mv = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 16 * v)));
      yacc[v] = _mm512_fmadd_ps(mv, sg, _mm512_fmadd_ps(dv, gacc[v], yacc[v]));
    }
  }
  for (int v = 0; v < 2 * N; ++v) _mm512_storeu_ps(y + b0 * kBlock + 16 * v, yacc[v]);
}

template <int N>
GK_AVX2_F16C void down_chunk_avx2(const Kept& kp, const uint8_t* dq, const uint16_t* dm, int64_t O, int64_t b0,
                                  float* y) {
  const int64_t row_bytes = O / 2;
  __m256 yacc[4 * N];
  for (int v = 0; v < 4 * N; ++v) yacc[v] = _mm256_setzero_ps();
  const int64_t G = static_cast<int64_t>(kp.groups.size()) - 1;
  const int32_t n_kept = static_cast<int32_t>(kp.ids.size());
  for (int64_t g = 0; g < G; ++g) {
    const int32_t s = kp.groups[g], e = kp.groups[g + 1];
    if (s == e) continue;
    __m256 gacc[4 * N];
    for (int v = 0; v < 4 * N; ++v) gacc[v] = _mm256_setzero_ps();
    for (int32_t j = s; j < e; ++j) {
      const __m256 a = _mm256_set1_ps(kp.act[j]);
      const uint8_t* r = dq + kp.ids[j] * row_bytes + b0 * 16;
      if (j + kAheadDown < n_kept) prefetch_lines(dq + kp.ids[j + kAheadDown] * row_bytes + b0 * 16, N * 16);
      for (int bb = 0; bb < N; ++bb) {
        __m256 l0, l1, h0, h1;
        nibbles_256(r + bb * 16, l0, l1, h0, h1);
        gacc[4 * bb] = _mm256_fmadd_ps(a, l0, gacc[4 * bb]);
        gacc[4 * bb + 1] = _mm256_fmadd_ps(a, l1, gacc[4 * bb + 1]);
        gacc[4 * bb + 2] = _mm256_fmadd_ps(a, h0, gacc[4 * bb + 2]);
        gacc[4 * bb + 3] = _mm256_fmadd_ps(a, h1, gacc[4 * bb + 3]);
      }
    }
    const uint16_t* d = dm + (2 * (kp.group0 + g)) * O + b0 * kBlock;
    const uint16_t* m = dm + (2 * (kp.group0 + g) + 1) * O + b0 * kBlock;
    const __m256 sg = _mm256_set1_ps(kp.group_sum[g]);
    for (int v = 0; v < 4 * N; ++v) {
      const __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + 8 * v)));
      const __m256 mv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(m + 8 * v)));
      yacc[v] = _mm256_fmadd_ps(mv, sg, _mm256_fmadd_ps(dv, gacc[v], yacc[v]));
    }
  }
  for (int v = 0; v < 4 * N; ++v) _mm256_storeu_ps(y + b0 * kBlock + 8 * v, yacc[v]);
}

template <int N>
void down_chunk_n(Path p, const Kept& kp, const uint8_t* dq, const uint16_t* dm, int64_t O, int64_t b0, float* y) {
  if (is_avx512(p))
    down_chunk_avx512<N>(kp, dq, dm, O, b0, y);
  else if (p == Path::avx2)
    down_chunk_avx2<N>(kp, dq, dm, O, b0, y);
  else
    down_chunk_portable(kp, dq, dm, O, b0, N, y);
}

void down_chunk(Path p, const Kept& kp, const uint8_t* dq, const uint16_t* dm, int64_t O, int64_t b0, int64_t n,
                float* y) {
  switch (n) {
    case 1: return down_chunk_n<1>(p, kp, dq, dm, O, b0, y);
    case 2: return down_chunk_n<2>(p, kp, dq, dm, O, b0, y);
    case 3: return down_chunk_n<3>(p, kp, dq, dm, O, b0, y);
    default: return down_chunk_n<4>(p, kp, dq, dm, O, b0, y);
  }
}

// ---------------------------------------------------------------- selection
// flag[ids[j]] = 1 for the k largest of n scores (>= 0), ties to the lower id. Branch-free
// where it counts: the scores change every layer, so a comparison sort or nth_element over
// all n mispredicts on most elements (measured: ~16 us per call over the 30 layers, 3 us
// when one layer repeats). A histogram of the scores' top 11 bits below the sign (exponent,
// three mantissa bits; positive floats order as their bits) finds the bin holding the k-th
// largest; everything above it is kept, and only that bin's few elements are ordered exactly
// (keys (bits, ~id) are distinct and order as (score, -id)).
struct Selector {
  std::vector<uint32_t> hist = std::vector<uint32_t>(2048);  // >= 0 floats: bits < 2^31
  std::vector<uint64_t> tie;

  void top_k(const float* score, const int32_t* ids, int64_t n, int64_t k, uint8_t* flag) {
    if (k >= n) {
      for (int64_t j = 0; j < n; ++j) flag[ids[j]] = 1;
      return;
    }
    uint32_t lo = 0xFFFFFFFFu, hi = 0;  // only the bins the scores span are cleared
    for (int64_t j = 0; j < n; ++j) {
      const uint32_t b = bits_of(score[j]);
      lo = std::min(lo, b);
      hi = std::max(hi, b);
    }
    std::fill(hist.begin() + (lo >> 20), hist.begin() + (hi >> 20) + 1, 0u);
    for (int64_t j = 0; j < n; ++j) ++hist[bits_of(score[j]) >> 20];
    int64_t bin = hi >> 20, above = 0;
    while (above + int64_t(hist[bin]) < k) above += hist[bin--];
    tie.resize(hist[bin] + 1);  // + 1: the branch-free loop writes one past the last match
    int64_t m = 0;
    for (int64_t j = 0; j < n; ++j) {
      const uint32_t b = bits_of(score[j]);
      const int64_t in_bin = (b >> 20) == static_cast<uint32_t>(bin);
      tie[m] = (uint64_t(b) << 32) | uint32_t(~uint32_t(ids[j]));
      m += in_bin;
      flag[ids[j]] = static_cast<uint8_t>((b >> 20) > static_cast<uint32_t>(bin));
    }
    const int64_t need = k - above;  // 1 <= need <= m
    if (need < m) std::nth_element(tie.begin(), tie.begin() + (need - 1), tie.begin() + m, std::greater<uint64_t>());
    for (int64_t j = 0; j < need; ++j) flag[int32_t(~uint32_t(tie[j] & 0xFFFFFFFFu))] = 1;
  }

  static uint32_t bits_of(float v) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    return b;
  }
};

// ids (in order) of the flagged of [0, F), branch-free; the flags are cleared
int64_t compact(uint8_t* flag, int64_t F, int32_t* out) {
  int64_t n = 0;
  for (int64_t i = 0; i < F; ++i) {
    out[n] = static_cast<int32_t>(i);
    n += flag[i];
  }
  std::memset(flag, 0, F);
  return n;
}

// ---------------------------------------------------------------- a shard
// The neurons are ranked within fixed shards of F / kShards (whole groups of 32), each
// keeping its share of k: a shard is then one thread's work from the gate to its part of the
// down projection, with no data from other threads and one barrier a row (the partial
// outputs are summed in shard order, so the result does not depend on the thread count).
constexpr int64_t kShards = 4;

// shard s's share of k of F: floor(k (s + 1) / S) - floor(k s / S) (they sum to k)
inline int64_t share(int64_t k, int64_t s) { return k * (s + 1) / kShards - k * s / kShards; }

struct ShardScratch {
  std::vector<float> a, score, u, exact;
  std::vector<int32_t> ids, candidates, kept;
  std::vector<uint8_t> flag;
  Selector select;
  Kept kp;
};

struct Weights {
  const uint8_t *gate, *up, *down_q;
  const uint16_t* down_dm;
  const float *score_scale, *down_norm;
  int64_t nb, F, O;
};

// shard s of one row: y_s [O] = its kept neurons' share of the down projection
void run_shard(Path path, const Weights& w, const RowInput& in, int64_t s, int64_t keep, int64_t cand,
               ShardScratch& sc, uint8_t* kept_row, float* y_s) {
  const int64_t n = w.F / kShards, i0 = s * n, rb = row_bytes_of(w.nb), G = n / kBlock;
  for (auto* v : {&sc.a, &sc.score, &sc.u}) v->resize(n);
  sc.candidates.resize(n);
  sc.kept.resize(n);
  if (static_cast<int64_t>(sc.flag.size()) != w.F) sc.flag.assign(w.F, 0);  // all zero between calls
  if (static_cast<int64_t>(sc.ids.size()) != n || (n && sc.ids[0] != i0)) {
    sc.ids.resize(n);
    for (int64_t j = 0; j < n; ++j) sc.ids[j] = static_cast<int32_t>(i0 + j);
  }
  // 1. the gate, silu and the first score, 16 rows at a time
  for (int64_t j0 = 0; j0 < n; j0 += 16) {
    const uint8_t* rows[16 + kAhead];
    alignas(64) float g[16];
    const int n_all = static_cast<int>(std::min<int64_t>(16 + kAhead, n - j0));
    for (int r = 0; r < n_all; ++r) rows[r] = w.gate + (i0 + j0 + r) * rb;
    dots(path, rows, 16, n_all, rb, in, w.nb, g);
    silu16(path, g, sc.a.data() + j0, 16);
    for (int r = 0; r < 16; ++r) sc.score[j0 + r] = std::fabs(sc.a[j0 + r]) * w.score_scale[i0 + j0 + r];
  }
  // 2. the candidates, in id order (their up rows are then read in address order)
  sc.select.top_k(sc.score.data(), sc.ids.data(), n, cand, sc.flag.data());
  const int64_t nc = compact(sc.flag.data() + i0, n, sc.candidates.data());  // shard-local ids
  // 3. their up projection and the exact score
  sc.exact.resize(nc);
  for (int64_t j0 = 0; j0 < nc; j0 += 16) {
    const int m = static_cast<int>(std::min<int64_t>(16, nc - j0));
    const int n_all = static_cast<int>(std::min<int64_t>(16 + kAhead, nc - j0));
    const uint8_t* rows[16 + kAhead];
    alignas(64) float u[16];
    for (int r = 0; r < n_all; ++r) rows[r] = w.up + (i0 + sc.candidates[j0 + r]) * rb;
    dots(path, rows, m, n_all, rb, in, w.nb, u);
    for (int r = 0; r < m; ++r) {
      const int32_t j = sc.candidates[j0 + r];
      sc.u[j] = u[r];
      sc.exact[j0 + r] = std::fabs(sc.a[j] * u[r]) * w.down_norm[i0 + j];
    }
  }
  // 4. the kept neurons, in id order so that each group of 32 is one run
  uint8_t* flag = sc.flag.data();  // indexed by shard-local id from here
  sc.select.top_k(sc.exact.data(), sc.candidates.data(), nc, keep, flag);
  Kept& kp = sc.kp;
  kp.group0 = s * G;
  kp.groups.resize(G + 1);
  kp.group_sum.resize(G);
  int64_t nk = 0;
  for (int64_t g = 0; g < G; ++g) {
    kp.groups[g] = static_cast<int32_t>(nk);
    for (int64_t j = g * kBlock; j < (g + 1) * kBlock; ++j) {
      sc.kept[nk] = static_cast<int32_t>(i0 + j);
      nk += flag[j];
    }
  }
  kp.groups[G] = static_cast<int32_t>(nk);
  if (kept_row) std::memcpy(kept_row + i0, flag, n);
  std::memset(flag, 0, n);
  kp.ids.assign(sc.kept.begin(), sc.kept.begin() + nk);
  kp.act.resize(nk);
  for (int64_t j = 0; j < nk; ++j) kp.act[j] = sc.a[kp.ids[j] - i0] * sc.u[kp.ids[j] - i0];
  for (int64_t g = 0; g < G; ++g) {
    float sum = 0.f;
    for (int32_t j = kp.groups[g]; j < kp.groups[g + 1]; ++j) sum += kp.act[j];
    kp.group_sum[g] = sum;
  }
  // 5. their share of the down projection, every output
  const int64_t out_blocks = w.O / kBlock;
  for (int64_t b0 = 0; b0 < out_blocks; b0 += kChunk)
    down_chunk(path, kp, w.down_q, w.down_dm, w.O, b0, std::min(kChunk, out_blocks - b0), y_s);
}

// ---------------------------------------------------------------- the op
at::Tensor sparse_ffn_q41(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& up,
                          const at::Tensor& down_q, const at::Tensor& down_dm, const at::Tensor& score_scale,
                          const at::Tensor& down_norm, at::IntArrayRef keep, at::IntArrayRef cand,
                          at::ScalarType dtype, const c10::optional<at::Tensor>& kept_out) {
  TORCH_CHECK(x.dim() == 2 && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16),
              "x [T, K] float32 or bfloat16");
  const int64_t T = x.size(0), K = x.size(1);
  TORCH_CHECK(T >= 1 && T <= kMaxRows, "1 to 16 rows");
  TORCH_CHECK(K % kBlock == 0, "K must be a multiple of 32");
  const int64_t nb = K / kBlock;
  TORCH_CHECK(gate.scalar_type() == at::kByte && gate.dim() == 2 && gate.size(1) == row_bytes_of(nb),
              "gate [F, K / 32 * 20] uint8");
  const int64_t F = gate.size(0);
  TORCH_CHECK(F % (kBlock * kShards) == 0, "F must be a multiple of 128");
  TORCH_CHECK(up.sizes() == gate.sizes() && up.scalar_type() == at::kByte, "up like gate");
  TORCH_CHECK(down_q.scalar_type() == at::kByte && down_q.dim() == 2 && down_q.size(0) == F,
              "down_q [F, O / 2] uint8");
  const int64_t O = down_q.size(1) * 2;
  TORCH_CHECK(O % kBlock == 0, "O must be a multiple of 32");
  TORCH_CHECK(down_dm.scalar_type() == at::kHalf && down_dm.sizes() == at::IntArrayRef({F / kBlock, 2, O}),
              "down_dm [F / 32, 2, O] float16");
  TORCH_CHECK(score_scale.scalar_type() == at::kFloat && score_scale.numel() == F, "score_scale [F] float32");
  TORCH_CHECK(down_norm.scalar_type() == at::kFloat && down_norm.numel() == F, "down_norm [F] float32");
  TORCH_CHECK(static_cast<int64_t>(keep.size()) == T && static_cast<int64_t>(cand.size()) == T,
              "keep and cand: one count per row");
  for (int64_t t = 0; t < T; ++t)
    TORCH_CHECK(keep[t] >= kShards && keep[t] <= cand[t] && cand[t] <= F, "4 <= keep <= cand <= F per row");
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "dtype float32 or bfloat16");
  for (const at::Tensor* v : {&x, &gate, &up, &down_q, &down_dm, &score_scale, &down_norm})
    TORCH_CHECK(v->is_contiguous(), "x and the weights must be dense");
  uint8_t* kept_p = nullptr;
  if (kept_out.has_value()) {
    TORCH_CHECK(kept_out->scalar_type() == at::kByte && kept_out->sizes() == at::IntArrayRef({T, F}) &&
                    kept_out->is_contiguous(),
                "kept_out [T, F] uint8");
    kept_p = kept_out->mutable_data_ptr<uint8_t>();
  }
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  const Path path = path_here(bf16);
  const Weights w{gate.const_data_ptr<uint8_t>(),
                  up.const_data_ptr<uint8_t>(),
                  down_q.const_data_ptr<uint8_t>(),
                  reinterpret_cast<const uint16_t*>(down_dm.const_data_ptr<at::Half>()),
                  score_scale.const_data_ptr<float>(),
                  down_norm.const_data_ptr<float>(),
                  nb,
                  F,
                  O};
  // the caller's scratch (OpenMP's threads share it through these references)
  thread_local std::vector<RowInput> inputs_tl;
  thread_local std::vector<ShardScratch> shards_tl(kShards);
  thread_local std::vector<float> partial_tl;
  std::vector<RowInput>& inputs = inputs_tl;
  std::vector<ShardScratch>& shards = shards_tl;
  std::vector<float>& partial = partial_tl;
  inputs.resize(T);
  partial.resize(T * kShards * O);
  for (int64_t t = 0; t < T; ++t) {
    if (path == Path::avx512_int8x)
      inputs[t].set_int8(x.const_data_ptr<c10::BFloat16>() + t * K, nb);
    else if (bf16)
      inputs[t].set_bf16(x.const_data_ptr<c10::BFloat16>() + t * K, nb);
    else
      inputs[t].set(x.const_data_ptr<float>() + t * K, nb);
  }
  auto out = at::empty({T, O}, x.options().dtype(dtype));
  const int threads = std::max(1, std::min<int>(at::get_num_threads(), static_cast<int>(kShards)));
#pragma omp parallel num_threads(threads)
  {
    for (int64_t t = 0; t < T; ++t) {
#pragma omp for schedule(static)
      for (int64_t s = 0; s < kShards; ++s)
        run_shard(path, w, inputs[t], s, std::min(share(keep[t], s), share(cand[t], s)), share(cand[t], s), shards[s],
                  kept_p ? kept_p + t * F : nullptr, partial.data() + (t * kShards + s) * O);
    }
    float* of = dtype == at::kFloat ? out.mutable_data_ptr<float>() : nullptr;
    c10::BFloat16* ob = dtype == at::kFloat ? nullptr : out.mutable_data_ptr<c10::BFloat16>();
#pragma omp for schedule(static)
    for (int64_t j = 0; j < T * O; ++j) {
      const float* p = partial.data() + (j / O) * kShards * O + j % O;
      float v = 0.f;
      for (int64_t s = 0; s < kShards; ++s) v += p[s * O];
      if (of)
        of[j] = v;
      else
        ob[j] = c10::BFloat16(v);
    }
  }
  return out;
}

// ---------------------------------------------------------------- the twin's activations
// The kernel's rule over projections computed elsewhere (the PyTorch twin's dense gate and
// up, for prefill and large batches), fused: gu [T, 2F] = [g | u] -> act [T, F] in gu's dtype,
// silu(g) u where the row keeps the neuron and 0 elsewhere. In PyTorch ops this was ~12 ops
// over [T, F] and two stable argsorts (5x the FFN's own time at 32 rows). Rows in parallel.
template <typename T>
void select_act_impl(const T* gu, const float* cs, const float* dn, const int64_t* kp, const int64_t* cp, int64_t R,
                     int64_t F, T* act) {
  const int64_t n = F / kShards;
  const Path path = path_here(false);  // silu only: no dot products here
  at::parallel_for(0, R * kShards, 4, [&](int64_t begin, int64_t end) {
    Selector sel;
    std::vector<int32_t> ids(n), cands(n);
    std::vector<float> gf(n), a(n), au(n), s1(n), exact(n);
    std::vector<uint8_t> flag(n, 0), kept(n, 0);
    for (int64_t j = 0; j < n; ++j) ids[j] = static_cast<int32_t>(j);
    for (int64_t w = begin; w < end; ++w) {
      const int64_t t = w / kShards, s = w % kShards, i0 = s * n;
      const T* g = gu + t * 2 * F + i0;
      const T* u = gu + t * 2 * F + F + i0;
      for (int64_t j = 0; j < n; ++j) gf[j] = float(g[j]);
      silu_n(path, gf.data(), a.data(), n);
      for (int64_t j = 0; j < n; ++j) {
        au[j] = a[j] * float(u[j]);
        s1[j] = std::fabs(a[j]) * cs[i0 + j];
      }
      const int64_t c = share(cp[t], s), k = std::min(share(kp[t], s), c);
      sel.top_k(s1.data(), ids.data(), n, c, flag.data());
      const int64_t nc = compact(flag.data(), n, cands.data());
      for (int64_t j = 0; j < nc; ++j) exact[j] = std::fabs(au[cands[j]]) * dn[i0 + cands[j]];
      sel.top_k(exact.data(), cands.data(), nc, k, kept.data());
      T* out = act + t * F + i0;
      for (int64_t j = 0; j < n; ++j) out[j] = static_cast<T>(kept[j] ? au[j] : 0.f);
      std::memset(kept.data(), 0, n);
    }
  });
}

at::Tensor select_act(const at::Tensor& gu, const at::Tensor& score_scale, const at::Tensor& down_norm,
                      const at::Tensor& keep, const at::Tensor& cand) {
  TORCH_CHECK(gu.dim() == 2 && gu.size(1) % 2 == 0, "gu [T, 2F]");
  TORCH_CHECK(gu.scalar_type() == at::kFloat || gu.scalar_type() == at::kBFloat16, "gu float32 or bfloat16");
  const int64_t R = gu.size(0), F = gu.size(1) / 2;
  TORCH_CHECK(F % kShards == 0, "F must be a multiple of 4");
  TORCH_CHECK(score_scale.scalar_type() == at::kFloat && score_scale.numel() == F && down_norm.numel() == F &&
                  down_norm.scalar_type() == at::kFloat,
              "score_scale and down_norm [F] float32");
  TORCH_CHECK(keep.numel() == R && cand.numel() == R, "keep and cand [T]");
  const auto guc = gu.contiguous();
  const auto csc = score_scale.contiguous(), dnc = down_norm.contiguous();
  const auto kc = keep.to(at::kLong).contiguous(), cc = cand.to(at::kLong).contiguous();
  const int64_t *kp = kc.const_data_ptr<int64_t>(), *cp = cc.const_data_ptr<int64_t>();
  for (int64_t t = 0; t < R; ++t)
    TORCH_CHECK(kp[t] >= kShards && kp[t] <= cp[t] && cp[t] <= F, "4 <= keep <= cand <= F per row");
  auto act = at::empty({R, F}, gu.options());
  if (gu.scalar_type() == at::kFloat)
    select_act_impl<float>(guc.const_data_ptr<float>(), csc.const_data_ptr<float>(), dnc.const_data_ptr<float>(), kp,
                           cp, R, F, act.mutable_data_ptr<float>());
  else
    select_act_impl<c10::BFloat16>(guc.const_data_ptr<c10::BFloat16>(), csc.const_data_ptr<float>(),
                                   dnc.const_data_ptr<float>(), kp, cp, R, F, act.mutable_data_ptr<c10::BFloat16>());
  return act;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gateway_kernels, m) {
  m.def(
      "sparse_ffn_q41(Tensor x, Tensor gate, Tensor up, Tensor down_q, Tensor down_dm, Tensor score_scale,"
      " Tensor down_norm, int[] keep, int[] cand, ScalarType dtype, Tensor(a!)? kept_out) -> Tensor");
  m.def("select_act(Tensor gu, Tensor score_scale, Tensor down_norm, Tensor keep, Tensor cand) -> Tensor");
  m.def("sparse_ffn_int8_x() -> bool", [] { return path_here(true) == Path::avx512_int8x; });
}

TORCH_LIBRARY_IMPL(gateway_kernels, CPU, m) {
  m.impl("sparse_ffn_q41", sparse_ffn_q41);
  m.impl("select_act", select_act);
}
