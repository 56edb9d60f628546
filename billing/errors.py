"""The billing room's error hierarchy. The gateway maps these to HTTP once, at the edge."""

from __future__ import annotations


class BillingError(Exception):
    """Base class of every error raised by the billing package."""


class CatalogError(BillingError):
    """A price catalog document or change is invalid (HTTP 400 at the admin API)."""


class PriceNotFoundError(BillingError):
    """No price version is in force for the variant at the given time (HTTP 500: a
    configuration error, never the caller's fault)."""


class BudgetExceededError(BillingError):
    """A hard budget cannot cover the worst-case cost of the request.

    Suggested mapping: HTTP 429 with the OpenAI error type ``insufficient_quota``
    (or 402); ``message`` is safe to show to the tenant.
    """

    def __init__(
        self,
        *,
        scope: str,
        scope_id: str,
        period: str,
        limit_units: int,
        spent_units: int,
        reserved_units: int,
        requested_units: int,
    ) -> None:
        self.scope = scope
        self.scope_id = scope_id
        self.period = period
        self.limit_units = limit_units
        self.spent_units = spent_units
        self.reserved_units = reserved_units
        self.requested_units = requested_units
        from billing.cost import units_to_usd_str

        super().__init__(
            f"The {scope} budget of {units_to_usd_str(limit_units)} USD for period {period} "
            f"cannot cover this request: spent {units_to_usd_str(spent_units)}, in flight "
            f"{units_to_usd_str(reserved_units)}, this request needs up to "
            f"{units_to_usd_str(requested_units)} USD."
        )


class DuplicateReservationError(BillingError):
    """A reservation id (request id + attempt) that was already settled was reused."""


class ReservationNotFoundError(BillingError):
    """settle/release/extend named a reservation that does not exist (already settled,
    released or reaped)."""


class LedgerError(BillingError):
    """The usage ledger could not accept a record (neither the database nor the spool)."""
