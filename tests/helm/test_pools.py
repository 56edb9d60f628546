"""Pool workers in the chart: workloads per device kind, commands, probes, scheduling, the
worker token by reference."""

from __future__ import annotations

import json
from dataclasses import fields

import kubernetes_validate
import pytest

from gateway.settings import Settings
from tests.helm.conftest import (
    CHART_DIR,
    NAMESPACE,
    SECRETS,
    by_kind,
    containers,
    helm,
    merge,
    one,
    pod_spec,
)
from tests.helm.pools_values import (
    GPU_TOLERATION,
    NPU_SELECTOR,
    POOLS,
    WORKER_TOKEN,
    env_of,
    pool,
    pool_workloads,
    pools_file,
    settings_configmap,
    the_container,
    upstream,
)
from tests.helm.test_chart import validate_all


@pytest.mark.parametrize("version", ["1.25", kubernetes_validate.utils.latest_version()])
def test_pools_render_valid_kubernetes(render, version: str) -> None:
    values = merge(
        POOLS,
        {
            "networkPolicy": {
                "enabled": True,
                "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 5432}]}],
            }
        },
    )
    objects = render(values)
    assert set(pool_workloads(objects)) == {"gpu-eu", "npu-cn", "rocm-us", "cpu-eu"}
    validate_all(objects, version)


def test_lint_passes_with_pools() -> None:
    report = helm.lint(CHART_DIR, POOLS, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_no_pools_by_default(render) -> None:
    objects = render(SECRETS)
    assert pool_workloads(objects) == {}
    assert len(by_kind(objects, "ConfigMap")) == 1
    env = env_of(the_container(one(objects, "Deployment", "gateway")))
    assert not {"GATEWAY_POOLS_FILE", "GATEWAY_WORKER_TOKEN"} & env.keys()
    assert "GATEWAY_WORKER_TOKEN" not in one(objects, "Secret")["data"]


@pytest.mark.parametrize(
    ("kind", "resource", "vendor", "stack", "device"),
    [
        ("cuda", "nvidia.com/gpu", "nvidia", "CUDA", "cuda:0"),
        ("npu", "huawei.com/Ascend910", "huawei", "CANN", "npu:0"),
        ("rocm", "amd.com/gpu", "amd", "ROCm", "cuda:0"),  # ROCm PyTorch names AMD GPUs "cuda"
    ],
)
def test_device_resource_per_device_kind(render, kind, resource, vendor, stack, device) -> None:
    pool = {"name": "p1", "deviceKind": kind, "region": "r1", "devicesPerReplica": 2}
    objects = render(merge(POOLS, {"pools": [pool], "upstreams": []}))
    container = the_container(pool_workloads(objects)["p1"])
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert requests[resource] == limits[resource] == 2  # extended resources: request == limit
    # the CPU and memory of poolWorker.resources stay
    assert requests["cpu"] == "2" and limits["memory"] == "16Gi"
    other = {"nvidia.com/gpu", "huawei.com/Ascend910", "amd.com/gpu"} - {resource}
    assert not other & (requests.keys() | limits.keys())
    assert container["args"][container["args"].index("--device") + 1] == device
    (entry,) = pools_file(objects)["pools"]
    assert (entry["device_kind"], entry["vendor"], entry["software_stack"]) == (kind, vendor, stack)


def test_cpu_pool_requests_no_device_and_overrides_merge(render) -> None:
    workloads = pool_workloads(render(POOLS))
    cpu = the_container(workloads["cpu-eu"])["resources"]
    assert set(cpu["requests"]) == {"cpu", "memory"} and set(cpu["limits"]) == {"memory"}
    gpu = the_container(workloads["gpu-eu"])["resources"]
    assert gpu["requests"] == {"cpu": "4", "memory": "4Gi", "nvidia.com/gpu": 1}
    # another device resource (e.g. a MIG slice) replaces the kind's default
    mig = {"name": "mig", "deviceKind": "cuda", "region": "r1", "deviceResource": "nvidia.com/mig-3g.40gb"}
    limits = the_container(pool_workloads(render(merge(POOLS, {"pools": [mig]})))["mig"])["resources"][
        "limits"
    ]
    assert limits["nvidia.com/mig-3g.40gb"] == 1 and "nvidia.com/gpu" not in limits


def test_worker_command_probes_and_scheduling(render) -> None:
    objects = render(POOLS)
    workloads = pool_workloads(objects)
    gpu = workloads["gpu-eu"]
    container = the_container(gpu)
    assert container["image"] == "registry.example.com/gateway-cuda:0.1.0-cu128"
    assert container["args"] == [
        "worker", "--pool", "gpu-eu", "--device", "cuda:0", "--host", "0.0.0.0", "--port", "8100",
    ]  # fmt: skip
    assert container["ports"] == [{"name": "worker", "containerPort": 8100, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        # /internal/v1/health wants the token, which a probe could only carry in plain text
        assert container[probe]["httpGet"] == {"path": "/livez", "port": "worker"}, probe
    spec = pod_spec(gpu)
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [GPU_TOLERATION]
    assert gpu["spec"]["replicas"] == 2
    npu = pod_spec(workloads["npu-cn"])
    assert npu["nodeSelector"] == NPU_SELECTOR
    assert npu["securityContext"]["supplementalGroups"] == [1000]
    assert npu["securityContext"]["runAsNonRoot"] is True  # merged, not replaced
    # pools without an image of their own run the chart's image
    assert (
        the_container(workloads["cpu-eu"])["image"]
        == the_container(one(objects, "Deployment", "gateway"))["image"]
    )
    # another repository does not inherit the gateway image's digest or tag
    digest = "sha256:" + "ab" * 32
    pinned = pool_workloads(render(merge(POOLS, {"image": {"digest": digest, "tag": "9.9"}})))
    assert the_container(pinned["cpu-eu"])["image"] == f"deepseek-gateway@{digest}"
    assert the_container(pinned["gpu-eu"])["image"] == "registry.example.com/gateway-cuda:0.1.0-cu128"
    untagged = merge(POOLS, {"pools": [pool(image={"repository": "r.example.com/cuda"})]})
    assert the_container(pool_workloads(render(untagged))["g"])["image"] == "r.example.com/cuda:0.1.0"


def test_workers_get_the_model_settings(render) -> None:
    values = merge(POOLS, {"config": {"dtype": "bfloat16", "threads": 4, "modelPath": "/models/m.gguf"}})
    objects = render(values)
    configmap = settings_configmap(objects)
    workloads = pool_workloads(objects)

    def settings(pool: str) -> dict[str, str]:
        env = env_of(the_container(workloads[pool]))
        return {k: env[k]["value"] for k in ("GATEWAY_DTYPE", "GATEWAY_THREADS", "GATEWAY_MODEL_PATH")}

    gateway = {k: configmap[k] for k in ("GATEWAY_DTYPE", "GATEWAY_THREADS", "GATEWAY_MODEL_PATH")}
    assert settings("gpu-eu") == gateway
    assert settings("npu-cn") == {**gateway, "GATEWAY_DTYPE": "float16"}
    assert settings("cpu-eu") == {**gateway, "GATEWAY_THREADS": "8"}


def test_every_pool_container_is_hardened(render) -> None:
    workloads = pool_workloads(render(POOLS))
    for name, workload in workloads.items():
        container = the_container(workload)
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["runAsNonRoot"] is True, name
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
        assert pod_spec(workload)["automountServiceAccountToken"] is False
        assert {"/tmp", "/data"} <= {m["mountPath"] for m in container["volumeMounts"]}
        # a worker needs no database: it reads no ConfigMap of the gateway
        assert "envFrom" not in container


def test_env_names_are_settings_fields(render) -> None:
    settings_env = {f"GATEWAY_{f.name.upper()}" for f in fields(Settings) if f.name != "extra"}
    objects = render(POOLS)
    upstream_keys = {e["api_key_env"] for e in pools_file(objects)["pools"] if "api_key_env" in e}
    for _, container in containers(objects):
        names = {e["name"] for e in container.get("env", [])} - upstream_keys
        assert names <= settings_env, names - settings_env


def test_worker_token_from_the_charts_secret(render) -> None:
    objects = render(POOLS)
    secret = one(objects, "Secret")
    assert "GATEWAY_WORKER_TOKEN" in secret["data"]
    ref = {"name": secret["metadata"]["name"], "key": "GATEWAY_WORKER_TOKEN"}
    gateway = env_of(the_container(one(objects, "Deployment", "gateway")))
    assert gateway["GATEWAY_WORKER_TOKEN"]["valueFrom"]["secretKeyRef"] == ref
    for workload in pool_workloads(objects).values():
        assert env_of(the_container(workload))["GATEWAY_WORKER_TOKEN"]["valueFrom"]["secretKeyRef"] == ref
        # a changed token rolls the workers
        assert "checksum/secret" in workload["spec"]["template"]["metadata"]["annotations"]
    for component in ("worker", "beat"):  # Celery needs no worker token
        assert "GATEWAY_WORKER_TOKEN" not in env_of(the_container(one(objects, "Deployment", component)))


@pytest.mark.parametrize(
    ("values", "secret", "key"),
    [
        ({"workerToken": {"existingSecret": "pool-token", "key": "token"}}, "pool-token", "token"),
        ({"existingSecret": "gateway-secrets"}, "gateway-secrets", "GATEWAY_WORKER_TOKEN"),
    ],
    ids=["workerToken.existingSecret", "existingSecret"],
)
def test_worker_token_from_an_existing_secret(render, values, secret, key) -> None:
    base = {k: v for k, v in POOLS.items() if k != "secrets"}
    if "existingSecret" not in values:
        base["secrets"] = SECRETS["secrets"]
    objects = render(merge(base, values))
    for secret_object in by_kind(objects, "Secret"):
        assert "GATEWAY_WORKER_TOKEN" not in secret_object["data"]
    for obj in [one(objects, "Deployment", "gateway"), *pool_workloads(objects).values()]:
        assert env_of(the_container(obj))["GATEWAY_WORKER_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": secret,
            "key": key,
        }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"secrets": {"workerToken": ""}}, "pool workers need a shared token"),
        ({"pools": [], "upstreams": []}, "secrets.workerToken is set but no pools"),
        ({"workerToken": {"existingSecret": "pool-token"}}, "secrets.workerToken must stay empty"),
        ({"pools": [*POOLS["pools"], pool(name="vllm-us")]}, "used twice"),
        ({"pools": [pool(deviceKind="cpu", vendor="intel", devicesPerReplica=1)]}, "requests no device"),
        ({"pools": [pool(device="npu:0")]}, "does not match deviceKind"),
        ({"pools": [pool(devicesPerReplica=0)]}, "at least 1"),
        ({"pools": [pool(workload="StatefulSet"), pool(name="g-hl")]}, "headless Service"),
        ({"upstreams": [upstream(baseUrl="http://u:pw@vllm:8000/v1")]}, "carries a password"),
        ({"config": {"extra": {"GATEWAY_UPSTREAM_KEY_X": "sk-123"}}}, "upstream keys"),
        ({"config": {"extra": {"GATEWAY_WORKER_TOKEN": "x"}}}, "GATEWAY_WORKER_TOKEN"),
    ],
    ids=[
        "no-token", "token-without-pools", "token-twice", "duplicate-name", "cpu-with-devices",
        "device-mismatch", "gpu-without-device", "headless-name-clash", "password-in-url",
        "upstream-key-in-extra", "token-in-extra",
    ],
)  # fmt: skip
def test_inconsistent_pool_values_fail(render, values, message) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(merge(POOLS, values))


def test_no_secret_value_in_any_configmap(render) -> None:
    objects = render(POOLS)
    for obj in objects:
        if obj["kind"] != "Secret":
            assert WORKER_TOKEN not in json.dumps(obj), f"{obj['kind']}/{obj['metadata']['name']}"
    for configmap in by_kind(objects, "ConfigMap"):
        text = json.dumps(configmap)
        for word in ("GATEWAY_WORKER_TOKEN", "secretKeyRef", "vllm-key", "api-key"):
            assert word not in text, (configmap["metadata"]["name"], word)
    for entry in pools_file(objects)["pools"]:
        assert not {"api_key", "apiKey", "token", "apiKeySecret"} & entry.keys()
