"""Fit the KV codebooks: collect roped keys and values on calibration text with the dense
cache, then k-means per (layer, keys|values, KV head, subspace), all problems of a layer in
one batched computation. Deterministic: fixed text, fixed seed, fixed iteration count."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..model import AttnMetadata, KVCache, LlamaModel, PrefillSegment
from .codec import MAX_CENTROIDS, key_order

log = logging.getLogger(__name__)

FIT_VERSION = 2


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


@torch.inference_mode()
def collect_kv(model: LlamaModel, chunks: list[list[int]]) -> torch.Tensor:
    """[n_layers, 2 KVH, N, hd] float32: the dense cache's keys (roped) and values."""
    parts = []
    for ids in chunks:
        n = len(ids)
        kv = KVCache(model.cfg, n, model.kv_dtype, model.device)
        slots = torch.arange(n, device=model.device)
        meta = AttnMetadata(
            slot_mapping=slots, prefills=[PrefillSegment(0, n, slots, fresh=True)], decode_start=n
        )
        inp = torch.tensor(ids, dtype=torch.long, device=model.device)
        model.forward(inp, slots, meta, kv, torch.tensor([n - 1], device=model.device))
        parts.append(kv.data.float().cpu())
    return torch.cat(parts, dim=2)


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


def fit_books(kv: torch.Tensor, cfg: HCAConfig) -> torch.Tensor:
    """kv [L, 2 KVH, N, hd] -> codebooks [L, 2, KVH, M, C, hd / M] float32."""
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
        keys = kv[li, :kvh][:, :, order]
        x = torch.stack([keys, kv[li, kvh:]])  # [2, KVH, N, hd]
        x = x.view(2, kvh, n, m, d).permute(0, 1, 3, 2, 4).reshape(-1, n, d)  # [2 KVH M, N, d]
        books[li] = kmeans(x, cfg.n_centroids, cfg.kmeans_iters, gen).view(2, kvh, m, cfg.n_centroids, d)
        log.debug("KV codebooks: layer %d of %d fit", li + 1, L)
    return books
