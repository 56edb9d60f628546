"""Schemathesis against the published OpenAPI document, on a live `gateway serve` with real
keys: every public and admin operation, valid and invalid inputs; no 5xx, and every answer
(status, media type, headers, body; 405s with their Allow header) matches the document.

Bounded for CI: a few generated cases per operation, and chat completions capped at a few
output tokens (the generated max_tokens would otherwise make the model write for minutes).
The admin cases run against a tenant and a key of their own (path parameters `name` and
`key_id` are pointed at them on every other case so that success bodies are checked
too), apart from the tenant whose key makes the public calls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode, checks

from tests.e2e.server import RunningGateway, start_gateway

pytestmark = pytest.mark.slow

MAX_OUTPUT_TOKENS = 4
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "6"))  # per operation and mode
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.unsupported_method,
]


class Live:
    def __init__(self, server: RunningGateway) -> None:
        self.server = server
        admin = json.loads(server.cli("admin", "key", "create", "schemathesis", "--json").stdout)
        self.admin_key = admin["key"]
        self.public_key = server.create_key("st-public")["key"]
        target = server.create_key("st-admin-target")
        self.admin_tenant = "st-admin-target"
        self.admin_key_id = target["id"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = start_gateway(Path(tmp_path_factory.mktemp("schemathesis")))
    try:
        yield Live(server)
    finally:
        server.stop()


def _prepare(case: schemathesis.Case, live: Live) -> dict[str, str]:
    params = case.path_parameters or {}
    flip = len(json.dumps(case.body, default=str)) % 2 == 0 if case.body is not None else True
    if flip and "name" in params:
        params["name"] = live.admin_tenant
    if flip and "key_id" in params and "revoke" not in case.path:
        params["key_id"] = live.admin_key_id
    if case.path == "/v1/chat/completions" and isinstance(case.body, dict):
        for field in ("max_tokens", "max_completion_tokens"):
            value = case.body.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_OUTPUT_TOKENS:
                case.body[field] = MAX_OUTPUT_TOKENS
        if "max_tokens" not in case.body and "max_completion_tokens" not in case.body:
            case.body["max_tokens"] = MAX_OUTPUT_TOKENS
    key = live.admin_key if case.path.startswith("/admin") else live.public_key
    return {"authorization": f"Bearer {key}"}


def test_every_operation_matches_the_schema(live: Live) -> None:
    # Driven from one test (schemathesis' pytest plugin does not run under pytest 9).
    schema = schemathesis.openapi.from_url(f"{live.server.base_url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    failures: list[str] = []
    calls: dict[str, int] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                headers = _prepare(case, live)
                calls[operation.label] = calls.get(operation.label, 0) + 1
                case.call_and_validate(headers=headers, checks=CHECKS, timeout=120)

            try:
                run()
            except Exception as exc:  # every operation's failure, not only the first
                failures.append(f"{operation.label} [{mode.value}]: {exc}"[:3000])
    assert len(calls) == len(operations)
    print(f"\nschemathesis: {sum(calls.values())} cases over {len(operations)} operations")
    assert not failures, "\n\n".join(failures[:20])
