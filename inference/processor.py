"""Per-sequence output processing on the engine thread: append a sampled token, handle the
reasoning segment (budget, forced close), stop tokens and strings, max_tokens, and build
TokenDelta / Finished events with usage and OpenAI-shaped logprobs."""

from __future__ import annotations

from typing import Any

from .output import Chunk, OutputState
from .sampler import SampleResult
from .sequence import Sequence
from .tokenizer import ChatTokenizer
from .types import EngineConfig, Finished, TokenDelta, Usage


class _SeqOut:
    __slots__ = ("state", "ids", "logprobs")

    def __init__(self, state: OutputState) -> None:
        self.state = state
        self.ids: list[int] = []  # token ids not yet attached to an emitted delta
        self.logprobs: list[dict[str, Any]] = []


class OutputProcessor:
    def __init__(self, tokenizer: ChatTokenizer, config: EngineConfig) -> None:
        self.tok = tokenizer
        self.stop_ids = tokenizer.stop_token_ids
        self.think_close = config.think_close
        # forced after the budget or an early end of turn: closes the segment cleanly
        self.close_ids = tokenizer.encode_text("\n" + config.think_close + "\n\n")

    def init(self, seq: Sequence) -> None:
        thinking = seq.request.reasoning_budget is not None
        seq.reasoning = thinking
        seq.state = _SeqOut(
            OutputState(
                stop=tuple(s for s in seq.request.sampling.stop if s),
                reasoning=thinking,
                think_close=self.think_close,
            )
        )

    def _entry(self, tid: int, lp: float, top: list[tuple[int, float]] | None) -> dict[str, Any]:
        b = self.tok.token_bytes[tid]
        return {
            "token": b.decode("utf-8", "replace"),
            "logprob": lp,
            "bytes": list(b),
            "top_logprobs": [
                {
                    "token": self.tok.token_bytes[t].decode("utf-8", "replace"),
                    "logprob": v,
                    "bytes": list(self.tok.token_bytes[t]),
                }
                for t, v in (top or [])
            ],
        }

    def _events(self, so: _SeqOut, chunks: list[Chunk]) -> list[TokenDelta]:
        evs: list[TokenDelta] = []
        for c in chunks:
            if not c.text:
                continue
            evs.append(
                TokenDelta(
                    text=c.text,
                    token_ids=so.ids,
                    reasoning=c.reasoning,
                    logprobs=so.logprobs or None,
                )
            )
            so.ids, so.logprobs = [], []
        return evs

    def _push(self, seq: Sequence, tids: list[int], res: SampleResult | None) -> list[TokenDelta]:
        """Append tokens to the sequence and feed their text through the output state."""
        so: _SeqOut = seq.state
        seq.output_ids.extend(tids)
        for t in tids:
            seq.token_counts[t] = seq.token_counts.get(t, 0) + 1
        if seq.reasoning:
            seq.reasoning_tokens += len(tids)
        so.ids.extend(tids)
        if res is not None and res.logprob is not None:
            so.logprobs.append(self._entry(res.token_id, res.logprob, res.top))
        data = self.tok.bytes_of(tids)
        was_reasoning = seq.reasoning
        chunks = so.state.feed(data)
        seq.reasoning = so.state.reasoning
        if not (was_reasoning and not seq.reasoning):
            return self._events(so, chunks)
        # the segment closed in this token: its ids/logprobs belong to the reasoning side
        evs = self._events(so, [c for c in chunks if c.reasoning])
        if so.ids:
            evs.append(TokenDelta("", so.ids, True, so.logprobs or None))
            so.ids, so.logprobs = [], []
        return evs + self._events(so, [c for c in chunks if not c.reasoning])

    def append(self, seq: Sequence, res: SampleResult) -> tuple[list[TokenDelta], str | None]:
        so: _SeqOut = seq.state
        tid = res.token_id
        if tid in self.stop_ids and not seq.request.sampling.ignore_eos:
            if seq.reasoning:  # end of turn inside the reasoning: close it, then answer
                evs = self._force_close(seq)
                return evs, ("length" if len(seq.output_ids) >= seq.max_tokens else None)
            return [], "stop"
        evs = self._push(seq, [tid], res)
        if so.state.stopped:
            return evs, "stop"
        if len(seq.output_ids) >= seq.max_tokens:
            return evs, "length"
        budget = seq.request.reasoning_budget
        if seq.reasoning and budget is not None and seq.reasoning_tokens >= budget:
            evs += self._force_close(seq)
        if len(seq.output_ids) >= seq.max_tokens:
            return evs, "length"
        return evs, None

    def _force_close(self, seq: Sequence) -> list[TokenDelta]:
        so: _SeqOut = seq.state
        room = seq.max_tokens - len(seq.output_ids)
        ids = self.close_ids[: max(0, room)]
        evs = self._events(so, so.state.end_reasoning())
        seq.reasoning = False
        seq.output_ids.extend(ids)
        seq.reasoning_tokens += len(ids)
        return evs

    def finish(self, seq: Sequence) -> list[Any]:
        so: _SeqOut = seq.state
        reason = seq.finish_reason or "stop"
        evs: list[Any] = []
        if reason != "cancelled" and not so.state.stopped:
            evs += self._events(so, so.state.feed(b"", final=True))
        if so.ids and so.logprobs:
            evs.append(TokenDelta(text="", token_ids=so.ids, reasoning=False, logprobs=so.logprobs))
        n_prompt = len(seq.prompt_ids)
        hit = seq.prompt_cache_hit_tokens or 0
        usage = Usage(
            prompt_tokens=n_prompt,
            prompt_cache_hit_tokens=hit,
            prompt_cache_miss_tokens=n_prompt - hit,
            completion_tokens=len(seq.output_ids),
            reasoning_tokens=seq.reasoning_tokens,
        )
        evs.append(Finished(finish_reason=reason, usage=usage))
        return evs
