"""The usage ledger: batched idempotent writer, durable spool, hourly rollup, queries,
invoices and the savings report."""

from billing.ledger.entry import UsageEntry
from billing.ledger.invoices import (
    InvoiceDocument,
    build_invoice,
    generate_invoice,
    generate_monthly_invoices,
    get_invoice,
    month_bounds,
    previous_month,
)
from billing.ledger.queries import UsageDay, UsageTotals, usage_by_day, usage_csv, usage_totals
from billing.ledger.rollup import RollupResult, rollup_hours, rollup_period, run_rollup
from billing.ledger.savings import SavingsReport, savings_from_totals, savings_report
from billing.ledger.spool import UsageSpool
from billing.ledger.writer import UsageWriter, WriterStats

__all__ = [
    "InvoiceDocument",
    "RollupResult",
    "SavingsReport",
    "UsageDay",
    "UsageEntry",
    "UsageSpool",
    "UsageTotals",
    "UsageWriter",
    "WriterStats",
    "build_invoice",
    "generate_invoice",
    "generate_monthly_invoices",
    "get_invoice",
    "month_bounds",
    "previous_month",
    "rollup_hours",
    "rollup_period",
    "run_rollup",
    "savings_from_totals",
    "savings_report",
    "usage_by_day",
    "usage_csv",
    "usage_totals",
]
