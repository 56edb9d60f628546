"""A tenant's router calibration, fitted from its own cascade outcomes (pure Python).

The gateway's audit records say, for every cascaded request, the router score the
decision used and whether the first (Flash) answer was confident enough or escalated.
Escalation is the tenant's own label of "Flash was not enough for this prompt". From
(score, escalated) pairs this fits:

- ``p(escalate | score) = sigmoid(intercept + slope * score)`` (Newton's method, a small
  ridge so a tiny or one-sided sample cannot blow up);
- ``direct_threshold``: the lowest score at which sending the prompt straight to the
  escalation model is cheaper on average than the cascade. The cascade costs
  Flash + p * Pro, the direct route Pro, so it pays when p > 1 - Flash/Pro (2/3 at the
  published prices, where Flash costs a third of Pro for input and output alike). None
  when the score does not predict escalation (slope <= 0) or p never gets there;
- ``score_quantiles``: the tenant's own score distribution, so that a policy threshold can
  be read as "the share of this tenant's traffic below it" (the shipped percentile is of
  the GSM8K/MMLU training mix, not of the tenant's traffic). Taken from ``traffic_scores``,
  every scored ``auto`` request, when given: the cascaded requests alone are only the ones
  the tiers sent to Flash (and, once applied, not the ones sent direct), so their quantiles
  would read every score as harder than it is and push more traffic up at each refit;
- a check on data it was not fitted on: the fit uses the oldest 80% of the observations and
  reports AUC and log-loss on the newest 20% (and the log-loss of the constant rate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

FORMAT = "gateway-router-calibration/1"
RIDGE = 1.0  # total, not per observation: a prior worth about one observation
DEFAULT_FLASH_TO_PRO = Fraction(1, 3)  # published prices: 0.44/1.32 input, 1.32/3.96 output
HOLDOUT_SHARE = 0.2
MIN_OBSERVATIONS = 50


@dataclass(frozen=True, slots=True)
class Observation:
    score: float  # the router score in [0, 1] the decision used
    escalated: bool


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def fit_logistic(xs: Sequence[float], ys: Sequence[bool], ridge: float = RIDGE) -> tuple[float, float]:
    """(intercept, slope) of a one-feature logistic regression, ridge on both, by Newton."""
    a, b = 0.0, 0.0
    for _ in range(50):
        ga = gb = haa = hab = hbb = 0.0
        for x, y in zip(xs, ys, strict=True):
            p = _sigmoid(a + b * x)
            r = p - (1.0 if y else 0.0)
            w = p * (1.0 - p)
            ga += r
            gb += r * x
            haa += w
            hab += w * x
            hbb += w * x * x
        ga += ridge * a
        gb += ridge * b
        haa += ridge
        hbb += ridge
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-10:
            break
    return a, b


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Probability that a random escalated prompt scores above a random kept one (ties half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    ranked = sorted((s, i) for i, s in enumerate(scores))
    rank = [0.0] * len(scores)
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            rank[ranked[k][1]] = (i + j) / 2 + 1
        i = j + 1
    pos_ranks = sum(r for r, y in zip(rank, labels, strict=True) if y)
    return (pos_ranks - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def _log_loss(ps: Sequence[float], ys: Sequence[bool]) -> float:
    eps = 1e-12
    return -sum(math.log(max(eps, p if y else 1 - p)) for p, y in zip(ps, ys, strict=True)) / max(1, len(ps))


def _quantiles(values: Sequence[float], points: int = 21) -> list[float]:
    s = sorted(values)
    out = []
    for k in range(points):
        pos = k * (len(s) - 1) / (points - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(s) - 1)
        out.append(round(s[lo] + (s[hi] - s[lo]) * (pos - lo), 6))
    return out


def fit_calibration(
    observations: Sequence[Observation],
    *,
    flash_to_pro: Fraction = DEFAULT_FLASH_TO_PRO,
    min_observations: int = MIN_OBSERVATIONS,
    traffic_scores: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The calibration document for ``observations`` in time order (oldest first)."""
    obs = [o for o in observations if o.score == o.score and 0.0 <= o.score <= 1.0]
    traffic = [s for s in traffic_scores or () if s == s and 0.0 <= s <= 1.0] or [o.score for o in obs]
    if len(obs) < min_observations:
        raise ValueError(
            f"{len(obs)} cascaded request(s) with a router score; at least {min_observations} are needed"
        )
    cut = len(obs) - max(1, round(len(obs) * HOLDOUT_SHARE))
    fit_part, check = obs[:cut], obs[cut:]
    xs, ys = [o.score for o in fit_part], [o.escalated for o in fit_part]
    a, b = fit_logistic(xs, ys)
    rate = sum(ys) / len(ys)
    break_even = float(1 - flash_to_pro)
    threshold: float | None = None
    if b > 0:
        t = (math.log(break_even / (1 - break_even)) - a) / b
        threshold = round(min(max(t, 0.0), 1.0), 6) if t <= 1.0 else None
    check_p = [_sigmoid(a + b * o.score) for o in check]
    check_y = [o.escalated for o in check]
    check_auc = auc([o.score for o in check], check_y)
    deciles = []
    for d in range(10):
        lo, hi = d / 10, (d + 1) / 10
        inside = [o for o in obs if lo <= o.score < hi or (d == 9 and o.score == 1.0)]
        deciles.append({"from": lo, "n": len(inside), "escalated": sum(o.escalated for o in inside)})
    return {
        "format": FORMAT,
        "observations": len(obs),
        "fitted_on": len(fit_part),
        "escalation_rate": round(rate, 6),
        "intercept": round(a, 6),
        "slope": round(b, 6),
        "flash_to_pro_cost": str(flash_to_pro),
        "break_even_probability": round(break_even, 6),
        "direct_threshold": threshold,
        "score_quantiles": _quantiles(traffic),
        "traffic_scores": len(traffic),
        "deciles": deciles,
        "holdout": {
            "n": len(check),
            "auc": None if check_auc is None else round(check_auc, 4),
            "log_loss": round(_log_loss(check_p, check_y), 6),
            "log_loss_constant_rate": round(
                _log_loss([min(max(rate, 1e-6), 1 - 1e-6)] * len(check), check_y), 6
            ),
        },
    }


@dataclass(frozen=True, slots=True)
class Calibration:
    """A stored calibration document, ready to apply to a router score (policy.decide reads
    it as a ``RouterCalibrationLike``; ``version`` is the stored version, for the audit)."""

    intercept: float
    slope: float
    direct_threshold: float | None
    score_quantiles: tuple[float, ...]
    version: int | None = None

    @classmethod
    def from_document(cls, doc: dict[str, Any], version: int | None = None) -> Calibration:
        """Raises ValueError for a document this code cannot apply."""
        if doc.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document")
        try:
            t = doc.get("direct_threshold")
            quantiles = tuple(float(q) for q in doc["score_quantiles"])
            out = cls(
                float(doc["intercept"]),
                float(doc["slope"]),
                None if t is None else float(t),
                quantiles,
                version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{FORMAT} document: {exc!r}") from None
        finite = all(map(math.isfinite, (out.intercept, out.slope, *quantiles)))
        if len(quantiles) < 2 or not finite or list(quantiles) != sorted(quantiles):
            raise ValueError(f"{FORMAT} document: non-finite values or unsorted score_quantiles")
        return out

    def escalation_probability(self, score: float) -> float:
        return _sigmoid(self.intercept + self.slope * score)

    def direct_to_escalation_model(self, score: float) -> bool:
        """Whether the cascade's first attempt is, on average, money wasted for this score."""
        return self.direct_threshold is not None and score >= self.direct_threshold

    def tenant_percentile(self, score: float) -> float:
        """The share of the tenant's observed traffic scoring below ``score`` (interpolated)."""
        q = self.score_quantiles
        if score <= q[0]:
            return 0.0
        if score >= q[-1]:
            return 1.0
        for i in range(1, len(q)):
            if score <= q[i]:
                lo, hi = q[i - 1], q[i]
                frac = (score - lo) / (hi - lo) if hi > lo else 1.0
                return (i - 1 + frac) / (len(q) - 1)
        return 1.0
