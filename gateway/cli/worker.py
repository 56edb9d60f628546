"""`gateway worker`: run one pool replica (the embedded engine behind the internal API)."""

from __future__ import annotations

import click

from gateway.cli.common import load_settings


@click.command()
@click.option("--pool", required=True, help="The pool this replica belongs to (as in the pools file).")
@click.option("--device", default=None, help="cpu, cuda:0, npu:0, ... (default GATEWAY_DEVICE).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address.")
@click.option("--port", type=int, default=8100, show_default=True)
@click.option(
    "--insecure-no-token",
    is_flag=True,
    help="Serve without GATEWAY_WORKER_TOKEN (local tests only: anyone who reaches the port can use it).",
)
def worker(pool: str, device: str | None, host: str, port: int, insecure_no_token: bool) -> None:
    """Serve one pool replica for gateways (authenticated by GATEWAY_WORKER_TOKEN)."""
    import uvicorn

    from gateway.logs import configure_logging
    from gateway.pool_worker.app import WorkerConfig, create_worker_app

    settings = load_settings()
    if not settings.worker_token and not insecure_no_token:
        raise click.UsageError(
            "set GATEWAY_WORKER_TOKEN (the secret the gateway sends) or --insecure-no-token"
        )
    configure_logging(settings.log_level, settings.log_format)
    config = WorkerConfig(
        pool=pool,
        device=device or settings.device,
        token=settings.worker_token,
        model_path=settings.model_path,
        dtype=settings.dtype,
        threads=settings.threads,
    )
    click.echo(f"pool worker {pool} on {config.device}: http://{host}:{port}")
    uvicorn.run(
        create_worker_app(config),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
