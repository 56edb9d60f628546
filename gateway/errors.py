"""The gateway's error hierarchy. Mapped to HTTP once, at the edge (gateway/api/errors.py)."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc


class GatewayError(Exception):
    """Base for errors with a client-facing meaning.

    `status` and `type`/`code` follow the OpenAI error shape; `param` names the request field.
    """

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, type_: str | None = None
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if type_ is not None:
            self.type = type_


class ConfigurationError(GatewayError):
    code = "configuration_error"


class InvalidRequestError(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationError(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFoundError(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class ConflictError(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class RateLimitedError(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        headers: dict[str, str] | None = None,
        **kw: str | None,
    ):
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s
        self.headers = headers or {}


class UpstreamError(GatewayError):
    """An upstream engine answered, but refused the request (its 4xx): the gateway's 502."""

    status = 502
    type = "server_error"
    code = "upstream_error"


class ServiceUnavailableError(GatewayError):
    """503; with `retry_after_s` the answer carries a Retry-After header (whole seconds)."""

    status = 503
    type = "server_error"
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: str | None):
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


# What the database driver raises while the database is down, restarting or unreachable.
_DB_OUTAGE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def is_database_outage(exc: BaseException) -> bool:
    """True for a failure to reach the database (not for a bad query or bad data)."""
    if isinstance(exc, _DB_OUTAGE):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)
