"""Tokenizer and chat template built from GGUF metadata.

Template structure and message content are encoded separately: structure with special-token
parsing on, content with it off, so "<|im_start|>" typed by a user stays plain text.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4


def _build(tokens: list[str], merges: list[str], token_types: list[int], pre: str) -> Tokenizer:
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs: list[tuple[str, str]] = []
    for m in merges:
        a, b = m.split(" ", 1)
        pairs.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if pre in ("smollm", "starcoder", "refact", "deepseek-coder"):
        # digits one at a time, then the GPT-2 byte-level split (as SmolLM's tokenizer.json)
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    elif pre in ("gpt2", "default", ""):
        tok.pre_tokenizer = byte_level
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"), byte_level]
        )
    tok.decoder = decoders.ByteLevel()
    specials = [
        AddedToken(t, special=True, normalized=False)
        for t, ty in zip(tokens, token_types, strict=True)
        if ty in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)
    ]
    tok.add_special_tokens(specials)
    return tok


class ChatTokenizer:
    def __init__(self, metadata: dict[str, Any]) -> None:
        tokens = list(metadata["tokenizer.ggml.tokens"])
        merges = list(metadata["tokenizer.ggml.merges"])
        types = [int(x) for x in metadata["tokenizer.ggml.token_type"]]
        pre = str(metadata.get("tokenizer.ggml.pre") or "")
        # `_tok` parses special tokens (template structure); `_plain` never does (content).
        self._tok = _build(tokens, merges, types, pre)
        self._plain = _build(tokens, merges, types, pre)
        self._plain.encode_special_tokens = True
        self.vocab_size = len(tokens)
        self.tokens = tokens
        self.special_ids = frozenset(
            i for i, ty in enumerate(types) if ty in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)
        )
        self.eos_token_id = int(metadata.get("tokenizer.ggml.eos_token_id") or 0)
        self.bos_token_id = metadata.get("tokenizer.ggml.bos_token_id")
        im_end = self._tok.token_to_id("<|im_end|>")
        eot = self._tok.token_to_id("<|endoftext|>")
        self.stop_token_ids = frozenset(i for i in (self.eos_token_id, im_end, eot) if i is not None)
        self.chat_template = metadata.get("tokenizer.chat_template") or ""
        env = ImmutableSandboxedEnvironment(trim_blocks=False, lstrip_blocks=False)
        env.globals["raise_exception"] = _raise_template_error
        self._template = env.from_string(self.chat_template)
        # byte strings of every token, for logprobs `bytes` and incremental decoding
        self._byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
        self.token_bytes = [self._token_to_bytes(i, t) for i, t in enumerate(tokens)]

    def _token_to_bytes(self, i: int, t: str) -> bytes:
        if i in self.special_ids:
            return t.encode("utf-8")
        try:
            return bytes(self._byte_decoder[c] for c in t)
        except KeyError:
            return t.encode("utf-8")

    # -- encoding --------------------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        """Encode untrusted text: special-token strings stay plain text."""
        return list(self._plain.encode(text, add_special_tokens=False).ids)

    def encode_trusted(self, text: str) -> list[int]:
        """Encode text whose special-token strings are meant as control tokens."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        return self._template.render(messages=list(messages), add_generation_prompt=add_generation_prompt)

    def encode_chat(
        self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True
    ) -> list[int]:
        roles = tuple(m.get("role") for m in messages)
        if all(set(m) <= {"role", "content"} and isinstance(m.get("content"), str) for m in messages) and all(
            r in _CACHEABLE_ROLES for r in roles
        ):
            # The template's output around the contents depends only on the roles: cache it.
            before, tail = self._chat_frame(roles, add_generation_prompt)
            ids: list[int] = []
            for frame, m in zip(before, messages, strict=True):
                if frame is None:  # the template dropped this message
                    continue
                ids.extend(frame)
                if m["content"]:
                    ids.extend(self.encode_text(m["content"]))
            ids.extend(tail)
            return ids
        return self._encode_chat_rendered(messages, add_generation_prompt)

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - one tokenizer per process, kept for its life
    def _chat_frame(
        self, roles: tuple[str, ...], add_generation_prompt: bool
    ) -> tuple[tuple[tuple[int, ...] | None, ...], tuple[int, ...]]:
        """The template's own tokens before each message's content (None: dropped) and after
        the last, rendered once per sequence of roles with placeholders for the contents."""
        marks = [f"\x00{i}\x00" for i in range(len(roles))]
        rest = self.render(
            [{"role": r, "content": mark} for r, mark in zip(roles, marks, strict=True)],
            add_generation_prompt,
        )
        before: list[tuple[int, ...] | None] = []
        for mark in marks:
            head, sep, after = rest.partition(mark)
            if not sep:
                before.append(None)
                continue
            before.append(tuple(self.encode_trusted(head)) if head else ())
            rest = after
        return tuple(before), tuple(self.encode_trusted(rest)) if rest else ()

    def _encode_chat_rendered(
        self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool
    ) -> list[int]:
        sentinels: list[tuple[str, str]] = []
        safe_msgs = []
        for m in messages:
            content = m.get("content")
            if isinstance(content, list):  # OpenAI content parts: keep the text parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            content = "" if content is None else str(content)
            s = f"\x00{secrets.token_hex(8)}\x00"
            sentinels.append((s, content))
            safe_msgs.append({**m, "content": s})
        rendered = self.render(safe_msgs, add_generation_prompt)
        ids: list[int] = []
        rest = rendered
        for s, content in sentinels:
            before, sep, after = rest.partition(s)
            if not sep:  # the template dropped this message
                continue
            if before:
                ids.extend(self.encode_trusted(before))
            if content:
                ids.extend(self.encode_text(content))
            rest = after
        if rest:
            ids.extend(self.encode_trusted(rest))
        return ids

    # -- decoding --------------------------------------------------------------------------
    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def bytes_of(self, ids: Iterable[int], skip_special_tokens: bool = True) -> bytes:
        return b"".join(
            self.token_bytes[i] for i in ids if not (skip_special_tokens and i in self.special_ids)
        )


_CACHEABLE_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})


def _raise_template_error(message: str) -> None:
    raise ValueError(f"chat template: {message}")


def _bytes_to_unicode() -> dict[int, str]:
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))
