"""Fixtures of the dispatch tests: fake upstream servers (real sockets, one thread each) and
the requests the gateway's service would send."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from inference.dispatch import DispatchRequest
from inference.types import GenerationRequest, SamplingParams
from tests.dispatch.fake_upstream import FakeUpstream

MESSAGES = [
    {"role": "system", "content": "You are a careful assistant for the geography team."},
    {"role": "user", "content": "What is the capital of France?"},
]


def words(text: str) -> list[int]:
    """A stand-in tokenizer for tests that only need *a* count: one id per word."""
    return [len(w) for w in text.split()]


def dispatch_request(
    *,
    mode: str = "non-think",
    variant: str = "flash",
    salt: str = "tenant-a",
    stream: bool = True,
    max_tokens: int | None = 64,
    messages: list[dict[str, Any]] | None = None,
    prompt_ids: list[int] | None = None,
    logprobs: bool = False,
) -> DispatchRequest:
    msgs = messages or MESSAGES
    ids = (
        prompt_ids
        if prompt_ids is not None
        else list(range(1, 1 + sum(len(m["content"].split()) for m in msgs)))
    )
    effort = "max" if mode == "think-max" else None
    return DispatchRequest(
        generation=GenerationRequest(
            request_id="chatcmpl-test",
            prompt_token_ids=ids,
            sampling=SamplingParams(temperature=0.7, top_p=0.9, max_tokens=max_tokens, logprobs=logprobs),
            cache_salt=salt.encode(),
            reasoning_budget=None if mode == "non-think" else 32,
        ),
        messages=msgs,
        variant=variant,
        mode=mode,
        model=f"deepseek-v4-{variant}",
        salt_text=salt,
        stream=stream,
        reasoning_effort=effort,
    )


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Callable[..., FakeUpstream]]:
    """A factory of started fake upstreams, stopped at the module's end. A test asking for the
    same kind as an earlier one gets that server back, reset (starting one costs ~0.2 s);
    `instance` tells replicas of one kind apart."""
    started: dict[tuple[str, str], FakeUpstream] = {}

    def make(dialect: str, instance: int = 0, **kw: Any) -> FakeUpstream:
        key = (dialect, repr((instance, sorted(kw.items()))))
        up = started.get(key)
        if up is None:
            up = started[key] = FakeUpstream(dialect, **kw).start()
        up.reset()
        return up

    yield make
    for up in started.values():
        up.request_stop()
    for up in started.values():
        up.stop()


@pytest.fixture(scope="session")
def tokenizer() -> object:
    """The gateway's own tokenizer (the embedded model's vocabulary, no weights)."""
    from inference.tokenizer_model import TokenizerModel

    return TokenizerModel(None)
