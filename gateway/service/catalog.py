"""The model ids the API serves."""

from __future__ import annotations

from gateway.errors import ModelNotFoundError
from policy.types import AUTO_MODEL, MODEL_OF_VARIANT, VARIANT_OF_MODEL

# Both variants are served by the embedded model unless pools serve them (docs/pools.md); the
# variant decides price, policy, audit records and which pools may serve. `auto` lets the
# tenant's router choose.
SERVED_MODELS = tuple(sorted(VARIANT_OF_MODEL))
REQUESTABLE_MODELS = (*SERVED_MODELS, AUTO_MODEL)

__all__ = ["MODEL_OF_VARIANT", "REQUESTABLE_MODELS", "SERVED_MODELS", "VARIANT_OF_MODEL", "check_model"]


def check_model(model_id: str) -> None:
    """A 404 naming the ids that exist, for a model id nobody serves."""
    if model_id not in REQUESTABLE_MODELS:
        raise ModelNotFoundError(
            f"The model {model_id!r} does not exist. Available models: {', '.join(REQUESTABLE_MODELS)}.",
            param="model",
        )
