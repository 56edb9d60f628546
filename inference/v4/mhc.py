"""Manifold-constrained hyper-connections (mHC) and plain hyper-connections (HC).

A hyper-connection widens the residual stream into n streams `x [T, n, C]` and wraps one
branch F (attention or FFN) as

    x' = H_res x + H_post^T F(H_pre x)

with per-token coefficients H_pre [n] (how the branch reads the streams), H_post [n] (how
its output is written back) and H_res [n, n] (how the streams mix). Each is a static bias
plus a small input-dependent term computed from the RMS-normed, flattened streams.

HC (Zhu et al.) uses them as they come (the dynamic term through tanh). mHC (DeepSeek)
projects them: H_pre = sigmoid, H_post = 2 sigmoid, and H_res onto the doubly-stochastic
matrices by Sinkhorn-Knopp (20 rounds, fp32, `kernels.dispatch.sinkhorn_knopp`). Products
of doubly-stochastic matrices stay doubly stochastic, so through any depth the composite
mixing `H_res^(L) ... H_res^(1)` keeps its row and column sums at 1: the residual signal is
neither amplified nor damped by the mixing. Unconstrained H_res matrices multiply into a
composite whose gain grows geometrically with depth (`mixing_gain` measures both).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from kernels import dispatch

DEFAULT_STREAMS = 4
SINKHORN_ITERS = 20
# At initialisation the static mixing is the identity plus a random perturbation of this
# size (the same draw for HC and mHC); it stands for matrices that have left the identity,
# as they do in training. At exactly the identity both kinds have gain 1.
RES_INIT_NOISE = 0.2
DYNAMIC_INIT = 0.01  # the alphas that scale the input-dependent terms (small at init)


class HyperConnection(nn.Module):
    """One branch's hyper-connection over n residual streams; `constrained=True` is mHC."""

    def __init__(
        self,
        dim: int,
        n_streams: int = DEFAULT_STREAMS,
        constrained: bool = True,
        generator: torch.Generator | None = None,
        sinkhorn_iters: int = SINKHORN_ITERS,
        res_init_noise: float = RES_INIT_NOISE,
    ) -> None:
        super().__init__()
        if n_streams < 1 or dim < 1:
            raise ValueError("need at least one stream of positive width")
        n = n_streams
        self.dim, self.n_streams, self.constrained, self.sinkhorn_iters = dim, n, constrained, sinkhorn_iters
        self.phi = nn.Parameter(torch.randn(n * dim, 2 * n + n * n, generator=generator) * (n * dim) ** -0.5)
        self.alpha = nn.Parameter(torch.full((3,), DYNAMIC_INIT))  # pre, post, res
        b_res = torch.eye(n) + res_init_noise * torch.randn(n, n, generator=generator)
        if constrained:  # sigmoid(b_pre) = 1/n, 2 sigmoid(b_post) = 1, H_res = SK(exp(b_res))
            b_pre = torch.full((n,), -math.log(n - 1) if n > 1 else 10.0)
            b_post = torch.zeros(n)
        else:  # the same starting point, taken as it comes
            b_pre = torch.full((n,), 1.0 / n)
            b_post = torch.ones(n)
        self.b_pre = nn.Parameter(b_pre)
        self.b_post = nn.Parameter(b_post)
        self.b_res = nn.Parameter(b_res)
        self._ones: torch.Tensor
        self.register_buffer("_ones", torch.ones(n * dim), persistent=False)

    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [T, n, C] -> H_pre [T, n], H_post [T, n], H_res [T, n, n] (fp32)."""
        t, n, c = x.shape
        if n != self.n_streams or c != self.dim:
            raise ValueError(f"expected streams [T, {self.n_streams}, {self.dim}], got {tuple(x.shape)}")
        flat, _ = dispatch.rmsnorm_residual(x.reshape(t, n * c).float(), None, self._ones)
        d = flat @ self.phi.float()
        if not self.constrained:
            d = torch.tanh(d)
        a = self.alpha.float()
        pre = a[0] * d[:, :n] + self.b_pre
        post = a[1] * d[:, n : 2 * n] + self.b_post
        res = a[2] * d[:, 2 * n :].reshape(t, n, n) + self.b_res
        if self.constrained:
            return (
                torch.sigmoid(pre),
                2.0 * torch.sigmoid(post),
                dispatch.sinkhorn_knopp(res, self.sinkhorn_iters),
            )
        return pre, post, res

    def forward(
        self, x: torch.Tensor, branch: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the new streams and this layer's H_res (for measuring the mixing)."""
        h_pre, h_post, h_res = self.coefficients(x)
        xf = x.float()
        out = branch(torch.einsum("tn,tnc->tc", h_pre, xf).to(x.dtype)).float()
        mixed = torch.einsum("tij,tjc->tic", h_res, xf) + h_post[:, :, None] * out[:, None, :]
        return mixed.to(x.dtype), h_res


def expand_streams(h: torch.Tensor, n_streams: int) -> torch.Tensor:
    """[T, C] -> [T, n, C]: every stream starts as the embedding."""
    return h[:, None, :].expand(h.shape[0], n_streams, h.shape[1]).contiguous()


def collapse_streams(x: torch.Tensor) -> torch.Tensor:
    """[T, n, C] -> [T, C]: the mean of the streams (the embedding's scale at init)."""
    return x.mean(dim=1)


def _gain(p: torch.Tensor) -> float:
    fwd = p.abs().sum(dim=-1).amax()  # largest absolute row sum: forward signal
    bwd = p.abs().sum(dim=-2).amax()  # largest absolute column sum: backward gradient
    return float(torch.maximum(fwd, bwd))


def composite_gains(h_res_per_layer: list[torch.Tensor]) -> list[float]:
    """The gain of the composite mixing `H_res^(l) ... H_res^(1)` after each layer l: the
    larger of its largest absolute row and column sums, max over tokens (fp64 products)."""
    if not h_res_per_layer:
        return []
    t, n, _ = h_res_per_layer[0].shape
    p = torch.eye(n, dtype=torch.float64).expand(t, n, n)
    gains = []
    for h in h_res_per_layer:
        p = h.double() @ p
        gains.append(_gain(p))
    return gains


class _RandomBranch(nn.Module):
    """A stand-in residual branch: RMSNorm then a SwiGLU MLP with random weights."""

    def __init__(self, dim: int, generator: torch.Generator) -> None:
        super().__init__()
        hidden = 2 * dim
        self.norm = nn.Parameter(torch.ones(dim))
        self.w_gate = nn.Parameter(torch.randn(hidden, dim, generator=generator) * dim**-0.5)
        self.w_up = nn.Parameter(torch.randn(hidden, dim, generator=generator) * dim**-0.5)
        self.w_down = nn.Parameter(torch.randn(dim, hidden, generator=generator) * hidden**-0.5)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y, _ = dispatch.rmsnorm_residual(h, None, self.norm)
        return torch.nn.functional.silu(y @ self.w_gate.T) * (y @ self.w_up.T) @ self.w_down.T


@torch.no_grad()
def mixing_gain_curve(
    layers: int = 64,
    constrained: bool = True,
    n_streams: int = DEFAULT_STREAMS,
    dim: int = 64,
    tokens: int = 16,
    seed: int = 0,
) -> list[float]:
    """The composite mixing gain after each of `layers` randomly initialised hyper-connected
    layers (fixed seed), measured on a forward pass over random inputs: ~1 for mHC; for HC
    it grows with depth. HC and mHC draw the same parameters for the same seed."""
    g = torch.Generator().manual_seed(seed)
    x = expand_streams(torch.randn(tokens, dim, generator=g), n_streams)
    h_res = []
    for _ in range(layers):
        hc = HyperConnection(dim, n_streams, constrained, generator=g)
        x, h = hc(x, _RandomBranch(dim, g))
        h_res.append(h)
    return composite_gains(h_res)


def mixing_gain(layers: int = 64, constrained: bool = True, seed: int = 0) -> float:
    return mixing_gain_curve(layers, constrained, seed=seed)[-1]


def gain_report(layers: int = 64, seed: int = 0) -> dict[str, float]:
    """`{"mhc_gain_<L>": ..., "hc_gain_<L>": ...}` for bench/efficiency-style reports."""
    return {
        f"mhc_gain_{layers}": mixing_gain(layers, constrained=True, seed=seed),
        f"hc_gain_{layers}": mixing_gain(layers, constrained=False, seed=seed),
    }
