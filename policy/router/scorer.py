"""Serving the trained router: prompt -> difficulty score in [0, 1] (pure Python, no numpy).

The score is the percentile of the prompt's raw logit among the training prompts, so
0.8 means "harder than about 80% of the reference prompts"; policies map it to
(variant, mode) tiers. Load the file once (``Router.load()``) and reuse the object.
Scoring a 2,000-token prompt takes well under a millisecond (bench/policy_router.py).
"""

from __future__ import annotations

import base64
import json
import math
import re
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from policy.router.data import fingerprint
from policy.router.features import words
from policy.router.signals import SIGNAL_NAMES, signals

DEFAULT_PATH = Path(__file__).with_name("router.json")
FORMAT = "gateway-router/2"
FORMS = ("free", "multiple_choice")  # one linear model per prompt form
_CHOICE = re.compile(r"\n[A-D]\. ")


def is_multiple_choice(prompt: str) -> bool:
    """The form test: a line that starts an answer option ("\nA. ", ..., "\nD. ")."""
    return _CHOICE.search(prompt) is not None


@dataclass(frozen=True, slots=True)
class Router:
    idf: dict[str, float]
    weight: dict[str, tuple[float, float]]  # per form
    signal_names: tuple[str, ...]
    signal_weights: tuple[tuple[float, ...], tuple[float, ...]]  # per form
    intercept: tuple[float, float]
    quantiles: tuple[float, ...]
    firsts: frozenset[str]  # words that start some bigram of the vocabulary
    trained: frozenset[int]  # data.fingerprint() of every training prompt

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> Router:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT or tuple(doc.get("forms", ())) != FORMS:
            raise ValueError(f"{path}: not a {FORMAT} file with forms {FORMS}")
        vocab = doc["vocab"]
        names = tuple(doc["signals"])
        unknown = [n for n in names if n not in SIGNAL_NAMES]
        if unknown:
            raise ValueError(f"{path}: unknown signal(s) {', '.join(unknown)}")
        return cls(
            idf={t: v[0] for t, v in vocab.items()},
            weight={t: (v[1], v[2]) for t, v in vocab.items()},
            signal_names=names,
            signal_weights=(
                tuple(doc["signals"][n][0] for n in names),
                tuple(doc["signals"][n][1] for n in names),
            ),
            intercept=(float(doc["intercept"][0]), float(doc["intercept"][1])),
            quantiles=tuple(doc["quantiles"]),
            firsts=frozenset(t.split(" ", 1)[0] for t in vocab if " " in t),
            trained=_fingerprints(doc.get("trained_prompts", "")),
        )

    def was_trained_on(self, prompt: str) -> bool:
        return fingerprint(prompt) in self.trained

    def raw(self, prompt: str) -> float:
        """The logistic-regression logit (higher: more likely to need the strong model)."""
        idf, weight = self.idf, self.weight
        tokens = words(prompt)
        firsts = self.firsts
        terms = Counter(tokens)
        form = 1 if is_multiple_choice(prompt) else 0
        # only bigrams whose first word starts some vocabulary bigram can match: skip the rest
        terms.update(a + " " + b for a, b in zip(tokens, tokens[1:], strict=False) if a in firsts)
        dot = 0.0
        norm = 0.0
        for term, count in terms.items():
            w_idf = idf.get(term)
            if w_idf is None:
                continue
            x = (1.0 + math.log(count)) * w_idf
            norm += x * x
            dot += x * weight[term][form]
        text = dot / math.sqrt(norm) if norm > 0 else 0.0
        values = signals(prompt, self.signal_names)
        linear = sum(w * f for w, f in zip(self.signal_weights[form], values, strict=True))
        return text + linear + self.intercept[form]

    def score(self, prompt: str) -> float:
        """Difficulty in [0, 1]: the percentile of ``raw`` among the training prompts."""
        q = self.quantiles
        r = self.raw(prompt)
        i = bisect_right(q, r)
        if i == 0:
            return 0.0
        if i >= len(q):
            return 1.0
        lo, hi = q[i - 1], q[i]
        frac = (r - lo) / (hi - lo) if hi > lo else 0.0
        return (i - 1 + frac) / (len(q) - 1)


def _fingerprints(packed: str) -> frozenset[int]:
    raw = base64.b64decode(packed)
    return frozenset(int.from_bytes(raw[i : i + 4], "big") for i in range(0, len(raw), 4))


@cache
def default_router() -> Router:
    """The shipped router (immutable; loaded once per process)."""
    return Router.load(DEFAULT_PATH)
