"""Render the chart in helm/gateway offline (helm-python-sdk) and hand tests the objects."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="pip install -e '.[test]' (helm-python-sdk)")

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "gateway"
RELEASE = "gw"
NAMESPACE = "llm"

PEPPER = "pepper-0123456789abcdef0123456789abcdef"
AUDIT_KEY = "audit-0123456789abcdef0123456789abcdef"
# The least an install needs: the shared pepper and audit key.
SECRETS: dict[str, Any] = {"secrets": {"keyPepper": PEPPER, "auditKey": AUDIT_KEY}}

Objects = list[dict[str, Any]]


def merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge values layers (later wins), like repeated `-f` files."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render_files(chart: Any) -> Callable[..., dict[str, str]]:
    def _render(values: dict[str, Any]) -> dict[str, str]:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)

    return _render


@pytest.fixture(scope="session")
def render(render_files: Callable[..., dict[str, str]]) -> Callable[..., Objects]:
    """values -> the rendered Kubernetes objects (NOTES.txt left out)."""

    def _render(values: dict[str, Any]) -> Objects:
        objects: Objects = []
        for path, text in sorted(render_files(values).items()):
            if path.endswith(".yaml"):
                objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
        return objects

    return _render


def by_kind(objects: Objects, kind: str) -> Objects:
    return [o for o in objects if o["kind"] == kind]


def one(objects: Objects, kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        o
        for o in by_kind(objects, kind)
        if component is None or o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} {component or ''}, got {len(found)}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def containers(objects: Objects) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(owner object, container) for every container of every workload."""
    out = []
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job", "Pod", "StatefulSet", "DaemonSet"):
            spec = pod_spec(obj)
            for c in spec.get("initContainers", []) + spec["containers"]:
                out.append((obj, c))
    return out
