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


# A match may run through a renamed token: where the answer has renamed a token of the
# text it copies (`users` -> `people` all through pasted code), the text before the
# renamed token still says which copy the answer is in, and the copy goes on with the
# same renaming. Every mismatch of such a match must be that same pair, this many
# matching tokens must back it beyond the first one, and the copy ahead must hold the
# renamed token again (that is what the renaming is for: the next record of a JSON list
# differs in its values, which do not come back). A renaming match is used where it
# extends the longest plain match (its chain then carries the renaming), or where no
# plain match is long enough and it is at least MIN_MATCH + RENAME_MARGIN long: another
# place that differs in one token ("1 cup of milk" for "1 cup of flour") is not a
# renaming of the copy being written.
RENAME_SUPPORT = 2
RENAME_MARGIN = 2


@nb.njit(cache=True, inline="always")
def _recurs(buf, start, n, max_len, tok):
    """Whether tok is among the max_len tokens from buf[start] (before n - 1)."""
    for i in range(start, min(n - 1, start + max_len)):
        if buf[i] == tok:
            return True
    return False


@nb.njit(cache=True)
def copy_chain(buf, n, max_len, out):
    """Find the longest match (at least MIN_MATCH, the most recent among equals) of
    buf[n - m:n] ending before n - 1, and write up to max_len tokens that followed it to
    out. A match may run through a renamed token (one source token the answer replaced
    with another everywhere in the match, see RENAME_SUPPORT); the chain then carries
    the same renaming. Returns (the chain's length, the match length, where the match
    ends, whether it renames); (0, 0, -1, False) when nothing matches."""
    if n < MIN_MATCH + 1:
        return 0, 0, -1, False
    last = buf[n - 1]
    best_j, best_m, best_src, best_dst = -1, MIN_MATCH - 1, -1, -1  # the longest plain
    best_full = 0  # ... and how far it goes on through its renaming, if it has one
    ren_j, ren_m, ren_src, ren_dst = -1, 0, -1, -1  # the longest renaming match
    for j in range(n - 2, MIN_MATCH - 2, -1):
        if buf[j] != last:
            continue
        m = 1
        src, dst, at = -1, -1, -1
        while m < MAX_MATCH and j - m >= 0:
            a, b = buf[j - m], buf[n - 1 - m]
            if a != b:
                if src >= 0 and not (a == src and b == dst):
                    break
                if src < 0:
                    src, dst, at = a, b, m
            m += 1
        renaming = src >= 0 and m - at - 1 >= RENAME_SUPPORT
        plain = at if src >= 0 else m
        if renaming and m > ren_m:
            ren_j, ren_m, ren_src, ren_dst = j, m, src, dst
        if plain > best_m:
            best_j, best_m, best_full = j, plain, m
            best_src, best_dst = (src, dst) if renaming else (-1, -1)
            if plain == MAX_MATCH:
                break
    # a renaming is only taken where the copy ahead holds the renamed token again
    if best_src >= 0 and not _recurs(buf, best_j + 1, n, max_len, best_src):
        best_src, best_dst = -1, -1
    if ren_j >= 0 and not _recurs(buf, ren_j + 1, n, max_len, ren_src):
        ren_j, ren_m = -1, 0
    if best_j >= 0:
        if best_src >= 0:  # the plain match goes on through a renaming: carry it
            best_m = best_full
    elif ren_m >= MIN_MATCH + RENAME_MARGIN:
        best_j, best_m, best_src, best_dst = ren_j, ren_m, ren_src, ren_dst
    else:
        return 0, 0, -1, False
    k = min(max_len, n - 1 - best_j)
    for i in range(k):
        t = buf[best_j + 1 + i]
        out[i] = best_dst if t == best_src else t
    return k, best_m, best_j, best_src >= 0


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
