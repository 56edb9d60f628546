"""bench/sparse_ffn.py runs on the real model and prints its JSON (slow: loads SmolLM2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sparse_ffn.py"


@pytest.mark.slow
def test_sparse_ffn_bench_prints_its_figures() -> None:
    args = ["--calls", "1", "--repeats", "1", "--fractions", "0.35", "1.0", "--rows", "8"]
    done = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(res["us_per_layer"]) >= {"dense", "kernel_0.35", "kernel_1.0", "dense_8", "twin_0.35"}
    b = res["bytes_per_layer"]
    assert b["kernel_1.0"] == b["dense_int4"]  # every neuron: the dense path's bytes
    assert b["kernel_0.35"] < 0.75 * b["dense_int4"]
