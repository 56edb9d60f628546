"""Router quality metrics as RouteLLM defines them (pure numpy, no I/O).

A router gives each prompt a score; the higher the score, the sooner the prompt goes to the
strong model. Sending the top ``k`` of ``n`` prompts to the strong model gives a quality
``perf(k)``; the performance gap recovered is ``PGR(k) = (perf(k) - weak) / (strong - weak)``
and APGR is the area under PGR against the strong-call share ``k / n`` (trapezoid rule
over every ``k``). Ties in score are broken by the input order (stable sort), so the
figures are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True, slots=True)
class Curve:
    share: np.ndarray  # strong-call share, 0 .. 1 (n + 1 points)
    perf: np.ndarray  # routed quality at each share
    weak: float
    strong: float

    @property
    def pgr(self) -> np.ndarray:
        gap = self.strong - self.weak
        if gap == 0:
            return np.ones_like(self.perf)
        return (self.perf - self.weak) / gap


def curve(scores: ArrayLike, weak: ArrayLike, strong: ArrayLike) -> Curve:
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(weak, dtype=np.float64)
    st = np.asarray(strong, dtype=np.float64)
    n = len(s)
    if n == 0 or len(w) != n or len(st) != n:
        raise ValueError("scores, weak and strong must be non-empty and of equal length")
    order = np.argsort(-s, kind="stable")
    gain = (st - w)[order]
    perf = (w.sum() + np.concatenate([[0.0], np.cumsum(gain)])) / n
    share = np.arange(n + 1, dtype=np.float64) / n
    return Curve(share=share, perf=perf, weak=float(w.mean()), strong=float(st.mean()))


def apgr(c: Curve) -> float:
    y = c.pgr
    return float(np.sum((y[1:] + y[:-1]) * 0.5 * np.diff(c.share)))


def cpt(c: Curve, target_pgr: float) -> float:
    """Smallest strong-call share whose PGR reaches ``target_pgr`` (1.0 if never)."""
    hit = np.nonzero(c.pgr >= target_pgr - 1e-12)[0]
    return float(c.share[hit[0]]) if len(hit) else 1.0


def share_at_quality(c: Curve, fraction_of_strong: float) -> float:
    """Smallest strong-call share whose quality reaches ``fraction * strong quality``."""
    hit = np.nonzero(c.perf >= fraction_of_strong * c.strong - 1e-12)[0]
    return float(c.share[hit[0]]) if len(hit) else 1.0
