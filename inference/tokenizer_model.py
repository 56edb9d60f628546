"""The embedded model's tokenizer, chat template and artifact facts without its weights.

A gateway that serves only through pools (GATEWAY_EMBEDDED_ENGINE=false) still counts prompt
tokens for context checks, the decision and reservations, and meters an upstream that sends
no usage; it reads ~2 MB of metadata instead of loading 100 MB of weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .gguf_loader import load_gguf
from .tokenizer import ChatTokenizer


class TokenizerModel:
    def __init__(self, path: str | Path | None = None) -> None:
        g = load_gguf(path, tensors=False)
        self.tokenizer = ChatTokenizer(g.metadata)
        self.artifact = g.artifact
        self.config = g.config
        self.context_length = g.config.context_length

    def encode_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> list[int]:
        return self.tokenizer.encode_chat(messages, add_generation_prompt=add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        """Encode untrusted text (special-token strings stay plain text)."""
        return self.tokenizer.encode_text(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(ids)
