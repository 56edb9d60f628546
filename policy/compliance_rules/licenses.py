"""SPDX license ids and what each says about patents (pure data, no I/O).

Artifacts carry free-form license strings (a GGUF file says ``apache-2.0``); the registry
stores the SPDX id. ``patent_grant_of`` answers the question that medical and financial
users ask: does the license give an express patent grant? MIT and the BSD licenses do
not; Apache-2.0, GPL-3.0, MPL-2.0 and EPL-2.0 do. Anything else is ``unknown`` and is
treated like "no grant" by the evaluator.
"""

from __future__ import annotations

from enum import StrEnum


class PatentGrant(StrEnum):
    EXPRESS = "express"  # the license grants patent rights expressly (Apache-2.0 section 3)
    NONE = "none"  # permissive without a patent clause (MIT, BSD)
    UNKNOWN = "unknown"


UNKNOWN_LICENSE = "NOASSERTION"

_SPDX = {
    "apache-2.0": "Apache-2.0",
    "apache 2.0": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "mit": "MIT",
    "bsd-2-clause": "BSD-2-Clause",
    "bsd-3-clause": "BSD-3-Clause",
    "gpl-3.0": "GPL-3.0-only",
    "gpl-3.0-only": "GPL-3.0-only",
    "gpl-3.0-or-later": "GPL-3.0-or-later",
    "lgpl-3.0": "LGPL-3.0-only",
    "mpl-2.0": "MPL-2.0",
    "epl-2.0": "EPL-2.0",
    "cc-by-4.0": "CC-BY-4.0",
    "cc-by-sa-4.0": "CC-BY-SA-4.0",
    "noassertion": UNKNOWN_LICENSE,
    "unknown": UNKNOWN_LICENSE,
    "": UNKNOWN_LICENSE,
}

_GRANTS = {
    "Apache-2.0": PatentGrant.EXPRESS,
    "GPL-3.0-only": PatentGrant.EXPRESS,
    "GPL-3.0-or-later": PatentGrant.EXPRESS,
    "LGPL-3.0-only": PatentGrant.EXPRESS,
    "MPL-2.0": PatentGrant.EXPRESS,
    "EPL-2.0": PatentGrant.EXPRESS,
    "MIT": PatentGrant.NONE,
    "BSD-2-Clause": PatentGrant.NONE,
    "BSD-3-Clause": PatentGrant.NONE,
    # Creative Commons 4.0 licenses expressly exclude patent rights (section 2.b.2).
    "CC-BY-4.0": PatentGrant.NONE,
    "CC-BY-SA-4.0": PatentGrant.NONE,
}


def spdx_id(raw: str | None) -> str:
    """The SPDX id for a license string as artifacts write it (``apache-2.0`` -> ``Apache-2.0``).

    Strings that are already SPDX ids (``LicenseRef-...`` included) pass through; unknown
    strings become ``LicenseRef-<text>`` so that nothing unrecognised looks like a known id.
    """
    text = (raw or "").strip()
    known = _SPDX.get(text.lower())
    if known is not None:
        return known
    if text in _GRANTS or text.startswith("LicenseRef-"):
        return text
    cleaned = "".join(c if c.isalnum() or c in ".-" else "-" for c in text)
    return f"LicenseRef-{cleaned}"


def patent_grant_of(spdx: str) -> PatentGrant:
    return _GRANTS.get(spdx, PatentGrant.UNKNOWN)
