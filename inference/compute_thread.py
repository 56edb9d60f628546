"""One compute thread per model: every engine over an EmbeddedModel runs its torch work (the
model runner's setup, each step's forward pass and sampling) on the same thread.

Why: libgomp counts every thread of every OpenMP team in the process, idle or not, and once
they outnumber the cores it stops spinning between parallel regions (its "throttled" spin
count), so every region pays a futex wake-up. Each thread that ran a multi-threaded torch op
owns a team: with an engine thread per variant (Flash on the compressed cache beside Pro),
single-stream decode fell from ~145 to ~61 tokens/s on 2 cores, with the Flash engine idle.
One thread, one team. Engines keep their own threads for scheduling and delivery.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import torch

T = TypeVar("T")


class _Job:
    __slots__ = ("args", "done", "error", "fn", "value")

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn, self.args = fn, args
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class ComputeThread:
    def __init__(self, threads: int | None, name: str = "inference-compute") -> None:
        self._threads = threads  # intra-op threads (None: torch's default)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        if self._threads:
            torch.set_num_threads(self._threads)
        while (job := self._jobs.get()) is not None:
            try:
                job.value = job.fn(*job.args)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                job.error = exc
            job.done.set()

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on the compute thread; the caller blocks until it returns or raises."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        job = _Job(fn, args)
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.value

    def close(self, timeout: float = 10.0) -> None:
        """End the thread after the jobs already queued, and wait for it (its OpenMP team goes
        with it). Runs at interpreter exit too: a thread that held torch state and was still
        alive, or still ending, when the process tore down aborted it ('terminate called
        without an active exception')."""
        if not self._thread.is_alive():
            return
        self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
