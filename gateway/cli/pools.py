"""`gateway pools ...`: the pools' replicas and their dispatch settings (docs/pools.md).

Pools are registered with `gateway compliance pool add` (or the pools file); this group lists
them with their replicas and adds, drains and removes replicas. Running gateways pick the
change up within 10 s. Every change is an audit event with the actor.
"""

from __future__ import annotations

from typing import Any

import click

from gateway.cli.common import db_transaction, emit_json, load_settings, run_async
from gateway.compliance import registry
from gateway.dispatch import replicas as reg

_actor = click.option("--actor", default="cli", show_default=True, help="Who makes the change (audited).")


@click.group()
def pools() -> None:
    """Device pools' replicas: list, add, drain, return, remove."""


@pools.command("list")
@click.option("--json", "as_json", is_flag=True)
def pools_list(as_json: bool) -> None:
    """Every pool with its backend, variants and replicas."""
    settings = load_settings()

    async def go() -> list[dict[str, Any]]:
        async with db_transaction(settings) as session:
            by_pool = await reg.replicas_by_pool(session)
            return [
                {**registry.pool_dict(p), "replicas": [reg.replica_dict(p, r) for r in by_pool.get(p.id, [])]}
                for p in await registry.list_pools(session)
            ]

    rows = run_async(go)
    if as_json:
        emit_json(rows)
        return
    for p in rows:
        variants = ",".join(p["variants"]) or "all"
        click.echo(f"{p['name']}  {p['backend']}  {p['device_kind']}  {p['region']}  variants={variants}")
        for r in p["replicas"]:
            state = "" if r["enabled"] else "  (drained)"
            click.echo(f"  {r['url']}  capacity={r['capacity']}{state}")


@pools.group()
def replica() -> None:
    """One pool's replicas."""


@replica.command("add")
@click.argument("pool")
@click.argument("url")
@click.option("--capacity", type=int, default=64, show_default=True, help="Concurrent requests it takes.")
@_actor
def replica_add(pool: str, url: str, capacity: int, actor: str) -> None:
    """Add URL (a `gateway worker`, an upstream's /v1 base URL) to POOL."""
    settings = load_settings()

    async def go() -> None:
        async with db_transaction(settings) as session:
            await reg.add_replica(session, pool, url, capacity, actor=actor)

    run_async(go)
    click.echo(f"added {url} to pool {pool} (capacity {capacity})")


@replica.command("remove")
@click.argument("pool")
@click.argument("url")
@_actor
def replica_remove(pool: str, url: str, actor: str) -> None:
    """Forget a replica of POOL."""
    settings = load_settings()

    async def go() -> None:
        async with db_transaction(settings) as session:
            await reg.remove_replica(session, pool, url, actor=actor)

    run_async(go)
    click.echo(f"removed {url} from pool {pool}")


@replica.command("drain")
@click.argument("pool")
@click.argument("url")
@click.option("--enable", is_flag=True, help="Return a drained replica to service.")
@_actor
def replica_drain(pool: str, url: str, enable: bool, actor: str) -> None:
    """Stop sending new requests to a replica (requests in flight finish)."""
    settings = load_settings()

    async def go() -> None:
        async with db_transaction(settings) as session:
            await reg.set_replica_enabled(session, pool, url, enable, actor=actor)

    run_async(go)
    click.echo(f"{'returned' if enable else 'drained'} {url} of pool {pool}")
