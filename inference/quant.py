"""Weight formats for the CPU: Q4_1 blocks kept as packed int4 (Q4_1's w = d*q + m is int4
with a group-32 scale and zero; the kernel holds those two in bf16, within 2^-9 of the file's),
dense bf16 for larger batches; or, on CPUs without bf16 arithmetic, bf16 weights under fp32
arithmetic (`kernels/cpu/linear_bf16w.cpp`: half the bytes of fp32 weights, for every batch
size; where torch's int4 kernel has AVX-512 code, it still takes 1-4 rows).

`QLinear` picks the kernel by the number of rows: the int4 kernel reads ~4x fewer bytes and
wins while decoding a few tokens (memory bound); bf16 GEMM wins for larger batches and
prefill (compute bound). On AVX-512 BF16 CPUs the bf16 weight is packed once, at load, into
the panels of `kernels/cpu/linear_bf16.cpp` (0.77x oneDNN's time for a 32-row step's layers,
0.97x at 1,000 rows: bench/linear_bf16.py); elsewhere it is reordered once into oneDNN's
blocked layout: a plain `F.linear` reorders it on every call, which cost ~40% of the layer
GEMMs at 32 rows (measured: 0.42 vs 0.24 ms per layer). Either way a row's result does not
depend on the other rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from kernels import cpu_ops

Q4_1_BLOCK = 32
Q4_1_BYTES = 20  # f16 d, f16 m, 16 bytes of nibbles


@dataclass
class Q4_1Weight:
    """A Q4_1 matrix in HF layout: q [N, K] ints 0..15, d and m [N, K/32] float32."""

    q: np.ndarray
    d: np.ndarray
    m: np.ndarray

    @classmethod
    def from_raw(cls, raw: np.ndarray) -> Q4_1Weight:
        rows = raw.shape[0]
        b = np.asarray(raw, dtype=np.uint8).reshape(rows, -1, Q4_1_BYTES)
        d = b[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        m = b[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        qs = b[..., 4:Q4_1_BYTES]
        q = np.concatenate([qs & 0xF, qs >> 4], axis=-1).reshape(rows, -1)
        return cls(q=q, d=d, m=m)

    def dequantize(self) -> np.ndarray:
        n, k = self.q.shape
        g = self.q.reshape(n, k // Q4_1_BLOCK, Q4_1_BLOCK).astype(np.float32)
        return (g * self.d[..., None] + self.m[..., None]).reshape(n, k)

    def permute_rows(self, perm: np.ndarray) -> Q4_1Weight:
        return Q4_1Weight(self.q[perm], self.d[perm], self.m[perm])

    def scale(self, s: float) -> Q4_1Weight:
        return Q4_1Weight(self.q, self.d * s, self.m * s)

    @staticmethod
    def cat(ws: list[Q4_1Weight]) -> Q4_1Weight:
        return Q4_1Weight(
            np.concatenate([w.q for w in ws]),
            np.concatenate([w.d for w in ws]),
            np.concatenate([w.m for w in ws]),
        )


def prepack_available(device: torch.device, dtype: torch.dtype) -> bool:
    if device.type != "cpu" or dtype not in (torch.bfloat16, torch.float32):
        return False
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    return dtype == torch.float32 or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_panels_available(device: torch.device) -> bool:
    """Whether `linear_bf16w` (fp32 x, bf16 weight panels; AVX2 + FMA) runs here."""
    return device.type == "cpu" and cpu_ops.avx2_fma()


def bf16_pairs_available(device: torch.device, dtype: torch.dtype, k: int) -> bool:
    """Whether `linear_bf16` (bf16 x and y, packed bf16 weight; AVX-512 BF16) runs here."""
    return device.type == "cpu" and dtype == torch.bfloat16 and k % 2 == 0 and cpu_ops.avx512_bf16()


def int4_available() -> bool:
    return hasattr(torch, "_convert_weight_to_int4pack_for_cpu") and hasattr(
        torch, "_weight_int4pack_mm_for_cpu"
    )


def int4_under_fp32() -> bool:
    """Whether fp32 compute over bf16 weights should still take the int4 kernel (bf16 inputs)
    for a few rows: where torch runs it with AVX-512 (CPUs before AVX512_BF16) it streams 4x
    fewer bytes than the bf16 panels (a single-stream step's layers 4.7 vs 7.1 ms, 30 layers
    from memory); its AVX2 code is no faster than them (7.7 vs 7.7 ms)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


class QLinear:
    """y = x @ W.T with W held densely (dtype; as `linear_bf16` panels or in oneDNN's layout on
    the CPU) and, on the CPU, as packed int4. `keep_dense` keeps a plain copy too (for callers
    that index rows).

    `weight_dtype=torch.bfloat16` with `dtype=torch.float32`: W rounded to bf16, x and y fp32;
    held as `linear_bf16w` panels where that kernel runs, else densely (the same weights);
    a few rows take the int4 kernel in bf16 where `int4_under_fp32`."""

    __slots__ = ("dense", "onednn", "packed", "sz", "max_m", "out_features", "panels", "pairs")

    def __init__(
        self,
        w: Q4_1Weight | torch.Tensor,
        dtype: torch.dtype,
        device: torch.device,
        int4_max_rows: int,
        keep_dense: bool = False,
        weight_dtype: torch.dtype | None = None,
        kernel: bool = True,  # False: PyTorch ops even where our linear kernels run
    ) -> None:
        self.panels: torch.Tensor | None = None
        self.pairs: torch.Tensor | None = None
        self.packed: torch.Tensor | None = None
        self.sz: torch.Tensor | None = None
        self.max_m = -1
        if isinstance(w, Q4_1Weight):
            dense = torch.from_numpy(w.dequantize())
            bf16_math = dtype == torch.bfloat16 or (weight_dtype == torch.bfloat16 and int4_under_fp32())
            use_int4 = (
                device.type == "cpu"
                and bf16_math
                and int4_max_rows > 0
                and int4_available()
                and w.q.shape[1] % 64 == 0
            )
            if use_int4:
                qi = torch.from_numpy(w.q.astype(np.int32))
                self.packed = torch._convert_weight_to_int4pack_for_cpu(qi, 2)
                d = torch.from_numpy(w.d)
                zero = torch.from_numpy(w.m) + 8.0 * d  # kernel computes (q - 8) * s + z
                self.sz = torch.stack([d.t(), zero.t()], dim=-1).contiguous().to(torch.bfloat16)
                self.max_m = int4_max_rows
        else:
            dense = w
        if weight_dtype is not None and weight_dtype != dtype:
            dense = dense.to(weight_dtype)  # rounded once; computed on in dtype
        self.out_features = dense.shape[0]
        self.onednn: torch.Tensor | None = None
        self.dense: torch.Tensor | None = None
        bf16_under_fp32 = weight_dtype == torch.bfloat16 and dtype == torch.float32
        if bf16_under_fp32 and kernel and bf16_panels_available(device):
            self.panels = cpu_ops.pack_bf16_weight(dense)
            self.dense = dense.to(device) if keep_dense else None
            return
        dense = dense.to(device=device, dtype=dtype).contiguous()
        if kernel and bf16_pairs_available(device, dtype, dense.shape[1]):
            self.pairs = cpu_ops.pack_bf16_pairs(dense)
            self.dense = dense if keep_dense else None
            return
        if prepack_available(device, dtype):
            self.onednn = torch.ops.mkldnn._reorder_linear_weight(dense, 32)
        self.dense = dense if keep_dense or self.onednn is None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] <= self.max_m:
            assert self.packed is not None and self.sz is not None
            if x.dtype == torch.bfloat16:
                return torch._weight_int4pack_mm_for_cpu(x, self.packed, Q4_1_BLOCK, self.sz)
            # fp32 compute (see `int4_under_fp32`): the kernel's bf16 in and out
            y = torch._weight_int4pack_mm_for_cpu(x.bfloat16(), self.packed, Q4_1_BLOCK, self.sz)
            return y.to(x.dtype)
        if self.panels is not None:
            return cpu_ops.linear_bf16w(x, self.panels, self.out_features)
        if self.pairs is not None:
            return cpu_ops.linear_bf16(x, self.pairs, self.out_features)
        if self.onednn is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.onednn, None, "none", [], "")
        assert self.dense is not None
        return F.linear(x, self.dense)


def q8_0_rows(w: torch.Tensor) -> torch.Tensor | None:
    """The Q8_0 blocks a dequantized [N, K] weight came from, as `kernels/cpu/q8_gemv.cpp`
    reads them ([N, K + K/16] uint8: each row's K int8 weights, then its K/32 fp16 scales),
    or None when w is not exactly d q per block of 32 (d fp16, |q| <= 127). Q8_0's quantizer
    puts +-127 at each block's largest |w|, so d = max|w| / 127 and q = w / d, checked."""
    n, k = w.shape
    if k % 32:
        return None
    blocks = w.detach().float().reshape(n, k // 32, 32)
    d = blocks.abs().amax(dim=-1) / 127.0
    if not torch.equal(d.half().float(), d):
        return None
    safe = torch.where(d == 0, torch.ones_like(d), d)
    q = torch.round(blocks / safe[..., None])
    if q.abs().max() > 127 or not torch.equal(q * d[..., None], blocks):
        return None
    qb = q.to(torch.int8).reshape(n, k).view(torch.uint8)
    return torch.cat([qb, d.half().view(torch.uint8).reshape(n, k // 16)], dim=1).contiguous()


def q8_0_dequantize_rows(rows: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """[*ids.shape, K] float32: rows `ids` of a `q8_0_rows` weight, exactly d q."""
    k = rows.shape[1] * 16 // 17
    r = rows[ids]
    q = r[..., :k].contiguous().view(torch.int8).float()
    d = r[..., k:].contiguous().view(torch.float16).float()
    return q * d.repeat_interleave(32, dim=-1)
