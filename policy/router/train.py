"""Train the prompt-difficulty router and write policy/router/router.json.

    .venv/bin/python -m policy.router.train            # train on the training split, write the file
    .venv/bin/python -m policy.router.train --report   # the transfer protocol (policy.router.transfer)

Needs scikit-learn (training only; serving reads the JSON in pure Python). Data: the
RouteLLM-labelled ``gsm8k.csv`` and ``mmlu.csv`` in ``--data`` (default
``../shared/data/routing`` beside the repository); only the training split is used to fit
(held-out = sha256(prompt) mod 5 == 0, see ``data.split``).

The model (``RECIPE``): TF-IDF over word 1-2-grams (sublinear tf, l2-normalised, scaled by
``text_scale``) plus a few standardised difficulty signals that do not depend on a data
set's topic (``signals``), in one logistic regression per prompt form (free-form,
multiple-choice); a form with fewer than ``min_form_rows`` training rows takes the model
fitted on all rows. Target: "the strong model is right and the weak one is wrong"; prompts
on which both models agree weigh ``agree_weight``. Strong regularisation (small ``C``) is
what makes it transfer: with C = 2 the text weights fit the training sets' topics and
formats, and off those sets rank worse than prompt length alone (docs/routing.md). The raw
logit is mapped to its percentile among the training prompts.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policy.router.baselines import Scorer, target
from policy.router.data import Labelled, fingerprint, join, read_csv, split
from policy.router.features import ngrams
from policy.router.scorer import FORMAT, FORMS, is_multiple_choice
from policy.router.signals import signals

FILES = ("gsm8k.csv", "mmlu.csv")
OUT = Path(__file__).with_name("router.json")


@dataclass(frozen=True, slots=True)
class Recipe:
    signals: tuple[str, ...] = ("chars", "words")
    text_scale: float = 2.0
    C: float = 0.1
    agree_weight: float = 0.1
    min_form_rows: int = 200
    max_features: int = 20000
    min_df: int = 2


RECIPE = Recipe()


@dataclass
class Fitted:
    vec: Any  # sklearn TfidfVectorizer
    mean: np.ndarray  # of the signals on the training rows
    std: np.ndarray
    models: dict[str, Any]  # form -> LogisticRegression (missing forms -> "all")
    recipe: Recipe

    def matrix(self, prompts: list[str]) -> Any:
        import scipy.sparse as sp

        dense = (np.array([signals(p, self.recipe.signals) for p in prompts]) - self.mean) / self.std
        return sp.hstack([self.vec.transform(prompts) * self.recipe.text_scale, dense]).tocsr()

    def model_for(self, form: str) -> Any:
        return self.models.get(form, self.models["all"])

    def raw(self, prompts: list[str]) -> np.ndarray:
        x = self.matrix(prompts)
        mc = np.array([is_multiple_choice(p) for p in prompts], dtype=bool)
        out = np.zeros(len(prompts))
        for form, rows in (("free", ~mc), ("multiple_choice", mc)):
            if rows.any():
                out[rows] = self.model_for(form).decision_function(x[rows])
        return out


def fit_model(train: Labelled, recipe: Recipe = RECIPE) -> Fitted:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(
        analyzer=ngrams, sublinear_tf=True, min_df=recipe.min_df, max_features=recipe.max_features
    )
    vec.fit(train.prompts)
    dense = np.array([signals(p, recipe.signals) for p in train.prompts])
    fitted = Fitted(vec, dense.mean(0), dense.std(0) + 1e-9, {}, recipe)
    x = fitted.matrix(train.prompts)
    y = target(train)
    weights = np.where(np.array(train.weak) != np.array(train.strong), 1.0, recipe.agree_weight)
    mc = np.array([is_multiple_choice(p) for p in train.prompts], dtype=bool)
    for form, rows in (("all", np.ones(len(mc), dtype=bool)), ("free", ~mc), ("multiple_choice", mc)):
        if rows.sum() >= recipe.min_form_rows and len(set(y[rows])) == 2:
            model = LogisticRegression(C=recipe.C, max_iter=5000)
            fitted.models[form] = model.fit(x[rows], y[rows], sample_weight=weights[rows])
    if "all" not in fitted.models:
        raise ValueError(f"{len(train.prompts)} training rows: too few, or one class only")
    return fitted


def fit(train: Labelled) -> Scorer:
    """The recipe as a scorer factory for the transfer protocol."""
    return fit_model(train).raw


def export(fitted: Fitted, train: Labelled, path: Path) -> dict[str, Any]:
    """router.json: text weights pre-scaled, signal weights with the standardisation folded in."""
    vec, r = fitted.vec, fitted.recipe
    n_text = len(vec.vocabulary_)
    coef = {f: fitted.model_for(f).coef_[0] for f in FORMS}
    intercept = {f: float(fitted.model_for(f).intercept_[0]) for f in FORMS}
    signal_weights: dict[str, list[float]] = {}
    for i, name in enumerate(r.signals):
        ws = []
        for f in FORMS:
            w = coef[f][n_text + i] / fitted.std[i]
            intercept[f] -= w * fitted.mean[i]
            ws.append(round(float(w), 6))
        signal_weights[name] = ws
    vocab = {
        term: [
            round(float(vec.idf_[j]), 5),
            *(round(float(coef[f][j] * r.text_scale), 5) for f in FORMS),
        ]
        for term, j in sorted(vec.vocabulary_.items(), key=lambda kv: kv[1])
    }
    doc: dict[str, Any] = {
        "format": FORMAT,
        "analyzer": "word 1-2-grams, sklearn default token pattern, lower-case, sublinear tf, l2",
        "recipe": {k: getattr(r, k) for k in r.__dataclass_fields__},
        "forms": list(FORMS),
        "form_models": {f: ("own" if f in fitted.models else "all") for f in FORMS},
        "intercept": [round(intercept[f], 6) for f in FORMS],
        "signals": signal_weights,
        "quantiles": [],
        # sorted 32-bit fingerprints of the training prompts, so that evaluate() leaves them out
        "trained_prompts": base64.b64encode(
            np.array(sorted({fingerprint(p) for p in train.prompts}), dtype=">u4").tobytes()
        ).decode("ascii"),
        "vocab": vocab,
    }
    doc["quantiles"] = np.quantile(fitted.raw(train.prompts), np.linspace(0, 1, 201)).round(6).tolist()
    path.write_text(json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n", encoding="utf-8")
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the prompt router (see module doc).")
    parser.add_argument("--data", default=str(Path(__file__).parents[2].parent / "shared/data/routing"))
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--report", action="store_true", help="print the transfer protocol's report")
    args = parser.parse_args(argv)
    data_dir = Path(args.data)
    if args.report:
        from policy.router.transfer import transfer_report

        print(json.dumps(transfer_report(data_dir), indent=1))
        return
    train = join(*(split(read_csv(data_dir / name))[0] for name in FILES))
    fitted = fit_model(train)
    doc = export(fitted, train, Path(args.out))
    print(
        json.dumps(
            {
                "out": args.out,
                "bytes": Path(args.out).stat().st_size,
                "terms": len(doc["vocab"]),
                "train_prompts": len(train.prompts),
                "finite": all(map(math.isfinite, doc["quantiles"])),
            }
        )
    )


if __name__ == "__main__":
    main()
