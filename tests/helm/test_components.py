"""Migrations hook, Celery worker and beat, and the container environment against Settings."""

from __future__ import annotations

from dataclasses import fields

import pytest

from gateway.settings import Settings
from tests.helm.conftest import SECRETS, by_kind, containers, helm, merge, one
from tests.helm.test_chart import EVERYTHING

SETTINGS_ENV = {f"GATEWAY_{f.name.upper()}" for f in fields(Settings) if f.name != "extra"}
# Environment variables outside GATEWAY_* that a render may carry: only the ones values add.
ALLOWED_OTHER_ENV = {"OTEL_EXPORTER_OTLP_HEADERS"}


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook(render) -> None:
    objects = render(SECRETS)
    job = one(objects, "Job", "migrations")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"] == ["db", "upgrade"]
    assert spec["restartPolicy"] == "Never"
    # The chart's ServiceAccount is created after pre-install hooks: the Job must not need it.
    assert "serviceAccountName" not in spec
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GATEWAY_DATABASE_URL"] == one(objects, "ConfigMap")["data"]["GATEWAY_DATABASE_URL"]
    assert "envFrom" not in container  # the ConfigMap does not exist yet on install
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_migrations_can_be_switched_off(render) -> None:
    assert not by_kind(render(merge(SECRETS, {"migrations": {"enabled": False}})), "Job")


def test_worker_and_beat_run_the_celery_app(render) -> None:
    objects = render(SECRETS)
    worker = one(objects, "Deployment", "worker")
    beat = one(objects, "Deployment", "beat")
    (w,) = worker["spec"]["template"]["spec"]["containers"]
    (b,) = beat["spec"]["template"]["spec"]["containers"]
    assert w["command"] == ["celery"] and w["args"][:3] == ["-A", "gateway.worker", "worker"]
    assert b["command"] == ["celery"] and b["args"][:3] == ["-A", "gateway.worker", "beat"]
    # beat's schedule file is written under the writable /tmp, not the read-only root
    assert any(a.startswith("--schedule=/tmp/") for a in b["args"])
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    for container in (w, b):
        assert (
            container["envFrom"][0]["configMapRef"]["name"] == one(objects, "ConfigMap")["metadata"]["name"]
        )
    assert one(objects, "ConfigMap")["data"]["GATEWAY_JOBS"] == "celery"


def test_worker_and_beat_off_runs_jobs_in_process(render) -> None:
    objects = render(merge(SECRETS, {"worker": {"enabled": False}, "beat": {"enabled": False}}))
    assert {
        d["metadata"]["labels"]["app.kubernetes.io/component"] for d in by_kind(objects, "Deployment")
    } == {"gateway"}
    assert one(objects, "ConfigMap")["data"]["GATEWAY_JOBS"] == "inprocess"


def test_worker_without_beat(render) -> None:
    objects = render(merge(SECRETS, {"beat": {"enabled": False}}))
    components = {
        d["metadata"]["labels"]["app.kubernetes.io/component"] for d in by_kind(objects, "Deployment")
    }
    assert components == {"gateway", "worker"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"worker": {"enabled": False}}, "beat.enabled needs worker.enabled"),
        (
            {"worker": {"enabled": False}, "beat": {"enabled": False}, "config": {"jobs": "celery"}},
            "jobs=celery",
        ),
        ({"redis": {"url": ""}}, "needs Redis"),
        (
            {"redis": {"url": ""}, "worker": {"enabled": False}, "beat": {"enabled": False}},
            "more than one replica",
        ),
    ],
    ids=["beat-without-worker", "celery-without-worker", "worker-without-redis", "replicas-without-redis"],
)
def test_inconsistent_toggles_fail(render, values, message) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(merge(SECRETS, values))


def test_single_node_without_redis(render) -> None:
    values = {"redis": {"url": ""}, "worker": {"enabled": False}, "beat": {"enabled": False}}
    objects = render(merge(SECRETS, values, {"gateway": {"replicaCount": 1}}))
    assert "GATEWAY_REDIS_URL" not in one(objects, "ConfigMap")["data"]


@pytest.mark.parametrize("values", [SECRETS, EVERYTHING], ids=["default", "everything"])
def test_container_env_names_are_settings_fields(render, values) -> None:
    """The chart cannot drift from gateway.settings.Settings: every GATEWAY_* it sets is a field."""
    objects = render(values)
    configmaps = {c["metadata"]["name"]: c["data"] for c in by_kind(objects, "ConfigMap")}
    names: set[str] = set()
    for _, container in containers(objects):
        names |= {e["name"] for e in container.get("env", [])}
        for source in container.get("envFrom", []):
            names |= set(configmaps[source["configMapRef"]["name"]])
    gateway_names = {n for n in names if n.startswith("GATEWAY_")}
    assert gateway_names, "no GATEWAY_* variables rendered"
    assert gateway_names - SETTINGS_ENV == set()
    assert names - gateway_names <= ALLOWED_OTHER_ENV


def test_configmap_covers_the_production_settings(render) -> None:
    data = one(render(SECRETS), "ConfigMap")["data"]
    secrets = {"GATEWAY_KEY_PEPPER", "GATEWAY_AUDIT_KEY", "GATEWAY_WORKER_TOKEN"}
    set_by_args = {"GATEWAY_HOST", "GATEWAY_PORT"}  # gateway serve --host/--port
    # empty by default; GATEWAY_POOLS_FILE is set on the gateway container only with pools
    optional = {"GATEWAY_MODEL_PATH", "GATEWAY_OTEL_ENDPOINT", "GATEWAY_POOLS_FILE"}
    assert SETTINGS_ENV - set(data) - secrets - set_by_args - optional == set()


def test_outage_settings_reach_the_configmap(render) -> None:
    data = one(render(SECRETS), "ConfigMap")["data"]
    assert (data["GATEWAY_REDIS_FAILURE"], data["GATEWAY_STALE_IF_ERROR_S"]) == ("closed", "60")
    outage = {"config": {"redisFailure": "open", "staleIfErrorS": 0}}
    data = one(render(merge(SECRETS, outage)), "ConfigMap")["data"]
    assert (data["GATEWAY_REDIS_FAILURE"], data["GATEWAY_STALE_IF_ERROR_S"]) == ("open", "0")
    with pytest.raises(helm.HelmValuesError):
        render(merge(SECRETS, {"config": {"redisFailure": "sometimes"}}))


def test_extra_settings_reach_the_configmap(render) -> None:
    data = one(render(merge(SECRETS, {"config": {"extra": {"GATEWAY_NEW_SETTING": 5}}})), "ConfigMap")["data"]
    assert data["GATEWAY_NEW_SETTING"] == "5"
    with pytest.raises(helm.HelmRenderError, match="already set by the chart"):
        render(merge(SECRETS, {"config": {"extra": {"GATEWAY_LOG_LEVEL": "debug"}}}))
    with pytest.raises(helm.HelmValuesError):
        render(merge(SECRETS, {"config": {"extra": {"NOT_GATEWAY": "x"}}}))


def test_every_container_is_hardened(render) -> None:
    for owner, container in containers(render(EVERYTHING)):
        context = container["securityContext"]
        where = f"{owner['kind']}/{owner['metadata']['name']}"
        assert context["runAsNonRoot"] is True, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        assert context["allowPrivilegeEscalation"] is False, where
        assert "/tmp" in {m["mountPath"] for m in container.get("volumeMounts", [])} or owner["kind"] == "Pod"
