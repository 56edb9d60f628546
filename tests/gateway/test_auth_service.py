import asyncio
import datetime as dt

import pytest
from sqlalchemy import select

from billing.db import transaction, utcnow
from gateway.auth import service as auth
from gateway.auth.models import ApiKey
from gateway.errors import AuthenticationError, ConflictError, NotFoundError

PEPPER = b"test-pepper"


async def _tenant_with_key(sessions, name: str, **kw) -> auth.IssuedKey:
    async with transaction(sessions) as s:
        tenant = await auth.create_tenant(s, name)
        return await auth.create_key(s, tenant, PEPPER, **kw)


async def test_key_authenticates_and_only_its_hash_is_stored(sessions, unique) -> None:
    issued = await _tenant_with_key(sessions, f"acme-{unique}")
    principal = await auth.Authenticator(sessions, PEPPER).authenticate(issued.secret)
    assert principal.tenant_id == issued.tenant_id and principal.key_id == issued.id
    async with sessions() as s:
        row = await s.get(ApiKey, issued.id)
        assert row is not None
        stored = " ".join(str(v) for v in vars(row).values())
        assert issued.secret not in stored
        assert issued.secret[len("sk-gw-") :] not in stored
        assert row.last_used_at is not None


async def test_unknown_revoked_expired_and_wrong_pepper_keys_fail(sessions, unique) -> None:
    authn = auth.Authenticator(sessions, PEPPER)
    issued = await _tenant_with_key(sessions, f"t-{unique}")
    expired = await _tenant_with_key(sessions, f"e-{unique}", expires_at=utcnow() - dt.timedelta(seconds=1))
    for token in ["", "garbage", "sk-gw-" + "A" * 43, expired.secret]:
        with pytest.raises(AuthenticationError):
            await authn.authenticate(token)
    with pytest.raises(AuthenticationError):
        await auth.Authenticator(sessions, b"other").authenticate(issued.secret)
    async with transaction(sessions) as s:
        await auth.revoke_key(s, issued.id)
    with pytest.raises(AuthenticationError):
        await authn.authenticate(issued.secret)


async def test_duplicate_tenant_and_unknown_names(sessions, unique) -> None:
    async with transaction(sessions) as s:
        await auth.create_tenant(s, f"dup-{unique}")
    with pytest.raises(ConflictError):
        async with transaction(sessions) as s:
            await auth.create_tenant(s, f"dup-{unique}")
    with pytest.raises(NotFoundError):
        async with transaction(sessions) as s:
            await auth.get_tenant_by_name(s, f"missing-{unique}")
    with pytest.raises(NotFoundError):
        async with transaction(sessions) as s:
            await auth.revoke_key(s, "key_missing")


async def test_concurrent_authentications_touch_last_used_once(sessions, unique) -> None:
    issued = await _tenant_with_key(sessions, f"c-{unique}")
    authn = auth.Authenticator(sessions, PEPPER)
    results = await asyncio.gather(*(authn.authenticate(issued.secret) for _ in range(5)))
    assert {p.key_id for p in results} == {issued.id}
    async with sessions() as s:
        keys = (await s.scalars(select(ApiKey).where(ApiKey.tenant_id == issued.tenant_id))).all()
    assert len(keys) == 1 and keys[0].last_used_at is not None
