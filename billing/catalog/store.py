"""The price catalog in the database: load (seeding an empty catalog), admin changes,
import and export. Every change returns an audit event dict for the gateway to append
to the audit log; versions are immutable once stored (re-importing the same version is a
no-op, a different document under an existing id is an error)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.catalog.io import (
    dumps_catalog,
    load_catalog_file,
    parse_catalog,
    parse_comparator,
    parse_promotion,
    parse_version,
    render_catalog,
    render_comparator,
    render_instant,
    render_promotion,
    render_version,
)
from billing.catalog.model import Comparator, PriceCatalog, PriceVersion, Promotion
from billing.catalog.models import PriceComparatorRow, PricePromotionRow, PriceVersionRow
from billing.catalog.seed import SEED_DOCUMENT
from billing.db import transaction, utcnow
from billing.errors import CatalogError
from billing.sql import dialect_of, insert_ignore

AuditEvent = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """The result of an admin change: the new catalog and the audit event to record."""

    catalog: PriceCatalog
    event: AuditEvent


class CatalogStore:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, seed: dict[str, Any] | None = None
    ) -> None:
        self._sessions = sessions
        self._seed = SEED_DOCUMENT if seed is None else seed

    async def load(self) -> PriceCatalog:
        """The catalog as stored; an empty catalog is seeded first (race-safe)."""
        async with transaction(self._sessions) as session:
            catalog = await self._read(session)
            if catalog.versions:
                return catalog
            await self._insert(session, parse_catalog(self._seed), actor="seed")
            return await self._read(session)

    async def export(self) -> dict[str, Any]:
        return render_catalog(await self.load())

    async def export_text(self, fmt: str = "json") -> str:
        """`gateway prices export [--format yaml]`."""
        return dumps_catalog(await self.load(), fmt)

    async def import_file(self, path: str | Path, *, actor: str) -> CatalogChange:
        """`gateway prices import FILE` (.json, .yaml or .yml)."""
        return await self.import_document(render_catalog(load_catalog_file(path)), actor=actor)

    async def add_version(
        self,
        version: PriceVersion | dict[str, Any],
        *,
        actor: str,
        now: dt.datetime | None = None,
        allow_backdated: bool = False,
    ) -> CatalogChange:
        """Add a new price version. By default it must take effect in the future, so that
        no request already priced is priced differently by a later lookup."""
        v = version if isinstance(version, PriceVersion) else parse_version(version)
        now = now or utcnow()
        if v.effective_from < now and not allow_backdated:
            raise CatalogError(
                f"version {v.id} would take effect in the past ({render_instant(v.effective_from)})"
            )
        return await self._apply(
            actor, versions=[v], kind="billing.price_version.created", payload=render_version(v)
        )

    async def add_promotion(self, promotion: Promotion | dict[str, Any], *, actor: str) -> CatalogChange:
        p = promotion if isinstance(promotion, Promotion) else parse_promotion(promotion)
        return await self._apply(
            actor, promotions=[p], kind="billing.promotion.created", payload=render_promotion(p)
        )

    async def end_promotion(
        self, promotion_id: str, *, actor: str, at: dt.datetime | None = None
    ) -> CatalogChange:
        """Move a promotion's end to `at` (now by default); it cannot be extended this way."""
        at = at or utcnow()
        async with transaction(self._sessions) as session:
            row = await session.get(PricePromotionRow, promotion_id, with_for_update=True)
            if row is None:
                raise CatalogError(f"unknown promotion {promotion_id}")
            old = parse_promotion(row.document)
            new_end = min(old.ends_at, max(at, old.starts_at + dt.timedelta(microseconds=1)))
            doc = dict(row.document, ends_at=render_instant(new_end))
            parse_promotion(doc)
            row.document, row.ends_at = doc, new_end
            catalog = await self._read(session)
        event = _event("billing.promotion.ended", actor, {"id": promotion_id, "ends_at": doc["ends_at"]})
        return CatalogChange(catalog, event)

    async def set_comparator(self, comparator: Comparator | dict[str, Any], *, actor: str) -> CatalogChange:
        """Create or replace a comparator list price (used only by savings reports)."""
        c = comparator if isinstance(comparator, Comparator) else parse_comparator(comparator)
        async with transaction(self._sessions) as session:
            row = await session.get(PriceComparatorRow, c.id)
            if row is None:
                session.add(PriceComparatorRow(id=c.id, document=render_comparator(c), created_by=actor))
            else:
                row.document = render_comparator(c)
            await session.flush()
            catalog = await self._read(session)
        return CatalogChange(catalog, _event("billing.comparator.set", actor, render_comparator(c)))

    async def import_document(self, doc: dict[str, Any], *, actor: str) -> CatalogChange:
        """Import a catalog file's content: new versions, promotions and comparators are
        added, identical ones are skipped, a changed document under an existing version or
        promotion id is refused (comparators are replaced)."""
        incoming = parse_catalog(doc)
        async with transaction(self._sessions) as session:
            current = await self._read(session)
            known_v = {v.id: render_version(v) for v in current.versions}
            known_p = {p.id: render_promotion(p) for p in current.promotions}
            new_v = [v for v in incoming.versions if _is_new(known_v, v.id, render_version(v))]
            new_p = [p for p in incoming.promotions if _is_new(known_p, p.id, render_promotion(p))]
            PriceCatalog.build([*current.versions, *new_v], [*current.promotions, *new_p])
            await self._insert(
                session,
                PriceCatalog.build(new_v, new_p, incoming.comparators),
                actor=actor,
                replace_comparators=True,
            )
            catalog = await self._read(session)
        payload = {
            "versions_added": [v.id for v in new_v],
            "promotions_added": [p.id for p in new_p],
            "comparators": [c.id for c in incoming.comparators],
        }
        return CatalogChange(catalog, _event("billing.price_catalog.imported", actor, payload))

    async def _apply(
        self,
        actor: str,
        *,
        kind: str,
        payload: dict[str, Any],
        versions: list[PriceVersion] | None = None,
        promotions: list[Promotion] | None = None,
    ) -> CatalogChange:
        async with transaction(self._sessions) as session:
            current = await self._read(session)
            for v in versions or []:
                if any(x.id == v.id for x in current.versions):
                    raise CatalogError(f"price version {v.id} already exists")
            for p in promotions or []:
                if any(x.id == p.id for x in current.promotions):
                    raise CatalogError(f"promotion {p.id} already exists")
            PriceCatalog.build(
                [*current.versions, *(versions or [])], [*current.promotions, *(promotions or [])]
            )
            await self._insert(session, PriceCatalog.build(versions or [], promotions or []), actor=actor)
            catalog = await self._read(session)
        return CatalogChange(catalog, _event(kind, actor, payload))

    async def _read(self, session: AsyncSession) -> PriceCatalog:
        versions = (await session.scalars(select(PriceVersionRow))).all()
        promos = (await session.scalars(select(PricePromotionRow))).all()
        comps = (await session.scalars(select(PriceComparatorRow).order_by(PriceComparatorRow.id))).all()
        return PriceCatalog.build(
            [parse_version(r.document) for r in versions],
            [parse_promotion(r.document) for r in promos],
            [parse_comparator(r.document) for r in comps],
        )

    async def _insert(
        self, session: AsyncSession, catalog: PriceCatalog, *, actor: str, replace_comparators: bool = False
    ) -> None:
        dialect = dialect_of(session)
        now = utcnow()
        if catalog.versions:
            await session.execute(
                insert_ignore(dialect, PriceVersionRow.__table__, ["id"]),  # type: ignore[arg-type]
                [
                    {
                        "id": v.id,
                        "effective_from": v.effective_from,
                        "document": render_version(v),
                        "created_at": now,
                        "created_by": actor,
                    }
                    for v in catalog.versions
                ],
            )
        if catalog.promotions:
            await session.execute(
                insert_ignore(dialect, PricePromotionRow.__table__, ["id"]),  # type: ignore[arg-type]
                [
                    {
                        "id": p.id,
                        "starts_at": p.starts_at,
                        "ends_at": p.ends_at,
                        "document": render_promotion(p),
                        "created_at": now,
                        "created_by": actor,
                    }
                    for p in catalog.promotions
                ],
            )
        for c in catalog.comparators:
            row = await session.get(PriceComparatorRow, c.id)
            if row is None:
                session.add(PriceComparatorRow(id=c.id, document=render_comparator(c), created_by=actor))
            elif replace_comparators:
                row.document = render_comparator(c)
        await session.flush()


def _is_new(known: dict[str, dict[str, Any]], item_id: str, doc: dict[str, Any]) -> bool:
    if item_id not in known:
        return True
    if known[item_id] != doc:
        raise CatalogError(f"{item_id} already exists with different content; ids are immutable")
    return False


def _event(kind: str, actor: str, payload: dict[str, Any]) -> AuditEvent:
    return {"kind": kind, "actor": actor, "tenant_id": None, "payload": payload}
