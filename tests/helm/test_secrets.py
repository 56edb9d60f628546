"""Secrets: required, by reference, never in a ConfigMap."""

from __future__ import annotations

import json

import pytest

from tests.helm.conftest import AUDIT_KEY, PEPPER, SECRETS, by_kind, containers, helm, merge, one

DB_URL = "postgresql+asyncpg://gateway:db-pass-123@pg.db:5432/gateway"
REDIS_URL = "redis://:redis-pass-456@redis.cache:6379/0"
WITH_URLS = merge(
    SECRETS,
    {
        "database": {"urlFromSecret": True},
        "redis": {"urlFromSecret": True},
        "secrets": {"databaseUrl": DB_URL, "redisUrl": REDIS_URL},
    },
)


def env_refs(objects) -> dict[str, set[tuple[str, str]]]:
    """env name -> {(secret name, key)} over every container."""
    refs: dict[str, set[tuple[str, str]]] = {}
    for _, container in containers(objects):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.setdefault(env["name"], set()).add((ref["name"], ref["key"]))
    return refs


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"secrets": {"keyPepper": PEPPER}},
        {"secrets": {"auditKey": AUDIT_KEY}},
    ],
    ids=["none", "pepper-only", "audit-key-only"],
)
def test_render_fails_without_shared_pepper_and_audit_key(render, values) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(values)
    message = str(caught.value)
    assert "every replica must share the API-key pepper and the audit key" in message
    assert "existingSecret" in message and "secrets.keyPepper" in message


def test_short_secrets_are_refused_by_the_schema(render) -> None:
    with pytest.raises(helm.HelmValuesError, match="keyPepper"):
        render({"secrets": {"keyPepper": "short", "auditKey": AUDIT_KEY}})


def test_chart_secret_feeds_the_gateway(render) -> None:
    objects = render(SECRETS)
    secret = one(objects, "Secret")
    name = secret["metadata"]["name"]
    assert set(secret["data"]) == {"GATEWAY_KEY_PEPPER", "GATEWAY_AUDIT_KEY"}
    refs = env_refs(objects)
    assert refs["GATEWAY_KEY_PEPPER"] == {(name, "GATEWAY_KEY_PEPPER")}
    assert refs["GATEWAY_AUDIT_KEY"] == {(name, "GATEWAY_AUDIT_KEY")}
    # Only the gateway reads the pepper and the audit key; worker and beat never see them.
    for owner, container in containers(objects):
        names = {e["name"] for e in container.get("env", [])}
        component = owner["metadata"]["labels"]["app.kubernetes.io/component"]
        if component != "gateway":
            assert not names & {"GATEWAY_KEY_PEPPER", "GATEWAY_AUDIT_KEY"}, component


def test_existing_secret_is_referenced_and_none_is_created(render) -> None:
    values = {
        "existingSecret": "gateway-secrets",
        "existingSecretKeys": {"keyPepper": "pepper", "databaseUrl": "db"},
        "database": {"urlFromSecret": True},
    }
    objects = render(values)
    assert by_kind(objects, "Secret") == []
    refs = env_refs(objects)
    assert refs["GATEWAY_KEY_PEPPER"] == {("gateway-secrets", "pepper")}
    assert refs["GATEWAY_AUDIT_KEY"] == {("gateway-secrets", "GATEWAY_AUDIT_KEY")}
    # gateway, worker, beat and the migration Job all read the URL from the existing Secret
    assert refs["GATEWAY_DATABASE_URL"] == {("gateway-secrets", "db")}
    assert len([c for _, c in containers(objects) if "GATEWAY_DATABASE_URL" in str(c.get("env"))]) == 4
    assert "GATEWAY_DATABASE_URL" not in one(objects, "ConfigMap")["data"]


def test_existing_secret_with_inline_secrets_fails(render) -> None:
    with pytest.raises(helm.HelmRenderError, match="secrets.\\* must stay empty"):
        render(merge(SECRETS, {"existingSecret": "gateway-secrets"}))


def test_no_secret_value_in_any_configmap_or_workload(render) -> None:
    objects = render(WITH_URLS)
    secret_values = [PEPPER, AUDIT_KEY, DB_URL, REDIS_URL, "db-pass-123", "redis-pass-456"]
    for configmap in by_kind(objects, "ConfigMap"):
        text = json.dumps(configmap)
        assert not [v for v in secret_values if v in text]
    for obj in objects:
        if obj["kind"] != "Secret":
            text = json.dumps(obj)
            assert not [v for v in secret_values if v in text], obj["kind"]
    refs = env_refs(objects)
    assert {"GATEWAY_DATABASE_URL", "GATEWAY_REDIS_URL"} <= refs.keys()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"database": {"url": "postgresql+asyncpg://gateway:hunter22@pg:5432/gateway"}},
            "database.url carries",
        ),
        ({"redis": {"url": "redis://:hunter22@redis:6379/0"}}, "redis.url carries"),
        ({"database": {"urlFromSecret": True}}, "database.urlFromSecret needs"),
        ({"secrets": {"databaseUrl": DB_URL}}, "database.urlFromSecret is false"),
        ({"config": {"extra": {"GATEWAY_KEY_PEPPER": "x"}}}, "GATEWAY_KEY_PEPPER"),
    ],
    ids=["db-password", "redis-password", "db-url-missing", "db-url-unused", "pepper-in-extra"],
)
def test_passwords_never_reach_the_configmap(render, values, message) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(merge(SECRETS, values))


def test_migration_job_reads_the_url_from_a_hook_secret(render) -> None:
    """On install, the chart's own Secret does not exist yet when pre-install hooks run."""
    objects = render(WITH_URLS)
    job = one(objects, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    (url,) = [e for e in container["env"] if e["name"] == "GATEWAY_DATABASE_URL"]
    hook_secret = next(
        s for s in by_kind(objects, "Secret") if "helm.sh/hook" in s["metadata"].get("annotations", {})
    )
    assert url["valueFrom"]["secretKeyRef"]["name"] == hook_secret["metadata"]["name"]
    annotations = hook_secret["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == job["metadata"]["annotations"]["helm.sh/hook"]
    assert int(annotations["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
