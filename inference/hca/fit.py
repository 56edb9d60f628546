"""Fit the KV codebooks: collect roped keys and values on calibration text with the dense
cache, then k-means per (layer, keys|values, KV head, subspace), all problems of a layer in
one batched computation. Deterministic: fixed text, fixed seed, fixed iteration count."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..model import LlamaModel
from ..moe.forward import chunk_forward
from .codec import MAX_CENTROIDS, key_order

log = logging.getLogger(__name__)

FIT_VERSION = 3


@dataclass(frozen=True)
class HCAConfig:
    n_sub: int = 32  # subspaces per head vector (one code byte each): 2 dims at head_dim 64
    n_centroids: int = 256
    # calibration: long chunks, so the roped keys cover the rotation angles of long contexts
    calib_tokens: int = 4096
    chunk: int = 2048
    kmeans_iters: int = 10
    seed: int = 0

    def key(self) -> str:
        return (
            f"hca{FIT_VERSION}-m{self.n_sub}-c{self.n_centroids}-t{self.calib_tokens}"
            f"-ch{self.chunk}-i{self.kmeans_iters}-s{self.seed}"
        )


class _QueryEnergy:
    """Wraps a model's rope_store for the fit: sums the roped queries' squares per (layer,
    KV head, dim) over the calibration tokens (the fit runs before any engine does)."""

    def __init__(self, model: LlamaModel) -> None:
        c = model.cfg
        self.model, self.inner = model, model.ops.rope_store
        self.sums = torch.zeros((c.n_layers, c.n_kv_heads, c.head_dim), dtype=torch.float64)
        self.calls = 0

    def __call__(self, qkv, rope, cache, slots, n_heads):
        qk = self.inner(qkv, rope, cache, slots, n_heads)
        c = self.model.cfg
        li = self.calls % c.n_layers
        q = qk[:, :n_heads].float().view(qk.shape[0], c.n_kv_heads, -1, c.head_dim)
        self.sums[li] += (q**2).sum(dim=(0, 2)).double().cpu()
        self.calls += 1
        return qk


@torch.inference_mode()
def collect_kv(
    model: LlamaModel, chunks: list[list[int]], energy: _QueryEnergy | None = None
) -> torch.Tensor:
    """[n_layers, 2 KVH, N, hd] float32: the dense cache's keys (roped) and values; with
    `energy`, the queries' squares are summed on the way."""
    parts = []
    if energy is not None:
        model.ops.rope_store = energy  # type: ignore[method-assign]
    try:
        parts = _collect(model, chunks)
    finally:
        if energy is not None:
            del model.ops.rope_store  # the class's method again
    return torch.cat(parts, dim=2)


def query_weights(model: LlamaModel, chunks: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys and values [L, 2 KVH, N, hd], key-dim weights [L, KVH, hd]): a key's error in dim
    d moves a score by q_d times it, so keys are quantized under the metric weighted by the
    root mean square of the queries' dim d (normalised to mean 1 per head)."""
    energy = _QueryEnergy(model)
    kv = collect_kv(model, chunks, energy)
    w = energy.sums.clamp(min=1e-12).sqrt().float()
    return kv, w / w.mean(-1, keepdim=True)


def _collect(model: LlamaModel, chunks: list[list[int]]) -> list[torch.Tensor]:
    return [chunk_forward(model, ids, all_rows=False)[1].data.float().cpu() for ids in chunks]


def seed_centroids(x: torch.Tensor, c: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding, batched over problems: each next centroid a sample drawn with
    probability proportional to its squared distance to the nearest centroid so far (random
    starts put several centroids in one cluster and Lloyd's steps never separate them)."""
    p, n, d = x.shape
    rows = torch.arange(p)
    first = torch.randint(0, n, (p,), generator=gen)
    cent = torch.empty((p, c, d), dtype=x.dtype)
    cent[:, 0] = x[rows, first]
    near = ((x - cent[:, :1]) ** 2).sum(-1)  # [P, N]
    for j in range(1, c):
        w = near + 1e-12  # all-equal points: uniform
        pick = torch.multinomial(w, 1, generator=gen)[:, 0]
        cent[:, j] = x[rows, pick]
        near = torch.minimum(near, ((x - cent[:, j : j + 1]) ** 2).sum(-1))
    return cent


def kmeans(x: torch.Tensor, c: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    """Batched Lloyd's k-means: x [P, N, d] -> centroids [P, c, d], seeded by k-means++; an
    empty cluster keeps its centroid."""
    p, n, d = x.shape
    cent = seed_centroids(x, c, gen)
    for _ in range(iters):
        # |c|^2 - 2 x.c in one fused pass ([P, N, c]: the fit's memory traffic)
        dist = torch.baddbmm((cent**2).sum(-1)[:, None, :], x, cent.transpose(1, 2), alpha=-2)
        assign = dist.argmin(-1)  # [P, N]
        del dist
        sums = torch.zeros_like(cent).scatter_add_(1, assign[:, :, None].expand(p, n, d), x)
        counts = torch.zeros((p, c), dtype=x.dtype).scatter_add_(
            1, assign, torch.ones_like(assign, dtype=x.dtype)
        )
        cent = torch.where(counts[:, :, None] > 0, sums / counts.clamp(min=1)[:, :, None], cent)
    return cent


def fit_books(kv: torch.Tensor, cfg: HCAConfig, key_weights: torch.Tensor | None = None) -> torch.Tensor:
    """kv [L, 2 KVH, N, hd] -> codebooks [L, 2, KVH, M, C, hd / M] float32; key_weights [L,
    KVH, hd]: the keys' metric (k-means on the weighted keys, centroids unweighted after)."""
    L, kv2, n, hd = kv.shape
    kvh, m = kv2 // 2, cfg.n_sub
    if hd % m or cfg.n_centroids > MAX_CENTROIDS or cfg.n_centroids > n:
        raise ValueError(
            f"cannot fit {cfg.n_centroids} centroids over {m} subspaces of {hd} dims from {n} tokens"
        )
    d = hd // m
    order = key_order(hd, m)
    gen = torch.Generator().manual_seed(cfg.seed)
    books = torch.empty((L, 2, kvh, m, cfg.n_centroids, d), dtype=torch.float32)
    for li in range(L):
        w = torch.ones((2, kvh, 1, hd))
        if key_weights is not None:
            w[0, :, 0] = key_weights[li][:, order]
        keys = kv[li, :kvh][:, :, order]
        x = torch.stack([keys, kv[li, kvh:]]) * w  # [2, KVH, N, hd]
        x = x.view(2, kvh, n, m, d).permute(0, 1, 3, 2, 4).reshape(-1, n, d)  # [2 KVH M, N, d]
        cent = kmeans(x, cfg.n_centroids, cfg.kmeans_iters, gen).view(2, kvh, m, cfg.n_centroids, d)
        books[li] = cent / w.view(2, kvh, m, 1, d)
        log.debug("KV codebooks: layer %d of %d fit", li + 1, L)
    return books
