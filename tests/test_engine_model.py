"""Integration: the real embedded SmolLM2 GGUF through llama.cpp."""

from __future__ import annotations

import threading
from dataclasses import replace

import llama_cpp
import numpy as np
import pytest
from aded_chat.engine.decode.session import ChatSession
from aded_chat.engine.draft.tree import DraftTree
from aded_chat.engine.errors import ContextOverflowError
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.models import embedded_model_path
from aded_chat.engine.llama.sampling import Sampler, SamplingSettings
from aded_chat.engine.llama.template import Message

pytestmark = pytest.mark.model

GREEDY = SamplingSettings(temperature=0.0, max_tokens=48)


@pytest.fixture(scope="module")
def backend():
    b = LlamaBackend(embedded_model_path(), n_ctx=2048)
    yield b
    b.close()


@pytest.fixture()
def session(backend):
    s = ChatSession(backend)
    s.reset()
    return s


def ask(text: str) -> list[Message]:
    return [Message("system", "You are a helpful assistant."), Message("user", text)]


def test_backend_reports_what_it_runs(backend):
    info = backend.info
    assert info.n_vocab == 49152  # (any build: CPU, or a GPU that took the layers)
    assert (info.compute == "CPU") == (info.gpu_layers == 0)
    assert backend.partial_kv_removal
    assert backend.chat_template() and "im_start" in backend.chat_template()


def test_the_chat_template_s_tokens_end_what_a_draft_may_copy(backend):
    """A copy of an earlier turn is cut where the template begins (engine.draft.mcts):
    the end-of-turn and turn-start tokens are in the backend's turn_ends, text is not."""
    im_start, im_end = (backend.tokenize(t, parse_special=True)
                        for t in ("<|im_start|>", "<|im_end|>"))
    assert len(im_start) == len(im_end) == 1
    assert backend.turn_ends[im_start[0]] and backend.turn_ends[im_end[0]]
    assert not backend.turn_ends[backend.tokenize("user")].any()
    assert backend.turn_ends.sum() < 100


def test_greedy_answer_is_deterministic(session):
    a, ta, sa = session.answer(ask("Say hello"), GREEDY, speculative=False)
    session.reset()
    b, tb, _ = session.answer(ask("Say hello"), GREEDY, speculative=False)
    assert a == b and ta == tb and a.strip()
    assert sa.finish_reason in ("stop", "length") and sa.tokens == len(ta)


def test_multi_turn_reuses_the_cache(session):
    msgs = ask("Name a fruit.")
    text, _, first = session.answer(msgs, GREEDY, speculative=False)
    assert first.prompt_evaluated == first.prompt_tokens
    msgs2 = msgs + [Message("assistant", text), Message("user", "Name a colour.")]
    _, _, second = session.answer(msgs2, GREEDY, speculative=False)
    new_turn = len(session.prompt_tokens(msgs2)) - len(session.prompt_tokens(msgs))
    # only the tail after the common prefix is evaluated: the new user turn plus the
    # few template tokens around the previous answer
    assert second.prompt_evaluated <= new_turn + 4
    assert second.prompt_evaluated < second.prompt_tokens / 2


def test_special_token_text_in_a_user_message_stays_literal(session, backend):
    toks = session.prompt_tokens([Message("user", "print <|im_end|> and <|im_start|>")])
    plain = session.prompt_tokens([Message("user", "print this and that")])
    specials = [backend.tokenize(s, parse_special=True) for s in ("<|im_end|>", "<|im_start|>")]
    assert all(len(t) == 1 for t in specials)
    for (tok,) in specials:  # only the template's own control tokens
        assert toks.count(tok) == plain.count(tok)
    assert "<|im_end|>" in backend.detokenize(toks)  # the user's text is still there


def test_streaming_never_yields_broken_characters(session):
    msgs = ask("Reply with three emoji and the Japanese word for cat, 猫.")
    settings = SamplingSettings(temperature=0.8, seed=3, max_tokens=60)
    chunks = list(session.generate(msgs, settings, speculative=False))
    tokens = [t for c in chunks for t in c.tokens]
    raw = b"".join(session._backend.piece(t) for t in tokens)
    assert any(len(session._backend.piece(t).decode("utf-8", "ignore")) == 0 for t in tokens)
    # while streaming, no chunk holds half a character; only an answer cut off in the
    # middle of one ends with U+FFFD, exactly as decoding all the bytes at once does
    assert all("\ufffd" not in c.text for c in chunks[:-1])
    assert "".join(c.text for c in chunks) == raw.decode("utf-8", errors="replace")


def test_cancel_between_steps(session):
    cancel = threading.Event()
    got = []
    for chunk in session.generate(ask("Count from 1 to 100."), GREEDY, cancel=cancel,
                                  speculative=False):
        got.append(chunk)
        if len(got) == 3:
            cancel.set()
    assert got[-1].stats.finish_reason == "cancelled"
    assert len(got) <= 4


def test_context_overflow_is_a_clear_error(backend):
    s = ChatSession(backend)
    with pytest.raises(ContextOverflowError, match="too long"):
        s.answer(ask("word " * 5000), GREEDY)


def test_old_turns_are_dropped_to_fit(backend):
    s = ChatSession(backend)
    long_turns = []
    for i in range(8):
        long_turns += [Message("user", f"story {i} " + "lorem ipsum " * 120),
                       Message("assistant", "ok")]
    msgs = [Message("system", "Be brief.")] + long_turns + [Message("user", "Say hi")]
    toks, dropped = s.fit_prompt(msgs, 64)
    assert dropped > 0 and len(toks) + 64 <= backend.n_ctx
    _, _, stats = s.answer(msgs, replace(GREEDY, max_tokens=8))
    assert stats.dropped_turns == dropped


def test_tree_verification_keeps_a_consistent_cache(backend):
    """After many accept/reject steps, continuing gives the logits of a fresh evaluation."""
    from aded_chat.engine.decode.kv import KvCache

    rng = np.random.default_rng(0)
    prompt = ChatSession(backend).prompt_tokens(ask("Write a short poem about the sea."))
    backend.kv_clear()
    cache = KvCache(backend)
    cache.bring_to(prompt)
    sampler = Sampler(GREEDY, backend)

    pending = sampler.sample(-1, backend.logits_row(-1))
    for _ in range(12):
        # a random tree whose first branch sometimes holds the right token
        n = int(rng.integers(2, 9))
        toks = rng.integers(100, 5000, size=n).astype(np.int32)
        toks[0] = pending
        parents = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, n)], np.int32)
        depths = np.zeros(n, np.int32)
        for i in range(1, n):
            depths[i] = depths[parents[i]] + 1
        if len(set(zip(parents[1:].tolist(), toks[1:].tolist(), strict=True))) != n - 1:
            continue  # siblings must hold distinct tokens
        tree = DraftTree(toks, parents, depths, np.ones(n, np.float32))
        before = cache.tokens + cache.behind
        v = cache.verify(tree, sampler, 50, None, 0.0)
        assert cache.tokens + cache.behind == before + [pending] + v.emitted[: v.kept - 1]
        pending = v.emitted[-1]
    # continue from the cache (with any kept tokens it carries into the next batch)...
    held = cache.tokens + cache.behind
    cache.verify(DraftTree.root_only(pending), sampler, 1, None, 0.0)
    cont = backend.logits_row(0).copy()
    assert cache.tokens == held + [pending] and cache.behind == []
    # ...and from a fresh evaluation of the same tokens
    backend.kv_clear()
    fresh = backend.prefill(held + [pending], 0).copy()
    assert int(np.argmax(cont)) == int(np.argmax(fresh))
    assert np.max(np.abs(cont - fresh)) < 1.5
    sampler.close()


def test_a_plain_step_is_the_batch_path_for_one_token(backend):
    """verify_tree's one-token shortcut (decode_one) gives the general batch's logits,
    bit for bit, writes the token into every sequence, and emits the sampler's draw."""
    from aded_chat.engine.decode.verify import verify_tree

    b = backend
    prompt = ChatSession(b).prompt_tokens(ask("Count from one to five."))
    b.kv_clear()
    b.prefill(prompt, 0)
    tok, n = int(np.argmax(b.logits_row(-1))), len(prompt)
    want = b.decode(np.array([tok], np.int32), np.array([n], np.int32),
                    logits=np.ones(1, np.int8))[0].copy()
    b.kv_remove(-1, n, -1)
    sampler = Sampler(GREEDY, b)
    v = verify_tree(b, DraftTree.root_only(tok), n, sampler, 5)
    sampler.close()
    assert np.array_equal(b.logits_row(0), want)
    assert v.emitted == [int(np.argmax(want))] and (v.kept, v.accepted, v.nodes) == (1, 0, 1)
    ends = {llama_cpp.llama_memory_seq_pos_max(b._mem, s) for s in range(b.n_every)}
    assert ends == {n}
    b.kv_clear()


def test_waiting_for_the_logits_counts_as_decode_time(backend, monkeypatch):
    """A GPU computes a batch after llama_decode returns and llama_get_logits waits for
    it, spinning on the CPU: that wait is the decode's, or the host work a step reports
    (what the GPU check measures) would hold the GPU's compute time. Here the wait is
    stood in for by CPU work inside llama_get_logits' call."""
    import time

    from aded_chat.engine.llama import backend as backend_module

    real = backend_module._logits_address

    def slow_wait(ctx):
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass
        return real(ctx)

    monkeypatch.setattr(backend_module, "_logits_address", slow_wait)
    b = backend
    b.kv_clear()
    before = b.decode_cpu_s
    row = b.decode_one(1, 0)
    assert b.decode_cpu_s - before >= 0.02
    assert row.shape == (b.n_vocab,) and np.isfinite(row).all()
    b.kv_clear()


def _plain_greedy(b: LlamaBackend, n: int) -> tuple[list[int], list[int], list]:
    """A short prompt's first n greedy tokens, one per llama_decode, and each one's
    logits; the cache is left holding the prompt alone."""
    prompt = ChatSession(b).prompt_tokens(ask("Name the planets of the solar system."))
    b.prefill(prompt, 0)
    tokens, logits = [], []
    tok = int(np.argmax(b.logits_row(-1)))
    for i in range(n):
        tokens.append(tok)
        row = b.decode(np.array([tok], np.int32), np.array([len(prompt) + i], np.int32))
        logits.append(row[0].copy())
        tok = int(np.argmax(row[0]))
    b.kv_clear()
    b.prefill(prompt, 0)
    return prompt, tokens, logits


def test_a_kept_side_branch_leaves_the_cache_as_plain_decoding_writes_it():
    """A tree whose kept branch is not its first entries (a rejected sibling comes first)
    must leave the cache holding what one-token decoding would: with one thread (where a
    batch's arithmetic is one token's, BENCHMARKS.md) the next logits are bit-identical
    to plain decoding's. Without putting the kept cells back in order, the next token
    would take the rejected sibling's cell, and attention would sum in another order."""
    from aded_chat.engine.decode.verify import verify_tree

    b = LlamaBackend(embedded_model_path(), n_ctx=1024, n_threads=1)
    try:
        prompt, plain_tokens, plain_logits = _plain_greedy(b, 24)
        sampler = Sampler(SamplingSettings(temperature=0.0), b)
        n_past, i, behind = len(prompt), 0, []
        while i + 3 < len(plain_tokens):
            right, then = plain_tokens[i + 1], plain_tokens[i + 2]
            wrong = (right + 1) % b.n_vocab
            # batch order: root, a wrong child, the right child, its right child
            tree = DraftTree(np.array([plain_tokens[i], wrong, right, then], np.int32),
                             np.array([-1, 0, 0, 2], np.int32),
                             np.array([0, 1, 1, 2], np.int32), np.ones(4, np.float32))
            v = verify_tree(b, tree, n_past, sampler, 50, behind=behind)
            assert v.emitted == plain_tokens[i + 1: i + 4] and v.kept == 3
            # the kept branch's tokens after the hole go into the next batch, first
            assert v.carried == len(behind) and v.behind == [right, then]
            n_past += len(behind) + 3 - len(v.behind)
            behind = v.behind
            i += 3
        # the last step's carried tokens, then the next token, in one batch
        toks = np.array([*behind, plain_tokens[i]], np.int32)
        row = b.decode(toks, np.arange(n_past, n_past + len(toks), dtype=np.int32))
        assert np.array_equal(row[0], plain_logits[i])
        sampler.close()
    finally:
        b.close()


@pytest.mark.parametrize("row_s, deferred", [(0.0, True), (1.0, False)])
def test_kept_nodes_below_a_branching_reach_every_sequence(row_s, deferred):
    """A kept branch below a branching is in its own leaf's sequence only. Where a
    batch's rows cost little (row_s, a flat GPU curve) its tokens are evaluated again at
    the head of the next batch; where they cost much, they are copied into every other
    sequence. Either way, with one thread the next logits are plain decoding's bit for
    bit, and every sequence ends up holding the same positions."""
    from aded_chat.engine.decode.verify import verify_tree

    b = LlamaBackend(embedded_model_path(), n_ctx=1024, n_threads=1)
    try:
        prompt, plain_tokens, plain_logits = _plain_greedy(b, 16)
        sampler = Sampler(SamplingSettings(temperature=0.0), b)
        n_past, i, behind = len(prompt), 0, []
        while i + 3 < len(plain_tokens):
            right, then = plain_tokens[i + 1], plain_tokens[i + 2]
            wrong = (right + 1) % b.n_vocab
            # batch order: root, the right child, its right child, then a wrong sibling
            tree = DraftTree(np.array([plain_tokens[i], right, then, wrong], np.int32),
                             np.array([-1, 0, 1, 0], np.int32),
                             np.array([0, 1, 2, 1], np.int32), np.ones(4, np.float32))
            v = verify_tree(b, tree, n_past, sampler, 50, behind=behind, row_s=row_s)
            assert v.emitted == plain_tokens[i + 1: i + 4] and v.kept == 3
            assert v.behind == ([right, then] if deferred else []) and v.redecoded == 0
            n_past += len(behind) + 3 - len(v.behind)
            behind = v.behind
            ends = {llama_cpp.llama_memory_seq_pos_max(b._mem, x) for x in range(b.n_every)}
            assert ends == {n_past - 1}
            i += 3
        toks = np.array([*behind, plain_tokens[i]], np.int32)
        row = b.decode(toks, np.arange(n_past, n_past + len(toks), dtype=np.int32))
        assert np.array_equal(row[-1], plain_logits[i])
        sampler.close()
    finally:
        b.close()


def test_cost_calibration_on_the_real_model(backend):
    """The load-time calibration yields a usable table: positive, non-decreasing in the
    batch size, and it leaves the cache empty for the conversation."""
    from aded_chat.engine.draft.cost import MAX_TREE, CostModel

    cost = CostModel.measure(backend, context=32, reps=2)
    assert cost.cost.shape == (MAX_TREE + 2,)
    assert np.all(cost.cost[1:] > 0)
    assert np.all(np.diff(cost.cost[1:]) >= 0)
    assert 0 <= cost.switch < cost.cost[1]  # 0.5-0.6 ms here, of a 6 ms token
    assert llama_cpp.llama_memory_seq_pos_max(backend._mem, 0) == -1  # cache left empty


def test_a_cancelled_prompt_keeps_what_it_read_and_answers_as_plain_decoding(backend):
    """Esc while a long paste is read: PrefillCancelled before any token, the chunks read
    stay cached, and the next try (reusing them) answers exactly as a fresh session."""
    from aded_chat.engine import PrefillCancelled

    msgs = ask("Summarize: " + "the quick brown fox jumps over the lazy dog. " * 120)
    s = ChatSession(backend)
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        cancel.set()  # stop at the next chunk's end
    with pytest.raises(PrefillCancelled, match="stopped at"):
        next(s.generate(msgs, GREEDY, cancel=cancel, on_prefill=progress, speculative=False))
    assert seen and seen[0][0] == backend.n_batch and seen[0][1] > backend.n_batch
    text, tokens, stats = s.answer(msgs, GREEDY, speculative=False)
    # the cancel is seen after the second chunk: both stay cached and are reused
    assert stats.prompt_evaluated == stats.prompt_tokens - 2 * backend.n_batch
    assert stats.n_ctx == backend.n_ctx and stats.context_used == stats.prompt_tokens + len(
        tokens)
    fresh = ChatSession(backend)
    fresh.reset()
    assert fresh.answer(msgs, GREEDY, speculative=False)[1] == tokens


def test_provenance_names_the_model_file_and_the_drawn_seed(session, backend):
    import hashlib

    settings = replace(GREEDY, temperature=0.7, max_tokens=4)
    _, _, stats = session.answer(ask("Hi"), settings, speculative=False)
    p = session.provenance(settings, stats)
    path = embedded_model_path()
    with path.open("rb") as fh:
        head = fh.read(8 << 20)
    assert p["model"] == {"file": path.name, "bytes": path.stat().st_size,
                          "header_sha256": hashlib.sha256(head).hexdigest()}
    assert p["settings"]["seed"] == stats.seed is not None
    assert p["settings"]["temperature"] == 0.7 and p["engine"]["n_ctx"] == backend.n_ctx


def test_decode_tree_is_the_batch_decode_would_build(backend):
    """decode_tree (one compiled call fills the batch) evaluates what decode() with the
    same entries does: tokens carried from the last step in every sequence, then a tree
    whose nodes sit in their leaves' sequences; the same logits, bit for bit."""
    b = backend
    prompt = ChatSession(b).prompt_tokens(ask("Name three rivers."))
    n = len(prompt)
    behind = np.array([prompt[-3], prompt[-2]], np.int32)  # evaluated again, behind
    tree = DraftTree(np.array([prompt[-1], 11, 12, 13], np.int32),
                     np.array([-1, 0, 0, 1], np.int32), np.array([0, 1, 1, 2], np.int32),
                     np.ones(4, np.float32))
    seq_ids, n_seq, _, _, _ = tree.batch_layout(b.n_every)
    start = n - 1

    def fresh():
        b.kv_clear()
        b.prefill(prompt[:-3], 0)

    fresh()
    every = np.broadcast_to(np.arange(b.n_every, dtype=np.int32), (2, b.n_every))
    want = b.decode(np.concatenate([behind, tree.tokens]),
                    np.concatenate([np.arange(n - 3, n - 1, dtype=np.int32),
                                    tree.depths + np.int32(start)]),
                    seq_ids=np.concatenate([every, seq_ids]),
                    n_seq=np.concatenate([np.full(2, b.n_every, np.int32), n_seq]),
                    outputs_from=2).copy()
    fresh()
    got = b.decode_tree(tree.tokens, tree.depths, start, seq_ids, n_seq, behind)
    assert got.shape == want.shape == (4, b.n_vocab)
    assert np.array_equal(got, want)
    fresh()  # a root alone, nothing behind: every sequence
    one = b.decode_tree(tree.tokens[:1], tree.depths[:1], start - 2)
    ends = {llama_cpp.llama_memory_seq_pos_max(b._mem, s) for s in range(b.n_every)}
    assert one.shape == (1, b.n_vocab) and ends == {start - 2}
    b.kv_clear()
