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


# A match may run through a renaming: where the answer replaces a piece of the text it
# copies everywhere (`users` -> `people`, `print` -> `logging.info` all through pasted
# code), the text before the replaced piece still says which copy the answer is in, and
# the copy goes on with the same replacement. A piece is up to MAX_RENAMED tokens of the
# text and MAX_RENAMING of the answer (a name's tokens rarely map one to one). Every
# mismatch of such a match must be that same replacement, RENAME_SUPPORT matching
# tokens must back it on the far side, and the copy ahead must hold the replaced piece
# again (that is what the renaming is for: the next record of a JSON list differs in its
# values, which do not come back). A renaming match is used where it extends the longest
# plain match (its chain then carries the renaming), or where no plain match is long
# enough and it is at least MIN_MATCH + RENAME_MARGIN long: another place that differs
# in one token ("1 cup of milk" for "1 cup of flour") is not a renaming of the copy
# being written. Nor is a longer piece that begins with the text's own token: that is an
# insertion after it (`a` -> `a: int` in one signature), which the next `a` does not get.
RENAME_SUPPORT = 2
RENAME_MARGIN = 2
MAX_RENAMED = 2
MAX_RENAMING = 3


@nb.njit(cache=True, inline="always")
def _same(buf, i, k, n):
    """Whether buf[i:i + n] equals buf[k:k + n]."""
    for t in range(n):
        if buf[i + t] != buf[k + t]:
            return False
    return True


@nb.njit(cache=True, inline="always")
def _backed(buf, s, a, support):
    """Whether `support` tokens match going back from buf[s] and from buf[a]."""
    for t in range(support):
        if s - t < 0 or a - t < 0 or buf[s - t] != buf[a - t]:
            return False
    return True


@nb.njit(cache=True, inline="always")
def _renaming_at(buf, s, a):
    """The shortest renaming that ends at buf[s] (the source) and buf[a] (the answer),
    where the two differ: (its tokens in the source, in the answer), backed by
    RENAME_SUPPORT matching tokens before it; (0, 0) when there is none. A piece that
    starts as the source's does is an insertion after it (`a` -> `a: int`, which the
    next parameter does not repeat), not a renaming."""
    for total in range(2, MAX_RENAMED + MAX_RENAMING + 1):
        for x in range(1, min(MAX_RENAMED, total - 1) + 1):
            y = total - x
            if (y <= MAX_RENAMING and _backed(buf, s - x, a - y, RENAME_SUPPORT)
                    and (total == 2 or buf[s - x + 1] != buf[a - y + 1])):
                return x, y
    return 0, 0


@nb.njit(cache=True, inline="always")
def _recurs(buf, start, n, max_len, s0, ls):
    """Whether buf[s0:s0 + ls] occurs within the max_len tokens from buf[start] (before
    n - 1)."""
    for i in range(start, min(n - 1, start + max_len) - ls + 1):
        if _same(buf, i, s0, ls):
            return True
    return False


@nb.njit(cache=True)
def copy_chain(buf, n, max_len, out):
    """Find the longest match (at least MIN_MATCH, the most recent among equals) of
    buf[n - m:n] ending before n - 1, and write up to max_len tokens that followed it to
    out. A match may run through a renaming (a piece of the source the answer replaced
    with another everywhere in the match, see RENAME_SUPPORT); the chain then carries
    the same renaming. Returns (the chain's length, the match length in the newest
    tokens, where the match ends, whether it renames); (0, 0, -1, False) when nothing
    matches."""
    if n < MIN_MATCH + 1:
        return 0, 0, -1, False
    last = buf[n - 1]
    # the longest plain match, and how far it goes on through its renaming, if it has one
    best_j, best_m, best_full = -1, MIN_MATCH - 1, 0
    best_s0, best_ls, best_r0, best_lr = -1, 0, -1, 0
    ren_j, ren_m, ren_s0, ren_ls, ren_r0, ren_lr = -1, 0, -1, 0, -1, 0  # longest renaming
    for j in range(n - 2, MIN_MATCH - 2, -1):
        if buf[j] != last:
            continue
        ms = ma = 1  # tokens matched back from j (the source) and from n - 1 (the answer)
        s0, ls, r0, lr, at = -1, 0, -1, 0, -1
        while ma < MAX_MATCH and j - ms >= 0 and n - 1 - ma >= 0:
            if buf[j - ms] == buf[n - 1 - ma]:
                ms += 1
                ma += 1
                continue
            if ls > 0:  # only the same renaming again
                if (j - ms - ls + 1 >= 0 and n - ma - lr >= 0
                        and _same(buf, j - ms - ls + 1, s0, ls)
                        and _same(buf, n - ma - lr, r0, lr)):
                    ms += ls
                    ma += lr
                    continue
                break
            ls, lr = _renaming_at(buf, j - ms, n - 1 - ma)
            if ls == 0:
                break
            s0, r0 = j - ms - ls + 1, n - ma - lr
            at = ma
            ms += ls
            ma += lr
        renaming = ls > 0
        plain = at if renaming else ma
        if renaming and ma > ren_m:
            ren_j, ren_m, ren_s0, ren_ls, ren_r0, ren_lr = j, ma, s0, ls, r0, lr
        if plain > best_m:
            best_j, best_m, best_full = j, plain, ma
            best_s0, best_ls, best_r0, best_lr = s0, ls, r0, lr
            if plain == MAX_MATCH:
                break
    # a renaming is only taken where the copy ahead holds the replaced piece again
    if best_ls > 0 and not _recurs(buf, best_j + 1, n, max_len, best_s0, best_ls):
        best_ls = 0
    if ren_j >= 0 and not _recurs(buf, ren_j + 1, n, max_len, ren_s0, ren_ls):
        ren_j, ren_m = -1, 0
    if best_j >= 0:
        if best_ls > 0:  # the plain match goes on through a renaming: carry it
            best_m = best_full
    elif ren_m >= MIN_MATCH + RENAME_MARGIN:
        best_j, best_m = ren_j, ren_m
        best_s0, best_ls, best_r0, best_lr = ren_s0, ren_ls, ren_r0, ren_lr
    else:
        return 0, 0, -1, False
    k, i = 0, best_j + 1
    while k < max_len and i < n:
        if best_ls > 0 and i + best_ls <= n and _same(buf, i, best_s0, best_ls):
            w = min(best_lr, max_len - k)
            out[k:k + w] = buf[best_r0:best_r0 + w]
            k += w
            i += best_ls
        else:
            out[k] = buf[i]
            k += 1
            i += 1
    period = n - 1 - best_j
    if best_ls == 0 and best_m >= period:
        # the newest `period` tokens repeat the ones before them: a loop (an answer
        # saying "a new function that returns a new function that ..."). The copy has
        # reached the newest token and goes on with what it has just copied, one period
        # after another, as LZ77 copies an overlapping match; without this it stopped
        # there, and a loop was never drafted past one period.
        while k < max_len:
            out[k] = out[k - period]
            k += 1
    return k, best_m, best_j, best_ls > 0


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
