"""Engine building blocks side by side, alternating in one run (prints JSON):

    .venv/bin/python bench/engine_parts.py [--threads 2] [--rounds 5]

- linear layers of one decoder layer (qkv, o, gate_up, down of SmolLM2-135M) and the output
  projection, bf16: `F.linear` on a plain weight vs the weight prepared once by `QLinear`
  (packed for `kernels/cpu/linear_bf16.cpp` on AVX-512 BF16 CPUs, else reordered into
  oneDNN's layout), at 1 and 32 rows;
- the greedy choice over a 32 x 49,152 logits batch: `argmax` over the vocabulary vs the best
  of each row's 16 exactly recomputed logits (`inference.sampler.greedy`);
- the output projection for one row: the prepacked bf16 GEMM vs the C++ fp32-output GEMV
  (`kernels.cpu_ops.head_gemv`);
- the output projection's bf16 logits widened to fp32 with each row's top-16 ids, at 1 and 32
  rows: `float()` + `topk` vs the C++ pass (`kernels.cpu_ops.logits_topk`);
- one layer's decode attention for 32 sequences of 2,000 tokens with fp32 queries (the fp32
  compute of CPUs without bf16 arithmetic): an fp32 cache vs a bf16 one (~98 vs ~49 MB read,
  well beyond the caches; 16-token pages in shuffled order).
Medians in milliseconds per call; weights stay hot in cache (the forward pass reads them from
memory, so its gain is smaller: see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.quant import QLinear  # noqa: E402
from inference.sampler import greedy  # noqa: E402
from kernels import cpu_ops  # noqa: E402

LAYER = [(960, 576), (576, 576), (3072, 576), (576, 1536)]  # qkv, o, gate_up, down
HEAD = (49152, 576)


def per_call_ms(fn: Callable[[], object], calls: int = 20) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    torch.set_num_threads(1)  # build like the engine does (see inference/embedded.py)
    layer = [torch.randn(n, k, dtype=torch.bfloat16) * 0.05 for n, k in LAYER]
    head = torch.randn(*HEAD, dtype=torch.bfloat16) * 0.05
    packed_layer = [QLinear(w, torch.bfloat16, cpu, 0) for w in layer]
    packed_head = QLinear(head, torch.bfloat16, cpu, 0)
    torch.set_num_threads(args.threads)

    cases: dict[str, Callable[[], object]] = {}
    for rows in (1, 32):
        xs = [torch.randn(rows, k, dtype=torch.bfloat16) for _, k in LAYER]
        xh = torch.randn(rows, HEAD[1], dtype=torch.bfloat16)
        cases[f"layer_linear_{rows}_plain"] = lambda xs=xs: [
            F.linear(x, w) for x, w in zip(xs, layer, strict=True)
        ]
        cases[f"layer_linear_{rows}_prepacked"] = lambda xs=xs: [
            q(x) for x, q in zip(xs, packed_layer, strict=True)
        ]
        cases[f"output_projection_{rows}_plain"] = lambda xh=xh: F.linear(xh, head)
        cases[f"output_projection_{rows}_prepacked"] = lambda xh=xh: packed_head(xh)
    if cpu_ops.head_gemv_usable(torch.bfloat16, HEAD[1]):
        xh1 = torch.randn(1, HEAD[1], dtype=torch.bfloat16)
        cases["output_projection_1_gemv"] = lambda: cpu_ops.head_gemv(xh1, head)
    logits = torch.randn(32, HEAD[0]) * 5
    top = logits.topk(16, dim=-1).indices
    cases["greedy_32_full_argmax"] = lambda: greedy(logits, None)
    cases["greedy_32_exact_top16"] = lambda: greedy(logits, top)
    if cpu_ops.load():
        for rows in (1, 32):
            raw = (torch.randn(rows, HEAD[0]) * 5).bfloat16()
            cases[f"logits_topk_{rows}_torch"] = lambda raw=raw: (raw.float(), raw.topk(16, dim=-1).indices)
            cases[f"logits_topk_{rows}_cpp"] = lambda raw=raw: cpu_ops.logits_topk(raw, 16)

    if cpu_ops.load():
        seqs, ctx, page = 32, 2000, 16
        pages = torch.randperm(seqs * ctx // page).view(seqs, ctx // page)
        slots = (pages[:, :, None] * page + torch.arange(page)).view(seqs, ctx)
        lens = torch.full((seqs,), ctx, dtype=torch.int32)
        q = torch.randn(seqs, 9, 64)
        k32, v32 = torch.randn(3, seqs * ctx, 64), torch.randn(3, seqs * ctx, 64)
        kb, vb = k32.bfloat16(), v32.bfloat16()
        cases["decode_attention_32x2000_fp32_cache"] = lambda: cpu_ops.paged_decode_attention(
            q, k32, v32, slots, lens, 0.125
        )
        cases["decode_attention_32x2000_bf16_cache"] = lambda: cpu_ops.paged_decode_attention(
            q, kb, vb, slots, lens, 0.125
        )

    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):  # alternate, so drift hits every case alike
        for name, fn in cases.items():
            times[name].append(per_call_ms(fn))
    res: dict[str, object] = {"threads": args.threads, "rounds": args.rounds}
    res.update({f"{name}_ms": round(statistics.median(v), 4) for name, v in times.items()})
    for base in ("layer_linear_1", "layer_linear_32", "output_projection_1", "output_projection_32"):
        res[f"{base}_ratio"] = round(
            statistics.median(times[f"{base}_prepacked"]) / statistics.median(times[f"{base}_plain"]), 3
        )
    if "output_projection_1_gemv" in times:
        res["output_projection_1_gemv_ratio"] = round(
            statistics.median(times["output_projection_1_gemv"])
            / statistics.median(times["output_projection_1_prepacked"]),
            3,
        )
    for rows in (1, 32):
        if f"logits_topk_{rows}_cpp" in times:
            res[f"logits_topk_{rows}_ratio"] = round(
                statistics.median(times[f"logits_topk_{rows}_cpp"])
                / statistics.median(times[f"logits_topk_{rows}_torch"]),
                3,
            )
    if "decode_attention_32x2000_bf16_cache" in times:
        res["decode_attention_32x2000_bf16_cache_ratio"] = round(
            statistics.median(times["decode_attention_32x2000_bf16_cache"])
            / statistics.median(times["decode_attention_32x2000_fp32_cache"]),
            3,
        )
    res["greedy_32_ratio"] = round(
        statistics.median(times["greedy_32_exact_top16"]) / statistics.median(times["greedy_32_full_argmax"]),
        4,
    )
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
