"""Price catalog: versioned prices, time-of-day windows, promotions, comparators."""

from billing.catalog.io import (
    dump_catalog_file,
    dumps_catalog,
    load_catalog_file,
    loads_document,
    parse_catalog,
    render_catalog,
)
from billing.catalog.model import (
    Comparator,
    PriceCatalog,
    PriceQuote,
    PriceVersion,
    Promotion,
    TimeOfDay,
    VariantPrices,
    Window,
)
from billing.catalog.seed import SEED_DOCUMENT, seed_catalog
from billing.catalog.store import CatalogChange, CatalogStore

__all__ = [
    "SEED_DOCUMENT",
    "CatalogChange",
    "CatalogStore",
    "Comparator",
    "PriceCatalog",
    "PriceQuote",
    "PriceVersion",
    "Promotion",
    "TimeOfDay",
    "VariantPrices",
    "Window",
    "dump_catalog_file",
    "dumps_catalog",
    "load_catalog_file",
    "loads_document",
    "parse_catalog",
    "render_catalog",
    "seed_catalog",
]
