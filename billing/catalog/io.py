"""Price catalog documents: the JSON/YAML file format, parsing and rendering.

Format ``gateway-price-catalog/1`` (all prices are decimal *strings*, USD per 1M tokens;
times are ISO 8601 UTC; weekdays are ISO, 1=Monday)::

    format: gateway-price-catalog/1
    versions:
      - id: v4-peak
        effective_from: "2026-08-16T16:00:00Z"
        prices: {flash: {cache_hit: "0.014", cache_miss: "0.44", output: "1.32"}, pro: ...}
        time_of_day:
          off_peak_multiplier: "0.5"
          peak: [{start: "01:00", end: "04:00", weekdays: [1, 2, 3, 4, 5]}, ...]
    promotions: [{id, starts_at, ends_at, multiplier, variants: [flash]}]
    comparators: [{id: claude-opus-4.7, name: Claude Opus 4.7, input: "5", output: "25"}]

YAML is read with the base loader, so unquoted numbers stay exact strings too; JSON
numbers are parsed as Decimal. A float never enters.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from billing.catalog.model import (
    Comparator,
    PriceCatalog,
    PriceVersion,
    Promotion,
    TimeOfDay,
    VariantPrices,
    Window,
)
from billing.errors import CatalogError
from billing.types import Variant

FORMAT = "gateway-price-catalog/1"


def parse_catalog(doc: Any) -> PriceCatalog:
    """Build a validated catalog from a parsed document; raises CatalogError."""
    if not isinstance(doc, dict):
        raise CatalogError("a price catalog document must be a mapping")
    if doc.get("format", FORMAT) != FORMAT:
        raise CatalogError(f"unsupported catalog format {doc.get('format')!r}")
    try:
        return PriceCatalog.build(
            [parse_version(v) for v in doc.get("versions") or []],
            [parse_promotion(p) for p in doc.get("promotions") or []],
            [parse_comparator(c) for c in doc.get("comparators") or []],
        )
    except CatalogError:
        raise
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise CatalogError(f"invalid price catalog: {exc!r}") from exc


def parse_version(v: dict[str, Any]) -> PriceVersion:
    prices = {Variant(k): _variant_prices(p) for k, p in dict(v["prices"]).items()}
    tod = v.get("time_of_day")
    if tod not in (None, "", "null", "~") and not isinstance(tod, dict):
        raise CatalogError(f"version {v.get('id')}: time_of_day must be a mapping or null")
    return PriceVersion(
        id=str(v["id"]),
        effective_from=parse_instant(v["effective_from"]),
        prices=prices,
        time_of_day=_time_of_day(tod) if isinstance(tod, dict) else None,
        note=str(v.get("note", "")),
    )


def parse_promotion(p: dict[str, Any]) -> Promotion:
    return Promotion(
        id=str(p["id"]),
        starts_at=parse_instant(p["starts_at"]),
        ends_at=parse_instant(p["ends_at"]),
        multiplier=_decimal(p["multiplier"]),
        variants=frozenset(Variant(x) for x in p.get("variants") or []),
        note=str(p.get("note", "")),
    )


def parse_comparator(c: dict[str, Any]) -> Comparator:
    return Comparator(
        id=str(c["id"]),
        name=str(c["name"]),
        input=_decimal(c["input"]),
        output=_decimal(c["output"]),
        note=str(c.get("note", "")),
    )


def render_catalog(catalog: PriceCatalog) -> dict[str, Any]:
    """The document for `catalog` (round-trips through parse_catalog)."""
    return {
        "format": FORMAT,
        "versions": [render_version(v) for v in catalog.versions],
        "promotions": [render_promotion(p) for p in catalog.promotions],
        "comparators": [render_comparator(c) for c in catalog.comparators],
    }


def render_version(v: PriceVersion) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": v.id,
        "effective_from": render_instant(v.effective_from),
        "prices": {
            str(k): {"cache_hit": _s(p.cache_hit), "cache_miss": _s(p.cache_miss), "output": _s(p.output)}
            for k, p in sorted(v.prices.items())
        },
        "time_of_day": None,
        "note": v.note,
    }
    if v.time_of_day is not None:
        doc["time_of_day"] = {
            "off_peak_multiplier": _s(v.time_of_day.off_peak_multiplier),
            "peak": [
                {
                    "start": w.start.strftime("%H:%M:%S"),
                    "end": w.end.strftime("%H:%M:%S"),
                    "weekdays": sorted(w.weekdays),
                }
                for w in v.time_of_day.peak
            ],
        }
    return doc


def render_promotion(p: Promotion) -> dict[str, Any]:
    return {
        "id": p.id,
        "starts_at": render_instant(p.starts_at),
        "ends_at": render_instant(p.ends_at),
        "multiplier": _s(p.multiplier),
        "variants": sorted(str(x) for x in p.variants),
        "note": p.note,
    }


def render_comparator(c: Comparator) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "input": _s(c.input), "output": _s(c.output), "note": c.note}


def loads_document(text: str) -> dict[str, Any]:
    """Parse catalog text (JSON if it starts with '{', else YAML) without ever making a
    float: JSON numbers become Decimal, YAML scalars stay strings (base loader). Use this,
    not yaml.safe_load, which turns an unquoted 0.28 into a float (refused by the catalog)."""
    if text.lstrip().startswith("{"):
        doc = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    else:
        doc = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds only str/list/dict
    if not isinstance(doc, dict):
        raise CatalogError("a price catalog document must be a mapping")
    return doc


def load_catalog_file(path: str | Path) -> PriceCatalog:
    """Read a .json, .yaml or .yml catalog file."""
    return parse_catalog(loads_document(Path(path).read_text(encoding="utf-8")))


def dumps_catalog(catalog: PriceCatalog, fmt: str = "json") -> str:
    doc = render_catalog(catalog)
    if fmt in ("yaml", "yml"):
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if fmt != "json":
        raise CatalogError(f"unknown catalog format {fmt!r} (json or yaml)")
    return json.dumps(doc, indent=2) + "\n"


def dump_catalog_file(catalog: PriceCatalog, path: str | Path) -> None:
    path = Path(path)
    fmt = "yaml" if path.suffix.lower() in (".yaml", ".yml") else "json"
    path.write_text(dumps_catalog(catalog, fmt), encoding="utf-8")


def parse_instant(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        text = str(value).strip()
        parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if parsed.tzinfo is None:
        raise CatalogError(f"time {value!r} has no UTC offset")
    return parsed.astimezone(dt.UTC)


def render_instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_of_day(doc: dict[str, Any]) -> TimeOfDay:
    windows = tuple(
        Window(
            start=dt.time.fromisoformat(str(w["start"])),
            end=dt.time.fromisoformat(str(w["end"])),
            weekdays=frozenset(int(d) for d in w.get("weekdays") or [1, 2, 3, 4, 5]),
        )
        for w in doc.get("peak") or []
    )
    return TimeOfDay(peak=windows, off_peak_multiplier=_decimal(doc.get("off_peak_multiplier", "0.5")))


def _variant_prices(p: dict[str, Any]) -> VariantPrices:
    return VariantPrices(_decimal(p["cache_hit"]), _decimal(p["cache_miss"]), _decimal(p["output"]))


def _decimal(value: Any) -> Decimal:
    if isinstance(value, float):
        raise CatalogError(f"price {value!r} is a float; write prices as decimal strings")
    if isinstance(value, bool):
        raise CatalogError(f"price {value!r} is not a number")
    try:
        return Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise CatalogError(f"price {value!r} is not a decimal number") from exc


def _s(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return text
