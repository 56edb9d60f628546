"""`gateway audit ...`: verify the hash chain, sign checkpoints, apply retention."""

from __future__ import annotations

import datetime as dt
import os
import sys

import click

from gateway.audit.checkpoints import anchor, load_audit_key
from gateway.audit.retention import purge_before, redact_expired
from gateway.audit.verify import verify_chain
from gateway.cli.common import db_transaction, emit_json, load_settings, run_async
from gateway.settings import Settings


def audit_key(settings: Settings, *, create: bool) -> bytes | None:
    # GATEWAY_AUDIT_KEY; Settings gets an `audit_key` field when this is wired into it.
    configured = getattr(settings, "audit_key", "") or os.environ.get("GATEWAY_AUDIT_KEY", "")
    return load_audit_key(configured, settings.data_dir, create=create)


@click.group()
def audit() -> None:
    """Verify and maintain the tamper-evident audit log."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help='Print {"ok": ..., "checked": N, "problems": [...]}.')
def verify(as_json: bool) -> None:
    """Check every event, link and checkpoint; exit 0 when intact, 1 when not.

    Says which events were modified, deleted, inserted or reordered."""
    settings = load_settings()
    key = audit_key(settings, create=False)

    async def go() -> dict[str, object]:
        async with db_transaction(settings) as session:
            return (await verify_chain(session, key=key)).as_dict()

    report = run_async(go)
    if as_json:
        emit_json(
            {
                "ok": report["ok"],
                "checked": report["checked"],
                "problems": report["problems"],
                "first_seq": report["first_seq"],
                "last_seq": report["last_seq"],
                "start_seq": report["start_seq"],
            }
        )
    elif report["ok"]:
        click.echo(
            f"audit log intact: {report['checked']} events checked"
            + (f" (seq {report['first_seq']}..{report['last_seq']})" if report["checked"] else "")
        )
    else:
        problems = report["problems"]
        assert isinstance(problems, list)
        click.echo(
            f"audit log NOT intact: {len(problems)} problem(s) in {report['checked']} events", err=True
        )
        for p in problems:
            click.echo(f"  {p['kind']:<10} seq {p['seq']}: {p['message']}", err=True)
    sys.exit(0 if report["ok"] else 1)


@audit.command("checkpoint")
@click.option("--actor", default="cli", show_default=True, help="Who signs (recorded in the log).")
def checkpoint(actor: str) -> None:
    """Sign the current head of the chain (run it periodically: rewrites before it are caught)."""
    settings = load_settings()
    key = audit_key(settings, create=True)
    assert key is not None

    async def go() -> dict[str, object] | None:
        async with db_transaction(settings) as session:
            row = await anchor(session, key, actor=actor)
            return None if row is None else {"id": row.id, "seq": row.seq, "hash": row.hash}

    result = run_async(go)
    click.echo(
        "the audit log is empty"
        if result is None
        else f"signed checkpoint {result['id']} at seq {result['seq']}"
    )


@audit.command("purge")
@click.option("--before", "before", required=True, help="Delete events written before this date (UTC).")
@click.option("--actor", default="cli", show_default=True)
@click.option("--force", is_flag=True, help="Purge even if the events to delete do not verify.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(before: str, actor: str, force: bool, yes: bool) -> None:
    """Delete the oldest events, keeping the rest verifiable through a signed checkpoint."""
    try:
        moment = dt.datetime.fromisoformat(before)
    except ValueError:
        raise click.BadParameter(f"not a date: {before!r}", param_hint="--before") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    if not yes:
        click.confirm(f"Delete every audit event written before {moment.isoformat()}?", abort=True)
    settings = load_settings()
    key = audit_key(settings, create=True)
    assert key is not None

    async def go() -> dict[str, object]:
        async with db_transaction(settings) as session:
            r = await purge_before(session, key, before=moment, actor=actor, force=force)
            return {"purged": r.purged, "through_seq": r.through_seq, "checkpoint_id": r.checkpoint_id}

    result = run_async(go)
    emit_json(result)


@audit.command("redact-expired")
@click.option("--actor", default="cli", show_default=True)
def redact_expired_(actor: str) -> None:
    """Remove retained prompt/answer texts whose retention time has passed (hashes stay)."""
    settings = load_settings()

    async def go() -> int:
        async with db_transaction(settings) as session:
            return await redact_expired(session, actor=actor)

    click.echo(f"redacted {run_async(go)} event(s)")
