"""The model ids the API serves and what stands behind each."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import ModelNotFoundError

FLASH_MODEL_ID = "deepseek-v4-flash"
PRO_MODEL_ID = "deepseek-v4-pro"

# Until device pools exist, both variants are served by the embedded model; the variant
# still decides price, policy and audit records.
VARIANT_OF_MODEL = {FLASH_MODEL_ID: "flash", PRO_MODEL_ID: "pro"}
MODEL_OF_VARIANT = {v: k for k, v in VARIANT_OF_MODEL.items()}


@dataclass(frozen=True)
class ServedModel:
    id: str
    variant: str
    artifact_id: str


def resolve_model(model_id: str) -> str:
    """The variant for a requested model id, or a 404 naming the ids that exist."""
    variant = VARIANT_OF_MODEL.get(model_id)
    if variant is None:
        known = ", ".join(sorted(VARIANT_OF_MODEL))
        raise ModelNotFoundError(
            f"The model {model_id!r} does not exist. Available models: {known}.", param="model"
        )
    return variant
