"""bench/triton_kernels.py without a CUDA device: it says so, exits 0 and still ends with one JSON
object (the twins' CPU timings); --smoke runs the GPU path's cases through the interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_without_cuda_it_says_so_and_exits_zero():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "triton_kernels.py"), "--repeats", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "no CUDA device" in run.stderr
    last = json.loads(run.stdout.strip().splitlines()[-1])
    assert last["cuda"] is False
    assert {"sinkhorn_4x4", "moe_swiglu_t1_f35", "block_sparse_decode_ctx8192"} <= set(last["twins_cpu"])


@pytest.mark.slow
def test_smoke_runs_every_triton_kernel_through_the_interpreter():
    pytest.importorskip("triton")
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "triton_kernels.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout.strip().splitlines()[-1])["twins_cpu"]
    assert len(rows) == 6
    assert all("triton_interp_ms" in r for r in rows.values())
