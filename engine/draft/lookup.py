"""What followed the newest tokens the last time they appeared: the copy candidates.

A tri-gram knows two tokens of context, which is too little where an answer copies pasted
code or text (after `self.` almost anything may follow). The longest earlier occurrence of
the newest tokens in the conversation says which copy the model is in; what followed
it is a chain the drafter offers the tree search beside the tri-gram's candidates, with
its own acceptance calibration.
"""

from __future__ import annotations

import numba as nb
import numpy as np

MIN_MATCH = 3  # tokens that must match (the root and two before): more than a tri-gram
MAX_MATCH = 32  # longer matches are not told apart


@nb.njit(cache=True)
def copy_chain(buf, n, max_len, out):
    """Find the longest match (at least MIN_MATCH, the most recent among equals) of
    buf[n - m:n] ending before n - 1, and write up to max_len tokens that followed it to
    out. Returns (the chain's length, the match length, where the match ends); (0, 0, -1)
    when nothing matches."""
    if n < MIN_MATCH + 1:
        return 0, 0, -1
    last = buf[n - 1]
    best_j, best_m = -1, MIN_MATCH - 1
    for j in range(n - 2, MIN_MATCH - 2, -1):
        if buf[j] != last:
            continue
        m = 1
        while m < MAX_MATCH and j - m >= 0 and buf[j - m] == buf[n - 1 - m]:
            m += 1
        if m > best_m:
            best_j, best_m = j, m
            if m == MAX_MATCH:
                break
    if best_j < 0:
        return 0, 0, -1
    k = min(max_len, n - 1 - best_j)
    for i in range(k):
        out[i] = buf[best_j + 1 + i]
    return k, best_m, best_j


@nb.njit(cache=True, inline="always")
def match_bucket(m, agrees):
    """Calibration bucket of a copy whose context matched m tokens (3, 4-5, 6-8, 9-15,
    16 and more), plus 5 when the tri-gram's likeliest next token is the same."""
    if m <= 3:
        g = 0
    elif m <= 5:
        g = 1
    elif m <= 8:
        g = 2
    elif m <= 15:
        g = 3
    else:
        g = 4
    return g + 5 if agrees else g


def common_prefix(a, b) -> int:
    """How many leading tokens two token sequences (lists or arrays) share."""
    k = min(len(a), len(b))
    diff = np.flatnonzero(np.asarray(a[:k]) != np.asarray(b[:k]))
    return int(diff[0]) if len(diff) else k


class TokenStream:
    """The conversation's tokens in a growing int32 array (prompt, then every verified
    token), so the copy lookup runs in Numba without converting a list per step."""

    def __init__(self, capacity: int = 4096):
        self.buf = np.zeros(capacity, np.int32)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    @property
    def tokens(self) -> np.ndarray:
        return self.buf[: self.n]

    def reserve(self, n: int) -> None:
        """Room for n tokens (njit code writes into buf directly)."""
        if n > len(self.buf):
            grown = np.zeros(max(n, 2 * len(self.buf)), np.int32)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown

    def set(self, tokens: np.ndarray) -> None:
        self.reserve(len(tokens))
        self.buf[: len(tokens)] = tokens
        self.n = len(tokens)

    def extend(self, tokens) -> None:
        k = len(tokens)
        self.reserve(self.n + k)
        self.buf[self.n: self.n + k] = tokens
        self.n += k

    def sync(self, history: list[int]) -> None:
        """Append what history has beyond this stream (the newest sampled token)."""
        if self.n < len(history):
            self.extend(history[self.n:])

    def common_prefix(self, tokens: np.ndarray) -> int:
        return common_prefix(self.tokens, tokens)
