"""Price catalog: file round trips, validation, promotions, the DB store and its events."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

from billing.catalog import (
    SEED_DOCUMENT,
    CatalogStore,
    dump_catalog_file,
    load_catalog_file,
    loads_document,
    parse_catalog,
    render_catalog,
    seed_catalog,
)
from billing.errors import CatalogError, PriceNotFoundError
from billing.types import Variant


def T(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_file_round_trip(tmp_path: Path, suffix: str) -> None:
    catalog = seed_catalog()
    path = tmp_path / f"prices{suffix}"
    dump_catalog_file(catalog, path)
    again = load_catalog_file(path)
    assert render_catalog(again) == render_catalog(catalog)
    assert again.prices_at(Variant.PRO, T("2026-08-17T02:00:00Z")).output == Decimal("3.96")


def test_yaml_unquoted_numbers_stay_exact(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "versions:\n- id: v1\n  effective_from: 2026-01-01T00:00:00Z\n"
        "  prices: {flash: {cache_hit: 0.0028, cache_miss: 0.14, output: 0.28}}\n"
    )
    quote = load_catalog_file(path).prices_at("flash", T("2026-02-01T00:00:00Z"))
    assert quote.cache_hit == Decimal("0.0028") and isinstance(quote.cache_hit, Decimal)


def test_json_numbers_are_decimal(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        '{"versions": [{"id": "v1", "effective_from": "2026-01-01T00:00:00Z",'
        ' "prices": {"flash": {"cache_hit": 0.1, "cache_miss": 0.2, "output": 0.3}}}]}'
    )
    assert load_catalog_file(path).prices_at("flash", T("2026-02-01T00:00:00Z")).output == Decimal("0.3")


def test_invalid_documents_are_refused() -> None:
    bad_price = json.loads(json.dumps(SEED_DOCUMENT))
    bad_price["versions"][0]["prices"]["flash"]["output"] = "0.12345678"
    with pytest.raises(CatalogError):
        parse_catalog(bad_price)
    naive = json.loads(json.dumps(SEED_DOCUMENT))
    naive["versions"][0]["effective_from"] = "2026-04-24T00:00:00"
    with pytest.raises(CatalogError):
        parse_catalog(naive)
    with pytest.raises(CatalogError):
        parse_catalog({"versions": [{"id": "x"}]})
    with pytest.raises(PriceNotFoundError):
        seed_catalog().prices_at("flash", T("2026-01-01T00:00:00Z"))
    with pytest.raises(CatalogError):
        seed_catalog().prices_at("flash", dt.datetime(2026, 5, 1))  # naive


def test_non_utc_instants_are_converted() -> None:
    at = dt.datetime(2026, 8, 17, 3, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # 01:30 UTC
    assert seed_catalog().prices_at("flash", at).period == "peak"


def test_promotion_lowest_multiplier_wins() -> None:
    doc = json.loads(json.dumps(SEED_DOCUMENT))
    doc["promotions"] = [
        {
            "id": "half",
            "starts_at": "2026-05-01T00:00:00Z",
            "ends_at": "2026-05-02T00:00:00Z",
            "multiplier": "0.5",
            "variants": ["flash"],
        },
        {
            "id": "tenth",
            "starts_at": "2026-05-01T12:00:00Z",
            "ends_at": "2026-05-01T13:00:00Z",
            "multiplier": "0.1",
        },
    ]
    catalog = parse_catalog(doc)
    q = catalog.prices_at("flash", T("2026-05-01T06:00:00Z"))
    assert (q.version_id, q.cache_miss, q.promotion_id) == (
        "v4-hit-cut@standard+half",
        Decimal("0.07"),
        "half",
    )
    assert catalog.prices_at("flash", T("2026-05-01T12:00:00Z")).promotion_id == "tenth"
    assert catalog.prices_at("pro", T("2026-05-01T06:00:00Z")).promotion_id is None
    assert catalog.prices_at("flash", T("2026-05-02T00:00:00Z")).promotion_id is None  # end exclusive


async def test_store_seeds_imports_and_audits(sessions, unique: str) -> None:
    store = CatalogStore(sessions)
    catalog = await store.load()
    assert [v.id for v in catalog.versions][:3] == ["v4-launch", "v4-hit-cut", "v4-peak"]
    assert {c.id for c in catalog.comparators} >= {"claude-opus-4.7", "gpt-5.5"}
    assert (await store.load()).versions == catalog.versions  # seeding only once

    vid = f"t-{unique}"
    future = {
        "id": vid,
        "effective_from": "2099-01-01T00:00:00Z",
        "prices": {
            "flash": {"cache_hit": "0.001", "cache_miss": "0.1", "output": "0.2"},
            "pro": {"cache_hit": "0.01", "cache_miss": "1", "output": "2"},
        },
    }
    change = await store.add_version(future, actor="admin:alice")
    assert change.event["kind"] == "billing.price_version.created"
    assert change.event["actor"] == "admin:alice"
    assert change.catalog.prices_at("pro", T("2099-06-01T00:00:00Z")).version_id == f"{vid}@standard"
    with pytest.raises(CatalogError):
        await store.add_version(future, actor="admin:alice")  # ids are immutable
    past = dict(future, id=f"p-{unique}", effective_from="2026-05-01T00:00:00Z")
    with pytest.raises(CatalogError):
        await store.add_version(past, actor="admin:alice")

    exported = await store.export()
    again = await store.import_document(exported, actor="cli")  # identical: no-op
    assert again.event["payload"]["versions_added"] == []
    exported["versions"][-1]["prices"]["flash"]["output"] = "0.3"
    with pytest.raises(CatalogError):
        await store.import_document(exported, actor="cli")

    promo = {
        "id": f"pr-{unique}",
        "starts_at": "2098-01-01T00:00:00Z",
        "ends_at": "2098-02-01T00:00:00Z",
        "multiplier": "0.5",
    }
    change = await store.add_promotion(promo, actor="admin:alice")
    assert change.catalog.prices_at("flash", T("2098-01-15T00:00:00Z")).promotion_id == promo["id"]
    change = await store.end_promotion(promo["id"], actor="admin:alice", at=T("2098-01-10T00:00:00Z"))
    assert change.catalog.prices_at("flash", T("2098-01-15T00:00:00Z")).promotion_id is None
    assert change.event["kind"] == "billing.promotion.ended"

    change = await store.set_comparator(
        {"id": "claude-opus-4.7", "name": "Claude Opus 4.7", "input": "5", "output": "25"},
        actor="admin:alice",
    )
    assert change.catalog.comparator("claude-opus-4.7").output == Decimal(25)


async def test_import_file_and_export_text(sessions, unique: str, tmp_path: Path) -> None:
    store = CatalogStore(sessions)
    text = await store.export_text("yaml")
    assert "v4-peak" in text and "claude-opus-4.7" in text
    path = tmp_path / "new.yaml"
    path.write_text(
        f"versions:\n- id: f-{unique}\n  effective_from: '2097-01-01T00:00:00Z'\n"
        "  prices: {flash: {cache_hit: '0.001', cache_miss: '0.1', output: '0.2'}}\n"
    )
    change = await store.import_file(path, actor="cli")
    assert change.event["payload"]["versions_added"] == [f"f-{unique}"]
    assert change.event["kind"] == "billing.price_catalog.imported"
    assert f"f-{unique}" in {v["id"] for v in json.loads(await store.export_text())["versions"]}


def test_loads_document_never_makes_floats() -> None:
    yaml_doc = loads_document(
        "versions:\n- id: y\n  effective_from: 2026-01-01T00:00:00Z\n"
        "  prices: {flash: {cache_hit: 0.0028, cache_miss: 0.14, output: 0.28}}\n"
    )
    json_doc = loads_document(
        '{"versions": [{"id": "j", "effective_from": "2026-01-01T00:00:00Z",'
        ' "prices": {"flash": {"cache_hit": 0.0028, "cache_miss": 0.14, "output": 0.28}}}]}'
    )
    for doc in (yaml_doc, json_doc):
        assert parse_catalog(doc).versions[0].prices[Variant.FLASH].cache_hit == Decimal("0.0028")
    with pytest.raises(CatalogError):  # what yaml.safe_load would hand over
        parse_catalog(
            {
                "versions": [
                    {
                        "id": "f",
                        "effective_from": "2026-01-01T00:00:00Z",
                        "prices": {"flash": {"cache_hit": 0.1, "cache_miss": 1, "output": 1}},
                    }
                ]
            }
        )
