"""Outages of Redis or the database reach the client as 503 `service_unavailable` with a
Retry-After header in the API's error shape, never as a 500; other errors are not hidden."""

from __future__ import annotations

import json

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from billing.redis_client import RedisUnavailableError
from gateway.api.errors import as_gateway_error, gateway_error_response


@pytest.mark.parametrize(
    "exc",
    [
        RedisUnavailableError("Budgets"),
        RedisConnectionError("Error 111 connecting"),
        RedisTimeoutError("Timeout reading from socket"),
        OperationalError("SELECT 1", {}, ConnectionRefusedError()),
        InterfaceError("SELECT 1", {}, Exception("connection is closed")),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_outages_are_a_503_with_retry_after(exc: Exception) -> None:
    response = gateway_error_response(as_gateway_error(exc))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    body = response.content if isinstance(response.content, dict) else json.loads(response.content)
    assert body["error"]["code"] == "service_unavailable" and body["error"]["type"] == "server_error"
    assert "Error 111" not in body["error"]["message"]  # no driver details


@pytest.mark.parametrize(
    "exc",
    [ResponseError("ERR script error"), IntegrityError("INSERT", {}, Exception("duplicate"))],
    ids=lambda e: type(e).__name__,
)
def test_bugs_are_not_passed_off_as_outages(exc: Exception) -> None:
    assert as_gateway_error(exc).status == 500
