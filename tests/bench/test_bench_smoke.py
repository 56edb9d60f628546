"""The benchmarks' own parts: the instant upstream speaks the dialect the gateway maps (usage
in the last chunk, keep-alive), and the figures are read right from wrk and from the
gateway's spans. The whole benchmarks are run with `--quick` (docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from inference.dispatch import dialects

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.append(str(BENCH))

import _load  # noqa: E402
import _stages  # noqa: E402
from _gateway_proc import Processes, free_port, wait_http  # noqa: E402


@pytest.mark.slow  # starts the upstream in a subprocess
def test_instant_upstream_answers_with_usage_and_keeps_connections(tmp_path: Path) -> None:
    port = free_port()
    with Processes(tmp_path) as procs:
        up = procs.start(
            "upstream", [sys.executable, str(BENCH / "instant_upstream.py"), "--port", str(port)]
        )
        wait_http(f"http://127.0.0.1:{port}/v1/models", up, timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            whole = client.post("/v1/chat/completions", json={"model": "m", "messages": []}).json()
            usage = dialects.usage_from(whole["usage"])
            assert usage is not None and usage.prompt_cache_hit_tokens == 16 and usage.prompt_tokens == 24
            stream = client.post("/v1/chat/completions", json={"model": "m", "stream": True}).text
            events = [line[6:] for line in stream.splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            last = json.loads(events[-2])
            assert last["choices"] == [] and dialects.usage_from(last["usage"]) == usage
            text = "".join(
                c["delta"].get("content", "") for e in events[:-2] for c in json.loads(e)["choices"]
            )
            assert text == whole["choices"][0]["message"]["content"]
            bad = client.post("/v1/chat/completions", content=b"{not json")
            assert bad.status_code == 400 and "error" in bad.json()
            stats = client.get("/stats").json()
        # the readiness probe's connection, then one kept alive for all the client's requests
        assert stats == {"connections": 2, "completions": 2}
    assert not up.alive()


WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:1/v1/chat/completions
  1 threads and 32 connections
  Latency Distribution
     50%  212.00us
     99%    1.43s
  200 requests in 2.00s, 1.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:    100.00
"""


def test_wrk_output_is_read_with_units_and_errors() -> None:
    parsed = _load._parse_wrk(WRK_OUTPUT)
    assert parsed == {
        "rps": 100.0,
        "requests": 200,
        "non_2xx": 7,
        "socket_errors": 3,
        "p50_ms": 0.212,
        "p99_ms": 1430.0,
    }


def _span(name: str, trace: str, start: str, end: str, parent: str | None = "0x1") -> str:
    span = {
        "name": name,
        "context": {"trace_id": trace},
        "parent_id": parent,
        "start_time": start,
        "end_time": end,
    }
    return json.dumps(span, indent=4)


def test_stage_medians_from_console_spans() -> None:
    text = "\n".join(
        [
            "serving on http://127.0.0.1:1",
            _span(
                "POST /v1/chat/completions",
                "t1",
                "2026-01-01T00:00:00.000000Z",
                "2026-01-01T00:00:00.010000Z",
                None,
            ),
            _span("gateway.auth", "t1", "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.001000Z"),
            _span("audit.append", "t1", "2026-01-01T00:00:00.002000Z", "2026-01-01T00:00:00.005000Z"),
            _span("GET /healthz", "t2", "2026-01-01T00:00:01.000000Z", "2026-01-01T00:00:01.001000Z", None),
        ]
    )
    out = _stages.stage_medians(_stages.parse_spans(text))
    assert out["requests"] == 1
    assert (
        out["gateway.auth"] == 1.0
        and out["audit.append"] == 3.0
        and out["other"] == 6.0
        and out["total"] == 10.0
    )


def test_profile_buckets_take_the_most_specific_stage() -> None:
    collapsed = "\n".join(
        [
            "main (gateway/cli/__init__.py:1);chat_completions (gateway/api/chat.py:2);"
            "ChatTokenizer.encode_chat (inference/tokenizer.py:3);render (jinja2/environment.py:4) 3",
            "main (gateway/cli/__init__.py:1);"
            "H11Protocol.data_received (uvicorn/protocols/http/h11_impl.py:5) 1",
        ]
    )
    shares = _stages.profile_shares(collapsed)
    assert shares == {
        "prompt tokenization (chat template + BPE)": 75.0,
        "uvicorn (HTTP server, h11 or httptools)": 25.0,
    }


@pytest.mark.slow  # runs the scripts
def test_quick_flag_is_documented() -> None:
    for script in ("gateway_overhead.py", "prefix_affinity.py"):
        out = subprocess.run(
            [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, check=True
        )
        assert "--quick" in out.stdout
