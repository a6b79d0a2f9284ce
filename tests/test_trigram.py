"""The Numba tri-gram table against a plain-Python reference."""

import numpy as np
import pytest
from aded_chat.engine.draft.trigram import TrigramModel, find_row, prior_rows


def reference_rows(seq, inc0, growth, k):
    """Dict-of-dicts model of the same rule: add inc to (a, b) -> c and half to b -> c;
    a full row gives its weakest slot to the new token."""
    rows: dict = {}
    inc = inc0

    def add(key, tok, w):
        row = rows.setdefault(key, {})
        if tok in row:
            row[tok] += w
        elif len(row) < k:
            row[tok] = w
        else:
            weakest = min(row, key=row.get)
            del row[weakest]
            row[tok] = w

    for i in range(2, len(seq)):
        a, b, c = seq[i - 2], seq[i - 1], seq[i]
        add(("tri", a, b), c, inc)
        add(("bi", b), c, inc * 0.5)
        inc *= growth
    return rows


def test_learn_matches_reference():
    rng = np.random.default_rng(0)
    seq = rng.integers(0, 40, size=3000).astype(np.int32)
    m = TrigramModel(vocab=40, max_mb=1.0, k=12, half_life=500.0)
    m.learn(seq)
    ref = reference_rows(seq.tolist(), 0.5, 2 ** (1 / 500.0), 12)
    checked = 0
    for key, row in ref.items():
        if key[0] != "tri":
            continue
        got = m.row(key[1], key[2])
        # ties for the weakest slot may resolve differently: compare the strong entries
        strong = {t: w for t, w in row.items() if w > 2 * min(row.values())}
        for t, w in strong.items():
            assert got.get(t) == pytest.approx(w, rel=1e-4)
        checked += 1
    assert checked > 100


def test_recent_evidence_weighs_more():
    m = TrigramModel(vocab=100, max_mb=1.0, half_life=16.0)
    m.learn(np.array([1, 2, 3] + [50] * 40 + [1, 2, 4], np.int32))
    row = m.row(1, 2)
    assert row[4] > 2 * row[3]


def test_hash_collisions_in_a_tiny_table():
    m = TrigramModel(vocab=5000, max_mb=0.01, k=4)  # 1024 slots
    keys = np.arange(0, 600, dtype=np.int64) * 7919
    for key in keys:
        r = find_row(m.tables.keys, m.tables.bits, key)
        assert r < 0
        m.tables.keys[-r - 1] = key
    for key in keys:
        r = find_row(m.tables.keys, m.tables.bits, key)
        assert r >= 0 and m.tables.keys[r] == key


def test_eviction_keeps_memory_bounded_and_strong_rows():
    m = TrigramModel(vocab=50000, max_mb=0.05, k=4)
    slots = m.tables.keys.shape[0]
    size = m.size_mb
    strong = np.array([7, 8, 9] * 200, np.int32)
    m.learn(strong)
    rng = np.random.default_rng(1)
    m.learn(rng.integers(0, 50000, size=20000).astype(np.int32))
    assert m.evictions > 0
    assert m.tables.keys.shape[0] == slots and m.size_mb == size
    assert m.n_rows <= 0.75 * slots
    assert 9 in m.row(7, 8)


def test_large_vocabulary_keys_do_not_overflow():
    V = 262144
    m = TrigramModel(vocab=V, max_mb=1.0)
    seq = np.array([V - 1, V - 2, V - 3, V - 1, V - 2, V - 4], np.int32)
    m.learn(seq)
    assert set(m.row(V - 1, V - 2)) == {V - 3, V - 4}
    assert m.row(V - 2, V - 1) == {}


def test_prior_rows_keep_top_k_normalised():
    seq = np.array([1, 2, 3, 1, 2, 3, 1, 2, 4, 1, 2, 3, 9, 9], np.int32)
    keys, toks, wts, uni = prior_rows(seq, vocab=10, k=2)
    i = list(keys).index((1 + 1) * 10 + 2)
    row = dict(zip(toks[i].tolist(), wts[i].tolist(), strict=True))
    assert row[3] == pytest.approx(0.75) and row[4] == pytest.approx(0.25)
    assert np.allclose(wts.sum(axis=1), 1.0)
    assert uni.sum() == pytest.approx(1.0)
    m = TrigramModel(vocab=10, max_mb=1.0, k=2)
    m.load_rows(keys, toks, wts, uni)
    assert m.row(1, 2) == pytest.approx({3: 0.75, 4: 0.25})
