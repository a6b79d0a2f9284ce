"""Earlier answers, kept as copy sources for later requests.

The copy lookup (engine.draft.lookup) sees only the conversation being answered. A chat
client is asked the same things again: an answer regenerated, a question asked anew in
a fresh conversation, the same boilerplate in another request. An answer leaves the
conversation when it is regenerated or the conversation ends; here it stays, the newest
ARCHIVE_TOKENS tokens of them, and the drafter copies from it where the conversation
itself holds no longer match. llama.cpp's ngram-mod keeps one such pool for all
requests; this one is also kept across runs (engine.draft.memory).

Every position is indexed by a hash of the three tokens that end there, newest first
with a link to the previous position of the same hash, so a lookup per step reads a
few candidates instead of scanning the archive.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

from .lookup import MAX_MATCH, MIN_MATCH

ARCHIVE_TOKENS = 1 << 15  # about a hundred answers; kept across runs, so bounded
INDEX_BITS = 16
MAX_PROBES = 16  # earlier places of the same three tokens compared per lookup, newest first
SEP = -1  # between answers: matches no token, so no copy runs from one answer into the next


class Archive(NamedTuple):
    """The archive as the kernels take it (AnswerArchive owns it)."""

    tokens: np.ndarray  # int32 [ARCHIVE_TOKENS]: answers, SEP before each
    n: np.ndarray  # int64 [1]: tokens in use
    head: np.ndarray  # int32 [2 ** INDEX_BITS]: the newest position of each hash, -1
    prev: np.ndarray  # int32 [ARCHIVE_TOKENS]: the previous position of the same hash, -1


@nb.njit(cache=True, inline="always")
def _hash(a, b, c):
    h = (np.uint64(a) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(b)
    h = (h * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(c)
    return np.int64((h * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - INDEX_BITS))


@nb.njit(cache=True)
def _index(arc, start):
    """Index the positions from `start` on (each by the three tokens ending there)."""
    t = arc.tokens
    for i in range(max(start, 2), arc.n[0]):
        if t[i] == SEP or t[i - 1] == SEP or t[i - 2] == SEP:
            arc.prev[i] = -1
            continue
        h = _hash(t[i - 2], t[i - 1], t[i])
        arc.prev[i] = arc.head[h]
        arc.head[h] = i


@nb.njit(cache=True)
def archive_add(arc, answer):
    """Append an answer (SEP first). When it does not fit, the older half of the archive
    (at least what the answer needs) is dropped and the rest indexed afresh."""
    need = answer.shape[0] + 1
    cap = arc.tokens.shape[0]
    if need > cap:
        answer = answer[answer.shape[0] - (cap - 1):]
        need = cap
    n = arc.n[0]
    if n + need > cap:
        drop = max(n // 2, n + need - cap)
        arc.tokens[:n - drop] = arc.tokens[drop:n]
        n -= drop
        arc.n[0] = n
        arc.head[:] = -1
        _index(arc, 0)
    arc.tokens[n] = SEP
    arc.tokens[n + 1:n + need] = answer
    arc.n[0] = n + need
    _index(arc, n)


@nb.njit(cache=True)
def archive_match(arc, buf, n):
    """The longest match (at least MIN_MATCH, at most MAX_MATCH; the newest among equals)
    of buf[n - m:n] in the archive among the MAX_PROBES newest places of its last three
    tokens: (where it ends in the archive, m); (-1, 0) when there is none."""
    if n < MIN_MATCH or arc.n[0] == 0:
        return -1, 0
    t = arc.tokens
    i = arc.head[_hash(buf[n - 3], buf[n - 2], buf[n - 1])]
    best_i, best_m = -1, MIN_MATCH - 1
    probes = 0
    while i >= 0 and probes < MAX_PROBES:
        m = 0
        while m < MAX_MATCH and i - m >= 0 and n - 1 - m >= 0 and t[i - m] == buf[n - 1 - m]:
            m += 1
        if m > best_m:
            best_i, best_m = i, m
        i = arc.prev[i]
        probes += 1
    if best_i < 0:
        return -1, 0
    return best_i, best_m


@nb.njit(cache=True)
def archive_copy(arc, end, max_len, out):
    """Write what followed archive position `end` (up to max_len tokens, stopping at the
    answer's end) to out; returns how many."""
    k = 0
    i = end + 1
    while k < max_len and i < arc.n[0] and arc.tokens[i] != SEP:
        out[k] = arc.tokens[i]
        k += 1
        i += 1
    return k


@nb.njit(cache=True)
def archive_chain(arc, buf, n, longer_than, turn_ends, out):
    """Where the archive's longest match of buf[:n] is longer than `longer_than` (the
    conversation's own) and has a continuation, write that continuation to out (up to
    its length) and return (its length, the match length); else (0, 0), out untouched.
    A continuation that starts with the end of a turn (turn_ends: a bool per token) is
    none: an archived answer ends with its end-of-generation token, and a copy stops
    before it (engine.draft.mcts), so it would leave nothing in place of the
    conversation's chain."""
    end, m = archive_match(arc, buf, n)
    if (m <= longer_than or end + 1 >= arc.n[0] or arc.tokens[end + 1] == SEP
            or turn_ends[arc.tokens[end + 1]]):
        return 0, 0
    return archive_copy(arc, end, out.shape[0], out), m


class AnswerArchive:
    """Earlier answers' tokens, bounded, with their index."""

    def __init__(self, capacity: int = ARCHIVE_TOKENS):
        self.state = Archive(np.zeros(capacity, np.int32), np.zeros(1, np.int64),
                             np.full(1 << INDEX_BITS, -1, np.int32),
                             np.full(capacity, -1, np.int32))

    def __len__(self) -> int:
        return int(self.state.n[0])

    @property
    def tokens(self) -> np.ndarray:
        """The archive's tokens (SEP before each answer)."""
        return self.state.tokens[: len(self)]

    def add(self, answer) -> None:
        if len(answer):
            archive_add(self.state, np.asarray(answer, np.int32))

    def set(self, tokens: np.ndarray) -> None:
        """Replace the archive with `tokens` (as `tokens` returned them), indexed."""
        cap = self.state.tokens.shape[0]
        tokens = np.asarray(tokens, np.int32)[-cap:]
        self.state.tokens[: len(tokens)] = tokens
        self.state.n[0] = len(tokens)
        self.state.head[:] = -1
        _index(self.state, 0)

    def snapshot(self) -> np.ndarray:
        return self.tokens.copy()

    def restore(self, tokens: np.ndarray) -> None:
        self.set(tokens)
