"""The small steps of a layer (norms, rope with the key/value store, the gated activation)
and of the output (the widened logits with each row's top-k), as plain PyTorch ops or as
the fused C++ kernels of `kernels.cpu_ops` (bf16 or fp32 on the CPU).

Both compute in fp32 and round to the compute dtype; the fused kernels round once where
PyTorch rounds between ops (silu, then the product), and save a dispatch and a temporary per
op, which at decode batch sizes costs more than the arithmetic.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class TorchLayerOps:
    def __init__(self, dtype: torch.dtype, eps: float, cos: torch.Tensor, sin_signed: torch.Tensor) -> None:
        self.dtype, self.eps = dtype, eps
        self.cos, self.sin_signed = cos, sin_signed

    def norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """rms_norm of the fp32 residual stream, in the compute dtype."""
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps).to(self.dtype)

    def add_norm(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x += y in place (a layer's output joins the residual stream), then norm(x)."""
        x.add_(y)
        return self.norm(x, weight)

    def silu_mul(self, gu: torch.Tensor) -> torch.Tensor:
        f = gu.shape[1] // 2
        return F.silu(gu[:, :f]) * gu[:, f:]

    def rope_tables(self, positions: torch.Tensor) -> Any:
        """Per-forward rope inputs for `rope_store` (shared by every layer)."""
        return self.cos[positions][:, None, :], self.sin_signed[positions][:, None, :]

    def rope_store(
        self, qkv: torch.Tensor, rope: Any, cache: torch.Tensor, slots: torch.Tensor, n_heads: int
    ) -> torch.Tensor:
        """qkv [T, nh + 2 nkv, hd] -> roped query and key heads [T, nh + nkv, hd]; keys and
        values written to `cache` ([2 nkv, slots, hd]) at each token's slot."""
        nkv = (qkv.shape[1] - n_heads) // 2
        cos, sin = rope
        qk = self._rope_qk(qkv, cos, sin, n_heads)
        # the cache may be narrower than the compute dtype (bf16 under fp32)
        cache[:nkv].index_copy_(1, slots, qk[:, n_heads:].transpose(0, 1).to(cache.dtype))
        cache[nkv:].index_copy_(1, slots, qkv[:, n_heads + nkv :].transpose(0, 1).to(cache.dtype))
        return qk

    @staticmethod
    def _rope_qk(qkv: torch.Tensor, cos: Any, sin: Any, n_heads: int) -> torch.Tensor:
        nkv = (qkv.shape[1] - n_heads) // 2
        # x * cos + rotate_half(x) * sin, the halves swapped by a flipped view; in fp32, rounded
        # once (two bf16 roundings moved the fp32 reference's answers)
        qkf = qkv[:, : n_heads + nkv].float()
        half = qkv.shape[-1] // 2
        swapped = qkf.unflatten(-1, (2, half)).flip(-2).flatten(-2)
        return torch.addcmul(qkf * cos, swapped, sin).to(qkv.dtype)

    def rope(self, qkv: torch.Tensor, rope: Any, n_heads: int) -> torch.Tensor:
        """Roped query and key heads [T, nh + nkv, hd], nothing stored (the compressed cache
        stores codes of the keys instead)."""
        cos, sin = rope
        return self._rope_qk(qkv, cos, sin, n_heads)

    def logits_topk(self, raw: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The output projection's logits in fp32 and each row's top-k ids (any order)."""
        return raw.float(), raw.topk(k, dim=-1).indices


class FusedCpuLayerOps(TorchLayerOps):
    """bf16 or fp32 on the CPU, through `kernels.cpu_ops` (which must have loaded)."""

    def __init__(self, dtype: torch.dtype, eps: float, cos: torch.Tensor, sin_signed: torch.Tensor) -> None:
        from kernels import cpu_ops

        super().__init__(dtype, eps, cos, sin_signed)
        self.k = cpu_ops

    @staticmethod
    def usable(device: torch.device, dtype: torch.dtype, head_dim: int) -> bool:
        if device.type != "cpu" or dtype not in (torch.bfloat16, torch.float32) or head_dim % 32:
            return False
        from kernels import cpu_ops

        return cpu_ops.load()

    def norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self.k.rms_norm(x, weight, self.eps, self.dtype)

    def add_norm(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self.k.add_rms_norm(x, y, weight, self.eps)

    def silu_mul(self, gu: torch.Tensor) -> torch.Tensor:
        return self.k.silu_mul(gu)

    def rope_tables(self, positions: torch.Tensor) -> Any:
        return positions

    def rope_store(
        self, qkv: torch.Tensor, rope: Any, cache: torch.Tensor, slots: torch.Tensor, n_heads: int
    ) -> torch.Tensor:
        return self.k.rope_store_kv(qkv, rope, self.cos, self.sin_signed, cache, slots, n_heads)

    def rope(self, qkv: torch.Tensor, rope: Any, n_heads: int) -> torch.Tensor:
        return self._rope_qk(qkv, self.cos[rope][:, None, :], self.sin_signed[rope][:, None, :], n_heads)

    def logits_topk(self, raw: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k.logits_topk(raw, k)
