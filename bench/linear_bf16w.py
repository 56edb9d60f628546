"""The AVX2 bf16-weight linear kernel against oneDNN's fp32 GEMM on the same (bf16-rounded)
weights, side by side: prints JSON (median microseconds per call, GFLOP/s, time ratio).

    .venv/bin/python bench/linear_bf16w.py [--threads 2] [--repeats 40]

Shapes are SmolLM2-135M's: a layer's qkv (960 x 576), gate+up (3072 x 576) and down
(576 x 1536) projections and the output projection (49152 x 576), at decode (1-32 rows) and
prefill (1,000 rows) sizes. Calls alternate between the two so drift hits both alike.
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

SHAPES = {"qkv": (960, 576), "gate_up": (3072, 576), "down": (576, 1536), "head": (49152, 576)}
ROWS = [1, 2, 4, 8, 32, 1000]


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def ours_call(x: torch.Tensor, packed: torch.Tensor, n: int) -> torch.Tensor:
    return cpu_ops.linear_bf16w(x, packed, n)


def onednn_call(x: torch.Tensor, onednn: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, onednn, None, "none", [], "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not cpu_ops.avx2_fma():
        print(json.dumps({"error": "the AVX2 kernel does not run here"}))
        return
    out: dict = {"threads": args.threads, "cases": []}
    for name, (n, k) in SHAPES.items():
        w = (torch.randn(n, k) * 0.05).bfloat16()
        packed, dense = cpu_ops.pack_bf16_weight(w), w.float()
        onednn = torch.ops.mkldnn._reorder_linear_weight(dense, 32)  # as inference/quant.py holds it
        for m in ROWS:
            if name == "head" and m > 32:
                continue  # only the sampled rows reach the output projection
            x = torch.randn(m, k)
            ours, theirs = [], []
            for _ in range(3):  # warm-up
                ours_call(x, packed, n)
                onednn_call(x, onednn)
            for _ in range(5 if m >= 1000 else args.repeats):
                ours.append(timed(ours_call, x, packed, n))
                theirs.append(timed(onednn_call, x, onednn))
            a, b = statistics.median(ours), statistics.median(theirs)
            err = (cpu_ops.linear_bf16w(x, packed, n).double() - x.double() @ dense.double().t()).abs().max()
            out["cases"].append(
                {
                    "shape": name,
                    "n": n,
                    "k": k,
                    "rows": m,
                    "kernel_us": round(a * 1e6, 1),
                    "onednn_fp32_us": round(b * 1e6, 1),
                    "ratio": round(a / b, 2),
                    "kernel_gflops": round(2 * m * n * k / a / 1e9, 1),
                    "onednn_gflops": round(2 * m * n * k / b / 1e9, 1),
                    "max_abs_err_vs_float64": float(f"{err.item():.2e}"),
                }
            )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
