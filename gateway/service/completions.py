"""One chat completion, end to end without HTTP.

prepare: tokenize -> tenant policy -> decide (pure) -> budget reservation
stream / complete: engine -> per attempt: cost, usage record, audit event -> settle budget

The HTTP layer only formats what this yields (JSON or server-sent events).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import replace
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.cost import cost_of, units_to_decimal, usd_to_units
from billing.db import utcnow
from billing.ratelimit import RateLimitResult
from gateway.api.schemas import ChatCompletionRequest
from gateway.audit.writer import AuditWriter
from gateway.auth.service import Principal
from gateway.compliance.service import ComplianceCache
from gateway.errors import InvalidRequestError, RateLimitedError
from gateway.service.catalog import check_model
from gateway.service.completion_types import (
    Answer,
    Outcome,
    PreparedCompletion,
    add_compute,
    add_usage,
    cache_salt,
)
from gateway.service.metering import Metering
from gateway.service.placement import (
    LOCAL_BACKENDS,
    Dispatch,
    dispatch_fields,
    dispatch_request,
    pools_of,
    served_deployment,
    upstream_errors,
    usage_source_of,
    weights_of,
)
from gateway.service.recording import AttemptRecord, audit_attempt, record_billing_events
from gateway.service.routing import Routing
from gateway.service.tenant_policies import PolicyCache
from gateway.telemetry import Telemetry
from inference.types import (
    EngineConfig,
    Finished,
    GenerationRequest,
    ModelArtifact,
    SamplingParams,
    TokenDelta,
    Usage,
)
from policy.cascade import Escalation, should_escalate
from policy.decide import decide
from policy.router import Router
from policy.types import Decision, DecisionRequest, Mode, Variant

log = logging.getLogger(__name__)


class ChatModel(Protocol):
    context_length: int
    artifact: ModelArtifact

    def encode_chat(
        self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True
    ) -> list[int]: ...

    def encode(self, text: str) -> list[int]: ...


# Reasoning budgets in tokens per (variant, mode); the engine closes the reasoning segment
# when the budget is spent. Flash thinks less than Pro.
DEFAULT_REASONING_BUDGETS: dict[tuple[str, str], int] = {
    ("flash", "think-high"): 256,
    ("flash", "think-max"): 1024,
    ("pro", "think-high"): 512,
    ("pro", "think-max"): 2048,
}


class CompletionService:
    def __init__(
        self,
        *,
        model: ChatModel,
        dispatcher: Dispatch,
        sessions: async_sessionmaker[AsyncSession],
        policies: PolicyCache,
        compliance: ComplianceCache,
        metering: Metering,
        reasoning_budgets: dict[tuple[str, str], int] | None = None,
        audit: AuditWriter,
        router: Router | None = None,
        telemetry: Telemetry | None = None,
    ):
        self._audit = audit
        self._telemetry = telemetry or Telemetry.disabled()
        self._model = model
        self._dispatcher = dispatcher
        self._unfinished: set[asyncio.Future[None]] = set()
        self._sessions = sessions
        self._policies = policies
        self._compliance = compliance
        self._metering = metering
        self._reasoning_budgets = reasoning_budgets or DEFAULT_REASONING_BUDGETS
        self._routing = Routing(router, sessions, telemetry=self._telemetry)  # score + tenant calibration
        self._think_overhead = len(model.encode(EngineConfig().think_open))

    @property
    def artifact(self) -> ModelArtifact:
        return self._model.artifact

    @property
    def dispatcher(self) -> Dispatch:
        return self._dispatcher

    async def _shielded(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` to its end even when the request is cancelled (a client gone, a server
        stopping): records and settlements must land. `drain()` waits for the ones still
        running, so shutdown stops the writers only after them."""
        task = asyncio.ensure_future(work)
        self._unfinished.add(task)
        task.add_done_callback(self._unfinished.discard)
        await asyncio.shield(task)

    async def drain(self) -> None:
        """Wait for every record and settlement still running (the server is stopping)."""
        while self._unfinished:
            await asyncio.gather(*list(self._unfinished), return_exceptions=True)

    # -- prepare ---------------------------------------------------------------------------

    async def prepare(
        self, principal: Principal, request: ChatCompletionRequest, *, use_case: str | None = None
    ) -> PreparedCompletion:
        started_at = utcnow()
        check_model(request.model)
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        prompt_ids = self._model.encode_chat(messages, add_generation_prompt=True)
        room = self._context_room(len(prompt_ids), request.output_limit)
        use_case = use_case or (request.metadata or {}).get("use_case")
        with self._telemetry.span("policy.decide"):
            policy = await self._policies.get(principal.tenant_id)
            quotes = await self._metering.quotes_at(started_at)
            decision_request = DecisionRequest(
                model=request.model,
                prompt_tokens=len(prompt_ids),
                thinking=request.thinking.type if request.thinking else None,
                reasoning_effort=request.reasoning_effort,
                use_case=use_case,
                max_tokens=request.output_limit,
            )
            tc = await self._compliance.get(principal.tenant_id)
            tc.check(request.model, use_case)  # ComplianceError (403, rule named) before anything is reserved
            compliance = tc.decision_input()
            routed = await self._routing.route(principal.tenant_id, request)
            decision = decide(
                policy,
                decision_request,
                quotes,
                router_score=routed.score,
                compliance=compliance,
                calibration=routed.calibration,
            )
            if decision.max_output_tokens > room:
                # The policy's default output allowance does not fit the context: decide again
                # with what fits, so that cost ceilings and reservations see the real worst case.
                decision = decide(
                    policy,
                    replace(decision_request, max_tokens=room),
                    quotes,
                    router_score=routed.score,
                    compliance=compliance,
                    calibration=routed.calibration,
                )
        self._telemetry.annotate_request(
            model=request.model,
            variant=str(decision.variant),
            mode=str(decision.mode),
            policy_version=decision.policy_version,
        )
        deployments = tc.deployments_for(decision, use_case)
        if decision.mode is not Mode.NON_THINK:
            # The engine opens the reasoning segment with a few prompt tokens of its own.
            room = self._context_room(len(prompt_ids) + self._think_overhead, request.output_limit)
        max_tokens = min(decision.max_output_tokens, room)
        client_logprobs = bool(request.logprobs)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        prepared = PreparedCompletion(
            request_id=request_id,
            principal=principal,
            request=request,
            decision=decision,
            quotes=quotes,
            generation=self._generation(request_id, principal, request, decision, prompt_ids, max_tokens),
            started_at=started_at,
            compliance=tc,
            deployment=deployments[0],
            messages=messages,
            use_case=use_case,
            client_logprobs=client_logprobs,
            deployments=deployments,
        )
        estimated_tokens = len(prompt_ids) + max_tokens
        with self._telemetry.span("billing.rate_limit"):
            admitted = await self._metering.admit(principal.rate_limits, estimated_tokens)
        if admitted is not None:
            prepared.rate_limit_headers = admitted.headers()
            if not admitted.allowed:
                raise rate_limited(admitted)
            prepared.estimated_tokens = estimated_tokens
        try:
            with self._telemetry.span("billing.reserve"):
                prepared.reservation = await self._metering.reserve(
                    request_id,
                    principal.tenant_id,
                    principal.key_id,
                    usd_to_units(decision.worst_case_total_usd),
                    started_at,
                )
        except BaseException:
            await self._metering.correct_tokens(principal.rate_limits, -prepared.estimated_tokens)
            raise
        return prepared

    def _context_room(self, prompt_tokens: int, asked: int | None) -> int:
        context = self._model.context_length
        room = context - prompt_tokens
        if room <= 0 or (asked is not None and asked > room):
            needed = prompt_tokens + (asked or 1)
            raise InvalidRequestError(
                f"This model's maximum context length is {context} tokens, but the request needs "
                f"{needed} ({prompt_tokens} in the messages, {asked or 1} for the completion). "
                "Shorten the messages or lower max_tokens.",
                param="messages",
                code="context_length_exceeded",
            )
        return room

    def _generation(
        self,
        request_id: str,
        principal: Principal,
        request: ChatCompletionRequest,
        decision: Decision,
        prompt_ids: list[int],
        max_tokens: int,
    ) -> GenerationRequest:
        reasoning_budget = None
        if decision.mode is not Mode.NON_THINK:
            budget = self._reasoning_budgets.get((str(decision.variant), str(decision.mode)), 512)
            reasoning_budget = max(1, min(budget, max_tokens - 1))
        top_logprobs = request.top_logprobs or 0
        sampling = SamplingParams(
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            top_k=request.top_k or 0,
            max_tokens=max_tokens,
            stop=request.stop_sequences,
            seed=request.seed,
            frequency_penalty=request.frequency_penalty or 0.0,
            presence_penalty=request.presence_penalty or 0.0,
            # The cascade judges the first answer by its token log-probabilities.
            logprobs=bool(request.logprobs) or decision.cascade is not None,
            top_logprobs=top_logprobs,
        )
        return GenerationRequest(
            request_id=request_id,
            prompt_token_ids=prompt_ids,
            sampling=sampling,
            cache_salt=cache_salt(principal.tenant_id),
            reasoning_budget=reasoning_budget,
        )

    # -- run -------------------------------------------------------------------------------

    async def stream(
        self, prepared: PreparedCompletion, outcome: Outcome
    ) -> AsyncIterator[TokenDelta | Finished]:
        """One attempt, streamed; the budget reservation is settled however it ends."""
        try:
            async for event in self._attempt(prepared, outcome, attempt=1):
                yield event
        finally:
            await self._shielded(self._settle(prepared, [outcome]))

    async def complete(self, prepared: PreparedCompletion) -> Answer:
        """The whole answer; with a cascade, a low-confidence first answer is answered
        again by the escalation model, and both attempts are metered and audited."""
        outcomes: list[Outcome] = []
        try:
            first = await self._collect(prepared, outcomes, attempt=1)
            plan = prepared.decision.cascade
            if plan is None:
                return first
            answer_logprobs = [lp["logprob"] for lp in first.logprobs or []]
            escalation = should_escalate(plan, answer_logprobs)
            first.escalation = escalation
            if not escalation.escalate:
                return first
            second_prepared = self._escalated(prepared, escalation)
            second = await self._collect(second_prepared, outcomes, attempt=2, escalation=escalation)
            second.usage = add_usage(first.usage, second.usage)
            second.cost = first.cost + second.cost
            second.compute = add_compute(first.compute, second.compute)
            second.escalation = escalation
            return second
        finally:
            await self._shielded(self._settle(prepared, outcomes))

    def _escalated(self, prepared: PreparedCompletion, escalation: Escalation) -> PreparedCompletion:
        plan = prepared.decision.cascade
        assert plan is not None
        decision = replace(
            prepared.decision,
            variant=Variant(plan.variant),
            mode=Mode(plan.mode),
            model=plan.model,
            cascade=None,
            reasons=(*prepared.decision.reasons, escalation.reason),
        )
        generation = self._generation(
            prepared.request_id,
            prepared.principal,
            prepared.request,
            decision,
            prepared.generation.prompt_token_ids,
            prepared.generation.sampling.max_tokens or 1,
        )
        deployments = prepared.compliance.deployments_for(decision, prepared.use_case)
        return replace(
            prepared,
            decision=decision,
            generation=generation,
            deployment=deployments[0],
            deployments=deployments,
        )

    async def _collect(
        self,
        prepared: PreparedCompletion,
        outcomes: list[Outcome],
        *,
        attempt: int,
        escalation: Escalation | None = None,
    ) -> Answer:
        outcome = Outcome()
        outcomes.append(outcome)
        content: list[str] = []
        reasoning: list[str] = []
        logprobs: list[dict[str, Any]] = []
        finished: Finished | None = None
        async for event in self._attempt(prepared, outcome, attempt=attempt, escalation=escalation):
            if isinstance(event, TokenDelta):
                (reasoning if event.reasoning else content).append(event.text)
                if event.logprobs and not event.reasoning:
                    logprobs.extend(event.logprobs)
            else:
                finished = event
        assert finished is not None and outcome.cost is not None  # the engine always ends with Finished
        return Answer(
            prepared=prepared,
            content="".join(content),
            reasoning="".join(reasoning) if prepared.generation.reasoning_budget is not None else None,
            logprobs=logprobs if prepared.generation.sampling.logprobs else None,
            finish_reason=finished.finish_reason,
            usage=finished.usage,
            cost=outcome.cost,
            attempts=outcomes,
            compute=finished.compute,
        )

    async def _attempt(
        self,
        prepared: PreparedCompletion,
        outcome: Outcome,
        *,
        attempt: int,
        escalation: Escalation | None = None,
    ) -> AsyncIterator[TokenDelta | Finished]:
        """Generate, then record cost, usage and audit exactly once however it ends
        (finished, client gone, or error)."""
        try:
            async for event in self._dispatch(prepared, outcome):
                if isinstance(event, TokenDelta):
                    outcome.completion_tokens += len(event.token_ids)
                    if event.reasoning:
                        outcome.reasoning_tokens += len(event.token_ids)
                    else:
                        outcome.answer_parts.append(event.text)
                else:
                    outcome.finish_reason = event.finish_reason
                    outcome.usage = event.usage
                    outcome.usage_source = event.usage_source
                    outcome.compute = event.compute
                    outcome.status = "cancelled" if event.finish_reason == "cancelled" else "completed"
                    u = event.usage  # priced now so that a stream's final usage chunk carries the cost
                    outcome.cost = cost_of(
                        prepared.quote,
                        u.prompt_cache_hit_tokens,
                        u.prompt_cache_miss_tokens,
                        u.completion_tokens,
                    )
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            outcome.status = "cancelled"
            raise
        finally:
            # Shielded: a disconnecting client cancels this task, but the record must land.
            await self._shielded(self._record(self._record_for(prepared, outcome, attempt, escalation)))

    def _record_for(
        self, prepared: PreparedCompletion, outcome: Outcome, attempt: int, escalation: Escalation | None
    ) -> AttemptRecord:
        prompt_tokens = len(prepared.generation.prompt_token_ids)
        if outcome.usage is None:  # interrupted: bill the prompt and what was delivered
            p = outcome.placement
            # Nothing reached the client and no replica is still working on it (every replica
            # failed, or none was free): the tenant is billed nothing for the attempt.
            served = p.first_token or (outcome.status == "cancelled" and p.replica is not None)
            billed_prompt = prompt_tokens if served else 0
            outcome.usage_source = usage_source_of(p)
            outcome.usage = Usage(
                prompt_tokens=billed_prompt,
                prompt_cache_hit_tokens=0,
                prompt_cache_miss_tokens=billed_prompt,
                completion_tokens=outcome.completion_tokens,
                reasoning_tokens=outcome.reasoning_tokens,
            )
        usage = outcome.usage
        deployment = served_deployment(prepared.deployments, outcome.placement)
        record = AttemptRecord(
            request_id=prepared.request_id,
            attempt=attempt,
            principal=prepared.principal,
            decision=prepared.decision,
            quote=prepared.quote,
            artifact=self._model.artifact,
            usage=usage,
            status=outcome.status,
            finish_reason=outcome.finish_reason,
            stream=prepared.request.stream,
            started_at=prepared.started_at,
            # The deployment, profile version and prompt/answer fields the retention allows.
            compliance=prepared.compliance.audit_fields(
                deployment, prepared.messages, "".join(outcome.answer_parts)
            ),
            escalation=None
            if escalation is None
            else {"confidence": escalation.confidence, "reason": escalation.reason},
            dispatch=dispatch_fields(outcome.placement, outcome.usage_source),
            served_artifact=None if outcome.placement.backend in LOCAL_BACKENDS else weights_of(deployment),
        )
        outcome.cost = record.cost
        return record

    def _dispatch(
        self, prepared: PreparedCompletion, outcome: Outcome
    ) -> AsyncIterator[TokenDelta | Finished]:
        request = dispatch_request(
            prepared.generation,
            prepared.messages,
            variant=prepared.variant,
            mode=prepared.mode,
            model=prepared.model_id,
            stream=prepared.request.stream and prepared.decision.cascade is None,
        )
        pools = pools_of(prepared.deployments)
        return upstream_errors(self._dispatcher.generate(request, pools, outcome.placement))

    async def _record(self, record: AttemptRecord) -> None:
        with self._telemetry.span("billing.record", attempt=record.attempt):
            await self._metering.record(record.usage_entry(utcnow()))
        with self._telemetry.span("audit.append", attempt=record.attempt):
            audit_attempt(self._audit, record)
        u = record.usage
        self._telemetry.record_completion(
            tenant_id=record.principal.tenant_id,
            variant=str(record.decision.variant),
            mode=str(record.decision.mode),
            model=record.decision.model,
            status=record.status,
            finish_reason=record.finish_reason,
            latency_s=(utcnow() - record.started_at).total_seconds(),
            input_tokens=u.prompt_tokens,
            cache_hit_tokens=u.prompt_cache_hit_tokens,
            cache_miss_tokens=u.prompt_cache_miss_tokens,
            output_tokens=u.completion_tokens,
            reasoning_tokens=u.reasoning_tokens,
            cost_usd=units_to_decimal(record.cost.total),
        )

    async def _settle(self, prepared: PreparedCompletion, outcomes: list[Outcome]) -> None:
        """Settle the reservation to what all attempts actually cost (also when cancelled)."""
        used_tokens = sum(o.usage.prompt_tokens + o.usage.completion_tokens for o in outcomes if o.usage)
        if prepared.estimated_tokens:
            try:
                await self._metering.correct_tokens(
                    prepared.principal.rate_limits, used_tokens - prepared.estimated_tokens
                )
            except Exception:
                log.exception("correcting the token rate limit of %s failed", prepared.request_id)
        actual = sum(o.cost.total for o in outcomes if o.cost is not None)
        self._telemetry.annotate_request(cost_usd=units_to_decimal(actual), attempts=len(outcomes))
        if prepared.reservation is None:
            return
        try:
            with self._telemetry.span("billing.settle"):
                alerts = await self._metering.settle(prepared.reservation, actual)
        except Exception:
            log.exception("settling the reservation of %s failed; the reaper returns it", prepared.request_id)
            return
        if alerts:
            await record_billing_events(self._sessions, [alert.to_event() for alert in alerts])


def rate_limited(result: RateLimitResult) -> RateLimitedError:
    blocked = result.blocked_by
    what = (
        f"{blocked.scope} {blocked.dimension} per minute (limit {blocked.limit})" if blocked else "rate limit"
    )
    if result.too_large:
        message = f"This request alone exceeds the {what}; it can never be admitted. Lower max_tokens."
    else:
        message = f"Rate limit reached for {what}. Retry after {result.headers().get('retry-after', '1')}s."
    return RateLimitedError(message, retry_after_s=result.retry_after_seconds, headers=result.headers())
