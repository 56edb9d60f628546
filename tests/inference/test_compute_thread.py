"""Every engine over a model runs its torch work on the model's one compute thread
(inference/compute_thread.py): an OpenMP team per engine thread made each step ~2.3x slower."""

from __future__ import annotations

import asyncio
import threading

import pytest

from inference import Engine, EngineConfig, GenerationRequest, SamplingParams
from inference.compute_thread import ComputeThread
from inference.model_runner import ModelRunner


def test_run_returns_raises_and_close_ends_the_thread() -> None:
    ct = ComputeThread(threads=1, name="test-compute")
    assert ct.run(lambda a, b: (a + b, threading.current_thread().name), 2, 3) == (5, "test-compute")

    def fail() -> None:
        raise RuntimeError("step failed")

    with pytest.raises(RuntimeError, match="step failed"):
        ct.run(fail)
    assert ct.run(lambda: "still serving") == "still serving"
    ct.close()
    assert not ct.alive
    ct.close()  # twice is harmless


def test_a_job_that_runs_jobs_does_not_wait_on_itself() -> None:
    ct = ComputeThread(threads=1)
    try:
        assert ct.run(lambda: ct.run(lambda: 7)) == 7
    finally:
        ct.close()


@pytest.mark.slow
async def test_two_engines_step_on_the_one_compute_thread(model, monkeypatch) -> None:
    ran_on: set[str] = set()
    execute = ModelRunner.execute

    def recording(self, out):
        ran_on.add(threading.current_thread().name)
        return execute(self, out)

    monkeypatch.setattr(ModelRunner, "execute", recording)
    engines = [Engine(model, EngineConfig(kv_cache_tokens=1024)) for _ in range(2)]
    for e in engines:
        await e.start()
    try:
        ids = model.encode_chat([{"role": "user", "content": "Say hi."}])

        async def one(e: Engine, rid: str) -> int:
            req = GenerationRequest(rid, ids, SamplingParams(temperature=0.0, max_tokens=4))
            return sum([1 async for _ in e.generate(req)])

        assert all(await asyncio.gather(one(engines[0], "a"), one(engines[1], "b")))
    finally:
        for e in engines:
            await e.stop()
    assert engines[0]._compute is engines[1]._compute is model.compute_thread()
    assert ran_on == {"inference-compute"}
