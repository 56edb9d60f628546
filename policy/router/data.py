"""Routing data: read the labelled CSVs and split them deterministically.

A prompt belongs to the held-out split when sha256(prompt) mod 5 == 0 (about 20%): the
split depends on the prompt text alone, so it is the same whatever the file order, and a
prompt repeated in a file never lands on both sides.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

HOLDOUT_MODULUS = 5


@dataclass(frozen=True, slots=True)
class Labelled:
    prompts: list[str]
    weak: list[bool]
    strong: list[bool]

    def subset(self, keep: list[bool]) -> Labelled:
        return Labelled(
            [p for p, k in zip(self.prompts, keep, strict=True) if k],
            [w for w, k in zip(self.weak, keep, strict=True) if k],
            [s for s, k in zip(self.strong, keep, strict=True) if k],
        )


def _bool(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise ValueError(f"{where}: expected True/False, got {value!r}")


def read_csv(path: str | Path) -> Labelled:
    """Columns ``prompt``, ``weak_correct``, ``strong_correct`` (others are ignored)."""
    prompts, weak, strong = [], [], []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"prompt", "weak_correct", "strong_correct"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for i, row in enumerate(reader, start=2):
            prompts.append(row["prompt"])
            weak.append(_bool(row["weak_correct"], f"{path}:{i}"))
            strong.append(_bool(row["strong_correct"], f"{path}:{i}"))
    return Labelled(prompts, weak, strong)


def fingerprint(prompt: str) -> int:
    """32 bits of sha256(prompt): the router file lists those of its training prompts."""
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big")


def is_holdout(prompt: str) -> bool:
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "big") % HOLDOUT_MODULUS == 0


def split(data: Labelled) -> tuple[Labelled, Labelled]:
    """(train, held-out)."""
    held = [is_holdout(p) for p in data.prompts]
    return data.subset([not h for h in held]), data.subset(held)
