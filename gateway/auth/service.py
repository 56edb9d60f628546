"""Tenants and API keys in the database: create, revoke, authenticate."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction, utcnow
from billing.ratelimit import RateLimit
from gateway.audit.log import append_event
from gateway.auth import keys
from gateway.auth.models import ApiKey, Tenant
from gateway.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    is_database_outage,
)
from gateway.ttl_cache import STALE_IF_ERROR_S, TtlCache

log = logging.getLogger(__name__)

# last_used_at is a hint for operators, not an audit record: writing it at most once a
# minute per key keeps a write off the hot path of every request.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant and the key that authenticated the request."""

    tenant_id: str
    tenant_name: str
    key_id: str
    scopes: frozenset[str]
    rate_limits: tuple[RateLimit, ...] = ()


@dataclass(frozen=True)
class IssuedKey:
    """A newly created key. `secret` exists only here, once."""

    id: str
    tenant_id: str
    tenant_name: str
    secret: str
    display_prefix: str
    expires_at: dt.datetime | None


def _valid_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise InvalidRequestError("tenant name must be 1-200 printable characters", param="name")
    return name


async def create_tenant(session: AsyncSession, name: str) -> Tenant:
    tenant = Tenant(name=_valid_name(name))
    session.add(tenant)
    try:
        await session.flush()
    except IntegrityError:
        raise ConflictError(f"tenant {name!r} already exists", param="name") from None
    return tenant


async def get_tenant_by_name(session: AsyncSession, name: str) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotFoundError(f"no tenant named {name!r}", param="tenant")
    return tenant


async def create_key(
    session: AsyncSession,
    tenant: Tenant,
    pepper: bytes,
    *,
    name: str = "",
    expires_at: dt.datetime | None = None,
    scopes: str = "inference",
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
) -> IssuedKey:
    secret = keys.generate_key()
    row = ApiKey(
        tenant_id=tenant.id,
        name=name,
        display_prefix=keys.display_prefix(secret),
        key_hash=keys.hash_key(secret, pepper),
        scopes=scopes,
        expires_at=expires_at,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
    )
    session.add(row)
    await session.flush()
    return IssuedKey(row.id, tenant.id, tenant.name, secret, row.display_prefix, expires_at)


async def revoke_key(session: AsyncSession, key_id: str) -> ApiKey:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFoundError(f"no API key with id {key_id!r}", param="id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


async def list_keys(session: AsyncSession, tenant_id: str) -> list[ApiKey]:
    result = await session.scalars(
        select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)
    )
    return list(result)


def rate_limits_of(tenant: Tenant, key: ApiKey) -> tuple[RateLimit, ...]:
    limits = []
    if key.requests_per_minute or key.tokens_per_minute:
        limits.append(RateLimit("key", key.id, key.requests_per_minute, key.tokens_per_minute))
    if tenant.requests_per_minute or tenant.tokens_per_minute:
        limits.append(RateLimit("tenant", tenant.id, tenant.requests_per_minute, tenant.tokens_per_minute))
    return tuple(limits)


@dataclass
class _KnownKey:
    principal: Principal
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None  # as this process last wrote or read it


class Authenticator:
    """Turns a bearer token into a Principal, or raises AuthenticationError (401).

    A key that authenticated is remembered for `cache_ttl_s` (default 1 s), so most requests
    make no database round trip: a key revoked (or a tenant deactivated) elsewhere stops
    working within that time on every replica, at once in the process that revoked it
    (`forget()`). Unknown keys are never remembered. While the database does not answer, a
    remembered key keeps authenticating for `stale_if_error_s` after it was last read (0:
    refused with a 503 as soon as its entry expires)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        pepper: bytes,
        *,
        cache_ttl_s: float = 1.0,
        stale_if_error_s: float = STALE_IF_ERROR_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._sessions = sessions
        self._pepper = pepper
        self._known: TtlCache[str, _KnownKey] = TtlCache(cache_ttl_s, clock, stale_s=stale_if_error_s)

    def forget(self) -> None:
        """Drop every remembered key (after a revocation in this process)."""
        self._known.forget()

    async def authenticate(self, token: str | None, *, now: dt.datetime | None = None) -> Principal:
        # One message for every failure: a caller learns nothing about which keys exist.
        failure = AuthenticationError("Incorrect or revoked API key provided.")
        if not token or not keys.looks_like_key(token):
            raise failure
        digest = keys.hash_key(token, self._pepper)
        now = now or utcnow()
        known = await self._known.get(digest, lambda: self._load(token, digest, failure))
        if known.expires_at is not None and known.expires_at <= now:
            raise failure
        if known.last_used_at is None or now - known.last_used_at >= LAST_USED_RESOLUTION:
            known.last_used_at = now
            await self._touch(known.principal.key_id, now)
        return known.principal

    async def _load(self, token: str, digest: str, failure: AuthenticationError) -> _KnownKey:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ApiKey, Tenant)
                    .join(Tenant, Tenant.id == ApiKey.tenant_id)
                    .where(ApiKey.key_hash == digest)
                )
            ).first()
            if row is None:
                raise failure
            key, tenant = row
            if not keys.verify_key(token, key.key_hash, self._pepper):
                raise failure
            if key.revoked_at is not None or not tenant.active:
                raise failure
            principal = Principal(
                tenant.id, tenant.name, key.id, frozenset(key.scopes.split()), rate_limits_of(tenant, key)
            )
            # The touch happens after this read session is back in the pool: two pooled
            # connections per request exhausted the pool at 16 concurrent first uses of a key.
            return _KnownKey(principal, key.expires_at, key.last_used_at)

    async def _touch(self, key_id: str, now: dt.datetime) -> None:
        try:
            async with transaction(self._sessions) as session:
                await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
        except Exception as exc:
            if not is_database_outage(exc):
                raise
            # A hint for operators: a database outage must not refuse the request for it.
            log.warning("last_used_at of key %s not written: the database does not answer", key_id)


async def set_rate_limits(
    session: AsyncSession,
    row: Tenant | ApiKey,
    *,
    requests_per_minute: int | None,
    tokens_per_minute: int | None,
    actor: str | None,
) -> None:
    """Set a tenant's limits (across all its keys) or one key's own (None or 0 removes a
    limit), audited as `tenant.limits_set` / `key.limits_set` (actor None: the caller's own
    event records it, as tenant creation does). Authentication reads both on every request,
    so a change applies to the next."""
    row.requests_per_minute = requests_per_minute or None
    row.tokens_per_minute = tokens_per_minute or None
    await session.flush()
    if actor is None:
        return
    payload: dict[str, object] = {
        "requests_per_minute": row.requests_per_minute,
        "tokens_per_minute": row.tokens_per_minute,
    }
    if isinstance(row, ApiKey):
        kind, tenant_id, payload = "key.limits_set", row.tenant_id, {"key_id": row.id, **payload}
    else:
        kind, tenant_id = "tenant.limits_set", row.id
    await append_event(session, kind=kind, actor=actor, tenant_id=tenant_id, payload=payload)


async def get_key(session: AsyncSession, key_id: str) -> ApiKey:
    """The key with this id, revoked or not, or NotFoundError (404)."""
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFoundError(f"no API key with id {key_id!r}", param="key_id")
    return row


def require_unrevoked(key: ApiKey) -> ApiKey:
    """A revoked key's limits and budget may be read but not changed (ConflictError, 409)."""
    if key.revoked_at is not None:
        raise ConflictError(
            f"API key {key.id} was revoked at {key.revoked_at.isoformat()}; "
            "its limits and budget can no longer be changed",
            param="key_id",
            code="key_revoked",
        )
    return key
