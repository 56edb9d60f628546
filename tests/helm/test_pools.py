"""Pool workers and upstreams in the chart: workloads per pool, pools.yaml, secrets by reference."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.dispatch.pools_file import load_pools_file
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
from tests.helm.test_chart import validate_all

WORKER_TOKEN = "worker-0123456789abcdef0123456789abcdef"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
NPU_SELECTOR = {"accelerator": "huawei-Ascend910"}

POOLS: dict[str, Any] = merge(
    SECRETS,
    {
        "secrets": {"workerToken": WORKER_TOKEN},
        "pools": [
            {
                "name": "gpu-eu",
                "deviceKind": "cuda",
                "region": "eu-west",
                "variants": ["flash", "pro"],
                "replicaCount": 2,
                "capacity": 48,
                "image": {"repository": "registry.example.com/gateway-cuda", "tag": "0.1.0-cu128"},
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [GPU_TOLERATION],
                "resources": {"requests": {"cpu": "4"}},
            },
            {
                "name": "npu-cn",
                "deviceKind": "npu",
                "region": "cn-north",
                "sovereign": True,
                "variants": ["flash"],
                "replicaCount": 3,
                "devicesPerReplica": 2,
                "capacity": 32,
                "workload": "StatefulSet",
                "dtype": "float16",
                "nodeSelector": NPU_SELECTOR,
                "podSecurityContext": {"supplementalGroups": [1000]},
            },
            {"name": "rocm-us", "deviceKind": "rocm", "region": "us-east"},
            {"name": "cpu-eu", "deviceKind": "cpu", "vendor": "intel", "region": "eu-west", "threads": 8},
        ],
        "upstreams": [
            {
                "name": "vllm-us",
                "dialect": "vllm",
                "baseUrl": "http://vllm.inference.svc:8000/v1",
                "deviceKind": "cuda",
                "region": "us-east",
                "variants": ["flash"],
                "models": {"flash": "deepseek-ai/DeepSeek-V4-Flash"},
                "capacity": 256,
                "apiKeySecret": {"name": "vllm-key", "key": "api-key"},
            },
            {
                "name": "sglang-eu",
                "dialect": "sglang",
                "deviceKind": "cuda",
                "region": "eu-west",
                "replicas": [
                    {"url": "http://sglang-0.sglang.inference.svc:30000/v1", "capacity": 128},
                    {"url": "http://sglang-1.sglang.inference.svc:30000/v1"},
                ],
                "capacity": 100,
            },
            {
                "name": "deepseek-api",
                "dialect": "deepseek",
                "baseUrl": "https://api.deepseek.com",
                "deviceKind": "cuda",
                "vendor": "deepseek",
                "softwareStack": "CUDA",
                "region": "cn-east",
                "variants": ["flash", "pro"],
                "models": {"flash": "deepseek-v4-flash", "pro": "deepseek-v4-pro"},
                "apiKeySecret": {"name": "deepseek", "key": "token"},
            },
        ],
    },
)


def pool(**fields: Any) -> dict[str, Any]:
    """A small GPU pool, changed by fields (None removes one)."""
    out = {"name": "g", "deviceKind": "cuda", "region": "r"} | fields
    return {k: v for k, v in out.items() if v is not None}


def upstream(**fields: Any) -> dict[str, Any]:
    out = {
        "name": "u",
        "dialect": "vllm",
        "deviceKind": "cuda",
        "region": "r",
        "baseUrl": "http://u",
    } | fields
    return {k: v for k, v in out.items() if v is not None}


def settings_configmap(objects) -> dict[str, str]:
    """The data of the gateway's settings ConfigMap (the one its containers read with envFrom)."""
    name = the_container(one(objects, "Deployment", "gateway"))["envFrom"][0]["configMapRef"]["name"]
    return next(c["data"] for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == name)


def pool_workloads(objects) -> dict[str, dict[str, Any]]:
    """pool name -> its Deployment or StatefulSet."""
    return {
        o["metadata"]["labels"]["deepseek-gateway/pool"]: o
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet")
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "pool-worker"
    }


def the_container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(workload)["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def pools_file(objects) -> dict[str, Any]:
    """The parsed pools.yaml that GATEWAY_POOLS_FILE of the gateway container points at."""
    gateway = one(objects, "Deployment", "gateway")
    container = the_container(gateway)
    path = env_of(container)["GATEWAY_POOLS_FILE"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    directory, _, key = path.rpartition("/")
    volume = {v["name"]: v for v in pod_spec(gateway)["volumes"]}[mounts[directory]]
    configmap = next(
        c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]
    )
    return yaml.safe_load(configmap["data"][key])


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


def test_pools_file_matches_the_values(render) -> None:
    objects = render(POOLS)
    entries = {e["name"]: e for e in pools_file(objects)["pools"]}
    assert list(entries) == ["gpu-eu", "npu-cn", "rocm-us", "cpu-eu", "vllm-us", "sglang-eu", "deepseek-api"]
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    workloads = pool_workloads(objects)

    # A Deployment pool is one replica: its Service, with the capacity of all its pods.
    gpu = entries["gpu-eu"]
    service = f"{workloads['gpu-eu']['metadata']['name']}"
    assert gpu == {
        "name": "gpu-eu",
        "device_kind": "cuda",
        "vendor": "nvidia",
        "software_stack": "CUDA",
        "region": "eu-west",
        "sovereign": False,
        "variants": ["flash", "pro"],
        "backend": "worker",
        "replicas": [{"url": f"http://{service}.{NAMESPACE}.svc:8100", "capacity": 96}],
    }
    assert services[service]["spec"]["selector"] == workloads["gpu-eu"]["spec"]["selector"]["matchLabels"]
    assert services[service]["spec"]["ports"][0]["port"] == 8100

    # A StatefulSet pool lists its pods by their stable DNS names through the headless Service.
    npu = entries["npu-cn"]
    statefulset = workloads["npu-cn"]
    headless = services[statefulset["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    name, hl = statefulset["metadata"]["name"], headless["metadata"]["name"]
    assert npu["replicas"] == [
        {"url": f"http://{name}-{i}.{hl}.{NAMESPACE}.svc:8100", "capacity": 32} for i in range(3)
    ]
    assert (npu["device_kind"], npu["vendor"], npu["software_stack"], npu["sovereign"]) == (
        "npu",
        "huawei",
        "CANN",
        True,
    )
    assert entries["rocm-us"]["variants"] == []  # every variant
    assert entries["rocm-us"]["replicas"][0]["capacity"] == 64  # default capacity, one replica

    # Upstreams: their base URLs, the dialect as the backend, the credential's env var by name.
    vllm = entries["vllm-us"]
    assert vllm == {
        "name": "vllm-us",
        "device_kind": "cuda",
        "vendor": "nvidia",
        "software_stack": "CUDA",
        "region": "us-east",
        "sovereign": False,
        "variants": ["flash"],
        "backend": "vllm",
        "models": {"flash": "deepseek-ai/DeepSeek-V4-Flash"},
        "api_key_env": "GATEWAY_UPSTREAM_KEY_VLLM_US",
        "replicas": [{"url": "http://vllm.inference.svc:8000/v1", "capacity": 256}],
    }
    sglang = entries["sglang-eu"]
    assert sglang["backend"] == "sglang" and "api_key_env" not in sglang
    assert sglang["replicas"] == [
        {"url": "http://sglang-0.sglang.inference.svc:30000/v1", "capacity": 128},
        {"url": "http://sglang-1.sglang.inference.svc:30000/v1", "capacity": 100},
    ]
    deepseek = entries["deepseek-api"]
    assert (deepseek["backend"], deepseek["vendor"], deepseek["api_key_env"]) == (
        "deepseek",
        "deepseek",
        "GATEWAY_UPSTREAM_KEY_DEEPSEEK_API",
    )


def test_upstream_keys_reach_the_gateway_only(render) -> None:
    objects = render(POOLS)
    gateway = env_of(the_container(one(objects, "Deployment", "gateway")))
    assert gateway["GATEWAY_UPSTREAM_KEY_VLLM_US"]["valueFrom"]["secretKeyRef"] == {
        "name": "vllm-key",
        "key": "api-key",
    }
    assert gateway["GATEWAY_UPSTREAM_KEY_DEEPSEEK_API"]["valueFrom"]["secretKeyRef"] == {
        "name": "deepseek",
        "key": "token",
    }
    assert not [n for n in gateway if n.startswith("GATEWAY_UPSTREAM_KEY_SGLANG")]
    for owner, container in containers(objects):
        if owner["metadata"]["labels"]["app.kubernetes.io/component"] != "gateway":
            assert not [e for e in container.get("env", []) if e["name"].startswith("GATEWAY_UPSTREAM_KEY_")]


def test_upstreams_alone_need_no_worker_token(render) -> None:
    objects = render(merge(SECRETS, {"upstreams": POOLS["upstreams"]}))
    assert pool_workloads(objects) == {}
    gateway = env_of(the_container(one(objects, "Deployment", "gateway")))
    assert "GATEWAY_POOLS_FILE" in gateway and "GATEWAY_WORKER_TOKEN" not in gateway
    assert [e["backend"] for e in pools_file(objects)["pools"]] == ["vllm", "sglang", "deepseek"]


def test_changed_pools_roll_the_gateway(render) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = one(render(values), "Deployment", "gateway")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/pools"]

    scaled = merge(POOLS, {"pools": [{**POOLS["pools"][0], "replicaCount": 3}, *POOLS["pools"][1:]]})
    assert checksum(POOLS) != checksum(scaled)


def test_pod_disruption_budgets_for_pools_of_several_pods(render) -> None:
    budgets = {
        b["metadata"]["labels"].get("deepseek-gateway/pool"): b
        for b in by_kind(render(POOLS), "PodDisruptionBudget")
    }
    assert set(budgets) == {None, "gpu-eu", "npu-cn"}  # the gateway's, and the pools with > 1 pod
    assert budgets["gpu-eu"]["spec"]["maxUnavailable"] == 1


def test_network_policy_lets_only_the_gateway_reach_the_workers(render) -> None:
    values = merge(
        POOLS, {"networkPolicy": {"enabled": True, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}}
    )
    objects = render(values)
    policies = {p["metadata"]["name"]: p for p in by_kind(objects, "NetworkPolicy")}
    gateway_labels = one(objects, "Deployment", "gateway")["spec"]["selector"]["matchLabels"]
    workers = next(
        p
        for p in policies.values()
        if p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == "pool-worker"
    )
    (rule,) = workers["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": gateway_labels}}]
    assert rule["ports"] == [{"port": "worker", "protocol": "TCP"}]
    for workload in pool_workloads(objects).values():
        assert (
            workers["spec"]["podSelector"]["matchLabels"].items()
            <= workload["spec"]["template"]["metadata"]["labels"].items()
        )
    gateway = next(p for p in policies.values() if p["spec"]["podSelector"]["matchLabels"] == gateway_labels)
    to_workers = [r for r in gateway["spec"]["egress"] if r.get("to", [{}])[0].get("podSelector")]
    assert to_workers and to_workers[0]["ports"] == [{"port": 8100, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"pools": [pool(deviceKind="gpu")]}, "/pools/0/deviceKind"),
        ({"upstreams": [upstream(dialect="openai")]}, "/upstreams/0/dialect"),
        ({"pools": [pool(region=None)]}, "missing property 'region'"),
        ({"pools": [pool(name="GPU_EU")]}, "/pools/0/name"),
        ({"pools": [pool(deviceKind="cpu")]}, "missing property 'vendor'"),
        ({"pools": [pool(gpus=2)]}, "gpus"),
        ({"pools": [pool(variants=["huge"])]}, "/pools/0/variants/0"),
        ({"upstreams": [upstream(baseUrl=None)]}, "missing property 'baseUrl'"),
        ({"upstreams": [upstream(apiKeySecret={"name": "s"})]}, "missing property 'key'"),
        ({"secrets": {"workerToken": "short"}}, "/secrets/workerToken"),
    ],
    ids=[
        "bad-device-kind", "bad-dialect", "no-region", "bad-pool-name", "cpu-without-vendor",
        "unknown-field", "bad-variant", "upstream-without-url", "secret-without-key", "short-token",
    ],
)  # fmt: skip
def test_schema_rejects_bad_pool_values(render, values, field) -> None:
    with pytest.raises(helm.HelmValuesError, match=field):
        render(merge(SECRETS, {"secrets": {"workerToken": WORKER_TOKEN}}, values))


def test_notes_list_the_pools(render_files) -> None:
    notes = render_files(POOLS)["gateway/templates/NOTES.txt"]
    assert "pool gpu-eu: Deployment" in notes and "2 x `gateway worker --device cuda:0`" in notes
    assert "pool npu-cn: StatefulSet" in notes and "2 huawei.com/Ascend910 each" in notes
    assert "upstream vllm-us: vllm at http://vllm.inference.svc:8000/v1" in notes
    # the chart's image has the CPU build of PyTorch: device pools without their own image are flagged
    warnings = [line for line in notes.splitlines() if "WARNING: pool" in line]
    assert [w.split()[2] for w in warnings] == ["npu-cn", "rocm-us"]


def docs_examples() -> list[dict[str, Any]]:
    """The values blocks of docs/deployment.md, "Pools on Kubernetes"."""
    text = (CHART_DIR.parents[1] / "docs" / "deployment.md").read_text()
    section = text.split("### Pools on Kubernetes", 1)[1].split("\n### ", 1)[0]
    return [yaml.safe_load(block.split("```", 1)[0]) for block in section.split("```yaml\n")[1:]]


def test_docs_examples_render_valid_kubernetes(render) -> None:
    examples = docs_examples()
    assert len(examples) == 2
    values = merge(SECRETS, *examples)
    objects = render(values)
    validate_all(objects, kubernetes_validate.utils.latest_version())
    assert set(pool_workloads(objects)) == {"gpu-eu", "npu-cn"}
    assert [e["name"] for e in pools_file(objects)["pools"]] == ["gpu-eu", "npu-cn", "vllm-us"]
    assert settings_configmap(objects)["GATEWAY_EMBEDDED_ENGINE"] == "false"


def test_the_gateway_loads_the_rendered_pools_file(render, tmp_path) -> None:
    """The rendered pools.yaml passes the gateway's own loader (GATEWAY_POOLS_FILE) unchanged."""
    values = merge(POOLS, {"pools": [*POOLS["pools"], pool(name="noted", notes="rack 7", artifacts=["a1"])]})
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump(pools_file(render(values))))
    loaded = {p.spec.name: p for p in load_pools_file(path)}
    assert list(loaded) == [
        "gpu-eu",
        "npu-cn",
        "rocm-us",
        "cpu-eu",
        "noted",
        "vllm-us",
        "sglang-eu",
        "deepseek-api",
    ]
    gpu = loaded["gpu-eu"]
    assert (gpu.spec.backend, gpu.spec.device_kind, gpu.spec.vendor, gpu.spec.software_stack) == (
        "worker",
        "cuda",
        "nvidia",
        "CUDA",
    )
    assert [(r.url, r.capacity) for r in gpu.replicas] == [
        (f"http://gw-gateway-pool-gpu-eu.{NAMESPACE}.svc:8100", 96)
    ]
    assert len(loaded["npu-cn"].replicas) == 3 and loaded["npu-cn"].spec.sovereign is True
    assert set(loaded["rocm-us"].spec.variants) == {"flash", "pro"}  # [] in the file: every variant
    assert (loaded["noted"].spec.notes, loaded["noted"].artifacts) == ("rack 7", ("a1",))
    vllm = loaded["vllm-us"].spec
    assert (vllm.backend, vllm.models, vllm.api_key_env) == (
        "vllm",
        {"flash": "deepseek-ai/DeepSeek-V4-Flash"},
        "GATEWAY_UPSTREAM_KEY_VLLM_US",
    )
    assert loaded["sglang-eu"].spec.api_key_env is None
    assert [r.capacity for r in loaded["sglang-eu"].replicas] == [128, 100]


def test_deployment_pool_capacity_is_bounded(render) -> None:
    with pytest.raises(helm.HelmRenderError, match="capacity x replicaCount"):
        render(merge(POOLS, {"pools": [pool(capacity=60000, replicaCount=2)]}))
    render(merge(POOLS, {"pools": [pool(capacity=60000, replicaCount=2, workload="StatefulSet")]}))
