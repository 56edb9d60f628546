"""GATEWAY_FLASH_EXPERTS=modes through the HTTP API with the OpenAI client: Flash's modes run
their share of the FFN's neurons (inference/moe/neurons.py) and the usage's measured compute
says so; Pro stays dense."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.e2e.server import RunningGateway, start_gateway, wait_rows

QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]
NON_THINK = {"extra_body": {"thinking": {"type": "disabled"}}}


@pytest.fixture(scope="module")
def routed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    server = start_gateway(tmp_path_factory.mktemp("routed"), {"GATEWAY_FLASH_EXPERTS": "modes"})
    yield server
    server.stop()


def _answer(server: RunningGateway, key: str, model: str, **asks: object) -> tuple[str, dict]:
    api = openai.OpenAI(api_key=key, base_url=f"{server.base_url}/v1", max_retries=0, timeout=120)
    answer = api.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=16, **asks)
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert answer.choices[0].message.content
    return answer.id, (answer.usage.model_extra or {})["compute_details"]


def test_flash_modes_run_fewer_ffn_flops_than_pro(routed_gateway: RunningGateway) -> None:
    key = routed_gateway.create_key("e2e-flash-experts")["key"]
    flash_id, flash = _answer(routed_gateway, key, "deepseek-v4-flash", **NON_THINK)
    pro_id, pro = _answer(routed_gateway, key, "deepseek-v4-pro", **NON_THINK)
    per_token = {name: d["flops"] / d["tokens_run"] for name, d in (("flash", flash), ("pro", pro))}
    # Non-think at 35% of the neurons: the FFN (most of a token's FLOPs) at ~0.68x
    assert per_token["flash"] < 0.9 * per_token["pro"], per_token
    for request_id, variant in ((flash_id, "flash"), (pro_id, "pro")):
        (row,) = wait_rows(
            routed_gateway, 1, "SELECT variant, status FROM usage_records WHERE request_id = ?", request_id
        )
        assert row == (variant, "completed")
