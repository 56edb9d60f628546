"""Async engine facade: the model loop runs in its own thread; asyncio callers get events.

generate() validates at once (raising domain errors before anything streams) and returns an
async iterator; closing or cancelling that iterator cancels the sequence and frees its blocks
on the engine thread before the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import torch

from .block_manager import BlockManager
from .compute_thread import ComputeThread
from .embedded import EmbeddedModel
from .errors import (
    EngineConfigError,
    EngineNotRunningError,
    InferenceError,
    InvalidRequestError,
    PromptTooLongError,
)
from .model import KVCache
from .model_runner import ModelRunner
from .moe.experts import experts_for
from .processor import OutputProcessor
from .sampler import make_generator, sample
from .scheduler import Scheduler
from .sequence import SeqStatus, Sequence
from .types import Compute, EngineConfig, Finished, GenerationRequest, TokenDelta

log = logging.getLogger(__name__)

Event = TokenDelta | Finished
PQ_ATTENTION = ("buffer", "codes", "decompress")


@dataclass(frozen=True, eq=False)
class _Sink:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue


class Engine:
    def __init__(self, model: EmbeddedModel, config: EngineConfig | None = None) -> None:
        self.model = model
        self.config = cfg = config or EngineConfig()
        if cfg.kv_compression not in (None, "pq"):
            raise EngineConfigError(f"kv_compression must be None or 'pq', not {cfg.kv_compression!r}")
        if cfg.pq_attention not in PQ_ATTENTION:
            raise EngineConfigError(f"pq_attention must be one of {', '.join(PQ_ATTENTION)}")
        # the model's codebooks (fit once per artifact, shared by every engine over it)
        self.codec = model.enable_kv_codec() if cfg.kv_compression == "pq" else None
        per_tok = KVCache.bytes_per_token(model.config, model.kv_dtype, self.codec)
        self.kv_bytes_per_token = per_tok
        if cfg.kv_cache_tokens is not None:
            tokens = cfg.kv_cache_tokens
        elif cfg.kv_cache_bytes is not None:
            tokens = cfg.kv_cache_bytes // per_tok
        else:
            tokens = 32768
        self.num_blocks = max(1, tokens // cfg.block_size)
        self.capacity_tokens = self.num_blocks * cfg.block_size
        self.kv_cache_bytes = self.capacity_tokens * per_tok
        # one sequence must always fit in the cache alone (no hang, no crash)
        self.context_length = min(model.context_length, self.capacity_tokens)
        self.think_open_ids = model.tokenizer.encode_text(cfg.think_open)
        self._cmds: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._fatal: BaseException | None = None
        self._stats: dict[str, Any] = {}
        self._by_id: dict[int, Sequence] = {}
        self.blocks: BlockManager | None = None
        self.scheduler: Scheduler | None = None
        self.runner: ModelRunner | None = None
        self._compute: ComputeThread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    async def start(self) -> None:
        if self.running:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name="inference-engine", daemon=True
        )
        self._thread.start()
        await asyncio.to_thread(ready.wait)
        if self._fatal is not None:
            raise InferenceError(f"engine failed to start: {self._fatal}") from self._fatal

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def stats(self) -> dict[str, Any]:
        """A snapshot taken by the engine thread after its last step."""
        return dict(self._stats)

    # -- requests ----------------------------------------------------------------------------
    def validate(self, request: GenerationRequest) -> int:
        """Check a request; returns its effective max_tokens."""
        sp = request.sampling
        ids = request.prompt_token_ids
        if not ids:
            raise InvalidRequestError("the prompt is empty")
        vocab = self.model.config.vocab_size
        if min(ids) < 0 or max(ids) >= vocab:
            raise InvalidRequestError(f"prompt token ids must be in [0, {vocab})")
        if sp.temperature < 0:
            raise InvalidRequestError("temperature must be >= 0")
        if not 0.0 < sp.top_p <= 1.0:
            raise InvalidRequestError("top_p must be in (0, 1]")
        if sp.top_k < 0:
            raise InvalidRequestError("top_k must be >= 0")
        if not 0 <= sp.top_logprobs <= 20:
            raise InvalidRequestError("top_logprobs must be in [0, 20]")
        if sp.max_tokens is not None and sp.max_tokens < 1:
            raise InvalidRequestError("max_tokens must be >= 1")
        if request.reasoning_budget is not None and request.reasoning_budget < 0:
            raise InvalidRequestError("reasoning_budget must be >= 0")
        f = request.expert_fraction
        if f is not None and not (isinstance(f, int | float) and 0.0 < f <= 1.0):
            raise InvalidRequestError("expert_fraction must be in (0, 1]")
        n = len(ids) + (len(self.think_open_ids) if request.reasoning_budget is not None else 0)
        ctx = self.context_length
        if sp.max_tokens is None:
            if n >= ctx:
                raise PromptTooLongError(n, 1, ctx)
            return ctx - n
        if n + sp.max_tokens > ctx:
            raise PromptTooLongError(n, sp.max_tokens, ctx)
        return sp.max_tokens

    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if self._fatal is not None:
            raise InferenceError(f"engine failed: {self._fatal}")
        if not self.running:
            raise EngineNotRunningError("the engine is not started")
        max_tokens = self.validate(request)
        request = self._expert_salted(request)
        prompt = list(request.prompt_token_ids)
        if request.reasoning_budget is not None:
            prompt += self.think_open_ids
        seq = Sequence(request=request, prompt_ids=prompt, max_tokens=max_tokens)
        return self._stream(seq)

    def _expert_salted(self, request: GenerationRequest) -> GenerationRequest:
        """A sequence's cached keys and values depend on how many experts computed them:
        prefix-cache entries are shared only between requests with the same expert count."""
        ex = getattr(self.model, "experts", None)
        f = request.expert_fraction
        if ex is None or f is None:
            return request
        k = experts_for(f, ex.n_experts)
        if k >= ex.n_experts:
            return request
        return replace(request, cache_salt=request.cache_salt + b"\x00experts:%d" % k)

    def cancel(self, request_id: str) -> None:
        """Cancel a request by id (its iterator then yields Finished('cancelled'))."""
        self._cmds.put(("cancel_id", request_id))
        self._wake.set()

    async def _stream(self, seq: Sequence) -> AsyncIterator[Event]:
        q: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        seq.sink = _Sink(asyncio.get_running_loop(), q)
        self._cmds.put(("add", seq))
        self._wake.set()
        done = False
        try:
            while True:
                ev = await q.get()
                if isinstance(ev, BaseException):
                    done = True
                    raise ev
                if isinstance(ev, Finished):
                    done = True
                    yield ev
                    return
                yield ev
        finally:
            if not done:
                self._cmds.put(("cancel", seq))
                self._wake.set()

    # -- engine thread -----------------------------------------------------------------------
    def _deliver(self, batch: list[tuple[_Sink, Any]]) -> None:
        """Hand events to their consumers' event loops (one callback per loop and step)."""
        if not batch:
            return
        per_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, Any]]] = {}
        for sink, ev in batch:
            per_loop.setdefault(sink.loop, []).append((sink.queue, ev))
        for loop, items in per_loop.items():

            def put_all(items: list[tuple[asyncio.Queue, Any]] = items) -> None:
                for q, ev in items:
                    q.put_nowait(ev)

            with contextlib.suppress(RuntimeError):  # loop closed: nobody is listening
                loop.call_soon_threadsafe(put_all)

    def _thread_main(self, ready: threading.Event) -> None:
        try:
            # torch work runs on the model's one compute thread (inference.compute_thread):
            # a team of threads per engine thread made every step ~2.3x slower
            self._compute = self.model.compute_thread()
            cfg = self.config
            if self.blocks is None:
                self.blocks = BlockManager(self.num_blocks, cfg.block_size, cfg.enable_prefix_cache)
                self.runner = self._compute.run(
                    lambda: ModelRunner(
                        self.model.model,
                        self.num_blocks,
                        cfg.block_size,
                        cfg.decode_buffer_bytes,
                        experts=getattr(self.model, "experts", None),
                        codec=self.codec,
                        pq_attention=cfg.pq_attention,
                    )
                )
            self.scheduler = Scheduler(self.blocks, cfg.max_num_seqs, cfg.max_num_batched_tokens)
            self.processor = OutputProcessor(self.model.tokenizer, cfg)
        except BaseException as exc:  # noqa: BLE001
            self._fatal = exc
            ready.set()
            return
        ready.set()
        by_id = self._by_id = {}
        sched = self.scheduler
        out_events: list[tuple[_Sink, Any]] = []

        def finish(seq: Sequence, reason: str) -> None:
            sched.finish(seq, reason)
            by_id.pop(seq.seq_no, None)
            out_events.extend((seq.sink, ev) for ev in self._finished(seq))

        while True:
            out_events = []
            while True:
                try:
                    cmd, arg = self._cmds.get_nowait()
                except queue.Empty:
                    break
                if cmd == "add":
                    if arg.request.sampling.seed is not None:
                        arg.generator = make_generator(arg.request.sampling.seed, torch.device("cpu"))
                    self.processor.init(arg)
                    by_id[arg.seq_no] = arg
                    sched.add(arg)
                elif cmd in ("cancel", "cancel_id"):
                    targets = [arg] if cmd == "cancel" else [q for q in by_id.values() if q.request_id == arg]
                    for seq in targets:
                        if seq.status is not SeqStatus.FINISHED:
                            finish(seq, "cancelled")
            if self._stopping:
                for seq in list(by_id.values()):
                    finish(seq, "cancelled")
                self._deliver(out_events)
                return
            if not sched.has_work():
                self._update_stats()
                self._deliver(out_events)
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                self._step(finish, out_events)
            except Exception as exc:  # noqa: BLE001 - fail the requests, keep serving
                log.exception("engine step failed")
                err = InferenceError(f"engine step failed: {exc}")
                for seq in list(by_id.values()):
                    sched.finish(seq, "error")
                    out_events.append((seq.sink, err))
                by_id.clear()
            self._update_stats()
            self._deliver(out_events)

    def _step(self, finish: Any, out_events: list) -> None:
        sched = self.scheduler
        assert sched is not None and self.runner is not None
        t0 = time.perf_counter()
        out = sched.schedule()
        for seq in out.finished:  # ended by the scheduler (blocks already freed)
            self._by_id.pop(seq.seq_no, None)
            out_events.extend((seq.sink, ev) for ev in self._finished(seq))
        if not out:
            time.sleep(0.001)
            return
        for sch in out.items:  # before execute may reorder them; counts only
            self._count(sch.seq, sch.seq.num_computed, sch.num_tokens, sch.sample)
        assert self._compute is not None
        to_sample, results = self._compute.run(self._forward, out)
        if results is not None:
            for seq, res in zip(to_sample, results, strict=True):
                events, reason = self.processor.append(seq, res)
                out_events.extend((seq.sink, ev) for ev in events)
                if reason is not None:
                    finish(seq, reason)
        self._stats["last_step_s"] = time.perf_counter() - t0
        self._stats["last_step_tokens"] = out.num_tokens

    def _forward(self, out: Any) -> tuple[list[Sequence], list | None]:
        """One step's torch work, on the compute thread: the forward pass, the scheduler's
        bookkeeping of it, and sampling: the rows that sample, in the order execute left them
        (it may reorder), and their results (None when no row samples)."""
        assert self.runner is not None and self.scheduler is not None
        logits = self.runner.execute(out)
        self.scheduler.step_done(out)
        to_sample = [s.seq for s in out.items if s.sample]
        if logits is None or not to_sample:
            return to_sample, None
        return to_sample, sample(logits.values, to_sample, logits.exact_top)

    def _count(self, seq: Sequence, start: int, n: int, sampled: bool) -> None:
        """Add a step's work on `seq`: positions [start, start + n) through every layer."""
        c = self.model.config
        f = seq.request.expert_fraction
        ex = getattr(self.model, "experts", None)
        ffn = 3 * c.dim * c.ffn_dim
        if ex is not None and f is not None:
            k = experts_for(f, ex.n_experts)
            ffn = ex.ffn_macs(k) + (ex.router_macs() if k < ex.n_experts else 0)
        attn_w = c.dim * (c.n_heads + 2 * c.n_kv_heads) * c.head_dim + c.n_heads * c.head_dim * c.dim
        # each position attends to itself and every earlier one: q.k and p.v per key and head
        keys = n * start + n * (n + 1) // 2
        attn = 2 * c.n_heads * c.head_dim * keys
        seq.computed_tokens += n
        seq.flops += c.n_layers * (2 * n * (attn_w + ffn) + 2 * attn) + (
            2 * c.dim * c.vocab_size if sampled else 0
        )

    def _finished(self, seq: Sequence) -> list[Any]:
        evs = self.processor.finish(seq)
        for ev in evs:
            if isinstance(ev, Finished):
                ev.compute = Compute(seq.computed_tokens, seq.flops, seq.num_tokens * self.kv_bytes_per_token)
        return evs

    def _update_stats(self) -> None:
        sched, blocks = self.scheduler, self.blocks
        if sched is None or blocks is None:
            return
        self._stats.update(
            running=len(sched.running),
            waiting=len(sched.waiting),
            free_blocks=blocks.num_free_blocks,
            num_blocks=blocks.num_blocks,
            cached_blocks=len(blocks.cached),
            preemptions=sched.num_preemptions,
        )
