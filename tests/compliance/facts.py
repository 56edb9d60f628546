"""Registry facts for the evaluator tests: DeepSeek-V4 weights (MIT) and an Apache-2.0 model."""

from __future__ import annotations

from policy.compliance_rules import ArtifactFacts, Candidate, PoolFacts

FLASH_W = ArtifactFacts("deepseek-v4-flash-weights", "model_weights", "MIT", "none")
PRO_W = ArtifactFacts("deepseek-v4-pro-weights", "model_weights", "MIT", "none")
SMOL_W = ArtifactFacts("SmolLM2-135M-Instruct.Q4_1", "model_weights", "Apache-2.0", "express")
TORCH = ArtifactFacts("pytorch-2.13.0-cpu", "kernel_stack", "BSD-3-Clause", "none")
VLLM = ArtifactFacts("vllm-0.11-cuda", "engine_build", "Apache-2.0", "express")

EU_GPU = PoolFacts("eu-h200", "eu-central", "nvidia", "gpu", "CUDA")
US_GPU = PoolFacts("us-h200", "us-east", "nvidia", "gpu", "CUDA")
CN_NPU = PoolFacts("cn-ascend", "cn-north", "huawei", "npu", "CANN", sovereign=True)
LOCAL = PoolFacts("embedded-cpu", "local", "intel", "cpu", "CPU")


def dep(name: str, variant: str, pool: PoolFacts, *artifacts: ArtifactFacts) -> Candidate:
    return Candidate(name, f"deepseek-v4-{variant}", variant, pool, artifacts)


FLASH_EU = dep("flash-eu", "flash", EU_GPU, FLASH_W, VLLM, TORCH)
FLASH_US = dep("flash-us", "flash", US_GPU, FLASH_W, VLLM, TORCH)
PRO_EU = dep("pro-eu", "pro", EU_GPU, PRO_W, VLLM, TORCH)
PRO_CN = dep("pro-cn", "pro", CN_NPU, PRO_W, TORCH)
SMOL_LOCAL = dep("embedded-flash", "flash", LOCAL, SMOL_W, TORCH)
ALL = (FLASH_EU, FLASH_US, PRO_EU, PRO_CN)
