"""Run multi-threaded torch work where it cannot slow the engine down.

A torch op that runs with more than one intra-op thread forms an OpenMP team owned by the
calling thread, and while that thread lives its team competes with the engine thread's own
team: measured on 2 cores, loading the KV codebooks in the caller cut the engine's
single-stream decode from 145 to 66 tokens/s (2.3x), and a 256-token prefill in the main
thread did the same. A thread that ends takes its team with it, so one-off work (fits,
codebook loads, evaluation passes) runs in a thread of its own that is joined.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def run_in_fresh_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs) in a new thread, joined; its result, or its exception re-raised."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller, traceback kept
            box["error"] = exc

    worker = threading.Thread(target=target, name="torch-one-off", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
