from pathlib import Path

from gateway.auth import keys


def test_generated_key_has_prefix_and_256_bits() -> None:
    key = keys.generate_key()
    assert key.startswith("sk-gw-")
    assert keys.looks_like_key(key)
    # 43 base64url characters carry 258 bits; 32 random bytes went in.
    assert len(key) == len("sk-gw-") + 43
    assert len({keys.generate_key() for _ in range(100)}) == 100


def test_hash_is_keyed_and_verifies() -> None:
    key = keys.generate_key()
    h1 = keys.hash_key(key, b"pepper-1")
    h2 = keys.hash_key(key, b"pepper-2")
    assert h1 != h2
    assert key not in h1
    assert keys.verify_key(key, h1, b"pepper-1")
    assert not keys.verify_key(key, h1, b"pepper-2")
    assert not keys.verify_key(keys.generate_key(), h1, b"pepper-1")


def test_malformed_keys_are_rejected_by_shape() -> None:
    good = keys.generate_key()
    for bad in ["", "sk-gw-", good[:-1], good + "x", "sk-xx-" + good[6:], good[:-1] + "!", good[:-1] + "é"]:
        assert not keys.looks_like_key(bad)


def test_display_prefix_reveals_few_characters() -> None:
    key = keys.generate_key()
    assert keys.display_prefix(key) == key[:12]


def test_pepper_created_once_with_private_mode(tmp_path: Path) -> None:
    p1 = keys.load_or_create_pepper("", tmp_path)
    p2 = keys.load_or_create_pepper("", tmp_path)
    assert p1 == p2 and len(p1) == 32
    path = tmp_path / "secrets" / "key_pepper"
    assert path.stat().st_mode & 0o777 == 0o600
    assert keys.load_or_create_pepper("configured", tmp_path) == b"configured"
