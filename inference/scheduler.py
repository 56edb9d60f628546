"""Continuous-batching scheduler: decodes and chunked prefills share one step under a token
budget; new requests join between steps; when KV blocks run out the newest running sequence
is preempted (its blocks freed, recomputed later), so the engine never crashes or hangs."""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass, field

from .block_manager import BlockManager, NoFreeBlocksError
from .sequence import SeqStatus, Sequence


@dataclass
class ScheduledSeq:
    seq: Sequence
    num_tokens: int  # tokens fed this step, from seq.num_computed on
    sample: bool  # the step reaches the end of the sequence: sample the next token


@dataclass
class SchedulerOutput:
    prefills: list[ScheduledSeq] = field(default_factory=list)
    decodes: list[ScheduledSeq] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    # sequences ended by the scheduler (e.g. cannot grow even when running alone)
    finished: list[Sequence] = field(default_factory=list)

    @property
    def items(self) -> list[ScheduledSeq]:
        return self.prefills + self.decodes

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.items)

    def __bool__(self) -> bool:
        return bool(self.prefills or self.decodes)


class Scheduler:
    def __init__(
        self, blocks: BlockManager, max_num_seqs: int = 64, max_num_batched_tokens: int = 2048
    ) -> None:
        self.blocks = blocks
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max(1, max_num_batched_tokens)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # admission order, oldest first
        self.num_preemptions = 0

    # -- membership ------------------------------------------------------------------------
    def add(self, seq: Sequence) -> None:
        seq.status = SeqStatus.WAITING
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def finish(self, seq: Sequence, reason: str) -> None:
        """Remove a sequence and free its blocks at once."""
        if seq.status is SeqStatus.FINISHED:
            return
        if seq in self.running:
            self.running.remove(seq)
        else:
            with contextlib.suppress(ValueError):
                self.waiting.remove(seq)
        self.blocks.free_table(seq.table)
        seq.status = SeqStatus.FINISHED
        seq.finish_reason = seq.finish_reason or reason

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.free_table(seq.table)
        seq.num_computed = 0
        seq.status = SeqStatus.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    # -- one step --------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        scheduled: dict[int, ScheduledSeq] = {}

        def reserve(seq: Sequence, total: int) -> bool:
            """Grow seq's blocks, preempting the newest other running sequences if needed."""
            nonlocal budget
            while True:
                try:
                    self.blocks.reserve(seq.table, total)
                    return True
                except NoFreeBlocksError:
                    victim = self.running[-1]
                    if victim is seq:
                        if len(self.running) == 1:  # alone and still no room: end it
                            self.running.remove(seq)
                            self.blocks.free_table(seq.table)
                            seq.status = SeqStatus.FINISHED
                            seq.finish_reason = "length"
                            out.finished.append(seq)
                        else:
                            self._preempt(seq)
                            out.preempted.append(seq)
                        return False
                    sch = scheduled.pop(victim.seq_no, None)
                    if sch is not None:
                        budget += sch.num_tokens
                        lst = out.decodes if sch in out.decodes else out.prefills
                        lst.remove(sch)
                    self._preempt(victim)
                    out.preempted.append(victim)

        # running sequences, oldest first: decodes (1 token) and unfinished chunked prefills
        for seq in list(self.running):
            if budget <= 0:
                break
            if seq.status is not SeqStatus.RUNNING:
                continue  # preempted by an older sequence in this loop
            n = min(seq.num_uncomputed, budget)
            if not reserve(seq, seq.num_computed + n):
                continue
            sch = ScheduledSeq(seq, n, seq.num_computed + n == seq.num_tokens)
            (out.decodes if n == 1 else out.prefills).append(sch)
            scheduled[seq.seq_no] = sch
            budget -= n

        # admit waiting sequences while there is budget, room and blocks
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            hit = self.blocks.allocate_prefix(seq.table, seq.all_token_ids(), seq.request.cache_salt)
            n = min(seq.num_tokens - hit, budget)
            need = self.blocks.blocks_needed(seq.table, hit + n)
            if not self.blocks.can_allocate(need):
                self.blocks.free_table(seq.table)
                if not self.running and need > self.blocks.num_blocks:  # can never fit
                    self.waiting.popleft()
                    seq.status = SeqStatus.FINISHED
                    seq.finish_reason = "length"
                    out.finished.append(seq)
                    continue
                break
            self.blocks.reserve(seq.table, hit + n)
            self.waiting.popleft()
            seq.num_computed = hit
            if seq.prompt_cache_hit_tokens is None:
                seq.prompt_cache_hit_tokens = hit
            seq.status = SeqStatus.RUNNING
            self.running.append(seq)
            sch = ScheduledSeq(seq, n, hit + n == seq.num_tokens)
            (out.decodes if n == 1 else out.prefills).append(sch)
            scheduled[seq.seq_no] = sch
            budget -= n
        return out

    def step_done(self, out: SchedulerOutput) -> None:
        """Advance computed counts and publish newly full blocks to the prefix cache."""
        for sch in out.items:
            seq = sch.seq
            if seq.status is not SeqStatus.RUNNING:
                continue
            seq.num_computed += sch.num_tokens
            if seq.num_computed // self.blocks.block_size > seq.table.num_hashed:
                self.blocks.commit(seq.table, seq.all_token_ids(), seq.num_computed, seq.request.cache_salt)
