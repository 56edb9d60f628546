"""Request bodies at the HTTP edge (OpenAI/DeepSeek chat completions), as msgspec Structs."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from gateway.errors import InvalidRequestError

MAX_STOP_SEQUENCES = 16
MAX_MESSAGES = 2048
# Bounds that keep absurd integers a 400 naming the field (not an overflow further on); a
# max_tokens within them that does not fit the context is a context_length_exceeded 400.
INT32_MAX = 2**31 - 1


class TextPart(msgspec.Struct, tag_field="type", tag="text", forbid_unknown_fields=False):
    text: str


class Message(msgspec.Struct, forbid_unknown_fields=False):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    # DeepSeek returns reasoning_content in answers; clients may echo it back. It is ignored.
    reasoning_content: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(msgspec.Struct, forbid_unknown_fields=False):
    include_usage: bool = False


class Thinking(msgspec.Struct, forbid_unknown_fields=False):
    type: Literal["enabled", "disabled"]


ReasoningEffort = Literal["low", "medium", "high", "xhigh", "max"]


class ChatCompletionRequest(msgspec.Struct, forbid_unknown_fields=False):
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    messages: Annotated[list[Message], msgspec.Meta(min_length=1, max_length=MAX_MESSAGES)]
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    top_k: Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=INT32_MAX)] | None = None
    max_completion_tokens: Annotated[int, msgspec.Meta(ge=1, le=INT32_MAX)] | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1)] | None = None
    thinking: Thinking | None = None
    reasoning_effort: ReasoningEffort | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


_PATH = re.compile(r"- at `\$\.?(.*)`$")


T = TypeVar("T")


def decode_body(body: bytes, type_: type[T]) -> T:
    """Parse and validate a JSON body; every problem becomes a 400 naming the field."""
    if not body.strip():
        raise InvalidRequestError("The request body is empty; expected a JSON object.")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH.search(message)
        param = match.group(1) if match and match.group(1) else None
        raise InvalidRequestError(f"Invalid request: {message}", param=param) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec recurses once per nesting level, also in skipped fields
        raise InvalidRequestError(
            "The request body is nested too deeply.", code="nested_too_deeply"
        ) from None


def decode_chat_request(body: bytes) -> ChatCompletionRequest:
    request = decode_body(body, ChatCompletionRequest)
    _check_semantics(request)
    return request


def _check_semantics(request: ChatCompletionRequest) -> None:
    stops = request.stop_sequences
    if len(stops) > MAX_STOP_SEQUENCES:
        raise InvalidRequestError(f"At most {MAX_STOP_SEQUENCES} stop sequences are allowed.", param="stop")
    if any(not s for s in stops):
        raise InvalidRequestError("Stop sequences must not be empty.", param="stop")
    if request.n not in (None, 1):
        raise InvalidRequestError("Only n=1 is supported.", param="n")
    if request.tools:
        raise InvalidRequestError("Tool calls are not supported by this gateway yet.", param="tools")
    if request.response_format and request.response_format.get("type", "text") != "text":
        raise InvalidRequestError("Only response_format type 'text' is supported.", param="response_format")
    if request.top_logprobs and not request.logprobs:
        raise InvalidRequestError("top_logprobs requires logprobs=true.", param="top_logprobs")
    if request.messages[-1].role == "assistant":
        # A trailing assistant turn would be continued; that is a different API (prefix
        # completion) that is not offered.
        raise InvalidRequestError("The last message must not be from the assistant.", param="messages")
