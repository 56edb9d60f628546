"""Bearer-token extraction for the tenant API."""

from __future__ import annotations

from typing import Any

from litestar import Request

from gateway.auth.admin import AdminPrincipal
from gateway.auth.service import Principal
from gateway.errors import AuthenticationError


def header(request: Request[Any, Any, Any], name: bytes) -> str | None:
    """The first value of a request header (`name` lower-case, as ASGI servers give names),
    read from the scope: `request.headers` builds a case-insensitive multidict of every header,
    a cost on each request for the two headers the completion path reads."""
    for key, value in request.scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    value = header(request, b"authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def authenticate(request: Request[Any, Any, Any]) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise AuthenticationError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    principal: Principal = await request.app.state.services.authenticator.authenticate(token)
    return principal


async def require_admin(request: Request[Any, Any, Any]) -> AdminPrincipal:
    """The operator behind an admin API call (an `sk-gwa-` key), or 401."""
    token = bearer_token(request)
    if token is None:
        raise AuthenticationError(
            "The admin API needs 'Authorization: Bearer ADMIN_KEY'.", code="missing_api_key"
        )
    principal: AdminPrincipal = await request.app.state.services.admin_authenticator.authenticate(token)
    return principal
