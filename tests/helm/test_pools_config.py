"""Pools and upstreams in the chart's configuration: pools.yaml against the values, upstream
keys by reference, disruption budgets, network policy, schema refusals, the docs' examples."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.dispatch.pools_file import load_pools_file
from tests.helm.conftest import (
    CHART_DIR,
    NAMESPACE,
    SECRETS,
    by_kind,
    containers,
    helm,
    merge,
    one,
)
from tests.helm.pools_values import (
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
