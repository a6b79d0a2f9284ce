"""Where batches are computed exactly as single tokens are, greedy verification keeps
within them and drops its near-tie guard (engine.decode.exact); the probe that says so
must see a difference of one bit, and the guard must stay wherever one is possible."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aded_chat.engine.decode import exact
from aded_chat.engine.decode.session import ChatSession
from aded_chat.engine.draft.aded import AdedSpeculator
from aded_chat.engine.draft.cost import CostModel
from aded_chat.engine.draft.tree import MAX_TREE
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.models import embedded_model_path
from aded_chat.engine.llama.sampling import SamplingSettings
from aded_chat.engine.llama.template import Message

from aded_chat.runtime import corpus_files

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def q8():
    b = LlamaBackend(embedded_model_path(), n_ctx=1024, n_threads=2, kv_cache="q8_0")
    yield b
    b.close()


def test_the_embedded_model_with_a_q8_cache_computes_batches_exactly(q8):
    assert exact.probe(q8) == MAX_TREE
    assert len(q8.tokenize("x")) > 0  # still usable; the probe leaves the cache empty


def test_q8_keys_with_f16_values_compute_batches_exactly():
    """The CPU default: ggml splits a single token's attention across threads only
    where the keys are F16, so F16 values keep batches exact."""
    b = LlamaBackend(embedded_model_path(), n_ctx=1024, n_threads=2, kv_cache="q8_0/f16")
    try:
        assert not exact.splits_single_token_attention(b)
        assert exact.probe(b) == MAX_TREE
    finally:
        b.close()


def test_an_f16_cache_with_two_threads_is_never_exact():
    b = LlamaBackend(embedded_model_path(), n_ctx=512, n_threads=2, kv_cache="f16")
    try:
        assert exact.splits_single_token_attention(b)
        assert exact.probe(b) == 1
    finally:
        b.close()


def test_a_batch_one_bit_off_is_not_exact(q8, monkeypatch):
    """The probe compares every logit bit for bit: a batch whose rows differ from one
    token's in the last bit of one logit is past the exact size (as K-quant weights are
    from eight rows on)."""
    real = q8.decode

    def off_by_a_bit(tokens, positions, **kw):
        out = real(tokens, positions, **kw)
        if len(tokens) == 9:  # one batch size, one logit
            out[3, 7] = np.nextafter(out[3, 7], np.float32(np.inf))
        return out

    monkeypatch.setattr(q8, "decode", off_by_a_bit)
    assert exact.probe(q8) == 8


def test_the_answer_is_cached_per_model_and_settings(q8, tmp_path, monkeypatch):
    assert exact.load_or_probe(q8, tmp_path) == MAX_TREE
    files = list(tmp_path.glob("exact*-kvq8_0*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text()) == {"exact_rows": MAX_TREE}
    monkeypatch.setattr(exact, "probe", lambda b: pytest.fail("probed again"))
    assert exact.load_or_probe(q8, tmp_path) == MAX_TREE
    for damaged in ("{damaged", '{"exact_rows": 0}', '{"exact": true}'):
        files[0].write_text(damaged)
        monkeypatch.setattr(exact, "probe", lambda b: 1)
        assert exact.load_or_probe(q8, tmp_path) == 1  # a damaged file means probing again


def test_with_exact_batches_greedy_on_a_flat_curve_needs_no_guard(q8, tmp_path):
    """The guard off, wide trees on a flat curve, two threads: the text is plain
    decoding's token for token, and no step stopped at a near-tie (each would have been
    a one-token step)."""
    spec = AdedSpeculator.for_backend(q8, corpus_files(), tmp_path, cost=CostModel.flat())
    s = ChatSession(q8, speculator=spec)
    s.exact_rows = MAX_TREE
    long = SamplingSettings(temperature=0.0, max_tokens=160)
    drafted = 0
    for text in ("Explain how rain forms, in a few sentences.",
                 "Write a Python function that reverses a list, with a docstring."):
        m = [Message("user", text)]
        s.reset()
        _, plain, _ = s.answer(m, long, speculative=False)
        s.reset()
        _, fast, st = s.answer(m, long, speculative=True)
        assert fast == plain, text
        drafted += st.drafted
        assert st.near_ties == 0
    assert drafted > 0


def test_the_loader_drops_the_guard_only_where_the_probe_says_exact(tmp_path, monkeypatch):
    from aded_chat.engine import SessionOptions, loader, open_session

    opts = dict(n_ctx=512, threads=2, corpus=tuple(corpus_files()), cache_dir=tmp_path,
                cost_curve=CostModel.flat())
    for kv, guard, want in (("q8_0", None, MAX_TREE), ("q8_0", True, 1), ("f16", None, 1),
                            ("auto", None, MAX_TREE)):
        s = open_session(embedded_model_path(), SessionOptions(kv_cache=kv,
                                                               guard_near_ties=guard, **opts))
        try:
            assert s.exact_rows == want, (kv, guard)
        finally:
            s.close()
    # exact up to seven rows (K-quant weights): this machine's curve keeps within them;
    # another machine's curve plans that machine's wide trees, with the guard
    monkeypatch.setattr(loader, "load_or_probe", lambda backend, cache: 7)
    for curve, want in ((None, 7), (CostModel.flat(), 1)):
        s = open_session(embedded_model_path(), SessionOptions(**{**opts, "cost_curve": curve}))
        try:
            assert s.exact_rows == want, curve
        finally:
            s.close()


def test_greedy_batches_stay_within_the_exact_rows(q8, tmp_path):
    """A context exact up to a few rows (K-quant weights: seven) keeps every greedy batch,
    the kept tokens carried into it included, within them, with no guard: the text is
    plain decoding's. Sampled answers are not held to it."""
    spec = AdedSpeculator.for_backend(q8, corpus_files(), tmp_path, cost=CostModel.flat())
    s = ChatSession(q8, speculator=spec)
    s.exact_rows = 4
    m = [Message("user", "Write a Python function that reverses a list, with a docstring.")]
    s.reset()
    _, plain, _ = s.answer(m, SamplingSettings(temperature=0.0, max_tokens=120),
                           speculative=False)
    s.reset()
    _, fast, st = s.answer(m, SamplingSettings(temperature=0.0, max_tokens=120))
    assert fast == plain
    assert st.drafted > 0 and st.near_ties == 0
    assert max(rows for rows, _ in st.batches_per_step) == 4
    s.reset()
    _, _, st = s.answer(m, SamplingSettings(temperature=1.0, seed=3, max_tokens=120))
    assert max(rows for rows, _ in st.batches_per_step) > 4


def test_the_config_can_trade_exact_greedy_answers_for_wide_batches():
    """exact_greedy = false (config) verifies greedy trees of any width with the near-tie
    guard; the default keeps them within the probed exact size."""
    from dataclasses import replace

    from app_helpers import CFG

    from aded_chat.runtime import open_model

    for exact_greedy, want in ((True, MAX_TREE), (False, 1)):
        s = open_model(replace(CFG, n_ctx=512, threads=2, kv_cache="q8_0",
                               exact_greedy=exact_greedy), drafter=True)
        try:
            assert s.exact_rows == want, exact_greedy
        finally:
            s.close()
