"""The pools file loader: a good file parses into registry specs and replicas; each bad entry
is refused with a message that names the file, the entry and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.dispatch.pools_file import load_pools_file
from gateway.errors import ConfigurationError

GOOD = {
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
    "replicas": [{"url": "http://vllm-0:8000/v1/", "capacity": 128}, {"url": "http://vllm-1:8000/v1"}],
}


def write(tmp_path: Path, *entries: object) -> Path:
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump({"pools": list(entries)}))
    return path


def test_a_good_file(tmp_path: Path) -> None:
    worker = {
        "name": "cpu-eu",
        "region": "eu-west",
        "backend": "worker",
        "replicas": [{"url": "http://w:8100"}],
    }
    pools = load_pools_file(write(tmp_path, GOOD, worker))
    vllm, cpu = pools
    assert vllm.spec.name == "vllm-us" and vllm.spec.backend == "vllm" and vllm.spec.variants == ("flash",)
    assert vllm.spec.api_key_env == "GATEWAY_UPSTREAM_KEY_VLLM_US" and vllm.spec.source == "file"
    assert [(r.url, r.capacity) for r in vllm.replicas] == [
        ("http://vllm-0:8000/v1", 128),
        ("http://vllm-1:8000/v1", 64),
    ]
    assert (
        cpu.spec.device_kind == "cpu"
        and cpu.spec.software_stack == "CPU"
        and cpu.spec.variants == ("flash", "pro")
    )


BAD = [
    pytest.param({"surprise": 1}, "surprise", id="unknown-field"),
    pytest.param({"name": None}, "name", id="no-name"),
    pytest.param({"region": ""}, "region", id="no-region"),
    pytest.param({"backend": "tgi"}, "backend", id="unknown-backend"),
    pytest.param({"name": "bad name!"}, "name", id="invalid-name"),
    pytest.param({"device_kind": "tpu"}, "device_kind", id="unknown-device-kind"),
    pytest.param({"software_stack": "XLA"}, "software_stack", id="unknown-stack"),
    pytest.param({"sovereign": "no"}, "sovereign", id="sovereign-not-a-boolean"),
    pytest.param({"variants": ["flash", "ultra"]}, "variants", id="unknown-variant"),
    pytest.param({"variants": "flash"}, "variants", id="variants-not-a-list"),
    pytest.param({"models": {"flash": ""}}, "models", id="empty-model-name"),
    pytest.param({"models": ["flash"]}, "models", id="models-not-a-mapping"),
    pytest.param({"api_key_env": "sk-live-123"}, "api_key_env", id="a-key-instead-of-a-name"),
    pytest.param({"api_key_env": 12}, "api_key_env", id="api-key-env-not-a-string"),
    pytest.param({"replicas": [{"capacity": 4}]}, "url", id="replica-without-url"),
    pytest.param({"replicas": [{"url": "vllm-0:8000"}]}, "url", id="replica-url-without-scheme"),
    pytest.param({"replicas": [{"url": "http://u:p@vllm-0:8000/v1"}]}, "url", id="credentials-in-the-url"),
    pytest.param(
        {"replicas": [{"url": "http://v:8000/v1", "capacity": -1}]}, "capacity", id="negative-capacity"
    ),
    pytest.param(
        {"replicas": [{"url": "http://v:8000/v1", "capacity": "64"}]}, "capacity", id="capacity-text"
    ),
    pytest.param(
        {"replicas": [{"url": "http://v:8000/v1", "capacity": True}]}, "capacity", id="capacity-bool"
    ),
    pytest.param({"replicas": {"url": "http://v:8000/v1"}}, "replicas", id="replicas-not-a-list"),
    pytest.param({"artifacts": "weights"}, "artifacts", id="artifacts-not-a-list"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
def test_a_bad_entry_is_named_with_its_field(tmp_path: Path, change: dict, field: str) -> None:
    other = {"name": "cpu-eu", "region": "eu-west", "backend": "worker"}
    path = write(tmp_path, other, {**GOOD, **change})
    with pytest.raises(ConfigurationError) as err:
        load_pools_file(path)
    message = str(err.value)
    assert str(path) in message and "pools[1]" in message, message
    assert field in message, message
    if change.get("name", GOOD["name"]) == GOOD["name"]:
        assert "vllm-us" in message, message


def test_an_embedded_pool_runs_in_process(tmp_path: Path) -> None:
    entry = {"name": "cpu", "region": "local", "backend": "embedded", "replicas": [{"url": "http://x:1"}]}
    with pytest.raises(ConfigurationError, match=r"pools\[0\].*inproc://embedded"):
        load_pools_file(write(tmp_path, entry))


def test_a_key_for_a_worker_pool_is_refused(tmp_path: Path) -> None:
    entry = {"name": "w", "region": "local", "backend": "worker", "api_key_env": "SOME_KEY"}
    with pytest.raises(ConfigurationError, match=r"pools\[0\] \(w\).*api_key_env"):
        load_pools_file(write(tmp_path, entry))


def test_the_file_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="appears twice"):
        load_pools_file(write(tmp_path, GOOD, GOOD))
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools: [\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_pools_file(bad)
    bad.write_text("pools: {name: x}\n")
    with pytest.raises(ConfigurationError, match="`pools:` list"):
        load_pools_file(bad)
    with pytest.raises(ConfigurationError, match="No such file"):
        load_pools_file(tmp_path / "missing.yaml")
    (tmp_path / "none.yaml").write_text("pools: []\n")
    assert load_pools_file(tmp_path / "none.yaml") == []
