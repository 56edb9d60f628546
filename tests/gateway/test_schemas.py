import pytest

from gateway.api.schemas import decode_chat_request
from gateway.errors import InvalidRequestError


def parse(body: str):
    return decode_chat_request(body.encode())


def test_minimal_request() -> None:
    req = parse('{"model": "deepseek-v4-flash", "messages": [{"role": "user", "content": "hi"}]}')
    assert req.model == "deepseek-v4-flash"
    assert req.messages[0].text() == "hi"
    assert req.stream is False and req.stop_sequences == ()


def test_content_parts_and_unknown_fields_are_accepted() -> None:
    req = parse(
        '{"model": "m", "future_field": 1, "messages": [{"role": "user", '
        '"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}'
    )
    assert req.messages[0].text() == "ab"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"model": "m", "messages": []}', "messages"),
        ('{"model": "m"}', None),
        ('{"model": "m", "messages": [{"role": "robot", "content": "x"}]}', "messages[0].role"),
        ('{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}', "temperature"),
        ('{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens"),
        ('{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 0}', "top_p"),
        ('{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}', "n"),
        ('{"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [""]}', "stop"),
        ('{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}', "top_logprobs"),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "huge"}',
            "reasoning_effort",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "maybe"}}',
            "thinking.type",
        ),
        ('{"model": "m", "messages": [{"role": "assistant", "content": "x"}]}', "messages"),
    ],
)
def test_invalid_fields_name_the_parameter(body: str, param: str | None) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse(body)
    assert info.value.param == param
    assert info.value.status == 400


@pytest.mark.parametrize("body", ["", "   ", "{", "not json", "[1,2]", '"x"'])
def test_malformed_json_is_400(body: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse(body)
