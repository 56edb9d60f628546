"""Triton kernel: residual add + RMSNorm in one pass over each row.

Unfused, the add writes the new residual and the norm reads it back (3 reads + 2 writes of
the row); fused, one program per row reads x and the residual once and writes both outputs
(2 reads + 2 writes), with the sum of squares kept in fp32. The contract and the twin are in
`kernels.rmsnorm_residual_ref`.
"""

from __future__ import annotations

import torch

from kernels.rmsnorm_residual_ref import check_shapes
from kernels.triton_support import available, next_pow2, require_triton, tl, triton

__all__ = ["available", "rmsnorm_residual"]

if triton is not None:

    @triton.jit
    def _rmsnorm_residual_kernel(
        x_ptr,
        r_ptr,
        w_ptr,
        y_ptr,
        h_ptr,
        D,
        eps,
        HAS_RESIDUAL: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        offs = tl.arange(0, BLOCK_D)
        mask = offs < D
        h = tl.load(x_ptr + row * D + offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            h += tl.load(r_ptr + row * D + offs, mask=mask, other=0.0).to(tl.float32)
        inv = 1.0 / tl.sqrt(tl.sum(h * h, axis=0) / D + eps)
        w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_ptr + row * D + offs, (h * inv * w).to(y_ptr.dtype.element_ty), mask=mask)
        tl.store(h_ptr + row * D + offs, h.to(h_ptr.dtype.element_ty), mask=mask)


def rmsnorm_residual(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as `kernels.rmsnorm_residual_ref.rmsnorm_residual_ref`."""
    require_triton()
    check_shapes(x, residual, weight)
    d = x.shape[-1]
    x2 = x.reshape(-1, d).contiguous()
    r2 = x2 if residual is None else residual.reshape(-1, d).contiguous()
    y = torch.empty_like(x2)
    h = torch.empty_like(x2)
    if x2.shape[0]:
        _rmsnorm_residual_kernel[(x2.shape[0],)](
            x2,
            r2,
            weight.contiguous(),
            y,
            h,
            d,
            eps,
            HAS_RESIDUAL=residual is not None,
            BLOCK_D=next_pow2(d),
        )
    return y.reshape(x.shape), h.reshape(x.shape)
