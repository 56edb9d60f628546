"""The few-rows Q4_1 GEMV (`kernels/cpu/sparse_ffn.cpp`'s q41_gemv) against torch's int4 kernel
on the real model's FFN weights, cycling the 30 layers (the weights from memory, as a decode
step reads them).

    .venv/bin/python bench/q41_gemv.py [--rows 1] [--calls 30] [--repeats 5]

Per layer: the gate-up projection [3072, 576] and the down projection [576, 1536], one row
(or --rows) of bf16 input; microseconds per layer (medians, the two kernels interleaved per
repeat). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.gguf_loader import load_gguf  # noqa: E402
from inference.quant import Q4_1_BLOCK, Q4_1Weight, int4_available, q41_rows  # noqa: E402
from kernels import cpu_ops  # noqa: E402


def torch_int4(w: Q4_1Weight) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's CPU int4 packing of W with its bf16 scales and zeros (as QLinear packs it)."""
    packed = torch._convert_weight_to_int4pack_for_cpu(torch.from_numpy(w.q.astype(np.int32)), 2)
    d = torch.from_numpy(w.d)
    zero = torch.from_numpy(w.m) + 8.0 * d
    return packed, torch.stack([d.t(), zero.t()], dim=-1).contiguous().to(torch.bfloat16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not (cpu_ops.sparse_ffn_int8_x() and int4_available()):
        print(json.dumps({"skipped": "needs AVX512_VNNI (the int8 path) and torch's int4 kernel"}))
        return
    tensors = load_gguf().tensors  # the embedded model
    layers = sorted({int(k.split(".")[1]) for k in tensors if k.startswith("blk.")})
    ours, theirs = [], []
    for li in layers:
        p = f"blk.{li}."
        gate, up, down = (tensors[p + n] for n in ("ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"))
        assert isinstance(gate, Q4_1Weight) and isinstance(up, Q4_1Weight) and isinstance(down, Q4_1Weight)
        gu = Q4_1Weight.cat([gate, up])
        ours.append((q41_rows(gu), q41_rows(down)))
        theirs.append((torch_int4(gu), torch_int4(down)))
    g = torch.Generator().manual_seed(0)
    h = torch.randn((args.rows, 576), generator=g).bfloat16()
    a = torch.randn((args.rows, 1536), generator=g).bfloat16()
    runs = {
        "q41_gemv": lambda: [(cpu_ops.q41_gemv(h, w1), cpu_ops.q41_gemv(a, w2)) for w1, w2 in ours],
        "torch_int4": lambda: [
            (
                torch._weight_int4pack_mm_for_cpu(h, p1, Q4_1_BLOCK, s1),
                torch._weight_int4pack_mm_for_cpu(a, p2, Q4_1_BLOCK, s2),
            )
            for (p1, s1), (p2, s2) in theirs
        ],
    }
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            for _ in range(args.calls):
                fn()
            times[name].append((time.perf_counter() - t0) / (args.calls * len(layers)) * 1e6)
    us = {k: round(statistics.median(v), 1) for k, v in times.items()}
    res = {"us_per_layer": us, "speedup": round(us["torch_int4"] / us["q41_gemv"], 3), "rows": args.rows}
    res["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
