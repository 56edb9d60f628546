"""Domain errors of the inference engine. The gateway maps them to HTTP once, at the edge."""

from __future__ import annotations


class InferenceError(Exception):
    """Base class of every error raised by the inference package."""


class PromptTooLongError(InferenceError):
    """The prompt plus the requested completion does not fit in the model's context."""

    def __init__(self, prompt_tokens: int, max_tokens: int, context_length: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_length = context_length
        super().__init__(
            f"This model's maximum context length is {context_length} tokens, but "
            f"{prompt_tokens + max_tokens} tokens were requested ({prompt_tokens} in the "
            f"prompt, {max_tokens} for the completion)."
        )


class DeviceUnavailableError(InferenceError):
    """The requested device cannot be used (driver, runtime package or hardware missing)."""


class ModelNotFoundError(InferenceError):
    """The model file cannot be found or read."""


class EngineNotRunningError(InferenceError):
    """generate() was called on an engine that is not started (or already stopped)."""


class EngineConfigError(InferenceError, ValueError):
    """An EngineConfig the engine cannot run (raised when the engine is built)."""


class InvalidRequestError(InferenceError):
    """A generation request carries invalid parameters."""


class DispatchError(InferenceError):
    """A request could not be served by any replica of the pools it may use."""


class NoReplicaError(DispatchError):
    """No healthy replica with room is left in the allowed pools (retry later)."""

    def __init__(self, message: str, *, pools: tuple[str, ...] = ()) -> None:
        self.pools = pools
        super().__init__(message)


class ReplicaError(DispatchError):
    """One replica failed. ``retryable``: the same request may go to another replica (only
    before its first token). ``status``: the upstream's HTTP status, when it answered."""

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None, detail: str | None = None
    ) -> None:
        self.retryable = retryable
        self.status = status
        self.detail = detail  # the upstream's own error message (no addresses): safe for clients
        super().__init__(message)


class StreamInterruptedError(DispatchError):
    """A replica failed after the first token: the answer so far is all there is."""
