"""Calibration text for fitting the expert grouping and the router: the docstrings of a fixed
list of Python standard-library modules (present wherever the engine runs, no network).

Evaluation uses other text (the routing prompts of bench/efficiency.py: GSM8K and MMLU
questions), so quality is judged on text the fit never saw.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import warnings
from collections.abc import Callable

# English prose of several kinds (library reference, protocols, maths, text processing);
# fixed and ordered, so the calibration tokens and hence the fit are deterministic.
MODULES = (
    "argparse",
    "asyncio.events",
    "asyncio.tasks",
    "calendar",
    "collections",
    "concurrent.futures._base",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email.message",
    "enum",
    "fractions",
    "ftplib",
    "functools",
    "heapq",
    "http.client",
    "http.cookiejar",
    "imaplib",
    "inspect",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "mailbox",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "random",
    "re",
    "shutil",
    "smtplib",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "typing",
    "unittest.case",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "zipfile",
)


def _docstrings(mod_name: str) -> list[str]:
    try:
        mod = importlib.import_module(mod_name)
    except ImportError:  # a stripped-down Python: use what is there
        return []
    out = [inspect.getdoc(mod) or ""]
    with warnings.catch_warnings():  # deprecated members (typing.io) warn when read
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in sorted(vars(mod)):
            if name.startswith("_"):
                continue
            obj = getattr(mod, name)
            if getattr(obj, "__module__", None) != mod.__name__:
                continue  # re-exported from elsewhere: counted where it is defined
            if inspect.isclass(obj) or inspect.isfunction(obj):
                out.append(inspect.getdoc(obj) or "")
    return [d for d in out if len(d) >= 80]


def calibration_text() -> str:
    return "\n\n".join(d for m in MODULES for d in _docstrings(m))


def calibration_tokens(encode: Callable[[str], list[int]], n_tokens: int, chunk: int) -> list[list[int]]:
    """Up to n_tokens of calibration text in chunks of `chunk` tokens (whole chunks only)."""
    ids = encode(calibration_text())
    n = min(n_tokens, len(ids)) // chunk * chunk
    if n == 0:
        raise ValueError("no calibration text available")
    return [ids[i : i + chunk] for i in range(0, n, chunk)]


def tokens_digest(chunks: list[list[int]]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(b",".join(str(t).encode() for t in c))
        h.update(b";")
    return h.hexdigest()[:16]
