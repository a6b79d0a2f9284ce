"""Streaming detokenization never yields a broken character."""

from aded_chat.engine.llama.detok import StreamDecoder


def test_multibyte_characters_split_across_tokens():
    text = "héllo 👋 世界"
    data = text.encode()
    pieces = {i: data[i : i + 1] for i in range(len(data))}  # one byte per token
    dec = StreamDecoder(pieces.__getitem__)
    out = []
    for i in range(len(data)):
        s = dec.feed([i])
        assert "\ufffd" not in s
        out.append(s)
    out.append(dec.flush())
    assert "".join(out) == text


def test_incomplete_tail_is_flushed_as_replacement():
    dec = StreamDecoder({0: "👋".encode()[:2]}.__getitem__)
    assert dec.feed([0]) == ""
    assert dec.flush() == "\ufffd"
