"""The chart lints, renders valid Kubernetes objects, and its metadata follows the code."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.helm.conftest import CHART_DIR, SECRETS, by_kind, helm, merge, one

ROOT = CHART_DIR.parents[1]

# Every optional part switched on, secrets by reference inside the chart's Secret.
EVERYTHING: dict[str, Any] = merge(
    SECRETS,
    {
        "database": {"urlFromSecret": True},
        "redis": {"urlFromSecret": True},
        "secrets": {
            "databaseUrl": "postgresql+asyncpg://gateway:db-pass-123@pg.db:5432/gateway",
            "redisUrl": "redis://:redis-pass-456@redis.cache:6379/0",
        },
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "hosts": [{"host": "llm.example.com", "paths": [{"path": "/v1"}, {"path": "/admin"}]}],
            "tls": [{"secretName": "llm-tls", "hosts": ["llm.example.com"]}],
        },
        "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80},
        "networkPolicy": {
            "enabled": True,
            "ingressFrom": [{"namespaceSelector": {"matchLabels": {"name": "ingress-nginx"}}}],
            "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 5432}, {"port": 6379}]}],
        },
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "gateway": {
            "podAntiAffinity": "hard",
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                }
            ],
            "extraEnv": [{"name": "OTEL_EXPORTER_OTLP_HEADERS", "value": "x=y"}],
        },
        "worker": {"livenessProbe": {"exec": {"command": ["celery", "inspect", "ping"]}}},
        "podDisruptionBudget": {"minAvailable": 1},
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"annotations": {"iam.example.com/role": "gateway"}},
    },
)

# Kinds whose schemas are not part of Kubernetes (CRDs): checked by hand below.
CRD_KINDS = {"ServiceMonitor"}


def validate_all(objects: list[dict[str, Any]], version: str) -> None:
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{obj['kind']}/{obj['metadata']['name']} on {version}: {exc.message}"
            ) from None


def test_lint_passes_without_warnings() -> None:
    report = helm.lint(CHART_DIR, SECRETS, strict=True, namespace="llm")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


def test_lint_passes_with_everything_enabled() -> None:
    report = helm.lint(CHART_DIR, EVERYTHING, strict=True, namespace="llm")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_chart_metadata_follows_pyproject() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["type"] == "application"
    assert str(chart["appVersion"]) == project["version"]


@pytest.mark.parametrize("version", ["1.25", "1.30", kubernetes_validate.utils.latest_version()])
def test_default_render_is_valid_kubernetes(render, version: str) -> None:
    objects = render(SECRETS)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Deployment",  # gateway
            "Deployment",  # worker
            "Deployment",  # beat
            "Service",
            "PodDisruptionBudget",
            "Job",  # migrations hook
            "Pod",  # helm test
        ]
    )
    validate_all(objects, version)


@pytest.mark.parametrize("version", ["1.25", kubernetes_validate.utils.latest_version()])
def test_everything_enabled_is_valid_kubernetes(render, version: str) -> None:
    objects = render(EVERYTHING)
    for kind in ("Ingress", "HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor"):
        assert by_kind(objects, kind), kind
    validate_all(objects, version)


def test_gateway_deployment(render) -> None:
    objects = render(merge(SECRETS, {"gateway": {"port": 9000, "replicaCount": 3}}))
    deployment = one(objects, "Deployment", "gateway")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert deployment["spec"]["replicas"] == 3
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", "9000"]
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # Security: non-root, read-only root filesystem, no capabilities, no API token.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["automountServiceAccountToken"] is False
    # GATEWAY_DATA_DIR is a writable volume.
    config = one(objects, "ConfigMap")["data"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts[config["GATEWAY_DATA_DIR"]]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # Service and Prometheus annotations point at the port from values.
    service = one(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "9000"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])


def test_production_settings_in_the_configmap(render) -> None:
    data = one(render(SECRETS), "ConfigMap")["data"]
    assert data["GATEWAY_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert data["GATEWAY_REDIS_URL"].startswith("redis://")
    assert data["GATEWAY_JOBS"] == "celery"
    assert data["GATEWAY_LOG_FORMAT"] == "json"
    assert data["GATEWAY_METRICS"] == "prometheus"
    assert all(isinstance(v, str) for v in data.values())


def test_pvc_data_dir_needs_a_single_replica(render) -> None:
    claim = {"gateway": {"dataDir": {"existingClaim": "gateway-data"}}}
    with pytest.raises(helm.HelmRenderError, match="existingClaim"):
        render(merge(SECRETS, claim))
    objects = render(merge(SECRETS, claim, {"gateway": {"replicaCount": 1}}))
    deployment = one(objects, "Deployment", "gateway")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "gateway-data"}
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_autoscaling_replaces_replicas(render) -> None:
    objects = render(merge(SECRETS, {"autoscaling": {"enabled": True}}))
    assert "replicas" not in one(objects, "Deployment", "gateway")["spec"]
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(objects, "Deployment", "gateway")["metadata"]["name"]


def test_topology_spread_gets_the_gateway_selector(render) -> None:
    objects = render(EVERYTHING)
    deployment = one(objects, "Deployment", "gateway")
    (constraint,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert constraint["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_ingress_exposes_only_the_listed_paths(render) -> None:
    objects = render(merge(SECRETS, {"ingress": {"enabled": True}}))
    paths = [p["path"] for rule in one(objects, "Ingress")["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == ["/v1"]  # never /metrics by default


def test_service_monitor_only_when_enabled(render) -> None:
    assert not by_kind(render(SECRETS), "ServiceMonitor")
    objects = render(EVERYTHING)
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    service = one(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    with pytest.raises(helm.HelmRenderError, match="metrics.enabled"):
        render(merge(SECRETS, {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}))


def test_metrics_off(render) -> None:
    objects = render(merge(SECRETS, {"metrics": {"enabled": False}}))
    assert one(objects, "ConfigMap")["data"]["GATEWAY_METRICS"] == "none"
    annotations = one(objects, "Deployment", "gateway")["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in annotations


def test_network_policies(render) -> None:
    policies = by_kind(render(EVERYTHING), "NetworkPolicy")
    assert len(policies) == 2
    gateway = next(
        p for p in policies if "app.kubernetes.io/component" in p["spec"]["podSelector"]["matchLabels"]
    )
    assert gateway["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    jobs = next(p for p in policies if p is not gateway)
    assert jobs["spec"]["ingress"] == []
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert any(
            port.get("port") == 53 for rule in policy["spec"]["egress"] for port in rule.get("ports", [])
        )


def test_notes_render(render_files) -> None:
    notes = render_files(SECRETS)["gateway/templates/NOTES.txt"]
    assert "gateway tenant create" in notes and "port-forward" in notes


def test_values_file_documents_every_value() -> None:
    """Every leaf in values.yaml has a comment right above it, or sits in a commented block."""
    undocumented = []
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    previous = ""
    for line in (CHART_DIR / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):(.*)$", line)
        if match and not stripped.startswith("#"):
            indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
            while stack and stack[-1][0] >= indent:
                stack.pop()
            documented = previous.startswith("#") or any(d for _, d in stack)
            if rest and not documented:
                undocumented.append(key)
            stack.append((indent, documented))
        previous = stripped  # a comment documents the key right below it, not across a blank line
    assert undocumented == []
