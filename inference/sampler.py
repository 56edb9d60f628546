"""Token sampling with per-request parameters: greedy, temperature, top-k, top-p, seeds,
frequency/presence penalties, logprobs and top_logprobs.

Greedy rows without penalties or logprobs are done together, reading only the model's
exactly recomputed top-k of each row when it provides them; other rows are processed one by
one (they carry their own parameters and random generators).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass

import torch

from .sequence import Sequence


@dataclass
class SampleResult:
    token_id: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


def make_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(seed & 0xFFFF_FFFF_FFFF_FFFF)
    return g


def apply_penalties(logits: torch.Tensor, seq: Sequence) -> torch.Tensor:
    sp = seq.request.sampling
    if not (sp.frequency_penalty or sp.presence_penalty) or not seq.token_counts:
        return logits
    ids = torch.tensor(list(seq.token_counts.keys()), device=logits.device)
    counts = torch.tensor(list(seq.token_counts.values()), dtype=logits.dtype, device=logits.device)
    logits = logits.clone()
    logits[ids] -= counts * sp.frequency_penalty + sp.presence_penalty
    return logits


def sample_row(logits: torch.Tensor, seq: Sequence) -> int:
    """Sample one token from a [V] float32 row (penalties already applied)."""
    sp = seq.request.sampling
    if sp.temperature <= 0.0:
        return int(torch.argmax(logits))
    x = logits / sp.temperature
    if sp.top_k and 0 < sp.top_k < x.shape[-1]:
        kth = torch.topk(x, sp.top_k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    if sp.top_p < 1.0:
        sorted_x, idx = torch.sort(x, descending=True)
        probs = torch.softmax(sorted_x, dim=-1)
        cum = torch.cumsum(probs, dim=-1)
        drop = (cum - probs) > sp.top_p  # keep the smallest set whose mass reaches top_p
        drop[0] = False
        sorted_x = sorted_x.masked_fill(drop, float("-inf"))
        x = torch.full_like(x, float("-inf")).scatter(0, idx, sorted_x)
    probs = torch.softmax(x, dim=-1)
    return int(torch.multinomial(probs, 1, generator=seq.generator))


def greedy(logits: torch.Tensor, exact_top: torch.Tensor | None) -> list[int]:
    """Argmax of each row (lowest id among equal maxima). With `exact_top` ([S, k] ids holding
    each row's maximum) only those k values are read, not the whole vocabulary."""
    if exact_top is None:
        return torch.argmax(logits, dim=-1).tolist()
    vals = logits.gather(1, exact_top)
    best = vals == vals.amax(dim=1, keepdim=True)
    return torch.where(best, exact_top, logits.shape[1]).amin(dim=1).tolist()


def sample(
    logits: torch.Tensor, seqs: Seq[Sequence], exact_top: torch.Tensor | None = None
) -> list[SampleResult]:
    """logits: [S, V] float32, one row per sequence to sample; exact_top: see `greedy`."""
    results: list[SampleResult | None] = [None] * len(seqs)
    simple = [
        i
        for i, s in enumerate(seqs)
        if s.request.sampling.temperature <= 0.0
        and not s.request.sampling.logprobs
        and not (s.request.sampling.frequency_penalty or s.request.sampling.presence_penalty)
    ]
    if simple:
        every = len(simple) == len(seqs)
        rows = logits if every else logits[simple]
        top = exact_top if exact_top is None or every else exact_top[simple]
        for i, t in zip(simple, greedy(rows, top), strict=True):
            results[i] = SampleResult(t)
    for i, seq in enumerate(seqs):
        if results[i] is not None:
            continue
        row = apply_penalties(logits[i], seq)
        tok = sample_row(row, seq)
        res = SampleResult(tok)
        sp = seq.request.sampling
        if sp.logprobs:
            lp = torch.log_softmax(logits[i], dim=-1)
            res.logprob = float(lp[tok])
            if sp.top_logprobs > 0:
                v, ix = torch.topk(lp, min(sp.top_logprobs, lp.shape[-1]))
                res.top = list(zip(ix.tolist(), v.tolist(), strict=True))
        results[i] = res
    return [r for r in results if r is not None]
