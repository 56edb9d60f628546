"""GET /v1/models and GET /v1/models/{id}: the served ids and the artifact behind each."""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from gateway.api.auth import authenticate
from gateway.errors import ModelNotFoundError
from gateway.service.catalog import SERVED_MODELS, VARIANT_OF_MODEL

OWNER = "deepseek-gateway"


def _model_entry(model_id: str, request: Request[Any, Any, Any]) -> dict[str, Any]:
    services = request.app.state.services
    entry: dict[str, Any] = {
        "id": model_id,
        "object": "model",
        "created": services.started_unix,
        "owned_by": OWNER,
        "variant": str(VARIANT_OF_MODEL[model_id]),
    }
    artifact = services.artifact
    if artifact is not None:
        entry["artifact"] = {
            "name": artifact.name,
            "sha256": artifact.sha256,
            "license": artifact.license,
            "architecture": artifact.architecture,
            "quantization": artifact.quantization,
            "parameters": artifact.parameter_count,
            "context_length": artifact.context_length,
        }
    return entry


@get("/v1/models")
async def list_models(request: Request[Any, Any, Any]) -> dict[str, Any]:
    await authenticate(request)
    return {"object": "list", "data": [_model_entry(m, request) for m in SERVED_MODELS]}


@get("/v1/models/{model_id:str}")
async def retrieve_model(request: Request[Any, Any, Any], model_id: str) -> dict[str, Any]:
    await authenticate(request)
    if model_id not in VARIANT_OF_MODEL:
        raise ModelNotFoundError(f"The model {model_id!r} does not exist.", param="model")
    return _model_entry(model_id, request)
