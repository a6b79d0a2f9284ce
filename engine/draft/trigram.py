"""The tri-gram model of the LLM's own output, in flat NumPy arrays driven by Numba.

One open-addressing hash maps a context to a row of K candidate (token, weight) slots.
A tri-gram context (a, b) has key (a + 1) * V + b; the bigram back-off context b has
key b (a = -1); a unigram row backs off both. Weights are recency-weighted counts: every
learned token adds `inc`, and `inc` grows geometrically, which is an exponential decay
of old evidence without touching every entry per step (a rare rescale keeps it finite).
Memory is bounded: when the table passes its load limit, the weakest rows are evicted.
"""

from __future__ import annotations

import numba as nb
import numpy as np

EMPTY = np.int64(-1)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MAX_LOAD = 0.75
BIGRAM_SHARE = 0.5  # a learned tri-gram also teaches its bigram back-off, at this weight


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
def _add(keys, toks, wts, totals, used, bits, key, tok, w):
    """Add weight w to tok in key's row, inserting the row or the token if new.
    Returns False when the table is at its load limit and a new row was refused."""
    r = find_row(keys, bits, key)
    if r < 0:
        if used[0] >= MAX_LOAD * keys.shape[0]:
            return False
        r = -r - 1
        keys[r] = key
        used[0] += 1
    K = toks.shape[1]
    weakest = 0
    for j in range(K):
        t = toks[r, j]
        if t == tok:
            wts[r, j] += w
            totals[r] += w
            return True
        if t == -1:
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
def learn(keys, toks, wts, totals, used, bits, uni, seq, start, inc, growth, vocab):
    """Learn every tri-gram of seq ending at positions start.. (and its bigram and
    unigram back-off). Returns (the increment after growth, whether rows were refused)."""
    refused = False
    for i in range(max(start, 2), seq.shape[0]):
        a = np.int64(seq[i - 2])
        b = np.int64(seq[i - 1])
        c = seq[i]
        if not _add(keys, toks, wts, totals, used, bits, (a + 1) * vocab + b, c, inc):
            refused = True
        if not _add(keys, toks, wts, totals, used, bits, b, c, inc * BIGRAM_SHARE):
            refused = True
        uni[c] += inc
        inc *= growth
    return inc, refused


@nb.njit(cache=True)
def insert_rows(keys, toks, wts, totals, used, bits, row_keys, row_toks, row_wts):
    """Bulk-load prepared rows (the corpus prior)."""
    K = toks.shape[1]
    for i in range(row_keys.shape[0]):
        r = find_row(keys, bits, row_keys[i])
        if r < 0:
            if used[0] >= MAX_LOAD * keys.shape[0]:
                return i
            r = -r - 1
            keys[r] = row_keys[i]
            used[0] += 1
        total = 0.0
        for j in range(K):
            toks[r, j] = row_toks[i, j]
            wts[r, j] = row_wts[i, j]
            if row_toks[i, j] >= 0:
                total += row_wts[i, j]
        totals[r] = total
    return row_keys.shape[0]


@nb.njit(cache=True)
def rescale(wts, totals, uni, factor):
    wts *= factor
    totals *= factor
    uni *= factor


class TrigramModel:
    """Owner of the arrays; all hot work happens in the njit functions above."""

    def __init__(self, vocab: int, *, max_mb: float = 64.0, k: int = 12,
                 half_life: float = 2048.0, online_weight: float = 0.5):
        self.vocab = int(vocab)
        self.k = k
        row_bytes = 8 + k * 8 + 4  # key, K (token, weight) slots, total
        rows = max(1024, int(max_mb * 1e6 / row_bytes))
        self.bits = int(np.floor(np.log2(rows)))
        n = 1 << self.bits
        self.keys = np.full(n, EMPTY, np.int64)
        self.toks = np.full((n, k), -1, np.int32)
        self.wts = np.zeros((n, k), np.float32)
        self.totals = np.zeros(n, np.float32)
        self.used = np.zeros(1, np.int64)
        self.uni = np.zeros(self.vocab, np.float32)
        self.inc = float(online_weight)
        self.growth = float(2.0 ** (1.0 / half_life))
        self.evictions = 0

    # -- size -------------------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        return int(self.used[0])

    @property
    def size_mb(self) -> float:
        arrays = (self.keys, self.toks, self.wts, self.totals, self.uni)
        return sum(a.nbytes for a in arrays) / 1e6

    # -- keys -------------------------------------------------------------------------

    def key(self, a: int, b: int) -> int:
        return (a + 1) * self.vocab + b

    def row(self, a: int, b: int) -> dict[int, float]:
        """One context's candidates as {token: weight} (tests, debugging)."""
        r = find_row(self.keys, self.bits, self.key(a, b))
        if r < 0:
            return {}
        return {int(t): float(w) for t, w in zip(self.toks[r], self.wts[r], strict=True) if t >= 0}

    # -- learning ---------------------------------------------------------------------

    def learn(self, seq: np.ndarray, start: int = 2) -> None:
        """Learn the tri-grams of seq that end at index start or later."""
        seq = np.ascontiguousarray(seq, dtype=np.int32)
        inc, refused = learn(self.keys, self.toks, self.wts, self.totals, self.used,
                             self.bits, self.uni, seq, start, self.inc, self.growth,
                             self.vocab)
        self.settle(inc, refused, seq)

    def settle(self, inc: float, refused: bool, seq: np.ndarray) -> None:
        """After the njit `learn` (called here or inside a larger njit step): keep the
        growing increment finite, and when rows were refused for lack of room, evict the
        weakest and learn the newest part of seq again."""
        self.inc = float(inc)
        if self.inc > 1e4:
            rescale(self.wts, self.totals, self.uni, np.float32(1.0 / self.inc))
            self.inc = 1.0
        if refused:
            self.evict()
            learn(self.keys, self.toks, self.wts, self.totals, self.used, self.bits,
                  self.uni, seq[max(0, len(seq) - 64):], 2, self.inc, 1.0, self.vocab)

    def evict(self, keep: float = 0.5) -> None:
        """Drop the weakest rows (by recency-weighted mass) so the table stays bounded."""
        live = np.flatnonzero(self.keys != EMPTY)
        n_keep = int(len(live) * keep)
        order = np.argsort(self.totals[live])[::-1][:n_keep]
        rows = live[order]
        row_keys, row_toks, row_wts = self.keys[rows], self.toks[rows], self.wts[rows]
        self.keys[:] = EMPTY
        self.toks[:] = -1
        self.wts[:] = 0
        self.totals[:] = 0
        self.used[0] = 0
        insert_rows(self.keys, self.toks, self.wts, self.totals, self.used, self.bits,
                    row_keys, row_toks, row_wts)
        self.evictions += 1

    def load_rows(self, row_keys: np.ndarray, row_toks: np.ndarray, row_wts: np.ndarray,
                  unigram: np.ndarray, mass: float = 1.0) -> None:
        """Bulk-load normalised rows, each given `mass` (in units of learned weight)."""
        if mass != 1.0:
            row_wts = row_wts * np.float32(mass)
            unigram = unigram * np.float32(mass)
        n = insert_rows(self.keys, self.toks, self.wts, self.totals, self.used, self.bits,
                        row_keys, row_toks, row_wts)
        if n < len(row_keys):  # the prior alone is larger than the cap: keep the strongest
            self.evict(keep=0.6)
        self.uni[: len(unigram)] += unigram


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
