"""Device selection errors name what is missing (no accelerator on the CI machine)."""

import importlib.util

import pytest
import torch

from inference import DeviceUnavailableError, EmbeddedModel, ModelNotFoundError
from inference.device import cpu_supports_bf16, resolve_device, resolve_dtype, resolve_weight_dtype


def test_cpu_and_auto():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "npu")
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cpu")) in (torch.bfloat16, torch.float32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_weights_in_bf16_under_fp32_compute_only_for_auto_on_cpus_without_bf16():
    from kernels import cpu_ops

    cpu = torch.device("cpu")
    compute = resolve_dtype("auto", cpu)
    assert compute == (torch.bfloat16 if cpu_supports_bf16() else torch.float32)
    want = torch.bfloat16 if compute == torch.bfloat16 or cpu_ops.avx2_fma() else torch.float32
    assert resolve_weight_dtype("auto", cpu, compute) == want
    # an explicit dtype is the weights' dtype too: float32 stays the exact reference
    assert resolve_weight_dtype("float32", cpu, torch.float32) == torch.float32
    assert resolve_weight_dtype("bf16", cpu, torch.bfloat16) == torch.bfloat16


def test_avx2_mode_answers_as_a_cpu_without_bf16(monkeypatch):
    """GATEWAY_CPU_KERNELS=avx2: auto numerics as on a CPU without bf16 arithmetic (oneDNN's
    emulated bf16 on AVX-512 parts before AVX512_BF16 is ~1/3 of its fp32 rate)."""
    from kernels import cpu_ops

    # the kernels read the variable once, when first asked: ask before setting it here
    want = torch.bfloat16 if cpu_ops.avx2_fma() else torch.float32
    monkeypatch.setenv("GATEWAY_CPU_KERNELS", "avx2")
    cpu = torch.device("cpu")
    assert not cpu_supports_bf16()
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_weight_dtype("auto", cpu, torch.float32) == want
    assert resolve_dtype("bf16", cpu) == torch.bfloat16  # an explicit choice still holds


def test_cuda_missing_is_a_clear_error():
    with pytest.raises(DeviceUnavailableError, match="CUDA"):
        resolve_device("cuda")


@pytest.mark.skipif(importlib.util.find_spec("torch_npu") is not None, reason="torch_npu present")
def test_npu_missing_names_torch_npu():
    with pytest.raises(DeviceUnavailableError, match="torch_npu"):
        resolve_device("npu:0")


def test_unknown_device():
    with pytest.raises(DeviceUnavailableError):
        resolve_device("tpu")


def test_load_fails_fast_on_bad_device_and_missing_file(tmp_path):
    with pytest.raises(DeviceUnavailableError):
        EmbeddedModel.load(device="npu")
    with pytest.raises(ModelNotFoundError):
        EmbeddedModel.load(tmp_path / "missing.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(ModelNotFoundError):
        EmbeddedModel.load(bad)
