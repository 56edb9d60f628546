"""Compressed KV (HCA): product-quantized keys and values in the engine's paged cache."""

from .build import build_kv_codec
from .codec import KVCodec
from .fit import HCAConfig

__all__ = ["HCAConfig", "KVCodec", "build_kv_codec"]
