"""What the Triton kernels of the efficiency mechanisms share: the optional import and the
device test.

`triton` is optional (the CPU build of torch does not bring it). A kernel can run on a CUDA
or ROCm device (torch names both "cuda"), or anywhere under Triton's interpreter
(`TRITON_INTERPRET=1`, read when a module with `@triton.jit` is imported), which is how the
parity tests run on the CPU.
"""

from __future__ import annotations

import os

import torch

try:  # optional: CUDA builds of torch bring triton; the CPU build does not
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None
    tl = None


def available(device: torch.device) -> bool:
    """Whether a Triton kernel can run on tensors of `device`."""
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def on_gpu(device: torch.device) -> bool:
    """Whether the compiled (not interpreted) Triton path applies: CUDA or ROCm."""
    return triton is not None and device.type == "cuda"


def require_triton() -> None:
    if triton is None:
        raise RuntimeError("this kernel needs the triton package (CUDA/ROCm builds of torch bring it)")


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())
