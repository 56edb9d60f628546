"""Logging set-up: text or JSON lines, trace ids, and a scrubbing safety net.

Handlers never see prompt or answer text: the code never logs it. Key material that slips
into a message, an argument or a traceback (sk-gw-/sk-gwa- keys, bearer tokens) is redacted
by the handler's filter and, for tracebacks, by the formatter.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from opentelemetry import trace

from gateway.telemetry.redact import scrub

# LogRecord attributes that are not "extra" fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_OWN = frozenset({"trace_id", "span_id", "color_message"})  # uvicorn repeats messages in ANSI colour


class ScrubFilter(logging.Filter):
    """Render the message once, redact key material, and attach the current trace ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw text
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        if trace_id:
            text = f"{text} trace_id={trace_id} span_id={getattr(record, 'span_id', '')}"
        return scrub(text)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, trace_id, span_id, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key in ("trace_id", "span_id"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in _OWN and not key.startswith("_"):
                entry[key] = _json_value(value)
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = scrub(record.exc_text)
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


def make_handler(fmt: str = "text", stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ScrubFilter())
    return handler


def configure_logging(level: str, fmt: str = "text") -> None:
    root = logging.getLogger()
    root.handlers[:] = [make_handler(fmt)]
    root.setLevel(level.upper())
    # httpx logs a line per request at INFO: every health probe and upstream call of
    # dispatch. Its warnings still show; the gateway logs its own dispatch failures.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
