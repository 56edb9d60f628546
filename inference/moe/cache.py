"""The fitted expert plan on disk, keyed by the model artifact's sha256 and the fit's settings.

The model file lives in an installed package directory that may be read-only, so the plan
goes to a cache directory: the one given (the gateway passes its data dir), else
$GATEWAY_MOE_CACHE_DIR, else $XDG_CACHE_HOME (or ~/.cache)/llm-gateway/moe, else the
system temp dir. A plan that cannot be written is kept in memory (refit on the next load).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from .fit import MoEPlan

log = logging.getLogger(__name__)


def cache_dirs(explicit: str | Path | None = None) -> list[Path]:
    """Candidate directories, most preferred first."""
    out: list[Path] = []
    if explicit:
        out.append(Path(explicit))
    env = os.environ.get("GATEWAY_MOE_CACHE_DIR")
    if env:
        out.append(Path(env))
    xdg = os.environ.get("XDG_CACHE_HOME")
    out.append((Path(xdg) if xdg else Path.home() / ".cache") / "llm-gateway" / "moe")
    out.append(Path(tempfile.gettempdir()) / "llm-gateway-moe")
    return out


def plan_filename(sha256: str, fit_key: str) -> str:
    return f"{sha256}-{fit_key}.npz"


def load_plan(sha256: str, fit_key: str, explicit: str | Path | None = None) -> MoEPlan | None:
    name = plan_filename(sha256, fit_key)
    for d in cache_dirs(explicit):
        p = d / name
        if not p.is_file():
            continue
        try:
            with np.load(p) as z:
                if str(z["sha256"]) != sha256 or str(z["fit_key"]) != fit_key:
                    continue
                return MoEPlan(
                    experts=z["experts"],
                    router_a=z["router_a"],
                    router_b=z["router_b"],
                    down_norm=z["down_norm"],
                )
        except (OSError, ValueError, KeyError) as exc:  # torn or foreign file: refit
            log.warning("ignoring unreadable expert plan %s: %s", p, exc)
    return None


def save_plan(plan: MoEPlan, sha256: str, fit_key: str, explicit: str | Path | None = None) -> Path | None:
    """Write the plan to the first writable cache dir (atomically); None if none is."""
    name = plan_filename(sha256, fit_key)
    for d in cache_dirs(explicit):
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh,
                    experts=plan.experts,
                    router_a=plan.router_a,
                    router_b=plan.router_b,
                    down_norm=plan.down_norm,
                    sha256=np.array(sha256),
                    fit_key=np.array(fit_key),
                )
            os.replace(tmp, d / name)
            return d / name
        except OSError as exc:
            log.info("expert plan cache dir %s not writable: %s", d, exc)
    log.warning("no writable cache dir for the expert plan: it will be refit on the next load")
    return None
