"""C++ kernel: decode attention straight from the paged KV cache, on the CPU.

The source is `kernels/cpu/decode_attention.cpp`; its contract is
`kernels.decode_attention_ref.paged_decode_attention_ref` (the Triton kernel's too). It is
compiled on first use by torch's extension builder (a C++ compiler and ninja, ~15 s) into
GATEWAY_KERNEL_DIR (default ~/.cache/deepseek-gateway/kernels), one folder per source, torch
and Python version, and later processes load the library from there without a compiler (the
container image ships it prebuilt). The library picks its AVX-512 path at run time, so one
build serves every x86-64 CPU. Where it cannot be built, `load()` says why in a warning and
returns False; the engine then decodes with PyTorch ops. GATEWAY_CPU_KERNELS=0 turns it off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import sys
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu") / "decode_attention.cpp"
EXTENSION = "gateway_kernels_cpu"
CFLAGS = ["-O3", "-fopenmp"]


def build_dir() -> Path:
    """Where this source, built for this torch and Python, lives."""
    root = os.environ.get("GATEWAY_KERNEL_DIR") or Path.home() / ".cache" / "deepseek-gateway" / "kernels"
    key = hashlib.sha256(SOURCE.read_bytes())
    key.update(f"{torch.__version__} {sys.version} {platform.machine()} {CFLAGS}".encode())
    return Path(root) / f"{EXTENSION}-{key.hexdigest()[:16]}"


@cache
def load() -> bool:
    """Build (once per machine) and load the kernel; False where that is impossible."""
    if os.environ.get("GATEWAY_CPU_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        folder = build_dir()
        library = folder / f"{EXTENSION}.so"
        if library.exists():
            torch.ops.load_library(str(library))
            return True
        from torch.utils import cpp_extension

        if shutil.which("ninja") is None:  # the ninja wheel's binary, where PATH lacks one
            import ninja

            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
        # build in a private folder and move the library in at once: a process starting
        # meanwhile never loads a half-written file
        scratch = folder.with_name(f"{folder.name}.build-{os.getpid()}")
        scratch.mkdir(parents=True, exist_ok=True)
        log.info("building the CPU decode-attention kernel into %s (once per machine)", folder)
        cpp_extension.load(
            name=EXTENSION,
            sources=[str(SOURCE)],
            extra_cflags=CFLAGS,
            extra_ldflags=["-fopenmp"],
            build_directory=str(scratch),
            is_python_module=False,
        )
        folder.mkdir(exist_ok=True)
        os.replace(scratch / library.name, library)
        shutil.rmtree(scratch, ignore_errors=True)
    except Exception as exc:  # noqa: BLE001 - any build failure means "use PyTorch ops"
        log.warning("CPU decode-attention kernel unavailable (%s); decoding with PyTorch ops", exc)
        return False
    return True


def paged_decode_attention(
    q: torch.Tensor,  # [B, H, D]
    k_cache: torch.Tensor,  # [KVH, S, D]
    v_cache: torch.Tensor,  # [KVH, S, D]
    slots: torch.Tensor,  # [B, L] int
    seq_lens: torch.Tensor,  # [B] int
    scale: float,
) -> torch.Tensor:
    """Same contract as `kernels.decode_attention_ref.paged_decode_attention_ref`; needs
    `load()` to have returned True."""
    return torch.ops.gateway_kernels.paged_decode_attention(q, k_cache, v_cache, slots, seq_lens, scale)
