"""The `gateway` command line."""

from __future__ import annotations

import click

from gateway.cli.admin import admin
from gateway.cli.audit import audit
from gateway.cli.compliance import compliance
from gateway.cli.db import db
from gateway.cli.demo import demo
from gateway.cli.keys import key
from gateway.cli.models import models
from gateway.cli.policy import policy
from gateway.cli.pools import pools
from gateway.cli.prices import prices
from gateway.cli.router import router
from gateway.cli.serve import serve
from gateway.cli.tenants import tenant
from gateway.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Operate the DeepSeek-V4 gateway. Settings come from GATEWAY_* environment variables."""


for command in (
    serve,
    db,
    tenant,
    key,
    admin,
    policy,
    prices,
    models,
    demo,
    compliance,
    audit,
    router,
    worker,
    pools,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="gateway")
