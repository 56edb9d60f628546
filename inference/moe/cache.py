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


def load_arrays(
    name: str, identity: dict[str, str], explicit: str | Path | None, what: str
) -> dict[str, np.ndarray] | None:
    """The arrays of the first cache file `name` whose identity fields (string arrays stored
    with it) all match; None when there is none. A torn or foreign file is skipped (refit)."""
    for d in cache_dirs(explicit):
        p = d / name
        if not p.is_file():
            continue
        try:
            with np.load(p) as z:
                if any(str(z[k]) != v for k, v in identity.items()):
                    continue
                return {k: z[k] for k in z.files if k not in identity}
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable %s %s: %s", what, p, exc)
    return None


def save_arrays(
    name: str, arrays: dict[str, np.ndarray], identity: dict[str, str], explicit: str | Path | None, what: str
) -> Path | None:
    """Write atomically (temp file, then rename) to the first writable cache dir; None if none
    is (the caller keeps what it fit in memory and refits on the next load)."""
    fields = {**arrays, **{k: np.array(v) for k, v in identity.items()}}
    for d in cache_dirs(explicit):
        tmp: str | None = None
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **fields)  # type: ignore[arg-type]
            os.replace(tmp, d / name)
            return d / name
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            log.info("%s cache dir %s not writable: %s", what, d, exc)
    log.warning("no writable cache dir for the %s: it will be refit on the next load", what)
    return None


def load_plan(sha256: str, fit_key: str, explicit: str | Path | None = None) -> MoEPlan | None:
    z = load_arrays(
        plan_filename(sha256, fit_key), {"sha256": sha256, "fit_key": fit_key}, explicit, "expert plan"
    )
    if z is None:
        return None
    try:
        return MoEPlan(
            experts=z["experts"], router_a=z["router_a"], router_b=z["router_b"], down_norm=z["down_norm"]
        )
    except KeyError as exc:
        log.warning("ignoring an expert plan without %s", exc)
        return None


def save_plan(plan: MoEPlan, sha256: str, fit_key: str, explicit: str | Path | None = None) -> Path | None:
    arrays = {
        "experts": plan.experts,
        "router_a": plan.router_a,
        "router_b": plan.router_b,
        "down_norm": plan.down_norm,
    }
    identity = {"sha256": sha256, "fit_key": fit_key}
    return save_arrays(plan_filename(sha256, fit_key), arrays, identity, explicit, "expert plan")
