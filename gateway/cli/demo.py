"""`gateway demo`: the quick start's demo tenant and its first key (idempotent)."""

from __future__ import annotations

import click
from sqlalchemy import select

from gateway.audit.log import append_event
from gateway.auth import service as auth
from gateway.auth.keys import load_or_create_pepper
from gateway.auth.models import Tenant
from gateway.cli.common import db_transaction, load_settings, run_async

DEMO_TENANT = "demo"


@click.command()
def demo() -> None:
    """Create the demo tenant and print its API key, once; later runs reuse it."""
    settings = load_settings()
    pepper = load_or_create_pepper(settings.key_pepper, settings.data_dir)

    async def go() -> str | None:
        async with db_transaction(settings) as session:
            if await session.scalar(select(Tenant).where(Tenant.name == DEMO_TENANT)) is not None:
                return None
            tenant = await auth.create_tenant(session, DEMO_TENANT)
            issued = await auth.create_key(session, tenant, pepper, name="demo")
            await append_event(
                session,
                kind="tenant.created",
                actor="cli",
                tenant_id=tenant.id,
                payload={"name": DEMO_TENANT},
            )
            await append_event(
                session,
                kind="key.created",
                actor="cli",
                tenant_id=tenant.id,
                payload={"key_id": issued.id, "prefix": issued.display_prefix},
            )
            return issued.secret

    secret = run_async(go)
    if secret is None:
        click.echo(
            f"demo tenant '{DEMO_TENANT}' exists; its key was printed when it was created. "
            f"A new one: gateway key create --tenant {DEMO_TENANT}"
        )
        return
    bar = "=" * 72
    click.echo(
        f"{bar}\nDemo tenant '{DEMO_TENANT}' created. Its API key (shown only once):\n\n"
        f"    {secret}\n\nTry it:\n    export OPENAI_API_KEY={secret}\n"
        f"    export OPENAI_BASE_URL=http://{settings.host}:{settings.port}/v1\n{bar}"
    )
