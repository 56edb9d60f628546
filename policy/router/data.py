"""Routing data: read the labelled CSVs and split them deterministically.

A prompt belongs to the held-out split when sha256(prompt) mod 5 == 0 (about 20%): the
split depends on the prompt text alone, so it is the same whatever the file order, and a
prompt repeated in a file never lands on both sides.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

HOLDOUT_MODULUS = 5
REQUIRED_COLUMNS = ("prompt", "weak_correct", "strong_correct")


@dataclass(frozen=True, slots=True)
class Labelled:
    prompts: list[str]
    weak: list[bool]
    strong: list[bool]
    subjects: list[str] = field(default_factory=list)  # the optional `subject` column, else empty

    def subset(self, keep: list[bool]) -> Labelled:
        return Labelled(
            [p for p, k in zip(self.prompts, keep, strict=True) if k],
            [w for w, k in zip(self.weak, keep, strict=True) if k],
            [s for s, k in zip(self.strong, keep, strict=True) if k],
            [g for g, k in zip(self.subjects, keep, strict=True) if k] if self.subjects else [],
        )


def join(*parts: Labelled) -> Labelled:
    """Rows of ``parts`` in order; subjects are kept only when every part has them."""
    subjects = [g for d in parts for g in d.subjects] if all(d.subjects for d in parts) else []
    return Labelled(
        [p for d in parts for p in d.prompts],
        [w for d in parts for w in d.weak],
        [s for d in parts for s in d.strong],
        subjects,
    )


def _bool(value: str | None, where: str, column: str) -> bool:
    v = (value or "").strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise ValueError(f"{where}: column {column} expected True/False (or 1/0), got {value!r}")


def read_csv(path: str | Path) -> Labelled:
    """Columns ``prompt``, ``weak_correct``, ``strong_correct``; ``subject`` when present.

    Errors name the data row (1 = the first row after the header) and its line in the file,
    since a quoted prompt may span several lines.
    """
    prompts, weak, strong, subjects = [], [], [], []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or ())
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"{path}: header row: missing column(s) {', '.join(missing)} "
                f"(need {', '.join(REQUIRED_COLUMNS)}; found {', '.join(reader.fieldnames or ()) or 'none'})"
            )
        has_subject = "subject" in columns
        line = 1
        for row_number, row in enumerate(reader, start=1):
            where = f"{path}: row {row_number} (line {line + 1})"
            line = reader.line_num
            if None in row or any(row.get(c) is None for c in REQUIRED_COLUMNS):
                raise ValueError(f"{where}: expected {len(reader.fieldnames or ())} fields")
            prompts.append(row["prompt"])
            weak.append(_bool(row["weak_correct"], where, "weak_correct"))
            strong.append(_bool(row["strong_correct"], where, "strong_correct"))
            if has_subject:
                subjects.append((row.get("subject") or "").strip())
    return Labelled(prompts, weak, strong, subjects)


def fingerprint(prompt: str) -> int:
    """32 bits of sha256(prompt): the router file lists those of its training prompts."""
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big")


def is_holdout(prompt: str) -> bool:
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "big") % HOLDOUT_MODULUS == 0


def split(data: Labelled) -> tuple[Labelled, Labelled]:
    """(train, held-out)."""
    held = [is_holdout(p) for p in data.prompts]
    return data.subset([not h for h in held]), data.subset(held)
