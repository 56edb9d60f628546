"""Prepare a fault test's database with the operator's CLI commands, run in one process
(each `gateway` process start costs seconds on a loaded machine; the commands are the same).

    python -m tests.faults.provision '[{"name": "acme", "budget_usd": "100", "rpm": 0}]'

prints {"acme": {"tenant_id": ..., "key": ...}}; GATEWAY_* come from the environment.
"""

from __future__ import annotations

import json
import sys

from click.testing import CliRunner

from gateway.cli import cli


def run(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"gateway {' '.join(args[:2])} failed: {result.output[-2000:]}")
    return result.output


def main(spec: list[dict[str, object]]) -> dict[str, dict[str, str]]:
    run(["db", "upgrade"])
    out = {}
    for t in spec:
        name = str(t["name"])
        args = ["tenant", "create", name, "--rpm", str(t.get("rpm") or 0), "--json"]
        if t.get("budget_usd"):
            args += ["--budget-usd", str(t["budget_usd"]), "--budget-period", "month"]
            args += ["--budget-mode", "hard"]
        tenant = json.loads(run(args))
        key = json.loads(run(["key", "create", "--tenant", name, "--json"]))
        out[name] = {"tenant_id": str(tenant["id"]), "key": str(key["key"])}
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
