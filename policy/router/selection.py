"""Choosing the recipe by inner cross-validation on a fold's training rows only.

The transfer protocol's folds were used to pick the shipped settings (docs/routing.md), so
a recipe change that "fixes" one fold by looking at it would not be honest. Here each
outer fold chooses among ``CANDIDATES`` using nothing but its own training rows: those rows
are split by their source group (GSM8K, or the MMLU area of the prompt), and every group is
left out once (inner leave-one-group-out; with a single group, ``INNER_SPLITS`` folds by
prompt hash). On each inner fold every candidate and the TF-IDF + LR baseline are trained on
the other groups and scored on the left-out one.

Criterion (fixed before any outer figure was seen): among the candidates never below
TF-IDF + LR on an inner fold, the highest mean inner APGR; when none is, the candidate with
the best worst inner margin over TF-IDF. The chosen candidate is then trained on all of the
outer fold's training rows. Needs scikit-learn, as training does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from policy.router.areas import area_of
from policy.router.baselines import Scorer, fit_tfidf_lr
from policy.router.data import Labelled
from policy.router.metrics import apgr, curve
from policy.router.train import Recipe, fit_model

CANDIDATES: tuple[Recipe, ...] = (
    Recipe(agree_weight=0.1),
    Recipe(agree_weight=0.3),
    Recipe(agree_weight=1.0),
)
INNER_SPLITS = 4


@dataclass
class Choice:
    """What one outer fold's inner cross-validation saw and chose (for the report)."""

    chosen: int
    inner: dict[str, dict[str, float]] = field(default_factory=dict)  # group -> name -> APGR

    def as_dict(self) -> dict[str, Any]:
        return {"chosen": _name(CANDIDATES[self.chosen]), "inner_apgr": self.inner}


def _name(recipe: Recipe) -> str:
    return f"agree_weight={recipe.agree_weight}"


def groups_by_source(gsm8k: Labelled, mmlu: Labelled) -> Callable[[str], str]:
    """prompt -> "gsm8k" or its MMLU area (a prompt filed under two subjects: the first)."""
    where: dict[str, str] = {}
    for p, s in zip(mmlu.prompts, mmlu.subjects, strict=True):
        where.setdefault(p, area_of(s))
    for p in gsm8k.prompts:
        where.setdefault(p, "gsm8k")
    return lambda prompt: where.get(prompt, "unknown")


def _inner_folds(train: Labelled, group_of: Callable[[str], str]) -> list[tuple[str, Labelled, Labelled]]:
    groups = [group_of(p) for p in train.prompts]
    names = sorted(set(groups))
    if len(names) < 2:  # one source: folds by prompt hash (in-distribution only)
        groups = [
            f"split{int.from_bytes(hashlib.sha256(p.encode()).digest()[8:12], 'big') % INNER_SPLITS}"
            for p in train.prompts
        ]
        names = sorted(set(groups))
    out = []
    for name in names:
        inside = [g == name for g in groups]
        test = train.subset(inside)
        test_prompts = set(test.prompts)
        rest = train.subset(
            [not x and p not in test_prompts for x, p in zip(inside, train.prompts, strict=True)]
        )
        out.append((name, rest, test))
    return out


def _apgr(scores: np.ndarray, test: Labelled) -> float:
    return float(apgr(curve(scores, test.weak, test.strong)))


def choose(train: Labelled, group_of: Callable[[str], str]) -> Choice:
    """The criterion above on ``train`` alone."""
    inner: dict[str, dict[str, float]] = {}
    margins: list[list[float]] = [[] for _ in CANDIDATES]
    for name, rest, test in _inner_folds(train, group_of):
        row = {"tfidf_lr": _apgr(fit_tfidf_lr(rest)(test.prompts), test)}
        for i, recipe in enumerate(CANDIDATES):
            row[_name(recipe)] = _apgr(fit_model(rest, recipe).raw(test.prompts), test)
            margins[i].append(row[_name(recipe)] - row["tfidf_lr"])
        inner[name] = {k: round(v, 4) for k, v in row.items()}
    means = [float(np.mean([inner[g][_name(r)] for g in inner])) for r in CANDIDATES]
    return Choice(pick(margins, means), inner)


def pick(margins: list[list[float]], means: list[float]) -> int:
    """The criterion: per candidate, its inner margins over TF-IDF and its mean inner APGR."""
    never_below = [i for i in range(len(means)) if min(margins[i]) >= 0]
    if never_below:
        return max(never_below, key=lambda i: means[i])
    return max(range(len(means)), key=lambda i: min(margins[i]))


def nested_fit(
    group_of: Callable[[str], str], log: dict[int, Choice] | None = None
) -> Callable[[Labelled], Scorer]:
    """A ``transfer_report`` router_fit: choose by inner CV, then train on all the rows.

    ``log`` (keyed by the training rows' hash) collects each fold's choice for the report.
    """

    def fit(train: Labelled) -> Scorer:
        choice = choose(train, group_of)
        if log is not None:
            log[hash(tuple(train.prompts))] = choice
        return fit_model(train, CANDIDATES[choice.chosen]).raw

    return fit
