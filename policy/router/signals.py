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


def signals(text: str) -> list[float]:
    """The values of SIGNAL_NAMES for ``text``."""
    words = _WORD.findall(text)
    lower = [w.lower() for w in words]
    n_words = len(words)
    numbers = _NUMBER.findall(text)
    sentences = max(1, len(_SENTENCE.findall(text)))
    choices = _CHOICE.findall(text)
    choice_lengths = [len(c) for c in choices]
    mean_choice = sum(choice_lengths) / len(choices) if choices else 0.0
    spread = math.sqrt(sum((x - mean_choice) ** 2 for x in choice_lengths) / len(choices)) if choices else 0.0
    lengths = [len(w) for w in words]
    raw = [
        len(text) / 500,
        n_words / 100,
        sentences / 5,
        n_words / sentences / 20,
        (sum(lengths) / n_words if n_words else 0.0) / 5,
        sum(1 for x in lengths if x >= 9) / n_words if n_words else 0.0,
        len(set(lower)) / n_words if n_words else 0.0,
        sum(1 for w in lower if w in _FUNCTION_WORDS) / n_words if n_words else 0.0,
        len(_CAPITALISED.findall(text)) / 5,
        len(numbers) / 5,
        len(set(numbers)) / 5,
        max((len(x) for x in numbers), default=0) / 5,
        sum(1 for x in numbers if "." in x),
        sum(1 for x in numbers if len(x.replace(",", "")) >= 4),
        len(_MATH.findall(text)) / 5,
        len(_CODE.findall(text)) / 5,
        text.count("\n") / 5,
        len(_LIST.findall(text)) / 5,
        len(_TURN.findall(text)),
        text.count("?"),
        text.count(",") / 5,
        (text.count("(") + text.count("[")) / 5,
        (text.count('"') + text.count("\u201c")) / 5,
        len(choices),
        mean_choice / 50,
        spread / 20,
        sum(1 for c in choices if _NUMBER.search(c)),
        sum(1 for w in lower if w in _ASK_LONG),
        sum(1 for w in lower if w in _ASK_EXACT),
        sum(1 for w in lower if w in _NEGATION),
    ]
    return [math.log1p(x) for x in raw]
