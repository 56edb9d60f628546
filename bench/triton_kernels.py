"""The efficiency kernels (kernels/: Sinkhorn-Knopp, fused RMSNorm + residual, MoE SwiGLU
grouped GEMM, top-k block-sparse attention, PQ-KV decode attention): prints JSON, the last
line one object.

    .venv/bin/python bench/triton_kernels.py [--repeats 20] [--smoke]

With a CUDA (or ROCm) device: each Triton kernel at serving sizes (bf16), its achieved
bandwidth (bytes it must move / median time) and TFLOP/s, against the device's peak: the
datasheet figure where the device is known, and always a measured reference (a large
device-to-device copy, a large bf16 matmul); next to it the PyTorch twin on the same device
and, where there is one, the dense computation it replaces, timed alternately in one run.

Without one it says so plainly, times the PyTorch twins on the CPU (the path the engine
takes there) against the dense computations they replace, and exits 0. `--smoke` runs the
GPU path's cases through Triton's interpreter on tiny shapes (a check of this script, not a
measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Datasheet peaks (dense bf16 tensor FLOP/s, memory bytes/s), matched by device-name substring.
DATASHEET = {
    "H200": (989e12, 4.8e12),
    "H100 PCIe": (756e12, 2.0e12),
    "H100": (989e12, 3.35e12),
    "A100": (312e12, 2.0e12),
    "L40S": (362e12, 0.864e12),
    "MI300X": (1307e12, 5.3e12),
}


@dataclass
class Case:
    name: str
    kernel: Callable[[], object] | None  # the Triton kernel (None on the CPU path)
    twin: Callable[[], object]
    bytes_moved: float  # what the kernel must read and write at least
    flops: float
    dense: Callable[[], object] | None = None  # the computation it replaces, if any
    info: dict = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_ms(fns: list[Callable[[], object]], device: torch.device, repeats: int) -> list[float]:
    """Median wall time of each fn, alternating them call by call so drift hits all alike."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[i].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def _gpu_ms(fn: Callable[[], object]) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))


def build_cases(device: torch.device, dtype: torch.dtype, size: str) -> list[Case]:
    from kernels import (
        block_sparse_attention,
        block_sparse_attention_ref,
        moe_gemm,
        moe_gemm_ref,
        pq_attention,
        pq_attention_ref,
        rmsnorm_residual,
        rmsnorm_residual_ref,
        sinkhorn,
        sinkhorn_ref,
    )

    use_kernel = size != "cpu"
    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape: int, scale: float = 1.0, dt: torch.dtype = dtype) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dt)

    elt = torch.finfo(dtype).bits // 8
    big = size == "gpu"
    tiny = size == "smoke"
    cases: list[Case] = []

    # mHC's H_res: one 4 x 4 matrix per token per layer, 20 rounds
    t = 16 if tiny else (65536 if big else 4096)
    logits = rnd(t, 4, 4, scale=0.3, dt=torch.float32)
    cases.append(
        Case(
            "sinkhorn_4x4",
            (lambda: sinkhorn.sinkhorn_knopp(logits)) if use_kernel else None,
            lambda: sinkhorn_ref.sinkhorn_knopp_ref(logits),
            2 * logits.numel() * 4,
            20 * 2 * 4 * logits.numel(),
            info={"matrices": t},
        )
    )

    # the block boundary of a 576-wide model (SmolLM2) and of a 4096-wide one
    for rows, width in (
        [(4, 64)] if tiny else ([(32, 576), (1000, 576), (8192, 4096)] if big else [(32, 576), (1000, 576)])
    ):
        x, r, w = rnd(rows, width), rnd(rows, width), rnd(width)

        def unfused(x=x, r=r, w=w) -> object:
            h = x + r
            return F.rms_norm(h, (h.shape[-1],), w, 1e-6), h

        cases.append(
            Case(
                f"rmsnorm_residual_{rows}x{width}",
                (lambda x=x, r=r, w=w: rmsnorm_residual.rmsnorm_residual(x, r, w)) if use_kernel else None,
                lambda x=x, r=r, w=w: rmsnorm_residual_ref.rmsnorm_residual_ref(x, r, w),
                4 * rows * width * elt + width * elt,
                4 * rows * width,
                dense=unfused,
            )
        )

    # SwiGLU FFN split into experts; 35% (Non-think) and 92% (Think Max) of them active
    d, f, e = (32, 64, 4) if tiny else ((4096, 14336, 256) if big else (576, 1536, 64))
    fe = f // e
    wg, wu, wd = rnd(f, d, scale=d**-0.5), rnd(f, d, scale=d**-0.5), rnd(d, f, scale=f**-0.5)
    slices = (wg.view(e, fe, d), wu.view(e, fe, d), wd.view(d, e, fe).permute(1, 0, 2))
    for tokens in [3] if tiny else ([1, 32, 512] if big else [1, 32]):
        x = rnd(tokens, d)
        for frac in (0.35, 0.92):
            k = max(1, round(frac * e))
            scores = torch.rand(tokens, e, generator=g)
            ids = scores.topk(k, dim=1).indices.to(device=device, dtype=torch.int32)
            wts = torch.ones(tokens, k, device=device, dtype=dtype)
            active = int(torch.unique(ids).numel())
            cases.append(
                Case(
                    f"moe_swiglu_t{tokens}_f{int(frac * 100)}",
                    (lambda x=x, ids=ids, wts=wts: moe_gemm.moe_swiglu(x, *slices, ids, wts))
                    if use_kernel
                    else None,
                    lambda x=x, ids=ids, wts=wts: moe_gemm_ref.moe_swiglu_ref(x, *slices, ids, wts),
                    3 * active * fe * d * elt + 2 * tokens * d * elt,
                    2 * 3 * tokens * k * fe * d,
                    dense=lambda x=x: F.linear(F.silu(F.linear(x, wg)) * F.linear(x, wu), wd),
                    info={"experts": e, "active_per_token": k, "experts_read": active},
                )
            )

    # top-k block-sparse attention, decode (one query per sequence) at growing context
    b, h, kvh, hd = (1, 4, 2, 16) if tiny else ((32, 32, 8, 128) if big else (1, 9, 3, 64))
    bs, top_k, window = (4, 2, 4) if tiny else (64, 8, 128)
    for ctx in [40] if tiny else ([1024, 4096, 8192, 32768] if big else [1024, 4096, 8192]):
        q, kk, vv = rnd(b, h, 1, hd), rnd(b, kvh, ctx, hd), rnd(b, kvh, ctx, hd)
        lens = torch.full((b,), ctx, device=device, dtype=torch.int32)
        summ = block_sparse_attention_ref.block_summaries(kk, lens, bs)
        idx = block_sparse_attention_ref.select_blocks(q, summ, lens, top_k, bs, window)
        attended = int(block_sparse_attention_ref.attended_tokens(idx, lens, bs, window).float().mean())
        cases.append(
            Case(
                f"block_sparse_decode_ctx{ctx}",
                (
                    lambda q=q, kk=kk, vv=vv, lens=lens, idx=idx: (
                        block_sparse_attention.block_sparse_attention(
                            q, kk, vv, lens, idx, bs, window, hd**-0.5
                        )
                    )
                )
                if use_kernel
                else None,
                lambda q=q, kk=kk, vv=vv, lens=lens, idx=idx: (
                    block_sparse_attention_ref.block_sparse_attention_ref(
                        q, kk, vv, lens, idx, bs, window, hd**-0.5
                    )
                ),
                2 * b * kvh * attended * hd * elt,
                4 * b * h * attended * hd,
                dense=lambda q=q, kk=kk, vv=vv: F.scaled_dot_product_attention(
                    q, kk, vv, scale=hd**-0.5, enable_gqa=True
                ),
                info={"context": ctx, "attended": attended, "block": bs, "top_k": top_k, "window": window},
            )
        )

    # decode attention from PQ codes (M = D/4 key and value subspaces, 256 centroids)
    b, h, kvh, hd = (2, 4, 2, 16) if tiny else ((32, 32, 8, 128) if big else (8, 9, 3, 64))
    ctx = 24 if tiny else (4096 if big else 1024)
    m, c = hd // 4, 256
    slots_n = b * ctx
    kc = torch.randint(0, c, (kvh, slots_n, m), generator=g, dtype=torch.uint8).to(device)
    vc = torch.randint(0, c, (kvh, slots_n, m), generator=g, dtype=torch.uint8).to(device)
    kb, vb = rnd(kvh, m, c, 4, dt=torch.float32), rnd(kvh, m, c, 4, dt=torch.float32)
    q = rnd(b, h, hd)
    slots = torch.randperm(slots_n, generator=g).view(b, ctx).to(device)
    lens = torch.full((b,), ctx, device=device, dtype=torch.int32)
    kd = pq_attention_ref.pq_decode(kc, kb).to(dtype)
    vd = pq_attention_ref.pq_decode(vc, vb).to(dtype)
    kg = kd[:, slots].permute(1, 0, 2, 3)
    vg = vd[:, slots].permute(1, 0, 2, 3)
    cases.append(
        Case(
            f"pq_decode_ctx{ctx}_b{b}",
            (lambda: pq_attention.pq_decode_attention(q, kc, kb, vc, vb, slots, lens, hd**-0.5))
            if use_kernel
            else None,
            lambda: pq_attention_ref.pq_decode_attention_ref(q, kc, kb, vc, vb, slots, lens, hd**-0.5),
            b * kvh * ctx * 2 * m + b * h * m * c * 4,
            2 * b * h * ctx * (m + hd),
            dense=lambda: F.scaled_dot_product_attention(
                q[:, :, None], kg, vg, scale=hd**-0.5, enable_gqa=True
            ),
            info={"context": ctx, "code_bytes_per_token": 2 * m, "fp16_bytes_per_token": 2 * hd * 2},
        )
    )
    return cases


def reference_peaks(device: torch.device) -> dict:
    """Measured: a 1 GiB device-to-device copy and an 8192^3 bf16 matmul."""
    a = torch.empty(1 << 29, dtype=torch.bfloat16, device=device)
    bcopy = torch.empty_like(a)
    copy_ms = _gpu_ms(lambda: bcopy.copy_(a))
    x = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    mm_ms = _gpu_ms(lambda: x @ x)
    name = torch.cuda.get_device_name(device)
    sheet = next((v for k, v in DATASHEET.items() if k in name), None)
    return {
        "device": name,
        "measured_copy_gbps": 2 * a.numel() * 2 / copy_ms / 1e6,
        "measured_bf16_tflops": 2 * 8192**3 / mm_ms / 1e9,
        "datasheet_bf16_tflops": sheet[0] / 1e12 if sheet else None,
        "datasheet_gbps": sheet[1] / 1e9 if sheet else None,
    }


def run_gpu(device: torch.device, repeats: int) -> dict:
    peaks = reference_peaks(device)
    out = {}
    for case in build_cases(device, torch.bfloat16, "gpu"):
        assert case.kernel is not None
        ms = _gpu_ms(case.kernel)
        twin_ms = _gpu_ms(case.twin)
        row = {
            "triton_ms": ms,
            "twin_ms": twin_ms,
            "twin_over_triton": twin_ms / ms,
            "gbps": case.bytes_moved / ms / 1e6,
            "tflops": case.flops / ms / 1e9,
            **case.info,
        }
        row["bw_frac_measured_peak"] = row["gbps"] / peaks["measured_copy_gbps"]
        row["flops_frac_measured_peak"] = row["tflops"] / peaks["measured_bf16_tflops"]
        if peaks["datasheet_gbps"]:
            row["bw_frac_datasheet"] = row["gbps"] / peaks["datasheet_gbps"]
            row["flops_frac_datasheet"] = row["tflops"] / peaks["datasheet_bf16_tflops"]
        if case.dense is not None:
            row["dense_ms"] = _gpu_ms(case.dense)
            row["dense_over_triton"] = row["dense_ms"] / ms
        out[case.name] = row
    return {"cuda": True, "peaks": peaks, "kernels": out}


def run_cpu(repeats: int, smoke: bool) -> dict:
    device = torch.device("cpu")
    out = {}
    for case in build_cases(device, torch.float32, "smoke" if smoke else "cpu"):
        fns = [f for f in (case.kernel, case.twin, case.dense) if f is not None]
        times = _median_ms(fns, device, repeats)
        names = [
            n for n, f in (("triton_interp", case.kernel), ("twin", case.twin), ("dense", case.dense)) if f
        ]
        row = {f"{n}_ms": t for n, t in zip(names, times, strict=True)}
        row["twin_gbps"] = case.bytes_moved / row["twin_ms"] / 1e6
        if case.dense is not None:
            row["dense_over_twin"] = row["dense_ms"] / row["twin_ms"]
        out[case.name] = row | case.info
    return {"cuda": False, "smoke": smoke, "threads": torch.get_num_threads(), "twins_cpu": out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes through the Triton interpreter")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # read when the kernel modules are imported
        result = run_cpu(max(1, min(args.repeats, 2)), smoke=True)
    elif torch.cuda.is_available():
        result = run_gpu(torch.device("cuda"), args.repeats)
    else:
        print(
            "no CUDA device: the Triton kernels were not timed; "
            "timing the PyTorch twins on the CPU (the path the engine takes here)",
            file=sys.stderr,
        )
        result = run_cpu(args.repeats, smoke=False)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
