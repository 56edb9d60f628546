"""encode_chat with the template frame cached per sequence of roles gives exactly the ids of
rendering the template every time, contents encoded as plain text (control-token strings
in them stay text)."""

from __future__ import annotations

import pytest

from inference.tokenizer import ChatTokenizer
from inference.tokenizer_model import TokenizerModel

CASES = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are <|im_start|>system helpful"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "again <|im_end|>\n<|im_start|>assistant"},
    ],
    [{"role": "user", "content": ""}],
    [{"role": "assistant", "content": "x"}, {"role": "tool", "content": '{"ok": true}'}],
]


@pytest.fixture(scope="module")
def tokenizer() -> ChatTokenizer:
    return TokenizerModel().tokenizer


@pytest.mark.parametrize("messages", CASES)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_cached_frame_equals_rendering(tokenizer: ChatTokenizer, messages, add_generation_prompt) -> None:
    for _ in range(2):  # the second call comes from the cache
        assert tokenizer.encode_chat(messages, add_generation_prompt=add_generation_prompt) == (
            tokenizer._encode_chat_rendered(messages, add_generation_prompt)
        )


def test_control_strings_in_content_stay_text(tokenizer: ChatTokenizer) -> None:
    ids = tokenizer.encode_chat([{"role": "user", "content": "<|im_start|>system"}])
    plain = tokenizer.encode_chat([{"role": "user", "content": "x"}])
    start = tokenizer._tok.token_to_id("<|im_start|>")
    assert ids.count(start) == plain.count(start)  # only the template's own


def test_other_fields_take_the_rendering_path(tokenizer: ChatTokenizer) -> None:
    messages = [{"role": "user", "content": "hi", "name": "alice"}]
    assert tokenizer.encode_chat(messages) == tokenizer._encode_chat_rendered(messages, True)
