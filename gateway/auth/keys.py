"""API key material: generation, keyed hashing and constant-time verification.

A key is `sk-gw-` followed by 43 URL-safe base64 characters (32 random bytes = 256 bits).
Only HMAC-SHA256(pepper, key) is stored; the pepper is a server secret, so a stolen
database alone does not allow offline guessing against the hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_PREFIX = "sk-gw-"
ADMIN_KEY_PREFIX = "sk-gwa-"
_RANDOM_BYTES = 32
_KEY_BODY_LEN = 43  # len(urlsafe_b64encode(32 bytes)) without padding
DISPLAY_CHARS = 6  # characters of the random part kept for display ("sk-gw-AbC123...")


def generate_key(prefix: str = KEY_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(_RANDOM_BYTES)


def looks_like_key(candidate: str, prefix: str = KEY_PREFIX) -> bool:
    """Cheap shape check so that garbage never reaches the database."""
    if not candidate.startswith(prefix) or len(candidate) != len(prefix) + _KEY_BODY_LEN:
        return False
    body = candidate[len(prefix) :]
    return all(c.isascii() and (c.isalnum() or c in "-_") for c in body)


def hash_key(key: str, pepper: bytes) -> str:
    return hmac.new(pepper, key.encode("ascii", "replace"), hashlib.sha256).hexdigest()


def verify_key(key: str, stored_hash: str, pepper: bytes) -> bool:
    return hmac.compare_digest(hash_key(key, pepper), stored_hash)


def display_prefix(key: str) -> str:
    prefix = ADMIN_KEY_PREFIX if key.startswith(ADMIN_KEY_PREFIX) else KEY_PREFIX
    return key[: len(prefix) + DISPLAY_CHARS]


def load_or_create_pepper(configured: str, data_dir: Path) -> bytes:
    """The HMAC key: the configured secret, else one created once under data_dir/secrets."""
    if configured:
        return configured.encode("utf-8")
    path = data_dir / "secrets" / "key_pepper"
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pepper = secrets.token_bytes(32)
    # O_EXCL: two processes starting together must not write two different peppers.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as handle:
        handle.write(pepper.hex())
    return pepper
