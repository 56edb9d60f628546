"""Difficulty signals that do not depend on one data set's topic or format (pure Python).

What a request asks for and how it is built, not what it is about: its length, how many
numbers and of what size, how many sentences and clauses, how long and how varied its
words are, symbols of mathematics and code, lines and lists, several turns, the answer
options when it offers them, and words that ask for a long or exact answer. Every value
is log1p-compressed so that one very long prompt cannot dominate a linear model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

_WORD = re.compile(r"[A-Za-z]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE = re.compile(r"[.!?](?:\s|$)")
_MATH = re.compile(r"[=+*/^<>]|\\[a-z]+|\b(?:sqrt|log|sin|cos|lim)\b")
_CODE = re.compile(r"```|[{};]\s*$|^\s*(?:def|class|return|import|for|if|while)\b|==|!=|->", re.M)
_TURN = re.compile(r"^(?:user|assistant|human|system|customer|agent|q|a)\s*:", re.I | re.M)
_CHOICE = re.compile(r"^\(?[A-Ha-h][.)]\s+(.*)$", re.M)
_LIST = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", re.M)
_CAPITALISED = re.compile(r"(?<=[a-z,;] )[A-Z][a-z]+")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_FUNCTION_WORDS = _words(
    "the a an of to in and or is are was were be been it that this for on with as by at from "
    "which who what when where how if then than but not no all each"
)
_ASK_LONG = _words(
    "explain describe write essay detail detailed compare discuss analyse analyze summarize "
    "summarise justify prove derive steps"
)
_ASK_EXACT = _words("calculate compute exactly how many much total find determine solve")
_NEGATION = _words("not except never least neither nor false incorrect")

SIGNAL_NAMES: tuple[str, ...] = (
    "chars",
    "words",
    "sentences",
    "words_per_sentence",
    "mean_word_length",
    "long_word_share",
    "distinct_word_share",
    "function_word_share",
    "capitalised_words",
    "numbers",
    "distinct_numbers",
    "longest_number",
    "decimals",
    "big_numbers",
    "math_symbols",
    "code_lines",
    "lines",
    "list_items",
    "turns",
    "question_marks",
    "commas",
    "brackets",
    "quotes",
    "choices",
    "choice_chars",
    "choice_length_spread",
    "numeric_choices",
    "ask_long",
    "ask_exact",
    "negations",
)


class _Prompt:
    """The pieces several signals share, computed on first use."""

    __slots__ = ("_choices", "_lower", "_numbers", "_sentences", "_words", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._words: list[str] | None = None
        self._lower: list[str] | None = None
        self._numbers: list[str] | None = None
        self._choices: list[str] | None = None
        self._sentences: int | None = None

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = _WORD.findall(self.text)
        return self._words

    @property
    def lower(self) -> list[str]:
        if self._lower is None:
            self._lower = [w.lower() for w in self.words]
        return self._lower

    @property
    def numbers(self) -> list[str]:
        if self._numbers is None:
            self._numbers = _NUMBER.findall(self.text)
        return self._numbers

    @property
    def choices(self) -> list[str]:
        if self._choices is None:
            self._choices = _CHOICE.findall(self.text)
        return self._choices

    @property
    def sentences(self) -> int:
        if self._sentences is None:
            self._sentences = max(1, len(_SENTENCE.findall(self.text)))
        return self._sentences


def _share(p: _Prompt, keep: Callable[[str], bool]) -> float:
    return sum(1 for w in p.words if keep(w)) / len(p.words) if p.words else 0.0


def _lower_share(p: _Prompt, words: frozenset[str]) -> float:
    return sum(1 for w in p.lower if w in words) / len(p.lower) if p.lower else 0.0


def _choice_spread(p: _Prompt) -> float:
    lengths = [len(c) for c in p.choices]
    if not lengths:
        return 0.0
    mean = sum(lengths) / len(lengths)
    return math.sqrt(sum((x - mean) ** 2 for x in lengths) / len(lengths)) / 20


_RAW: dict[str, Callable[[_Prompt], float]] = {
    "chars": lambda p: len(p.text) / 500,
    "words": lambda p: len(p.words) / 100,
    "sentences": lambda p: p.sentences / 5,
    "words_per_sentence": lambda p: len(p.words) / p.sentences / 20,
    "mean_word_length": lambda p: (sum(map(len, p.words)) / len(p.words) if p.words else 0.0) / 5,
    "long_word_share": lambda p: _share(p, lambda w: len(w) >= 9),
    "distinct_word_share": lambda p: len(set(p.lower)) / len(p.lower) if p.lower else 0.0,
    "function_word_share": lambda p: _lower_share(p, _FUNCTION_WORDS),
    "capitalised_words": lambda p: len(_CAPITALISED.findall(p.text)) / 5,
    "numbers": lambda p: len(p.numbers) / 5,
    "distinct_numbers": lambda p: len(set(p.numbers)) / 5,
    "longest_number": lambda p: max((len(x) for x in p.numbers), default=0) / 5,
    "decimals": lambda p: sum(1 for x in p.numbers if "." in x),
    "big_numbers": lambda p: sum(1 for x in p.numbers if len(x.replace(",", "")) >= 4),
    "math_symbols": lambda p: len(_MATH.findall(p.text)) / 5,
    "code_lines": lambda p: len(_CODE.findall(p.text)) / 5,
    "lines": lambda p: p.text.count("\n") / 5,
    "list_items": lambda p: len(_LIST.findall(p.text)) / 5,
    "turns": lambda p: len(_TURN.findall(p.text)),
    "question_marks": lambda p: p.text.count("?"),
    "commas": lambda p: p.text.count(",") / 5,
    "brackets": lambda p: (p.text.count("(") + p.text.count("[")) / 5,
    "quotes": lambda p: (p.text.count('"') + p.text.count("\u201c")) / 5,
    "choices": lambda p: len(p.choices),
    "choice_chars": lambda p: (sum(map(len, p.choices)) / len(p.choices) if p.choices else 0.0) / 50,
    "choice_length_spread": _choice_spread,
    "numeric_choices": lambda p: sum(1 for c in p.choices if _NUMBER.search(c)),
    "ask_long": lambda p: sum(1 for w in p.lower if w in _ASK_LONG),
    "ask_exact": lambda p: sum(1 for w in p.lower if w in _ASK_EXACT),
    "negations": lambda p: sum(1 for w in p.lower if w in _NEGATION),
}
assert tuple(_RAW) == SIGNAL_NAMES


def signals(text: str, names: Sequence[str] = SIGNAL_NAMES) -> list[float]:
    """The values of ``names`` (default: all of SIGNAL_NAMES) for ``text``, log1p-compressed.

    Only the pieces the named signals need are computed (the serving router asks for few).
    """
    p = _Prompt(text)
    return [math.log1p(_RAW[name](p)) for name in names]
