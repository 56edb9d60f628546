"""Values and helpers shared by the chart's pool tests (test_pools*.py)."""

from __future__ import annotations

from typing import Any

import yaml

from tests.helm.conftest import SECRETS, by_kind, merge, one, pod_spec

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
