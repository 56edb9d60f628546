"""Imports every room's ORM models so that Base.metadata is complete (for Alembic)."""

from billing import models as _billing_models  # noqa: F401
from billing.db import Base
from gateway.audit import models as _audit_models  # noqa: F401
from gateway.auth import models as _auth_models  # noqa: F401
from gateway.compliance import models as _compliance_models  # noqa: F401
from gateway.router_calibration import models as _router_calibration_models  # noqa: F401
from policy import models as _policy_models  # noqa: F401

metadata = Base.metadata
