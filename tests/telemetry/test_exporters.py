"""Exporters from settings: OTLP over HTTP reaches a collector; bad settings name the variable."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.errors import ConfigurationError
from gateway.settings import Settings
from gateway.telemetry import Telemetry


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, int]]]]:
    received: list[tuple[str, str, int]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("content-length", 0))
            self.rfile.read(length)
            received.append((self.path, self.headers.get("content-type", ""), length))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_otlp_exports_traces_and_metrics_to_the_endpoint(collector: tuple[str, list]) -> None:
    url, received = collector
    tel = Telemetry.from_settings(Settings(otel_exporter="otlp", otel_endpoint=url + "/"))
    assert tel.tracing and tel.render_prometheus() is None
    with tel.span("exported"):
        tel.record_rejection("budget", "t1")
    tel.shutdown()  # flushes the batch span processor and the periodic metric reader
    paths = {path for path, _, _ in received}
    assert paths == {"/v1/traces", "/v1/metrics"}
    assert all(ctype == "application/x-protobuf" and size > 0 for _, ctype, size in received)


def test_console_and_prometheus_settings_build_their_readers() -> None:
    tel = Telemetry.from_settings(Settings(otel_exporter="console", metrics="prometheus"))
    try:
        assert tel.tracing and tel.render_prometheus() is not None
    finally:
        tel.shutdown()


def test_settings_choices_are_normalised_and_checked() -> None:
    s = Settings.from_env(
        {"GATEWAY_OTEL_EXPORTER": "OTLP", "GATEWAY_METRICS": " Prometheus ", "GATEWAY_LOG_FORMAT": "JSON"}
    )
    assert (s.otel_exporter, s.metrics, s.log_format) == ("otlp", "prometheus", "json")
    defaults = Settings.from_env({})
    assert (defaults.otel_exporter, defaults.metrics, defaults.log_format) == ("none", "none", "text")
    for var, value in (
        ("GATEWAY_OTEL_EXPORTER", "jaeger"),
        ("GATEWAY_METRICS", "statsd"),
        ("GATEWAY_LOG_FORMAT", "xml"),
        ("GATEWAY_OTEL_METRIC_INTERVAL_S", "0"),
    ):
        with pytest.raises(ConfigurationError, match=var):
            Settings.from_env({var: value})
