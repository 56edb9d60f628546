"""PyTorch twin of `kernels.rmsnorm_residual`: the residual add fused with the RMSNorm that
follows it (the pre-norm block boundary).

The contract: `h = x + residual` (just `x` when residual is None), then
`y = h / sqrt(mean(h^2) + eps) * weight`, in fp32; both come back in x's dtype:
`(y, h)`, h being the new residual stream.
"""

from __future__ import annotations

import torch


def check_shapes(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor) -> None:
    if weight.dim() != 1 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"weight {tuple(weight.shape)} does not match rows of width {x.shape[-1]}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual {tuple(residual.shape)} is not x's shape {tuple(x.shape)}")


def rmsnorm_residual_ref(
    x: torch.Tensor,  # [..., D]
    residual: torch.Tensor | None,  # [..., D] or None
    weight: torch.Tensor,  # [D]
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    check_shapes(x, residual, weight)
    h = x.float() if residual is None else x.float() + residual.float()
    y = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + eps) * weight.float()
    return y.to(x.dtype), h.to(x.dtype)
