"""Incremental detokenization, stop strings and the reasoning split, without the model."""

from inference.output import OutputState


def feed_all(st: OutputState, parts: list[bytes]) -> list[tuple[str, bool]]:
    out = []
    for p in parts:
        out += [(c.text, c.reasoning) for c in st.feed(p)]
        if st.stopped:
            break
    if not st.stopped:
        out += [(c.text, c.reasoning) for c in st.feed(b"", final=True)]
    return out


def text(chunks):
    return "".join(t for t, _ in chunks)


def test_multibyte_chars_never_split():
    st = OutputState(stop=(), reasoning=False)
    data = "é日🙂".encode()
    chunks = [c.text for b in data for c in st.feed(bytes([b]))]
    assert "".join(chunks) == "é日🙂"
    assert all(len(c) >= 1 for c in chunks)
    assert chunks == ["é", "日", "🙂"]


def test_stop_string_across_tokens_is_held_back_and_dropped():
    st = OutputState(stop=("STOP",), reasoning=False)
    out = []
    for p in [b"Hello S", b"T", b"OP and more"]:
        out += [c.text for c in st.feed(p)]
    assert "".join(out) == "Hello "
    assert st.stopped
    # nothing that could begin the stop string was ever emitted
    assert all("S" not in t for t in out)


def test_held_back_text_released_when_it_diverges_or_at_the_end():
    st = OutputState(stop=("STOP",), reasoning=False)
    assert [c.text for c in st.feed(b"a ST")] == ["a "]
    assert [c.text for c in st.feed(b"AR")] == ["STAR"]
    assert [c.text for c in st.feed(b" S")] == [" "]
    assert [c.text for c in st.feed(b"", final=True)] == ["S"]


def test_earliest_of_several_stop_strings():
    st = OutputState(stop=("world", "lo w"), reasoning=False)
    assert text(feed_all(st, [b"hello world"])) == "hel"


def test_reasoning_then_answer():
    st = OutputState(stop=(), reasoning=True)
    chunks = feed_all(st, [b"let me think", b"</th", b"ink>\n\n", b"The answer"])
    assert ("let me think", True) in chunks
    assert text([c for c in chunks if c[1]]) == "let me think"
    assert text([c for c in chunks if not c[1]]) == "The answer"
    assert st.closed_by_text


def test_stop_strings_apply_to_the_answer_only():
    st = OutputState(stop=("END",), reasoning=True)
    chunks = feed_all(st, [b"END? no</think>", b"ok END"])
    assert text([c for c in chunks if c[1]]) == "END? no"
    assert text([c for c in chunks if not c[1]]) == "ok "
    assert st.stopped


def test_end_reasoning_flushes():
    st = OutputState(stop=(), reasoning=True)
    assert [c.text for c in st.feed(b"abc</t")] == ["abc"]
    assert [(c.text, c.reasoning) for c in st.end_reasoning()] == [("</t", True)]
    assert [(c.text, c.reasoning) for c in st.feed(b"\n answer")] == [("answer", False)]
