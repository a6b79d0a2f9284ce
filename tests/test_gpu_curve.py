"""The drafter as it runs on a GPU, on this CPU: handed another machine's verification
cost curve (flat, or with a cliff after 8 tokens), it builds the wide, deep trees a GPU
pays for. Those trees must verify on the real model without a crash, leave the KV cache
exactly as plain decoding would, and change no answer."""

from __future__ import annotations

import llama_cpp
import numpy as np
import pytest
from aded_chat.engine.decode.session import ChatSession
from aded_chat.engine.decode.verify import verify_tree
from aded_chat.engine.draft.aded import AdedSpeculator
from aded_chat.engine.draft.cost import CostModel
from aded_chat.engine.draft.tree import DraftTree
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.models import embedded_model_path
from aded_chat.engine.llama.sampling import Sampler, SamplingSettings
from test_speculative import PROMPTS, _chi_square_p, msgs, sampled_counts

from aded_chat.runtime import corpus_files

pytestmark = pytest.mark.model

CURVES = {
    "flat": CostModel.flat,
    "cpu": lambda: CostModel.from_probes([1, 2, 4, 8, 16, 32],
                                         [0.012, 0.021, 0.028, 0.043, 0.078, 0.156]),
    "cliff": lambda: CostModel.from_probes([1, 8, 9, 64], [0.010, 0.0102, 0.021, 0.024],
                                           frozen=True),
}


@pytest.fixture(scope="module")
def flat_session(tmp_path_factory):
    """One llama.cpp thread: a batch is then computed with plain decoding's arithmetic
    (BENCHMARKS.md), so greedy answers must match token for token."""
    backend = LlamaBackend(embedded_model_path(), n_ctx=2048, n_threads=1)
    spec = AdedSpeculator.for_backend(backend, corpus_files(),
                                      tmp_path_factory.mktemp("cache"), cost=CostModel.flat())
    yield ChatSession(backend, speculator=spec)
    backend.close()


def assert_cache_is_plain(session: ChatSession) -> None:
    """Every sequence holds exactly the mirrored tokens at 0..n-1 (a tree's branches
    attend to the conversation through their own sequences), and the next token's
    logits (after the kept tokens the cache carries into its next batch, evaluated in
    that batch) equal those of a cache that plain decoding built from the same tokens
    (the prompt in one batch, then the answer one token at a time)."""
    b = session._backend
    mem = b._mem
    n = len(session._cache.tokens)
    assert b.n_every == b.n_seq_max > 1
    for s in range(b.n_seq_max):
        assert llama_cpp.llama_memory_seq_pos_max(mem, s) == n - 1, s
        assert llama_cpp.llama_memory_seq_pos_min(mem, s) == 0, s
    behind = list(session._cache.behind)
    probe = session._cache.tokens[-1]
    batch = np.array([*behind, probe], np.int32)
    after = b.decode(batch, np.arange(n, n + len(batch), dtype=np.int32))[0].copy()
    toks = list(session._cache.tokens) + behind
    n_prompt = session.last_stats.prompt_tokens
    session.reset()
    b.prefill(toks[:n_prompt], 0)
    for i in range(n_prompt, len(toks)):
        b.decode(np.array([toks[i]], np.int32), np.array([i], np.int32))
    fresh = b.decode(np.array([probe], np.int32), np.array([len(toks)], np.int32))[0].copy()
    b.kv_remove(-1, len(toks), -1)
    session._cache.tokens, session._cache.behind = toks, []
    assert np.array_equal(after, fresh)


@pytest.mark.parametrize("curve", list(CURVES))
def test_any_cost_curve_and_calibration_verifies_without_a_crash(curve, tmp_path):
    """A property test over the drafter's inputs: a cost curve (flat, CPU-steep, with a
    cliff), random acceptance tables from pessimistic to very optimistic (the widest
    trees), greedy and T=1, hundreds of steps in one conversation. Every tree verifies,
    none needs more KV sequences than the context has, and the cache stays plain
    decoding's."""
    rng = np.random.default_rng(sum(map(ord, curve)))
    backend = LlamaBackend(embedded_model_path(), n_ctx=2048, n_threads=1, n_seq_max=12)
    try:
        spec = AdedSpeculator.for_backend(backend, corpus_files(), tmp_path,
                                          cost=CURVES[curve]())
        assert spec.max_leaves == 12
        session = ChatSession(backend, speculator=spec)
        wide = 0
        steps = 0
        for i, text in enumerate(PROMPTS + ["Tell me a story about a dragon."]):
            spec.accept.table[:] = rng.uniform(0.05 if i % 2 else 0.6, 1.0,
                                              size=spec.accept.table.shape)
            temp = 1.0 if i % 2 else 0.0
            settings = SamplingSettings(temperature=temp, seed=int(rng.integers(1, 1000)),
                                        max_tokens=80)
            session.reset()  # the reference below prefills the prompt from position 0
            _, _, st = session.answer(msgs(text), settings)
            steps += st.steps
            wide += sum(nodes - 1 >= 12 for nodes, _ in st.batches_per_step)
            assert st.finish_reason in ("stop", "length")
            assert_cache_is_plain(session)
        assert steps > 100
        if curve != "cpu":
            assert wide > 0  # trees at least as wide as the context's sequences
    finally:
        backend.close()


def test_the_verifier_cuts_a_tree_with_more_leaves_than_sequences(flat_session):
    """The crash this file began with: a 17-leaf tree against a context of 16 sequences.
    The drafter keeps to the limit; the verifier also cuts any tree that does not."""
    s = flat_session
    b = s._backend
    s.reset()
    prompt = s.prompt_tokens(msgs("List the days of the week."))
    b.prefill(prompt[:-1], 0)
    n_past = len(prompt) - 1
    wide = b.n_seq_max + 5
    tree = DraftTree(np.array([prompt[-1], *range(100, 100 + wide)], np.int32),
                     np.array([-1] + [0] * wide, np.int32),
                     np.array([0] + [1] * wide, np.int32), np.ones(wide + 1, np.float32))
    sampler = Sampler(SamplingSettings(temperature=0.0), b)
    v = verify_tree(b, tree, n_past, sampler, 8)
    sampler.close()
    assert v.nodes == b.n_seq_max + 1 and len(v.emitted) == 1
    s.reset()


def test_greedy_on_a_flat_curve_is_plain_greedy_token_for_token(flat_session, monkeypatch):
    """Wide trees, siblings rejected, caches trimmed and re-ordered: with one thread and
    the near-tie rule off, the text must be plain decoding's exactly."""
    import aded_chat.engine.decode.session as session_mod

    monkeypatch.setattr(session_mod, "TIE_GAP", 0.0)
    s = flat_session
    long = SamplingSettings(temperature=0.0, max_tokens=200)
    drafted = accepted = carried = 0
    for text in PROMPTS:
        s.reset()
        _, plain, _ = s.answer(msgs(text), long, speculative=False)
        s.reset()
        _, fast, st = s.answer(msgs(text), long, speculative=True)
        assert fast == plain, text
        drafted += st.drafted
        accepted += st.accepted
        carried += st.carried
        assert_cache_is_plain(s)
    assert drafted > 2 * accepted > 0  # wide trees: far more drafted than kept
    assert carried > 0  # kept side branches, evaluated again at the next batch's head


def test_sampling_on_a_flat_curve_keeps_the_distribution(flat_session):
    counts, drafted = sampled_counts(flat_session, 150)
    assert drafted > 0
    assert _chi_square_p(counts[False], counts[True]) > 0.001


STEADY = 5


@pytest.fixture(scope="module")
def steady_session(tmp_path_factory):
    """Every speculative step a batch of STEADY rows (ChatSession.steady_rows), one
    llama.cpp thread, as flat_session."""
    backend = LlamaBackend(embedded_model_path(), n_ctx=2048, n_threads=1)
    spec = AdedSpeculator.for_backend(backend, corpus_files(),
                                      tmp_path_factory.mktemp("cache"),
                                      cost=CostModel.steady(STEADY, 0.005))
    session = ChatSession(backend, speculator=spec)
    session.steady_rows = STEADY
    yield session
    backend.close()


def test_a_steady_batch_has_the_same_rows_and_outputs_every_step(steady_session, monkeypatch):
    """The shape a GPU captures once: every decode after the prompt's has STEADY rows, each
    asking for its logits, whether the step drafted, drafted nothing or carried kept
    tokens in; and greedy answers are plain decoding's token for token (one thread: a
    batch is computed with plain decoding's arithmetic)."""
    s = steady_session
    b = s._backend
    shapes = []
    run = b._run

    def spy(n, n_logits):
        shapes.append((n, n_logits))
        return run(n, n_logits)

    drafts = []
    propose = s._speculator.propose

    def spy_propose(history, room):
        tree = propose(history, room)
        drafts.append(len(tree))
        return tree

    monkeypatch.setattr(s._speculator, "propose", spy_propose)
    long = SamplingSettings(temperature=0.0, max_tokens=120)
    carried = 0
    for text in PROMPTS:
        s.reset()
        _, plain, _ = s.answer(msgs(text), long, speculative=False)
        s.reset()
        n_prompt = len(s.prompt_tokens(msgs(text)))
        monkeypatch.setattr(b, "_run", spy)
        shapes.clear()
        _, fast, st = s.answer(msgs(text), long, speculative=True)
        monkeypatch.setattr(b, "_run", run)
        assert fast == plain, text
        assert shapes[0] == (n_prompt, 1), text  # the prompt
        assert set(shapes[1:]) == {(STEADY, STEADY)}, text
        assert st.steps == len(shapes) - 1
        carried += st.carried
        assert_cache_is_plain(s)
    assert carried > 0  # kept side branches, evaluated again at the next batch's head
    assert 1 in drafts  # steps that drafted nothing were padded too


def test_sampling_in_steady_batches_keeps_the_distribution(steady_session):
    counts, drafted = sampled_counts(steady_session, 150)
    assert drafted > 0
    assert _chi_square_p(counts[False], counts[True]) > 0.001


def test_the_loader_sizes_a_steady_contexts_sequences_to_its_trees(tmp_path):
    """A steady batch of N rows holds a tree of at most N - 1 leaves, so the context gets
    that many KV sequences (each committed token goes into all of them), the drafter
    plans with CostModel.steady, and greedy answers stay plain decoding's."""
    from aded_chat.engine import SessionOptions, open_session

    s = open_session(embedded_model_path(), SessionOptions(
        n_ctx=1024, threads=1, corpus=tuple(corpus_files()), cache_dir=tmp_path,
        steady_rows=4))
    try:
        assert s.steady_rows == 4 and s._backend.n_seq_max == 3
        assert s._speculator.max_leaves == 3 and s._speculator.cost.frozen
        greedy = SamplingSettings(temperature=0.0, max_tokens=60)
        for text in PROMPTS[:2]:
            s.reset()
            _, plain, _ = s.answer(msgs(text), greedy, speculative=False)
            s.reset()
            _, fast, st = s.answer(msgs(text), greedy, speculative=True)
            assert fast == plain and st.drafted > 0, text
            assert {rows for rows, _ in st.batches_per_step} == {4}  # (carried included)
    finally:
        s.close()


@pytest.mark.parametrize("which", ["flat_session", "steady_session"])
def test_a_seeded_sampled_answer_is_plain_decodings_token_for_token(which, request):
    """One draw per emitted token, through the same chain in the same order: with the same
    seed and, at one thread, the same logits, a sampled answer is plain decoding's exactly,
    wide trees (flat) or steady batches with kept tokens carried into the next one."""
    s = request.getfixturevalue(which)
    carried = 0
    for seed in (1, 2):
        for text in PROMPTS:
            settings = SamplingSettings(temperature=0.8, seed=seed, max_tokens=80)
            s.reset()
            _, plain, _ = s.answer(msgs(text), settings, speculative=False)
            s.reset()
            _, fast, st = s.answer(msgs(text), settings, speculative=True)
            assert fast == plain, (seed, text)
            carried += st.carried
    assert carried > 0
