"""Maps every error to the OpenAI error shape, once, at the edge."""

from __future__ import annotations

import logging
import math
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException

from billing.errors import BudgetExceededError, CatalogError
from billing.redis_client import RedisUnavailableError, is_redis_outage
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceUnavailableError,
    is_database_outage,
)
from inference.errors import InferenceError, PromptTooLongError
from inference.errors import InvalidRequestError as EngineInvalidRequestError
from policy.errors import (
    ComplianceViolation,
    CostCeilingExceeded,
    InvalidRequest,
    PolicyError,
    PolicyForbidden,
    PolicyNotFound,
    PolicyValidationError,
)

log = logging.getLogger(__name__)


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def as_gateway_error(exc: Exception) -> GatewayError:
    """Translate domain errors of the lower rooms into the gateway's hierarchy."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, PolicyError):
        return _policy_error(exc)
    if isinstance(exc, RedisUnavailableError):
        return ServiceUnavailableError(str(exc), retry_after_s=exc.retry_after_s)
    if is_redis_outage(exc):  # e.g. an admin call reading the live budget counters
        return ServiceUnavailableError("Redis is unavailable; retry shortly.", retry_after_s=2)
    if is_database_outage(exc):
        return ServiceUnavailableError("The database is unavailable; retry shortly.", retry_after_s=2)
    if isinstance(exc, BudgetExceededError):
        return RateLimitedError(str(exc), code="budget_exceeded", type_="insufficient_quota")
    if isinstance(exc, CatalogError):
        return InvalidRequestError(str(exc), code="invalid_price_catalog")
    if isinstance(exc, PromptTooLongError):
        return InvalidRequestError(str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, EngineInvalidRequestError):
        return InvalidRequestError(str(exc))
    if isinstance(exc, InferenceError):
        return ServiceUnavailableError(f"The inference engine could not serve the request: {exc}")
    if isinstance(exc, OverflowError):
        # A number or a date beyond what the database or the calendar holds (year 9999 + 1).
        return InvalidRequestError("A value in the request is out of range.", code="out_of_range")
    if isinstance(exc, RecursionError):
        # Parsers (JSON, YAML policy and profile documents) recurse once per nesting level.
        return InvalidRequestError("The request body is nested too deeply.", code="nested_too_deeply")
    return GatewayError("The server had an error while processing your request.")


def _policy_error(exc: PolicyError) -> GatewayError:
    message = f"{exc.message} (rule: {exc.rule})" if exc.rule else exc.message
    if isinstance(exc, PolicyForbidden | ComplianceViolation):
        return PermissionDeniedError(message, code=exc.code)
    if isinstance(exc, CostCeilingExceeded | InvalidRequest | PolicyValidationError):
        return InvalidRequestError(
            message, code=exc.code, param="model" if isinstance(exc, InvalidRequest) else None
        )
    if isinstance(exc, PolicyNotFound):
        return NotFoundError(message, code=exc.code)
    return GatewayError(message, code=exc.code)


def gateway_error_response(exc: GatewayError) -> Response[dict[str, Any]]:
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimitedError):
        headers.update(exc.headers)
        if exc.retry_after_s is not None:
            headers["retry-after"] = str(max(1, math.ceil(exc.retry_after_s)))
    if isinstance(exc, ServiceUnavailableError) and exc.retry_after_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(exc.retry_after_s)))
    return Response(
        error_body(exc.message, exc.type, exc.param, exc.code), status_code=exc.status, headers=headers
    )


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, NotFoundException):
        return Response(
            error_body(f"Unknown path {request.url.path}", "invalid_request_error", None, "not_found"),
            status_code=404,
        )
    if isinstance(exc, HTTPException):
        status = exc.status_code
        type_ = "invalid_request_error" if status < 500 else "server_error"
        code = "method_not_allowed" if status == 405 else ("request_too_large" if status == 413 else None)
        # Litestar's own headers, e.g. the `Allow` of a 405 (RFC 9110, 15.5.6).
        return Response(
            error_body(str(exc.detail), type_, None, code), status_code=status, headers=exc.headers or None
        )
    error = as_gateway_error(exc)
    if isinstance(exc, RedisUnavailableError) or is_redis_outage(exc) or is_database_outage(exc):
        # Refused while a backing service is down: its own component logs the outage once.
        log.debug("request refused: %s", type(exc).__name__)
    elif error.status >= 500:
        log.error("request failed: %s", type(exc).__name__, exc_info=exc)
    return gateway_error_response(error)
