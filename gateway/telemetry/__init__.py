"""Observability: OpenTelemetry traces and metrics, Prometheus exposition, log hygiene.

See docs/observability.md. The request path uses one object, `services.telemetry`.
The engine wrapper lives in gateway.telemetry.engine (it imports the inference package).
"""

from gateway.telemetry.core import RequestScope, Telemetry, current_request
from gateway.telemetry.middleware import telemetry_middleware
from gateway.telemetry.redact import scrub

__all__ = ["RequestScope", "Telemetry", "current_request", "scrub", "telemetry_middleware"]
