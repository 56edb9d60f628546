"""Turn sampled tokens into text events: incremental UTF-8 detokenization, stop strings that
never leak (held back while they could still match), and the reasoning/answer split."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Any


def _holdback(text: str, patterns: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a pattern."""
    best = 0
    for p in patterns:
        for k in range(min(len(p) - 1, len(text)), best, -1):
            if text.endswith(p[:k]):
                best = k
                break
    return best


@dataclass
class Chunk:
    text: str
    reasoning: bool


@dataclass
class OutputState:
    stop: tuple[str, ...]
    reasoning: bool  # starts inside the reasoning segment
    think_close: str = "</think>"
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    pending: str = ""  # decoded, not yet emitted (held back)
    stopped: bool = False
    closed_by_text: bool = False  # the reasoning segment ended with the close delimiter
    lstrip: bool = False  # drop whitespace between the reasoning segment and the answer

    def feed(self, data: bytes, final: bool = False) -> list[Chunk]:
        """Add the bytes of new tokens; returns the text that is safe to emit now."""
        self.pending += self.decoder.decode(data, final)
        return self._drain(final)

    def end_reasoning(self) -> list[Chunk]:
        """Close the reasoning segment now (budget reached or forced): flush held text."""
        out: list[Chunk] = []
        if self.reasoning:
            if self.pending:
                out.append(Chunk(self.pending, True))
            self.pending = ""
            self.reasoning = False
            self.lstrip = True
        return out

    def _drain(self, final: bool) -> list[Chunk]:
        out: list[Chunk] = []
        while True:
            if self.stopped:
                self.pending = ""
                return out
            if self.reasoning:
                i = self.pending.find(self.think_close)
                if i >= 0:
                    if i:
                        out.append(Chunk(self.pending[:i], True))
                    self.pending = self.pending[i + len(self.think_close) :]
                    self.reasoning = False
                    self.lstrip = True
                    self.closed_by_text = True
                    continue
                hold = 0 if final else _holdback(self.pending, (self.think_close,))
                cut = len(self.pending) - hold
                if cut:
                    out.append(Chunk(self.pending[:cut], True))
                    self.pending = self.pending[cut:]
                return out
            if self.lstrip:
                self.pending = self.pending.lstrip()
                if not self.pending:
                    return out
                self.lstrip = False
            first = -1
            for s in self.stop:
                j = self.pending.find(s)
                if j >= 0 and (first < 0 or j < first):
                    first = j
            if first >= 0:
                if first:
                    out.append(Chunk(self.pending[:first], False))
                self.pending = ""
                self.stopped = True
                return out
            hold = 0 if final else _holdback(self.pending, self.stop)
            cut = len(self.pending) - hold
            if cut:
                out.append(Chunk(self.pending[:cut], False))
                self.pending = self.pending[cut:]
            return out
