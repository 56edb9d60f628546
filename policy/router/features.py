"""The router's text features: word n-grams (pure Python).

``ngrams`` reproduces scikit-learn's default word analyzer (lower-case, tokens of two or
more word characters, n-grams joined by a space) so that the weights trained with
scikit-learn apply unchanged here. The router's other features, the difficulty signals,
are in ``signals.py``. (The hand-made GSM8K/MMLU structure features of the first router,
ratio and time words, "Statement 1 |" pairs, were measured off their data sets and dropped:
docs/routing.md.)
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w\w+")  # = sklearn's (?u)\b\w\w+\b: maximal runs of 2+ word chars

NGRAM_RANGE = (1, 2)


def words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def ngrams(text: str) -> list[str]:
    tokens = words(text)
    lo, hi = NGRAM_RANGE
    out: list[str] = []
    for n in range(lo, hi + 1):
        if n == 1:
            out.extend(tokens)
        else:
            out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return out
