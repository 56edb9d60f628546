"""A `gateway serve` subprocess that serves only through upstream pools (no embedded engine),
in front of fake upstream engines running in the test process (tests/dispatch/fake_upstream.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.e2e.server import RunningGateway, free_port, start_gateway


def dead_url() -> str:
    """An upstream base URL where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}/v1"


def upstream_pool(
    name: str,
    dialect: str,
    urls: list[str],
    *,
    region: str,
    variants: list[str],
    models: dict[str, str] | None = None,
    api_key_env: str | None = None,
    vendor: str = "nvidia",
    device_kind: str = "cuda",
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "backend": dialect,
        "device_kind": device_kind,
        "vendor": vendor,
        "software_stack": {"cuda": "CUDA", "rocm": "ROCm", "npu": "CANN"}.get(device_kind, "CPU"),
        "region": region,
        "variants": variants,
        "replicas": [{"url": u, "capacity": 16} for u in urls],
    }
    if models:
        entry["models"] = models
    if api_key_env:
        entry["api_key_env"] = api_key_env
    return entry


def start_upstream_gateway(
    data_dir: Path, pools: list[dict[str, Any]], extra_env: dict[str, str] | None = None
) -> RunningGateway:
    """The gateway with GATEWAY_POOLS_FILE = `pools` and GATEWAY_EMBEDDED_ENGINE=false."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "pools.yaml"
    path.write_text(yaml.safe_dump({"pools": pools}, sort_keys=False))
    env = {
        "GATEWAY_POOLS_FILE": str(path),
        "GATEWAY_EMBEDDED_ENGINE": "false",
        "GATEWAY_DISPATCH_HEALTH_INTERVAL_S": "1",
        "GATEWAY_DISPATCH_FIRST_TOKEN_TIMEOUT_S": "5",
        **(extra_env or {}),
    }
    return start_gateway(data_dir, env)
