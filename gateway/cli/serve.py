"""`gateway serve`: run the HTTP API with uvicorn."""

from __future__ import annotations

import click

from gateway.cli.common import load_settings


@click.command()
@click.option("--host", default=None, help="Bind address (default GATEWAY_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default GATEWAY_PORT or 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the OpenAI-compatible API."""
    import uvicorn

    from gateway.app import create_app
    from gateway.logs import configure_logging

    settings = load_settings().with_overrides(host=host, port=port)
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    click.echo(f"serving on http://{settings.host}:{settings.port}")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        # JSON logs: the app writes the access line itself, with trace ids (docs/observability.md)
        access_log=settings.access_log and settings.log_format != "json",
        timeout_graceful_shutdown=10,
    )
