"""Device and dtype selection for an engine (cpu, cuda, npu)."""

from __future__ import annotations

import importlib.util

import torch

from .errors import DeviceUnavailableError


def resolve_device(spec: str | torch.device = "cpu") -> torch.device:
    """`cpu`, `cuda[:N]`, `npu[:N]` or `auto`; a clear error names what is missing."""
    s = str(spec).strip().lower()
    if s == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _npu_available():
            return torch.device("npu")
        return torch.device("cpu")
    kind = s.split(":", 1)[0]
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.backends.cuda.is_built():
            raise DeviceUnavailableError(
                f"device {s!r} requested but this PyTorch build ({torch.__version__}) has no "
                "CUDA support; install a CUDA build of torch"
            )
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {s!r} requested but no CUDA device is visible (driver missing or "
                "CUDA_VISIBLE_DEVICES empty)"
            )
        dev = torch.device(s)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {s!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return dev
    if kind == "npu":
        if importlib.util.find_spec("torch_npu") is None:
            raise DeviceUnavailableError(
                f"device {s!r} requested but the package 'torch_npu' (Ascend PyTorch adapter) "
                "is not installed"
            )
        if not _npu_available():
            raise DeviceUnavailableError(f"device {s!r} requested but no Ascend NPU is visible")
        return torch.device(s)
    raise DeviceUnavailableError(f"unknown device {spec!r} (use cpu, cuda[:N], npu[:N] or auto)")


def _npu_available() -> bool:
    if importlib.util.find_spec("torch_npu") is None:
        return False
    try:
        import torch_npu  # noqa: F401

        return bool(torch.npu.is_available())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        return False


def cpu_supports_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX512_BF16 dot products, or AMX). oneDNN also
    runs bf16 on AVX-512 CPUs without it (Skylake-SP to Ice Lake), by emulation at ~0.37x
    its fp32 rate; there fp32 compute over bf16 weights is faster (docs/benchmarks.md).
    GATEWAY_CPU_KERNELS=avx2 answers as such a CPU would."""
    from kernels import cpu_ops

    if cpu_ops.avx2_mode():
        return False
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(native and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001
        return False


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    s = spec.lower()
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if s in table:
        return table[s]
    if s != "auto":
        raise ValueError(f"unknown dtype {spec!r}")
    if device.type == "cpu":
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    return torch.bfloat16


def resolve_weight_dtype(spec: str, device: torch.device, compute: torch.dtype) -> torch.dtype:
    """The dtype the linear weights are held in. `auto` on a CPU that computes in fp32 (no
    bf16 arithmetic, e.g. AVX2 only) holds them in bf16 where the AVX2 kernel reads them: a
    decode step streams every weight, so half the bytes is nearly twice the speed, and the
    weights are the bf16 model's (activations stay fp32). Otherwise the compute dtype."""
    if spec.lower() != "auto" or device.type != "cpu" or compute != torch.float32:
        return compute
    from .quant import bf16_panels_available

    return torch.bfloat16 if bf16_panels_available(device) else compute
