"""The tri-gram model of the LLM's own output, in flat NumPy arrays driven by Numba.

One open-addressing hash maps a context to a row of K candidate (token, weight) slots.
A tri-gram context (a, b) has key (a + 1) * V + b; the bigram back-off context b has
key b (a = -1); a unigram row backs off both. Weights are recency-weighted counts: every
learned token adds `inc`, and `inc` grows geometrically, which is an exponential decay
of old evidence without touching every entry per step (a rare rescale keeps it finite).
Memory is bounded: when the table passes its load limit, the weakest rows are evicted.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

EMPTY = np.int64(-1)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: Fibonacci hashing
# Open addressing slows sharply as the table fills; past this share of slots a new row
# is refused and the owner evicts the weakest half (TrigramModel.settle).
MAX_LOAD = 0.75
BIGRAM_SHARE = 0.5  # a learned tri-gram also teaches its bigram back-off, at this weight
# Once the growing increment passes this, every weight is divided by it: float32
# weights then never overflow, and the ratios the drafter reads are unchanged.
RESCALE_AT = 1e4
MIN_ROWS = 1024  # the smallest table (tests use tiny ones): still a few prompts' worth
RELEARN_TAIL = 64  # after an eviction, the newest tokens are learned again (the step's own)


class Tables(NamedTuple):
    """The tri-gram model's state as the Numba kernels take it (TrigramModel owns it)."""

    keys: np.ndarray  # int64 [slots]: the context key in each hash slot, EMPTY if free
    toks: np.ndarray  # int32 [slots, K]: candidate next tokens, -1 if free
    wts: np.ndarray  # float32 [slots, K]: their recency-weighted counts
    totals: np.ndarray  # float32 [slots]: each row's weight in all
    used: np.ndarray  # int64 [1]: rows in use
    uni: np.ndarray  # float32 [vocab]: the unigram back-off's weights
    bits: int  # slots = 2 ** bits
    vocab: int


@nb.njit(cache=True, inline="always")
def _hash(key, bits):
    return np.int64((np.uint64(key) * GOLDEN) >> np.uint64(64 - bits))


@nb.njit(cache=True)
def find_row(keys, bits, key):
    """Row index of key, or -(free slot + 1) when absent."""
    mask = (1 << bits) - 1
    h = _hash(key, bits)
    while True:
        k = keys[h]
        if k == key:
            return h
        if k == -1:
            return -h - 1
        h = (h + 1) & mask


@nb.njit(cache=True)
def _claim_row(t, key):
    """key's row, inserted (empty) if new; -1 when the table is at its load limit."""
    r = find_row(t.keys, t.bits, key)
    if r >= 0:
        return r
    if t.used[0] >= MAX_LOAD * t.keys.shape[0]:
        return -1
    r = -r - 1
    t.keys[r] = key
    t.used[0] += 1
    return r


@nb.njit(cache=True)
def _add(t, key, tok, w):
    """Add weight w to tok in key's row, inserting the row or the token if new.
    Returns False when the table is at its load limit and a new row was refused."""
    r = _claim_row(t, key)
    if r < 0:
        return False
    toks, wts, totals = t.toks, t.wts, t.totals
    weakest = 0
    for j in range(toks.shape[1]):
        c = toks[r, j]
        if c == tok:
            wts[r, j] += w
            totals[r] += w
            return True
        if c == -1:
            toks[r, j] = tok
            wts[r, j] = w
            totals[r] += w
            return True
        if wts[r, j] < wts[r, weakest]:
            weakest = j
    # Row full: the new token takes the weakest slot (recent evidence wins).
    totals[r] += w - wts[r, weakest]
    toks[r, weakest] = tok
    wts[r, weakest] = w
    return True


@nb.njit(cache=True)
def learn(t, seq, start, inc, growth):
    """Learn every tri-gram of seq ending at positions start.. (and its bigram and
    unigram back-off). Returns (the increment after growth, whether rows were refused)."""
    refused = False
    for i in range(max(start, 2), seq.shape[0]):
        a = np.int64(seq[i - 2])
        b = np.int64(seq[i - 1])
        c = seq[i]
        if not _add(t, (a + 1) * t.vocab + b, c, inc):
            refused = True
        if not _add(t, b, c, inc * BIGRAM_SHARE):
            refused = True
        t.uni[c] += inc
        inc *= growth
    return inc, refused


@nb.njit(cache=True)
def insert_rows(t, row_keys, row_toks, row_wts):
    """Bulk-load prepared rows (the corpus prior, or the rows an eviction keeps); returns
    how many fit under the load limit."""
    for i in range(row_keys.shape[0]):
        r = _claim_row(t, row_keys[i])
        if r < 0:
            return i
        total = 0.0
        for j in range(t.toks.shape[1]):
            t.toks[r, j] = row_toks[i, j]
            t.wts[r, j] = row_wts[i, j]
            if row_toks[i, j] >= 0:
                total += row_wts[i, j]
        t.totals[r] = total
    return row_keys.shape[0]


class TrigramModel:
    """Owner of the tables; all hot work happens in the njit functions above.

    k: candidates kept per context (the tree search expands at most MAX_CHILDREN of
    them). half_life: tokens after which an observation weighs half as much as a new
    one (2048: about a long answer, so the model follows the conversation). The first
    increment is online_weight; the corpus prior is loaded at a share of it."""

    def __init__(self, vocab: int, *, max_mb: float = 64.0, k: int = 12,
                 half_life: float = 2048.0, online_weight: float = 0.5):
        self.vocab = int(vocab)
        self.k = k
        row_bytes = 8 + k * 8 + 4  # key, K (token, weight) slots, total
        rows = max(MIN_ROWS, int(max_mb * 1e6 / row_bytes))
        bits = int(np.floor(np.log2(rows)))
        n = 1 << bits
        self.tables = Tables(
            keys=np.full(n, EMPTY, np.int64), toks=np.full((n, k), -1, np.int32),
            wts=np.zeros((n, k), np.float32), totals=np.zeros(n, np.float32),
            used=np.zeros(1, np.int64), uni=np.zeros(self.vocab, np.float32),
            bits=bits, vocab=self.vocab,
        )
        self.inc = float(online_weight)
        self.growth = float(2.0 ** (1.0 / half_life))
        self.evictions = 0

    # -- size -------------------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        return int(self.tables.used[0])

    @property
    def size_mb(self) -> float:
        t = self.tables
        return sum(a.nbytes for a in (t.keys, t.toks, t.wts, t.totals, t.uni)) / 1e6

    def row(self, a: int, b: int) -> dict[int, float]:
        """One context's candidates as {token: weight} (tests, debugging)."""
        t = self.tables
        r = find_row(t.keys, t.bits, (a + 1) * self.vocab + b)
        if r < 0:
            return {}
        return {int(c): float(w) for c, w in zip(t.toks[r], t.wts[r], strict=True) if c >= 0}

    # -- state ------------------------------------------------------------------------

    def snapshot(self) -> tuple:
        t = self.tables
        return (t.keys.copy(), t.toks.copy(), t.wts.copy(), t.totals.copy(), t.used.copy(),
                t.uni.copy(), self.inc)

    def restore(self, snap: tuple) -> None:
        *arrays, self.inc = snap
        for dst, src in zip(self.tables[:6], arrays, strict=True):
            dst[...] = src

    def live_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows in use as (keys, toks, wts), strongest first: what is worth keeping."""
        t = self.tables
        live = np.flatnonzero(t.keys != EMPTY)
        live = live[np.argsort(-t.totals[live], kind="stable")]
        return t.keys[live], t.toks[live], t.wts[live]

    def replace_rows(self, row_keys: np.ndarray, row_toks: np.ndarray, row_wts: np.ndarray,
                     unigram: np.ndarray, inc: float) -> None:
        """Forget everything and hold these rows (strongest first: a smaller table keeps
        the strongest), this unigram and this increment."""
        self._refill(row_keys, row_toks, row_wts)
        self.tables.uni[:] = unigram
        self.inc = float(inc)

    def _refill(self, row_keys: np.ndarray, row_toks: np.ndarray, row_wts: np.ndarray
                ) -> None:
        """Empty the table, then insert these rows in order (as many as fit)."""
        t = self.tables
        t.keys[:] = EMPTY
        t.toks[:] = -1
        t.wts[:] = 0
        t.totals[:] = 0
        t.used[0] = 0
        insert_rows(t, row_keys, row_toks, row_wts)

    # -- learning ---------------------------------------------------------------------

    def learn(self, seq: np.ndarray, start: int = 2) -> None:
        """Learn the tri-grams of seq that end at index start or later."""
        seq = np.ascontiguousarray(seq, dtype=np.int32)
        inc, refused = learn(self.tables, seq, start, self.inc, self.growth)
        self.settle(inc, refused, seq)

    def settle(self, inc: float, refused: bool, seq: np.ndarray) -> None:
        """After the njit `learn` (called here or inside a larger njit step): keep the
        growing increment finite, and when rows were refused for lack of room, evict the
        weakest and learn the newest part of seq again."""
        self.inc = float(inc)
        if self.inc > RESCALE_AT:
            factor = np.float32(1.0 / self.inc)
            t = self.tables
            t.wts[...] *= factor
            t.totals[...] *= factor
            t.uni[...] *= factor
            self.inc = 1.0
        if refused:
            self.evict()
            learn(self.tables, seq[max(0, len(seq) - RELEARN_TAIL):], 2, self.inc, 1.0)

    def evict(self, keep: float = 0.5) -> None:
        """Drop the weakest rows (by recency-weighted mass) so the table stays bounded."""
        t = self.tables
        live = np.flatnonzero(t.keys != EMPTY)
        n_keep = int(len(live) * keep)
        order = np.argsort(t.totals[live])[::-1][:n_keep]
        rows = live[order]
        self._refill(t.keys[rows], t.toks[rows], t.wts[rows])
        self.evictions += 1

    def load_rows(self, row_keys: np.ndarray, row_toks: np.ndarray, row_wts: np.ndarray,
                  unigram: np.ndarray, mass: float = 1.0) -> None:
        """Bulk-load normalised rows, each given `mass` (in units of learned weight)."""
        if mass != 1.0:
            row_wts = row_wts * np.float32(mass)
            unigram = unigram * np.float32(mass)
        n = insert_rows(self.tables, row_keys, row_toks, row_wts)
        if n < len(row_keys):  # the prior alone is larger than the cap: keep the strongest
            self.evict(keep=0.6)
        self.tables.uni[: len(unigram)] += unigram


def prior_rows(tokens: np.ndarray, vocab: int, k: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Count a corpus's tri-grams and bigrams; keep each context's k most frequent next
    tokens, normalised to sum 1. Returns (keys, toks, weights, unigram), strongest
    contexts first. Vectorised NumPy: a few hundred thousand tokens take well under 1 s."""
    t = np.asarray(tokens, dtype=np.int64)
    V = np.int64(vocab)
    keys_all, toks_all, wts_all = [], [], []
    for ctx, nxt in (((t[:-2] + 1) * V + t[1:-1], t[2:]),  # tri-gram contexts
                     (t[:-1], t[1:])):  # bigram back-off contexts
        pair = ctx * V + nxt
        uniq, counts = np.unique(pair, return_counts=True)
        c_key, c_tok = uniq // V, uniq % V
        order = np.lexsort((-counts, c_key))  # by context, most frequent first
        c_key, c_tok, counts = c_key[order], c_tok[order], counts[order]
        starts = np.flatnonzero(np.r_[True, c_key[1:] != c_key[:-1]])
        rank = np.arange(len(c_key)) - np.repeat(starts, np.diff(np.r_[starts, len(c_key)]))
        sel = rank < k
        c_key, c_tok, counts, rank = c_key[sel], c_tok[sel], counts[sel], rank[sel]
        row_of = np.searchsorted(np.unique(c_key), c_key)
        n_rows = int(row_of.max()) + 1 if len(row_of) else 0
        rk = np.unique(c_key)
        rt = np.full((n_rows, k), -1, np.int32)
        rw = np.zeros((n_rows, k), np.float32)
        rt[row_of, rank] = c_tok
        rw[row_of, rank] = counts
        mass = rw.sum(axis=1)
        rw /= np.maximum(mass, 1)[:, None]
        strongest = np.argsort(-mass, kind="stable")
        keys_all.append(rk[strongest])
        toks_all.append(rt[strongest])
        wts_all.append(rw[strongest])
    uni = np.bincount(t, minlength=vocab).astype(np.float32)
    uni /= max(1.0, float(uni.sum()))
    return (np.concatenate(keys_all), np.concatenate(toks_all), np.concatenate(wts_all), uni)
