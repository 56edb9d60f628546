"""Embedded inference engine: model loading, continuous-batching engine, prefix cache.

Public API (stable; the gateway imports only these names):
    EmbeddedModel, Engine, EngineConfig, GenerationRequest, SamplingParams,
    TokenDelta, Finished, Usage, ModelArtifact, and the errors in inference.errors.
Nothing is loaded at import time.
"""

from .embedded import EmbeddedModel
from .engine import Engine
from .errors import (
    DeviceUnavailableError,
    EngineNotRunningError,
    InferenceError,
    InvalidRequestError,
    ModelNotFoundError,
    PromptTooLongError,
)
from .types import (
    EngineConfig,
    Finished,
    GenerationRequest,
    ModelArtifact,
    SamplingParams,
    TokenDelta,
    Usage,
)

__all__ = [
    "DeviceUnavailableError",
    "EmbeddedModel",
    "Engine",
    "EngineConfig",
    "EngineNotRunningError",
    "Finished",
    "GenerationRequest",
    "InferenceError",
    "InvalidRequestError",
    "ModelArtifact",
    "ModelNotFoundError",
    "PromptTooLongError",
    "SamplingParams",
    "TokenDelta",
    "Usage",
]
