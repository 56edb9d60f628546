"""What the OpenAPI document says about each operation beyond what Litestar reads from the
handler signatures (paths, path and query parameters): the JSON body types, the success
body, other media types. Keyed by (METHOD, path as the document writes it).

An operation missing here still appears in the document, with the auth scheme and error
responses of its prefix and an untyped success body (tests/gateway/test_openapi_doc.py
lists the ones that lack a type).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from gateway.api.admin.billing import BudgetBody
from gateway.api.admin.limits import LimitsBody
from gateway.api.admin.tenants import KeyCreate, TenantCreate
from gateway.api.openapi import responses as r
from gateway.api.schemas import ChatCompletionRequest
from gateway.compliance.registry import ArtifactSpec, PoolSpec


class DeploymentCreate(msgspec.Struct, forbid_unknown_fields=True):
    """POST /admin/compliance/deployments takes exactly these fields."""

    name: str
    model_id: str
    variant: Literal["flash", "pro"]
    pool: str
    artifacts: list[str]


class ReplicaAdd(msgspec.Struct, forbid_unknown_fields=True):
    """POST /admin/pools/{name}/replicas (gateway/dispatch/admin_api.py)."""

    url: str
    capacity: int = 64


class ReplicaEnable(msgspec.Struct, forbid_unknown_fields=True):
    """PATCH /admin/pools/{name}/replicas: drain (false) or return (true) a replica."""

    url: str
    enabled: bool


class PoolPatch(msgspec.Struct, forbid_unknown_fields=True):
    """PATCH /admin/pools/{name}: the dispatch fields (docs/pools.md); at least one."""

    backend: str | msgspec.UnsetType = msgspec.UNSET
    variants: list[str] | msgspec.UnsetType = msgspec.UNSET
    models: dict[str, str] | msgspec.UnsetType = msgspec.UNSET  # variant -> upstream model name
    api_key_env: str | None | msgspec.UnsetType = msgspec.UNSET


@dataclass(frozen=True)
class Query:
    """A query parameter the handler reads from request.query_params itself."""

    name: str
    description: str
    required: bool = False
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Doc:
    response: Any = None  # the success body's type (JSON)
    request: Any = None  # the JSON body's type
    text_body: str | None = None  # the body is a YAML or JSON document as text: its description
    csv: bool = False  # `format=csv` answers text/csv
    stream: bool = False  # `stream: true` answers text/event-stream
    summary: str | None = None
    query: tuple[Query, ...] = ()
    headers: tuple[Query, ...] = ()


_USE_CASE = Query(
    "x-gateway-use-case",
    "The use case the tenant's policy and compliance profile route by (or metadata.use_case).",
)

OPERATIONS: dict[tuple[str, str], Doc] = {
    ("POST", "/v1/chat/completions"): Doc(
        r.ChatCompletion,
        ChatCompletionRequest,
        stream=True,
        summary="Create a chat completion (OpenAI/DeepSeek compatible)",
        headers=(_USE_CASE,),
    ),
    ("GET", "/v1/models"): Doc(r.ModelList, summary="List the served models"),
    ("GET", "/v1/models/{model_id}"): Doc(r.Model, summary="One served model and its artifact"),
    ("GET", "/v1/usage"): Doc(r.UsageReport, csv=True, summary="The tenant's own usage and exact cost"),
    # Admin: tenants and keys
    ("GET", "/admin/tenants"): Doc(r.TenantList, summary="List tenants"),
    ("POST", "/admin/tenants"): Doc(r.TenantOut, TenantCreate, summary="Create a tenant"),
    ("GET", "/admin/tenants/{name}/keys"): Doc(r.KeyList, summary="List a tenant's API keys"),
    ("POST", "/admin/tenants/{name}/keys"): Doc(r.IssuedKey, KeyCreate, summary="Issue an API key"),
    ("POST", "/admin/keys/{key_id}/revoke"): Doc(r.RevokedKey, summary="Revoke an API key"),
    ("GET", "/admin/tenants/{name}/limits"): Doc(r.TenantLimits, summary="A tenant's rate limits"),
    ("PUT", "/admin/tenants/{name}/limits"): Doc(r.TenantLimits, LimitsBody, summary="Set rate limits"),
    ("GET", "/admin/keys/{key_id}/limits"): Doc(r.KeyLimits, summary="A key's own rate limits"),
    ("PUT", "/admin/keys/{key_id}/limits"): Doc(r.KeyLimits, LimitsBody, summary="Set a key's limits"),
    ("GET", "/admin/keys/{key_id}/budget"): Doc(r.KeyBudget, summary="A key's own budget"),
    ("PUT", "/admin/keys/{key_id}/budget"): Doc(r.BudgetSet, BudgetBody, summary="Set a key's budget"),
    ("DELETE", "/admin/keys/{key_id}/budget"): Doc(r.KeyBudgetRemoved, summary="Remove a key's budget"),
    # Admin: billing
    ("GET", "/admin/tenants/{name}/usage"): Doc(r.UsageReport, csv=True, summary="A tenant's usage"),
    ("GET", "/admin/tenants/{name}/invoices/{month}"): Doc(r.Invoice, summary="A tenant's invoice (YYYY-MM)"),
    ("GET", "/admin/tenants/{name}/savings"): Doc(r.SavingsReport, summary="Savings against list prices"),
    ("GET", "/admin/tenants/{name}/budget"): Doc(r.TenantBudget, summary="A tenant's budgets"),
    ("PUT", "/admin/tenants/{name}/budget"): Doc(r.BudgetSet, BudgetBody, summary="Set a tenant's budget"),
    ("DELETE", "/admin/tenants/{name}/budget"): Doc(r.TenantBudgetRemoved, summary="Remove the budget"),
    ("GET", "/admin/prices"): Doc(r.JsonObject, summary="Export the price catalog"),
    ("POST", "/admin/prices"): Doc(r.JsonObject, r.JsonObject, summary="Import price versions"),
    ("POST", "/admin/jobs/{task}"): Doc(r.JobResult, summary="Run a billing job now"),
    # Admin: policy
    ("GET", "/admin/tenants/{name}/policy"): Doc(r.StoredPolicy, summary="The tenant's active policy"),
    ("GET", "/admin/tenants/{name}/policy/versions"): Doc(r.PolicyVersions, summary="Policy versions"),
    ("PUT", "/admin/tenants/{name}/policy"): Doc(
        r.StoredPolicy,
        text_body="The policy document, YAML or JSON text (docs/policy.md).",
        summary="Validate and activate a policy version",
        query=(Query("comment", "A note stored with the version."),),
    ),
    ("POST", "/admin/tenants/{name}/policy/rollback"): Doc(r.StoredPolicy, summary="Roll back the policy"),
    # Admin: compliance and audit
    ("GET", "/admin/compliance/artifacts"): Doc(r.ObjectList, summary="Registered model artifacts"),
    ("POST", "/admin/compliance/artifacts"): Doc(r.JsonObject, ArtifactSpec, summary="Register an artifact"),
    ("GET", "/admin/compliance/pools"): Doc(r.ObjectList, summary="Registered device pools"),
    ("POST", "/admin/compliance/pools"): Doc(r.JsonObject, PoolSpec, summary="Register a device pool"),
    ("GET", "/admin/compliance/deployments"): Doc(r.ObjectList, summary="Registered deployments"),
    ("POST", "/admin/compliance/deployments"): Doc(
        r.DeploymentCreated, DeploymentCreate, summary="Register a deployment"
    ),
    ("GET", "/admin/tenants/{name}/compliance/profile"): Doc(r.JsonObject, summary="The compliance profile"),
    ("PUT", "/admin/tenants/{name}/compliance/profile"): Doc(
        r.JsonObject,
        text_body="The compliance profile, YAML or JSON text (docs/compliance.md).",
        summary="Set the compliance profile",
    ),
    ("GET", "/admin/tenants/{name}/compliance/report"): Doc(
        r.JsonObject,
        csv=True,
        summary="The tenant's compliance report for a period",
        query=(
            Query("from", "Start: YYYY-MM-DD or an ISO datetime.", required=True),
            Query("to", "End (exclusive): YYYY-MM-DD or an ISO datetime.", required=True),
            Query("format", "json or csv", schema={"enum": ["json", "csv"], "default": "json"}),
        ),
    ),
    ("GET", "/admin/audit/verify"): Doc(r.JsonObject, summary="Verify the audit hash chain"),
    # Admin: dispatch pools (gateway/dispatch/admin_api.py, docs/pools.md)
    ("GET", "/admin/pools"): Doc(r.ObjectList, summary="Pools, their replicas and live state"),
    ("POST", "/admin/pools/{name}/replicas"): Doc(r.JsonObject, ReplicaAdd, summary="Add a replica"),
    ("PATCH", "/admin/pools/{name}/replicas"): Doc(
        r.JsonObject, ReplicaEnable, summary="Drain or return a replica"
    ),
    ("DELETE", "/admin/pools/{name}/replicas"): Doc(r.ReplicaDeleted, summary="Forget a replica"),
    ("PATCH", "/admin/pools/{name}"): Doc(r.JsonObject, PoolPatch, summary="Change a pool's dispatch fields"),
}

# Types a body or response may name; listed so that every component is generated once.
ALL_TYPES: list[Any] = [r.Error, r.ChatCompletionChunk]
for _doc in OPERATIONS.values():
    ALL_TYPES.extend(t for t in (_doc.request, _doc.response) if t is not None)
