// The output projection's bf16 logits widened to fp32 and each row's k largest ids, in one
// pass over the rows (PyTorch: a conversion and a top-k, each reading the whole [S, V]).
// The ids feed the exact fp32 recomputation of the top logits (inference/model.py), so
// their order does not matter; on equal values the lower id is kept. Chunks whose maximum
// cannot enter the current top k are skipped after the conversion, so the selection costs
// little beyond the copy. Plain loops: the compiler vectorises the chunk passes.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>

namespace {

constexpr int64_t kChunk = 64;
constexpr int64_t kMaxK = 64;

inline float widen(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Row r: out[v] = float(raw[v]); ids = the k largest (NaN never selected).
void row_topk(const uint16_t* raw, int64_t V, int64_t k, float* out, int64_t* ids) {
  float val[kMaxK];
  int64_t id[kMaxK];
  int64_t filled = 0, weakest = 0;  // slot of the smallest kept value once filled
  float threshold = -std::numeric_limits<float>::infinity();
  for (int64_t c = 0; c < V; c += kChunk) {
    const int64_t n = std::min(kChunk, V - c);
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) {
      const float f = widen(raw[c + i]);
      out[c + i] = f;
      mx = f > mx ? f : mx;
    }
    if (filled == k && !(mx > threshold)) continue;
    for (int64_t i = 0; i < n; ++i) {
      const float f = out[c + i];
      if (filled < k) {
        if (std::isnan(f)) continue;
        val[filled] = f, id[filled] = c + i, ++filled;
        if (filled < k) continue;
      } else if (f > threshold) {  // strictly: on a tie the earlier (lower) id stays
        val[weakest] = f, id[weakest] = c + i;
      } else {
        continue;
      }
      weakest = 0;  // re-find the smallest kept value (the latest id loses ties)
      for (int64_t j = 1; j < k; ++j)
        if (val[j] < val[weakest] || (val[j] == val[weakest] && id[j] > id[weakest])) weakest = j;
      threshold = val[weakest];
    }
  }
  for (int64_t j = 0; j < k; ++j) ids[j] = j < filled ? id[j] : filled ? id[0] : j;  // NaN rows
}

std::tuple<at::Tensor, at::Tensor> logits_topk_bf16(const at::Tensor& raw, int64_t k) {
  TORCH_CHECK(raw.dim() == 2 && raw.scalar_type() == at::kBFloat16 && raw.is_contiguous(),
              "raw: dense bfloat16 [S, V]");
  const int64_t S = raw.size(0), V = raw.size(1);
  TORCH_CHECK(k >= 1 && k <= kMaxK && k <= V, "k must be in [1, min(64, V)]");
  auto out = at::empty({S, V}, raw.options().dtype(at::kFloat));
  auto ids = at::empty({S, k}, raw.options().dtype(at::kLong));
  const auto* rp = reinterpret_cast<const uint16_t*>(raw.const_data_ptr<at::BFloat16>());
  float* op = out.mutable_data_ptr<float>();
  int64_t* ip = ids.mutable_data_ptr<int64_t>();
  at::parallel_for(0, S, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) row_topk(rp + r * V, V, k, op + r * V, ip + r * k);
  });
  return {out, ids};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gateway_kernels, m) { m.def("logits_topk_bf16(Tensor raw, int k) -> (Tensor, Tensor)"); }

TORCH_LIBRARY_IMPL(gateway_kernels, CPU, m) { m.impl("logits_topk_bf16", logits_topk_bf16); }
