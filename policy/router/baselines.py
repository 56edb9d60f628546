"""Scorers to compare the router with, fitted on the same training rows (numpy; sklearn for TF-IDF).

Each ``fit_*`` takes the training rows and returns a function prompts -> scores (higher:
send to the strong model sooner). None of them sees the test rows.

- ``length``: the prompt's length in characters, no fitting (the cheapest difficulty proxy).
- ``tfidf_lr``: TF-IDF over word 1-2-grams (sublinear tf, min_df 2) + logistic regression,
  target "strong right, weak wrong", default C: the plain text classifier the router
  has to beat off its training distribution.
- random: not a fitted scorer; ``random_scores`` draws uniform scores with a fixed seed and
  the report averages several draws.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from policy.router.data import Labelled

Scorer = Callable[[list[str]], np.ndarray]


def target(data: Labelled) -> np.ndarray:
    """1 where the strong model is right and the weak one wrong: the prompts worth escalating."""
    weak, strong = np.array(data.weak, dtype=bool), np.array(data.strong, dtype=bool)
    return (strong & ~weak).astype(int)


def fit_length(train: Labelled) -> Scorer:
    del train  # nothing to fit: longer prompts go to the strong model first
    return lambda prompts: np.array([float(len(p)) for p in prompts])


def fit_tfidf_lr(train: Labelled) -> Scorer:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x = vec.fit_transform(train.prompts)
    model = LogisticRegression(max_iter=5000).fit(x, target(train))
    return lambda prompts: model.decision_function(vec.transform(prompts))


def random_scores(n: int, draw: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng([seed, draw]).random(n)
