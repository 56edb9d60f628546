"""Per-tenant router calibration: fitted from the tenant's cascade outcomes, versioned."""
