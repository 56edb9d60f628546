"""Read an artifact's own metadata from a GGUF file: the ``general.*`` key/values.

gguf.GGUFReader maps the whole file and parses every field (the 49k-entry vocabulary
included, ~3 s for SmolLM2); the registry needs a handful of keys at startup, so this
reads the key/value section front to back with the gguf package's type codes and stops as
soon as it has them. The result agrees with GGUFReader (tests/compliance check that).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from gguf import GGUF_MAGIC, GGUFValueType

_SCALARS = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
GENERAL_KEYS = (
    "general.name",
    "general.license",
    "general.license.name",
    "general.license.link",
    "general.organization",
    "general.basename",
    "general.finetune",
    "general.size_label",
    "general.version",
    "general.architecture",
    "general.file_type",
    "general.source.url",
    "general.source.repo_url",
    "general.datasets",
    "general.languages",
)


class GGUFMetadataError(ValueError):
    pass


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise GGUFMetadataError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = _read(f, "<Q")
    data = f.read(n)
    if len(data) != n:
        raise GGUFMetadataError("truncated GGUF string")
    return data.decode("utf-8", errors="replace")


def _value(f: BinaryIO, vtype: int, keep: bool) -> Any:
    if vtype == GGUFValueType.STRING:
        return _string(f)
    if vtype in _SCALARS:
        return _read(f, _SCALARS[GGUFValueType(vtype)])
    if vtype == GGUFValueType.ARRAY:
        etype, count = _read(f, "<I"), _read(f, "<Q")
        if not keep and etype in _SCALARS:  # skip numeric arrays without decoding them
            f.seek(struct.calcsize(_SCALARS[GGUFValueType(etype)]) * count, 1)
            return None
        items = [_value(f, etype, keep) for _ in range(count)]
        return items if keep else None
    raise GGUFMetadataError(f"unknown GGUF value type {vtype}")


def read_metadata(path: str | Path, keys: Iterable[str] = GENERAL_KEYS) -> dict[str, Any]:
    """The values of ``keys`` present in the file's key/value section (absent keys omitted)."""
    wanted = set(keys)
    found: dict[str, Any] = {}
    with Path(path).open("rb") as f:
        if _read(f, "<I") != GGUF_MAGIC:
            raise GGUFMetadataError(f"{path} is not a GGUF file")
        version = _read(f, "<I")
        if version < 2:
            raise GGUFMetadataError(f"GGUF version {version} is not supported")
        _read(f, "<Q")  # tensor count
        for _ in range(_read(f, "<Q")):
            key = _string(f)
            vtype = _read(f, "<I")
            value = _value(f, vtype, keep=key in wanted)
            if key in wanted:
                found[key] = value
                if len(found) == len(wanted):
                    break
    return found


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
