"""C++ kernels for the CPU (sources in `kernels/cpu/`): decode attention straight from the
paged KV cache (contract: `kernels.decode_attention_ref.paged_decode_attention_ref`, the
Triton kernel's too), causal prefill attention from the cache (`prefill_attention.cpp`), the
fused small steps of a layer (`fused_ops.cpp`), the widened logits with each row's top-k
ids (`logits_topk.cpp`), the output projection for a few rows (`q8_gemv.cpp` from the file's
Q8_0 blocks, `head_gemv.cpp` from a bf16 copy), the compressed KV cache's encoder
(`pq_roundtrip.cpp`), the routed modes' sparse FFN (`sparse_ffn.cpp`), bf16 linear layers over
packed weights (`linear_bf16.cpp`, AVX-512 BF16) and, for CPUs without bf16 arithmetic, linear layers over
bf16 weights in fp32 (`linear_bf16w.cpp`).

The library is compiled on first use by torch's extension builder (a C++ compiler and ninja, ~15 s) into
GATEWAY_KERNEL_DIR (default ~/.cache/deepseek-gateway/kernels), one folder per source, torch
and Python version, and later processes load the library from there without a compiler (the
container image ships it prebuilt). It picks its AVX-512 and AVX2 paths at run time, so one
build serves every x86-64 CPU. Where it cannot be built, `load()` says why in a warning and
returns False; the engine then runs PyTorch ops. GATEWAY_CPU_KERNELS=0 turns the kernels off;
GATEWAY_CPU_KERNELS=portable keeps them but skips their AVX-512 and AVX2 paths; =avx2 skips
the AVX-512 ones (and `inference.device.cpu_supports_bf16` answers no): a CPU without
AVX512_BF16, on any machine.
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

SOURCE_DIR = Path(__file__).with_name("cpu")
SOURCES = sorted(SOURCE_DIR.glob("*.cpp"))
EXTENSION = "gateway_kernels_cpu"
CFLAGS = ["-O3", "-fopenmp"]


def build_dir() -> Path:
    """Where these sources, built for this torch and Python, live."""
    root = os.environ.get("GATEWAY_KERNEL_DIR") or Path.home() / ".cache" / "deepseek-gateway" / "kernels"
    key = hashlib.sha256()
    for path in sorted(SOURCE_DIR.iterdir()):  # the sources and the headers they include
        key.update(path.name.encode() + b"\0" + path.read_bytes())
    key.update(f"{torch.__version__} {sys.version} {platform.machine()} {CFLAGS}".encode())
    return Path(root) / f"{EXTENSION}-{key.hexdigest()[:16]}"


def avx2_mode() -> bool:
    """GATEWAY_CPU_KERNELS=avx2: the kernels skip their AVX-512 paths (read by simd.h the same
    way), and the engine picks the numerics of a CPU without AVX512_BF16."""
    return os.environ.get("GATEWAY_CPU_KERNELS") == "avx2"


@cache
def load() -> bool:
    """Build (once per machine) and load the kernels; False where that is impossible."""
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
        log.info("building the CPU kernels into %s (once per machine)", folder)
        cpp_extension.load(
            name=EXTENSION,
            sources=[str(p) for p in SOURCES],
            extra_cflags=CFLAGS,
            extra_ldflags=["-fopenmp"],
            build_directory=str(scratch),
            is_python_module=False,
        )
        folder.mkdir(exist_ok=True)
        os.replace(scratch / library.name, library)
        shutil.rmtree(scratch, ignore_errors=True)
    except Exception as exc:  # noqa: BLE001 - any build failure means "use PyTorch ops"
        log.warning("CPU kernels unavailable (%s); running PyTorch ops instead", exc)
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


def pq_roundtrip(
    k: torch.Tensor,  # [T, KVH, hd] roped keys
    v: torch.Tensor,  # [T, KVH, hd]
    order: torch.Tensor,  # [hd] int64: stored key dim j = key dim order[j]
    w: torch.Tensor,  # [2, KVH, hd] float32: the metric's weights, stored order
    enc_t: torch.Tensor,  # [2, KVH, M, d, C] float32: weighted centroids, dim-major
    books: torch.Tensor,  # [2, KVH, M, C, d] float32: the centroids
    dtype: torch.dtype,  # of the decoded rows: float32 or bfloat16
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes [2 KVH, T, M] uint8, decoded keys, decoded values [T, KVH, hd]): the compressed
    cache's encode and decode in one call (`inference.hca.codec.KVCodec.roundtrip`)."""
    return torch.ops.gateway_kernels.pq_roundtrip(k, v, order, w, enc_t, books, dtype)


def sparse_ffn(
    x: torch.Tensor,  # [T, K] bf16 or fp32, 1-16 rows
    gate: torch.Tensor,  # [F, K/32 * 20] uint8: Q4_1 blocks
    up: torch.Tensor,  # [F, K/32 * 20] uint8
    down_q: torch.Tensor,  # [F, O/2] uint8: the down projection's columns as nibble rows
    down_dm: torch.Tensor,  # [F/32, 2, O] float16: its scales and mins
    score_scale: torch.Tensor,  # [F] float32
    down_norm: torch.Tensor,  # [F] float32
    keep: list[int],  # neurons kept per row
    cand: list[int],  # candidates per row (keep <= cand <= F)
    dtype: torch.dtype,
    kept_out: torch.Tensor | None = None,  # [T, F] uint8: set to 1 where a row kept a neuron
) -> torch.Tensor:
    """[T, O] in dtype: the gate-first sparse FFN (`inference.moe.neurons`), one call per layer."""
    return torch.ops.gateway_kernels.sparse_ffn_q41(
        x, gate, up, down_q, down_dm, score_scale, down_norm, keep, cand, dtype, kept_out
    )


def select_act(
    gu: torch.Tensor,  # [T, 2F] [gate | up] projections, bf16 or fp32
    score_scale: torch.Tensor,  # [F] float32
    down_norm: torch.Tensor,  # [F] float32
    keep: torch.Tensor,  # [T]
    cand: torch.Tensor,  # [T]
) -> torch.Tensor:
    """[T, F] in gu's dtype: silu(g) u where the sparse FFN's rule keeps a neuron, else 0."""
    return torch.ops.gateway_kernels.select_act(gu, score_scale, down_norm, keep, cand)


@cache
def sparse_ffn_op():
    """`sparse_ffn`'s resolved overload (the same call without the Python wrapper)."""
    return torch.ops.gateway_kernels.sparse_ffn_q41.default


def sparse_ffn_int8_x() -> bool:
    """Whether `sparse_ffn` rounds a bf16 x to int8 per block of 32 here (its AVX512_VNNI
    path; x = dx q, dx = the block's max |x| / 127) before the gate and up dot products."""
    return load() and bool(torch.ops.gateway_kernels.sparse_ffn_int8_x())


def int8_rounded(x: torch.Tensor) -> torch.Tensor:
    """x [T, K] (K a multiple of 32) as `sparse_ffn`'s int8 path sees it, in fp32."""
    xb = x.float().view(x.shape[0], -1, 32)
    dx = xb.abs().amax(dim=-1, keepdim=True) / 127.0
    q = torch.where(dx > 0, torch.round(xb / torch.where(dx > 0, dx, 1.0)), 0.0)
    return (q * dx).view(x.shape)


def avx512_bf16() -> bool:
    """Whether the kernels load and take their AVX-512 BF16 paths here (the prefill and
    output kernels have no other)."""
    return load() and bool(torch.ops.gateway_kernels.avx512_bf16())


def prefill_attention_usable(dtype: torch.dtype, head_dim: int, group: int) -> bool:
    """Whether `prefill_attention` runs here (AVX-512 BF16, bf16, head size 64)."""
    return dtype == torch.bfloat16 and head_dim == 64 and group <= 12 and avx512_bf16()


def prefill_attention(
    q: torch.Tensor,  # [n, H, 64] bf16: the chunk's queries, the last n positions of the context
    k_cache: torch.Tensor,  # [KVH, S, 64]
    v_cache: torch.Tensor,  # [KVH, S, 64]
    slots: torch.Tensor,  # [ctx] cache slots of the whole context, this chunk's last
    scale: float,
) -> torch.Tensor:
    """Causal (bottom-right) attention of a prefill chunk over keys and values already in the
    cache; [n, H * 64] bf16. Needs `prefill_attention_usable`."""
    return torch.ops.gateway_kernels.prefill_attention(q, k_cache, v_cache, slots, scale)


# The fused steps of a layer (fused_ops.cpp): the fp32 residual stream in, the compute dtype
# (bfloat16 or float32) out.


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, dtype: torch.dtype) -> torch.Tensor:
    """F.rms_norm(x, weight) in `dtype` (rounded once); x [T, D] float32."""
    return torch.ops.gateway_kernels.rms_norm(x, weight, eps, dtype)


def add_rms_norm(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x += y in place, then rms_norm(x) in y's dtype."""
    return torch.ops.gateway_kernels.add_rms_norm(x, y, weight, eps)


def silu_mul(gu: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up of gu = [gate | up] ([T, 2F], bf16 or fp32), rounded once."""
    return torch.ops.gateway_kernels.silu_mul(gu)


def rope_store_kv(
    qkv: torch.Tensor,  # [T, nh + 2 nkv, hd] bf16
    positions: torch.Tensor,  # [T]
    cos: torch.Tensor,  # [max positions, hd] float32
    sin_signed: torch.Tensor,  # [max positions, hd] float32, the rotate-half sign folded in
    cache: torch.Tensor,  # [2 nkv, slots, hd] bf16: one layer's keys then values
    slots: torch.Tensor,  # [T]
    n_heads: int,
) -> torch.Tensor:
    """Rope on the query and key heads (returned, [T, nh + nkv, hd]); keys and values stored
    at each token's slot."""
    return torch.ops.gateway_kernels.rope_store_kv(qkv, positions, cos, sin_signed, cache, slots, n_heads)


def logits_topk(raw: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """raw.float() and each row's k largest ids (any order; the lower id on a tie) of the
    output projection's [S, V] bf16 logits, in one pass."""
    return torch.ops.gateway_kernels.logits_topk_bf16(raw, k)


def head_gemv_usable(dtype: torch.dtype, dim: int) -> bool:
    """Whether `head_gemv` runs here (AVX-512 BF16, bf16, dim a multiple of 32)."""
    return dtype == torch.bfloat16 and dim % 32 == 0 and avx512_bf16()


def head_gemv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ w.T in fp32 for 1-4 rows: x [M, K], w [N, K] bf16, dense; fp32 dot products."""
    return torch.ops.gateway_kernels.head_gemv_bf16(x, w)


def q8_gemv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ W.T in fp32 for 1-4 rows, W as `inference.quant.q8_0_rows` packs the file's Q8_0
    blocks; x [M, K] bf16 or fp32."""
    return torch.ops.gateway_kernels.q8_gemv(x, w)


def avx2_fma() -> bool:
    """Whether the kernels load and take their AVX2 paths here (`linear_bf16w` has no other)."""
    return load() and bool(torch.ops.gateway_kernels.avx2_fma())


def _panels_of_16(w: torch.Tensor) -> torch.Tensor:
    """W [N, K] in bf16 as [ceil(N/16), 16, K], zero rows padding the last panel."""
    n, k = w.shape
    panels = -(-n // 16)
    padded = torch.zeros((panels * 16, k), dtype=torch.bfloat16, device=w.device)
    padded[:n] = w
    return padded.view(panels, 16, k)


def pack_bf16_weight(w: torch.Tensor) -> torch.Tensor:
    """W [N, K] -> the panels `linear_bf16w` reads: [ceil(N/16), K, 16] bf16, each k's 16
    outputs in the order 0,8,1,9,..,7,15 (zero rows pad the last panel)."""
    order = torch.arange(16).view(2, 8).t().reshape(-1)  # 0, 8, 1, 9, ..., 7, 15
    return _panels_of_16(w)[:, order].transpose(1, 2).contiguous()


def linear_bf16w(x: torch.Tensor, packed: torch.Tensor, n: int) -> torch.Tensor:
    """x @ W.T in fp32 with W packed by `pack_bf16_weight` (n = W's rows); x [M, K] float32."""
    return torch.ops.gateway_kernels.linear_bf16w(x, packed, n)


def pack_bf16_pairs(w: torch.Tensor) -> torch.Tensor:
    """W [N, K] -> the panels `linear_bf16` reads: [ceil(N/16), K/2, 16, 2] bf16, each pair of
    k of 16 outputs in one 64-byte row (zero rows pad the last panel); K must be even."""
    k = w.shape[1]
    if k % 2:
        raise ValueError("pack_bf16_pairs needs an even K")
    panels = _panels_of_16(w)
    return panels.view(panels.shape[0], 16, k // 2, 2).transpose(1, 2).contiguous()


def linear_bf16(x: torch.Tensor, packed: torch.Tensor, n: int) -> torch.Tensor:
    """x @ W.T in bf16 (fp32 sums rounded once) with W packed by `pack_bf16_pairs` (n = W's
    rows); x [M, K] bfloat16. Needs `avx512_bf16()`."""
    return torch.ops.gateway_kernels.linear_bf16(x, packed, n)
