"""Operator (admin) keys: issued by the CLI, used for the admin API and console."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction, utcnow
from gateway.auth import keys
from gateway.auth.models import AdminKey
from gateway.auth.service import LAST_USED_RESOLUTION
from gateway.errors import AuthenticationError, ConflictError, NotFoundError


@dataclass(frozen=True)
class AdminPrincipal:
    key_id: str
    name: str

    @property
    def actor(self) -> str:
        return f"admin:{self.name}"


async def create_admin_key(session: AsyncSession, name: str, pepper: bytes) -> tuple[AdminKey, str]:
    secret = keys.generate_key(keys.ADMIN_KEY_PREFIX)
    row = AdminKey(
        name=name, display_prefix=keys.display_prefix(secret), key_hash=keys.hash_key(secret, pepper)
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise ConflictError(f"an admin key named {name!r} already exists", param="name") from None
    return row, secret


async def revoke_admin_key(session: AsyncSession, name: str) -> AdminKey:
    row = await session.scalar(select(AdminKey).where(AdminKey.name == name))
    if row is None:
        raise NotFoundError(f"no admin key named {name!r}", param="name")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


class AdminAuthenticator:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], pepper: bytes):
        self._sessions = sessions
        self._pepper = pepper

    async def authenticate(self, token: str | None, *, now: dt.datetime | None = None) -> AdminPrincipal:
        failure = AuthenticationError("Incorrect or revoked admin key provided.", code="invalid_admin_key")
        if not token or not keys.looks_like_key(token, keys.ADMIN_KEY_PREFIX):
            raise failure
        digest = keys.hash_key(token, self._pepper)
        now = now or utcnow()
        async with self._sessions() as session:
            row = await session.scalar(select(AdminKey).where(AdminKey.key_hash == digest))
            if row is None or not keys.verify_key(token, row.key_hash, self._pepper) or row.revoked_at:
                raise failure
            principal = AdminPrincipal(row.id, row.name)
            stale = row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION
        if stale:
            async with transaction(self._sessions) as session:
                await session.execute(update(AdminKey).where(AdminKey.id == row.id).values(last_used_at=now))
        return principal
