"""Structured logs: JSON lines with trace ids; key material never reaches the output."""

from __future__ import annotations

import io
import json
import logging

import pytest

from gateway.logs import make_handler
from gateway.telemetry.redact import clean_attributes, scrub
from tests.telemetry.helpers import Captured

SECRET = "sk-gw-" + "Zx9_" * 10 + "abc"
ADMIN_SECRET = "sk-gwa-" + "Ad-m" * 10 + "xyz"


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        (f"key {SECRET} used", SECRET),
        (f"admin {ADMIN_SECRET}", ADMIN_SECRET),
        ("Authorization: Bearer abc.def-123", "abc.def-123"),
        ("headers={'authorization': 'Bearer tok-xyz'}", "tok-xyz"),
        ("x-api-key=raw-secret-value", "raw-secret-value"),
    ],
)
def test_scrub_redacts_key_material(text: str, leaked: str) -> None:
    assert leaked not in scrub(text)
    assert "[REDACTED]" in scrub(text)


def test_scrub_keeps_ordinary_text_and_display_prefixes() -> None:
    assert scrub("tenant acme used key sk-gw-AbC123... (display prefix)") == (
        "tenant acme used key sk-gw-AbC123... (display prefix)"
    )
    assert scrub("nothing to see") == "nothing to see"
    assert clean_attributes({"a": SECRET, "gen_ai.completion": "text", "n": 1}) == {
        "a": "sk-gw-[REDACTED]",
        "n": 1,
    }


def _logger(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(f"tests.telemetry.{fmt}")
    logger.handlers[:] = [make_handler(fmt, stream)]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, stream


def test_json_lines_carry_trace_and_span_ids(captured: Captured) -> None:
    logger, stream = _logger("json")
    with captured.telemetry.span("work") as span:
        logger.info("settled %s for %s", "req-1", "tenant-1", extra={"request_id": "req-1"})
    logger.warning("outside any span")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    ctx = span.get_span_context()
    assert first["message"] == "settled req-1 for tenant-1"
    assert first["trace_id"] == format(ctx.trace_id, "032x")
    assert first["span_id"] == format(ctx.span_id, "016x")
    assert first["level"] == "info" and first["request_id"] == "req-1"
    assert "trace_id" not in second and second["level"] == "warning"


def test_secrets_in_messages_arguments_extras_and_tracebacks_are_redacted() -> None:
    for fmt in ("json", "text"):
        logger, stream = _logger(fmt)
        logger.info("key %s", SECRET)
        logger.info(f"inline {ADMIN_SECRET}", extra={"header": f"Bearer {SECRET}"})
        try:
            raise RuntimeError(f"failed for {SECRET}")
        except RuntimeError:
            logger.exception("auth failed")
        output = stream.getvalue()
        assert SECRET not in output and ADMIN_SECRET not in output, fmt
        assert SECRET[6:] not in output and "RuntimeError" in output
        assert output.count("[REDACTED]") >= (4 if fmt == "json" else 3)  # text shows no extras
