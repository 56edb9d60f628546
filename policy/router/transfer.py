"""Does the router transfer? Train on one distribution, score another (the eval protocol).

Folds (each trains from scratch on its training rows and scores its test rows):

- ``gsm8k->mmlu`` and ``mmlu->gsm8k``: train on one whole file, test on the other;
- ``loao:<area>``: leave one MMLU area out (STEM, humanities, social sciences, other: the
  57 subjects grouped as in the MMLU paper); train on GSM8K and the other three areas;
- ``heldout:<file>`` (in-distribution, for reference): train on both files' training
  splits, test on each file's held-out split (``data.split``), as the shipped router.

A prompt that is in a fold's test rows is removed from its training rows (MMLU repeats a
few prompts across subjects), and every fold asserts that no prompt text is on both sides.
For each fold and scorer: APGR, the strong-call share and the cost share (routed cost /
always-Pro cost) at 95% of the strong model's quality. Baselines in the same run: random
(mean of ``RANDOM_DRAWS`` draws), prompt length, TF-IDF + logistic regression.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policy.router.areas import area_of
from policy.router.baselines import Scorer, fit_length, fit_tfidf_lr, random_scores
from policy.router.data import Labelled, join, read_csv, split
from policy.router.evaluate import PUBLISHED_PRICES, cost_share
from policy.router.metrics import apgr, curve, share_at_quality

RANDOM_DRAWS = 20
TRANSFER_FOLDS = ("gsm8k->mmlu", "mmlu->gsm8k")
Fit = Callable[[Labelled], Scorer]


@dataclass(frozen=True, slots=True)
class Fold:
    name: str
    train: Labelled
    test: Labelled
    dropped_from_train: int = 0  # rows removed from training because their prompt is a test prompt


def disjoint(name: str, train: Labelled, test: Labelled) -> Fold:
    """The fold with every test prompt removed from the training rows; asserted disjoint."""
    test_prompts = set(test.prompts)
    keep = [p not in test_prompts for p in train.prompts]
    kept = train.subset(keep)
    shared = set(kept.prompts) & test_prompts
    if shared:  # not an `assert`: it must also hold under python -O
        raise AssertionError(f"fold {name}: {len(shared)} prompt(s) in both train and test")
    if not kept.prompts or not test.prompts:
        raise ValueError(f"fold {name}: empty train ({len(kept.prompts)}) or test ({len(test.prompts)})")
    return Fold(name, kept, test, len(keep) - sum(keep))


def folds(gsm8k: Labelled, mmlu: Labelled, *, heldout: bool = True) -> Iterator[Fold]:
    """The protocol's folds, in report order (``mmlu`` must carry its subjects)."""
    if len(mmlu.subjects) != len(mmlu.prompts):
        raise ValueError("mmlu: the subject column is needed for the leave-one-area-out folds")
    yield disjoint("gsm8k->mmlu", gsm8k, mmlu)
    yield disjoint("mmlu->gsm8k", mmlu, gsm8k)
    areas = [area_of(s) for s in mmlu.subjects]
    for area in sorted(set(areas)):
        inside = [a == area for a in areas]
        rest = mmlu.subset([not x for x in inside])
        yield disjoint(f"loao:{area}", join(gsm8k, rest), mmlu.subset(inside))
    if heldout:
        (gtr, gho), (mtr, mho) = split(gsm8k), split(mmlu)
        both = join(gtr, mtr)
        yield disjoint("heldout:gsm8k", both, gho)
        yield disjoint("heldout:mmlu", both, mho)


def _figures(scores: np.ndarray, test: Labelled, output_tokens: int) -> dict[str, float]:
    c = curve(scores, test.weak, test.strong)
    share = share_at_quality(c, 0.95)
    return {
        "apgr": apgr(c),
        "strong_share_at_95": share,
        "cost_share_at_95": cost_share(scores, test.prompts, share, PUBLISHED_PRICES, output_tokens),
    }


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def run_fold(fold: Fold, scorers: dict[str, Fit], output_tokens: int, cache: dict) -> dict[str, Any]:
    test = fold.test
    out: dict[str, Any] = {
        "train_rows": len(fold.train.prompts),
        "test_rows": len(test.prompts),
        "dropped_from_train": fold.dropped_from_train,
        "weak_accuracy": float(np.mean(test.weak)),
        "strong_accuracy": float(np.mean(test.strong)),
    }
    out["random"] = _mean(
        [_figures(random_scores(len(test.prompts), d), test, output_tokens) for d in range(RANDOM_DRAWS)]
    )
    for name, fit in scorers.items():
        # the two held-out folds train on the same rows: fit once (keyed by the rows' content)
        key = (name, hash((tuple(fold.train.prompts), tuple(fold.train.weak), tuple(fold.train.strong))))
        if key not in cache:
            cache[key] = fit(fold.train)
        out[name] = _figures(np.asarray(cache[key](test.prompts), dtype=float), test, output_tokens)
    return out


def summarise(per_fold: dict[str, dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    """Per method: the transfer mean (two directions), LOAO mean/min/max/std, all-fold min."""
    transfer = [f for f in per_fold if f in TRANSFER_FOLDS]
    loao = [f for f in per_fold if f.startswith("loao:")]
    cross = transfer + loao
    out: dict[str, Any] = {}
    for m in methods:
        a = {f: per_fold[f][m]["apgr"] for f in cross}
        row: dict[str, float] = {}
        if transfer:
            row["transfer_apgr_mean"] = float(np.mean([a[f] for f in transfer]))
            row["transfer_cost_share_at_95_mean"] = float(
                np.mean([per_fold[f][m]["cost_share_at_95"] for f in transfer])
            )
        if loao:
            vals = [a[f] for f in loao]
            row.update(
                loao_apgr_mean=float(np.mean(vals)),
                loao_apgr_min=float(min(vals)),
                loao_apgr_max=float(max(vals)),
                loao_apgr_std=float(np.std(vals)),
            )
        if cross:
            row["cross_apgr_min"] = float(min(a.values()))
            row["cross_apgr_spread"] = float(max(a.values()) - min(a.values()))
        out[m] = row
    if "router" in methods and "tfidf_lr" in methods and cross:
        margins = {f: per_fold[f]["router"]["apgr"] - per_fold[f]["tfidf_lr"]["apgr"] for f in cross}
        out["router_minus_tfidf_lr"] = {
            "transfer_apgr_mean": out["router"].get("transfer_apgr_mean", math.nan)
            - out["tfidf_lr"].get("transfer_apgr_mean", math.nan),
            "worst_fold": min(margins, key=margins.__getitem__),
            "worst_fold_margin": min(margins.values()),
        }
    return out


def _rounded(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def transfer_report(
    data_dir: str | Path,
    *,
    router_fit: Fit | None = None,
    heldout: bool = True,
    only: tuple[str, ...] = (),
    output_tokens: int = 256,
) -> dict[str, Any]:
    """The whole protocol on ``data_dir``/{gsm8k,mmlu}.csv as one JSON-ready dict.

    ``router_fit`` defaults to the shipped router's training recipe (``train.fit``), which
    needs scikit-learn (the ``train`` extra); so does the TF-IDF baseline.
    """
    if router_fit is None:
        from policy.router.train import fit

        router_fit = fit
    data_dir = Path(data_dir)
    gsm8k, mmlu = read_csv(data_dir / "gsm8k.csv"), read_csv(data_dir / "mmlu.csv")
    scorers: dict[str, Fit] = {"length": fit_length, "tfidf_lr": fit_tfidf_lr, "router": router_fit}
    cache: dict = {}
    every = list(folds(gsm8k, mmlu, heldout=heldout))
    unknown = sorted(set(only) - {f.name for f in every})
    if unknown:
        raise ValueError(f"unknown fold(s) {', '.join(unknown)}; folds: {', '.join(f.name for f in every)}")
    per_fold = {
        f.name: run_fold(f, scorers, output_tokens, cache) for f in every if not only or f.name in only
    }
    return _rounded(
        {
            "protocol": "transfer",
            "prices": "published peak prices from 2026-08-16",
            "output_tokens": output_tokens,
            "random_draws": RANDOM_DRAWS,
            "folds": per_fold,
            "summary": summarise(per_fold, ["random", *scorers]),
        }
    )


def file_report(csv_path: str | Path, data_dir: str | Path, *, output_tokens: int = 256) -> dict[str, Any]:
    """The shipped router on an operator's labelled CSV next to the three baselines.

    The TF-IDF + LR baseline is trained on the rows the shipped router was trained on (the
    training splits of ``data_dir``/{gsm8k,mmlu}.csv), so both face the operator's traffic
    with the same knowledge; prompts of the CSV that are among those rows are left out.
    """
    from policy.router.scorer import default_router

    router = default_router()
    data = read_csv(csv_path)
    total = len(data.prompts)
    data = data.subset([not router.was_trained_on(p) for p in data.prompts])
    if not data.prompts:
        raise ValueError(f"{csv_path}: no rows to evaluate (all {total} were training prompts)")
    data_dir = Path(data_dir)
    train = join(*(split(read_csv(data_dir / name))[0] for name in ("gsm8k.csv", "mmlu.csv")))
    fold = disjoint(f"shipped->{Path(csv_path).name}", train, data)
    scorers: dict[str, Fit] = {
        "length": fit_length,
        "tfidf_lr": fit_tfidf_lr,
        "router": lambda _train: lambda prompts: np.array([router.raw(p) for p in prompts]),
    }
    row = run_fold(fold, scorers, output_tokens, {})
    row["left_out_trained"] = total - len(data.prompts)
    return _rounded({"protocol": "file", "file": str(csv_path), "output_tokens": output_tokens, **row})
