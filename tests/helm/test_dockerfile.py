"""The Dockerfile agrees with pyproject.toml and with the chart (it cannot be built here: no daemon
and no registry for base images; docs/deployment.md says so)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, rest = full.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_base_image_and_stages() -> None:
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE
    froms = [args for keyword, args in instructions() if keyword == "FROM"]
    assert froms and all(args.startswith("${PYTHON_IMAGE}") for args in froms)


def test_torch_is_the_cpu_build_with_the_project_pin() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch_pin,) = [d for d in dependencies if d.startswith("torch")]
    runs = [args for keyword, args in instructions() if keyword == "RUN"]
    torch_runs = [r for r in runs if "torch" in r]
    assert torch_runs == [f"pip install {torch_pin} --index-url ${{TORCH_INDEX_URL}}"]
    # the default is the CPU build; pool-worker images for GPUs pass their stack's index
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in DOCKERFILE
    # torch comes before the project, so that pip finds the pin satisfied by the CPU build
    assert runs.index(torch_runs[0]) < next(
        i for i, r in enumerate(runs) if "/src" in r and "pip install" in r
    )


def test_model_is_fetched_at_build_time() -> None:
    assert any("gateway models fetch" in args for keyword, args in instructions() if keyword == "RUN")


def test_runs_as_the_chart_user_with_gateway_entrypoint() -> None:
    final = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(final) if keyword == "FROM")
    runtime = final[last_from:]
    (user,) = [args for keyword, args in runtime if keyword == "USER"]
    uid, _, gid = user.partition(":")
    values = yaml.safe_load((ROOT / "helm" / "gateway" / "values.yaml").read_text())
    assert int(uid) != 0
    assert int(uid) == values["podSecurityContext"]["runAsUser"] == values["securityContext"]["runAsUser"]
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]
    (entrypoint,) = [args for keyword, args in runtime if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["gateway"]
    env = " ".join(args for keyword, args in runtime if keyword == "ENV")
    assert re.search(r"GATEWAY_DATA_DIR=/data\b", env)


def test_dockerignore_keeps_what_pip_install_needs() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]}
    assert not ignored & (packages | {"pyproject.toml", "README.md"})
    assert {".git", ".venv", "var", "tests"} <= ignored


def test_cpu_kernel_is_built_into_the_image_where_the_runtime_looks() -> None:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    build, runtime = steps[:last_from], steps[last_from:]

    def kernel_dir(stage: list[tuple[str, str]]) -> str:
        env = " ".join(args for keyword, args in stage if keyword == "ENV")
        found = re.search(r"GATEWAY_KERNEL_DIR=(\S+)", env)
        assert found, "GATEWAY_KERNEL_DIR is not set"
        return found.group(1)

    # built where the runtime loads it from, inside the venv that the runtime stage copies
    assert kernel_dir(build) == kernel_dir(runtime)
    assert kernel_dir(runtime).startswith("/opt/venv/")
    runs = [args for keyword, args in build if keyword == "RUN"]
    assert any("g++" in r and "apt-get install" in r for r in runs)
    assert any("cpu_ops" in r and "load()" in r for r in runs)
