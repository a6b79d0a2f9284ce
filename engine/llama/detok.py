"""Streaming detokenization that never splits a UTF-8 character.

A token can end in the middle of a multi-byte character (emoji and CJK often do); the
incremental decoder holds those bytes back until the character is complete.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable


class StreamDecoder:
    def __init__(self, piece: Callable[[int], bytes]):
        self._piece = piece
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, tokens: list[int]) -> str:
        return self._utf8.decode(b"".join(self._piece(t) for t in tokens))

    def flush(self) -> str:
        """Whatever is still held back at the end (an incomplete tail becomes U+FFFD)."""
        return self._utf8.decode(b"", final=True)
