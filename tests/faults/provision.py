"""Prepare a fault test's database with the operator's CLI commands, run in the test's own
process (each `gateway` process start costs seconds on a loaded machine; the commands are
the same). Calls are serialised: the CLI reads its settings from os.environ, which
CliRunner swaps for the call."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping

from click.testing import CliRunner

from gateway.cli import cli

_ENV_LOCK = threading.Lock()


def run_cli(env: Mapping[str, str], args: list[str]) -> tuple[int, str]:
    """`gateway <args>` in process with exactly the GATEWAY_* variables of `env`."""
    patch: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GATEWAY_")}
    patch.update({k: v for k, v in env.items() if k.startswith("GATEWAY_")})
    with _ENV_LOCK:
        result = CliRunner().invoke(cli, args, env=patch, catch_exceptions=False)
    return result.exit_code, result.output


def provision(env: Mapping[str, str], spec: list[dict[str, object]]) -> dict[str, dict[str, str]]:
    """Migrate, then create each tenant (name, budget_usd: a hard monthly budget, rpm) and a
    key: {name: {"tenant_id", "key"}}."""
    _ok(env, ["db", "upgrade"])
    out = {}
    for t in spec:
        name = str(t["name"])
        args = ["tenant", "create", name, "--rpm", str(t.get("rpm") or 0), "--json"]
        if t.get("budget_usd"):
            args += ["--budget-usd", str(t["budget_usd"]), "--budget-period", "month"]
            args += ["--budget-mode", "hard"]
        tenant = json.loads(_ok(env, args))
        key = json.loads(_ok(env, ["key", "create", "--tenant", name, "--json"]))
        out[name] = {"tenant_id": str(tenant["id"]), "key": str(key["key"])}
    return out


def _ok(env: Mapping[str, str], args: list[str]) -> str:
    code, output = run_cli(env, args)
    if code != 0:
        raise RuntimeError(f"gateway {' '.join(args[:2])} failed: {output[-2000:]}")
    return output
