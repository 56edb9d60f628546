"""Per-request state inside the engine."""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Any

from .block_manager import BlockTable
from .types import GenerationRequest

_counter = itertools.count()


class SeqStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    request: GenerationRequest
    prompt_ids: list[int]  # the request's prompt plus any engine-added opener
    max_tokens: int
    sink: Any = None  # engine-side event sink (callable)
    seq_no: int = field(default_factory=lambda: next(_counter))
    status: SeqStatus = SeqStatus.WAITING
    output_ids: list[int] = field(default_factory=list)
    table: BlockTable = field(default_factory=BlockTable)
    num_computed: int = 0  # tokens whose KV is in the cache
    # accounting, fixed at first admission (a recompute after preemption is not billed)
    prompt_cache_hit_tokens: int | None = None
    forced: list[int] = field(default_factory=list)  # tokens to emit instead of sampling
    reasoning: bool = False  # still inside the reasoning segment
    reasoning_tokens: int = 0
    # measured compute (inference.types.Compute): tokens run and FLOPs spent, every step's
    computed_tokens: int = 0
    flops: int = 0
    generator: Any = None  # torch.Generator when seeded
    token_counts: dict[int, int] = field(default_factory=dict)  # output token frequencies
    finish_reason: str | None = None
    state: Any = None  # output processor

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    def token_at(self, i: int) -> int:
        n = len(self.prompt_ids)
        return self.prompt_ids[i] if i < n else self.output_ids[i - n]

    def all_token_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    @property
    def num_uncomputed(self) -> int:
        return self.num_tokens - self.num_computed

    @property
    def in_prefill(self) -> bool:
        return self.num_uncomputed > 1
