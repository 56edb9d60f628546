"""The AVX-512 BF16 linear kernel (`kernels/cpu/linear_bf16.cpp`) against oneDNN's bf16 GEMM
(weights prepacked in its blocked layout, as inference/quant.py held them) and, for a few rows,
torch's int4 kernel: prints JSON.

    .venv/bin/python bench/linear_bf16.py [--threads 2] [--repeats 15]

"layers": the linear layers of a whole SmolLM2-135M step (30 layers, each with its own qkv
960 x 576, output 576 x 576, gate+up 3072 x 576 and down 576 x 1536 weights: 212 MB of bf16,
more than the caches hold, so the weights come from memory as in the engine) at decode sizes
(1-64 rows) and a 1,000-token prefill. "head": the output projection (49152 x 576). Median
milliseconds per pass; the variants alternate pass by pass so drift hits them alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels import cpu_ops  # noqa: E402

LAYER_SHAPES = [(960, 576), (576, 576), (3072, 576), (576, 1536)]
HEAD_SHAPE = (49152, 576)
LAYERS = 30
ROWS = [1, 2, 4, 8, 16, 32, 64, 1000]
INT4_MAX_ROWS = 8


def make_weights(shapes: list[tuple[int, int]], copies: int) -> list[dict]:
    """Per weight: its K and each variant's packed form."""
    out = []
    for _ in range(copies):
        for n, k in shapes:
            w = (torch.randn(n, k) * 0.05).bfloat16()
            q = torch.randint(0, 16, (n, k), dtype=torch.int32)
            sz = torch.stack([torch.rand(k // 32, n) * 0.01, torch.randn(k // 32, n) * 0.01], -1).bfloat16()
            out.append(
                {
                    "k": k,
                    "ours": (cpu_ops.pack_bf16_pairs(w), n),
                    "onednn": torch.ops.mkldnn._reorder_linear_weight(w, 32),
                    "int4": (torch._convert_weight_to_int4pack_for_cpu(q, 2), sz),
                }
            )
    return out


def call(variant: str, x: torch.Tensor, w) -> torch.Tensor:
    if variant == "ours":
        return cpu_ops.linear_bf16(x, *w)
    if variant == "int4":
        return torch._weight_int4pack_mm_for_cpu(x, w[0], 32, w[1])
    return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")


def measure(weights: list[dict], rows: int, repeats: int) -> dict:
    xs = {k: torch.randn(rows, k).bfloat16() for k in {w["k"] for w in weights}}
    variants = ["ours", "onednn"] + (["int4"] if rows <= INT4_MAX_ROWS else [])
    times: dict[str, list[float]] = {v: [] for v in variants}
    for i in range((3 if rows >= 1000 else repeats) + 1):
        for v in variants:
            t = time.perf_counter()
            for w in weights:
                call(v, xs[w["k"]], w[v])
            if i:  # the first pass warms up
                times[v].append(time.perf_counter() - t)
    flops = 2 * rows * sum(w["ours"][1] * w["k"] for w in weights)
    med = {v: statistics.median(ts) for v, ts in times.items()}
    out: dict = {"rows": rows}
    for v, t in med.items():
        out[f"{v}_ms"] = round(t * 1e3, 3)
        out[f"{v}_gflops"] = round(flops / t / 1e9, 1)
    out["ours_vs_onednn"] = round(med["ours"] / med["onednn"], 3)
    if "int4" in med:
        out["ours_vs_int4"] = round(med["ours"] / med["int4"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not cpu_ops.avx512_bf16():
        print(json.dumps({"error": "the AVX-512 BF16 kernel does not run here"}))
        return
    out: dict = {"threads": args.threads, "layers": [], "head": []}
    layers = make_weights(LAYER_SHAPES, LAYERS)
    for rows in ROWS:
        out["layers"].append(measure(layers, rows, args.repeats))
    del layers
    head = make_weights([HEAD_SHAPE], 1)
    for rows in ROWS[:-1]:  # only the sampled rows reach the output projection
        out["head"].append(measure(head, rows, args.repeats))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
