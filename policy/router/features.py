"""Prompt features of the router: word n-grams and the problem's structure (pure Python).

``ngrams`` reproduces scikit-learn's default word analyzer (lower-case, tokens of two or
more word characters, n-grams joined by a space) so that the weights trained with
scikit-learn apply unchanged here. ``structure`` counts what makes a problem hard to
solve rather than what it is about: numbers, their size, steps, operations, length, and
the question's form (multiple choice, "Statement 1 |" pairs).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping

_TOKEN = re.compile(r"\w\w+")  # = sklearn's (?u)\b\w\w+\b: maximal runs of 2+ word chars
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE = re.compile(r"[.!?](?:\s|$)")
_OPERATOR = re.compile(r"[=+\-*/^]")
_CHOICE = re.compile(r"\n[A-D]\. ")

NGRAM_RANGE = (1, 2)

_WORD_GROUPS: tuple[frozenset[str], ...] = tuple(
    frozenset(group.split())
    for group in (
        "twice half double triple third quarter thrice",  # ratio_words
        "each every per",  # rate_words
        "remaining left rest remainder",  # remainder_words
        "more less fewer",  # comparison_words
        "hour hours minute minutes day days week weeks month months year years",  # time_words
        "percent percentage",  # percent_words (and '%')
        "not except least",  # negation_words
    )
)
STRUCTURE_NAMES: tuple[str, ...] = (
    "chars",
    "words",
    "numbers",
    "distinct_numbers",
    "sentences",
    "digits",
    "longest_number",
    "money",
    "slashes",
    "ratio_words",
    "rate_words",
    "remainder_words",
    "comparison_words",
    "time_words",
    "percent_words",
    "negation_words",
    "how_many",
    "question_marks",
    "multiple_choice",
    "statement_pair",
    "lines",
    "operators",
    "decimals",
    "big_numbers",
)


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


def structure(
    text: str, tokens: list[str] | None = None, counts: Mapping[str, int] | None = None
) -> list[float]:
    """Structural counts, log1p-compressed, in the order of STRUCTURE_NAMES.

    ``tokens`` is ``words(text)`` and ``counts`` a Counter of them, when the caller has them.
    """
    if tokens is None:
        tokens = words(text)
    if counts is None:
        counts = Counter(tokens)
    numbers = _NUMBER.findall(text)
    groups = [float(sum(counts.get(w, 0) for w in group)) for group in _WORD_GROUPS]
    groups[5] += text.count("%")
    how_many = 0
    if counts.get("how"):
        how_many = sum(
            1 for a, b in zip(tokens, tokens[1:], strict=False) if a == "how" and b in ("many", "much")
        )
    raw = [
        len(text) / 500,
        len(tokens) / 100,
        len(numbers) / 5,
        len(set(numbers)) / 5,
        len(_SENTENCE.findall(text)) / 5,
        sum(len(n) for n in numbers) / 10,
        max((len(n) for n in numbers), default=0) / 5,
        text.count("$"),
        text.count("/"),
        *groups,
        how_many,
        text.count("?"),
        1.0 if _CHOICE.search(text) else 0.0,
        1.0 if "statement 1" in text[:200].lower() else 0.0,
        text.count("\n") / 5,
        len(_OPERATOR.findall(text)) / 5,
        sum(1 for n in numbers if "." in n),
        sum(1 for n in numbers if len(n.replace(",", "")) >= 4),
    ]
    return [math.log1p(x) for x in raw]
