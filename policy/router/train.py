"""Train the prompt-difficulty router and write policy/router/router.json.

    .venv/bin/python -m policy.router.train            # train on the training split, write the file
    .venv/bin/python -m policy.router.train --cv       # 5-fold CV grid on the training split
    .venv/bin/python -m policy.router.train --report   # held-out figures: baselines and the file

Needs scikit-learn (training only; serving reads the JSON in pure Python). Data: the
RouteLLM-labelled ``gsm8k.csv`` and ``mmlu.csv`` in ``--data`` (default
``../shared/data/routing`` beside the repository); only the training split is used to fit
(held-out = sha256(prompt) mod 5 == 0, see ``data.split``).

The model: one TF-IDF vocabulary over word 1-2-grams (sublinear tf, l2-normalised) plus the
structural features of ``features.structure``, and two logistic regressions, one for
free-form prompts and one for multiple-choice prompts (chosen by the ``multiple_choice``
feature: the two forms fail for different reasons). Target: "the strong model is right and
the weak one is wrong". Prompts on which both models agree say little about routing, so
they get a small weight (``FORMS[...][1]``; discordant prompts weigh 1). The raw logit is
mapped to its percentile among the training prompts, so policy tier thresholds read as
"the share of the reference traffic below this score".
"""

from __future__ import annotations

import argparse
import base64
import json
import math
from pathlib import Path

import numpy as np

from policy.router.data import Labelled, fingerprint, read_csv, split
from policy.router.features import STRUCTURE_NAMES, ngrams, structure
from policy.router.metrics import apgr, curve
from policy.router.scorer import FORMS as FORM_NAMES

FILES = ("gsm8k.csv", "mmlu.csv")
MAX_FEATURES = 20000
MIN_DF = 2
# form -> (C, weight of prompts on which both models agree); chosen by --cv
FORMS: dict[str, tuple[float, float]] = {"free": (2.0, 0.1), "multiple_choice": (2.0, 0.1)}
SEED = 0
OUT = Path(__file__).with_name("router.json")
_MC = STRUCTURE_NAMES.index("multiple_choice")


def _join(parts: dict[str, Labelled]) -> Labelled:
    return Labelled(
        [p for d in parts.values() for p in d.prompts],
        [w for d in parts.values() for w in d.weak],
        [s for d in parts.values() for s in d.strong],
    )


def _matrix(vec, prompts: list[str]):
    import scipy.sparse as sp

    shape = np.array([structure(p) for p in prompts])
    return sp.hstack([vec.transform(prompts), shape]).tocsr(), shape[:, _MC] > 0


def _fit(train: Labelled, forms: dict[str, tuple[float, float]]):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(analyzer=ngrams, sublinear_tf=True, min_df=MIN_DF, max_features=MAX_FEATURES)
    vec.fit(train.prompts)
    x, mc = _matrix(vec, train.prompts)
    weak, strong = np.array(train.weak), np.array(train.strong)
    y = (strong & ~weak).astype(int)
    models = {}
    for name, rows in (("free", ~mc), ("multiple_choice", mc)):
        c, w0 = forms[name]
        if not rows.any():
            continue
        weights = np.where(weak != strong, 1.0, w0)
        models[name] = LogisticRegression(C=c, max_iter=5000).fit(
            x[rows], y[rows], sample_weight=weights[rows]
        )
    return vec, models


def _raw(vec, models, prompts: list[str]) -> np.ndarray:
    x, mc = _matrix(vec, prompts)
    free = models.get("free", models.get("multiple_choice"))
    out = free.decision_function(x)
    if mc.any() and "multiple_choice" in models:
        out[mc] = models["multiple_choice"].decision_function(x[mc])
    return out


def cross_validate(parts: dict[str, Labelled]) -> list[dict[str, object]]:
    """5-fold CV on the training split for a grid of (C, agree-weight), both forms alike."""
    from sklearn.model_selection import KFold

    data = _join(parts)
    source = np.concatenate([np.full(len(d.prompts), i) for i, d in enumerate(parts.values())])
    weak, strong = np.array(data.weak), np.array(data.strong)
    grid = [(c, w0) for c in (0.5, 1.0, 2.0, 4.0) for w0 in (0.05, 0.1, 0.2)]
    rows = []
    for c, w0 in grid:
        oof = np.zeros(len(data.prompts))
        for tr, te in KFold(5, shuffle=True, random_state=SEED).split(oof):
            keep = np.zeros(len(oof), dtype=bool)
            keep[tr] = True
            vec, models = _fit(data.subset(keep.tolist()), {f: (c, w0) for f in FORM_NAMES})
            oof[te] = _raw(vec, models, [data.prompts[i] for i in te])
        row: dict[str, object] = {"C": c, "agree_weight": w0}
        for i, name in enumerate(parts):
            m = source == i
            row[name] = round(apgr(curve(oof[m], weak[m], strong[m])), 4)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def export(vec, models, train: Labelled, path: Path) -> dict:
    n_text = len(vec.vocabulary_)
    coef = {f: models[f].coef_[0] for f in FORM_NAMES}
    vocab = {
        term: [round(float(vec.idf_[j]), 5), *(round(float(coef[f][j]), 5) for f in FORM_NAMES)]
        for term, j in sorted(vec.vocabulary_.items(), key=lambda kv: kv[1])
    }
    raw = _raw(vec, models, train.prompts)
    doc = {
        "format": "gateway-router/1",
        "analyzer": "word 1-2-grams, sklearn default token pattern, lower-case, sublinear tf, l2",
        "forms": list(FORM_NAMES),
        "intercept": [round(float(models[f].intercept_[0]), 6) for f in FORM_NAMES],
        "structure": {
            name: [round(float(coef[f][n_text + i]), 6) for f in FORM_NAMES]
            for i, name in enumerate(STRUCTURE_NAMES)
        },
        "quantiles": np.quantile(raw, np.linspace(0, 1, 201)).round(6).tolist(),
        # sorted 32-bit fingerprints of the training prompts, so that evaluate() leaves them out
        "trained_prompts": base64.b64encode(
            np.array(sorted({fingerprint(p) for p in train.prompts}), dtype=">u4").tobytes()
        ).decode("ascii"),
        "vocab": vocab,
    }
    path.write_text(json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n", encoding="utf-8")
    return doc


def report(data_dir: Path, router_path: Path) -> dict[str, dict[str, float]]:
    """Held-out APGR of baselines (trained on the same training split) and of the router."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from policy.router.evaluate import evaluate
    from policy.router.scorer import Router

    splits = {name: split(read_csv(data_dir / name)) for name in FILES}
    train = _join({k: tr for k, (tr, _) in splits.items()})
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x = vec.fit_transform(train.prompts)
    weak, strong = np.array(train.weak), np.array(train.strong)
    targets = {
        "tfidf_lr_weak_wrong": (~weak).astype(int),
        "tfidf_lr_strong_beats_weak": (strong & ~weak).astype(int),
    }
    models = {k: LogisticRegression(max_iter=5000).fit(x, y) for k, y in targets.items()}
    router = Router.load(router_path)
    out: dict[str, dict[str, float]] = {}
    rng = np.random.default_rng(SEED)
    for name, (_, held) in splits.items():
        row: dict[str, float] = {"n": len(held.prompts)}
        row["random_mean_of_100"] = round(
            float(
                np.mean(
                    [apgr(curve(rng.random(len(held.prompts)), held.weak, held.strong)) for _ in range(100)]
                )
            ),
            4,
        )
        xh = vec.transform(held.prompts)
        for k, m in models.items():
            row[k] = round(apgr(curve(m.decision_function(xh), held.weak, held.strong)), 4)
        result = evaluate(data_dir / name, router=router)  # leaves the training prompts out
        row.update({f"router_{k}": v for k, v in result.items() if isinstance(v, float)})
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the prompt router (see module doc).")
    parser.add_argument("--data", default=str(Path(__file__).parents[2].parent / "shared/data/routing"))
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--cv", action="store_true", help="print cross-validated APGR for a grid")
    parser.add_argument("--report", action="store_true", help="held-out figures of baselines and --out")
    args = parser.parse_args(argv)
    data_dir = Path(args.data)
    if args.report:
        print(json.dumps(report(data_dir, Path(args.out)), indent=1))
        return
    parts = {name: split(read_csv(data_dir / name))[0] for name in FILES}
    if args.cv:
        cross_validate(parts)
        return
    train = _join(parts)
    vec, models = _fit(train, FORMS)
    doc = export(vec, models, train, Path(args.out))
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


def fit(train: Labelled):
    vec, models = _fit(train, FORMS)
    return lambda prompts: _raw(vec, models, prompts)
