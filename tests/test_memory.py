"""The drafter keeps what it learned across runs: per model, bounded, versioned, written
atomically, and a damaged or foreign file means starting fresh."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from aded_chat.engine import Message, SamplingSettings
from aded_chat.engine.draft.aded import AdedSpeculator
from aded_chat.engine.draft.cost import CostModel
from aded_chat.engine.draft.memory import VERSION, learned_path, load_learned, save_learned
from app_helpers import CFG

from aded_chat.runtime import open_model


def taught(vocab: int = 100) -> AdedSpeculator:
    spec = AdedSpeculator(vocab=vocab, cost=CostModel.flat(), max_mb=1.0)
    rng = np.random.default_rng(3)
    phrase = [int(t) for t in rng.integers(0, vocab, size=40)]
    spec.begin(phrase * 4)
    spec.set_trust_state(3.0, 2.5)
    spec.accept.calib.kept[0, 5] *= 0.5
    spec.accept.calib.table[...] = spec.accept.calib.kept / spec.accept.calib.tried
    return spec


def same_drafts(a: AdedSpeculator, b: AdedSpeculator, history: list[int]) -> bool:
    ta, tb = a.propose(history, 64), b.propose(history, 64)
    return np.array_equal(ta.tokens, tb.tokens) and np.array_equal(ta.parents, tb.parents)


def test_a_saved_drafter_drafts_as_it_did(tmp_path):
    spec = taught()
    path = tmp_path / "learned.npz"
    save_learned(spec, path)
    assert not list(tmp_path.glob("*.tmp"))  # written under another name, then renamed
    fresh = AdedSpeculator(vocab=100, cost=CostModel.flat(), max_mb=1.0)
    history = list(spec.learned.tokens[:60])
    assert load_learned(fresh, path)
    assert fresh.model.n_rows == spec.model.n_rows
    assert fresh.model.row(history[10], history[11]) == spec.model.row(history[10],
                                                                       history[11])
    assert np.array_equal(fresh.accept.table, spec.accept.table)
    assert fresh.trust_state() == spec.trust_state()
    fresh.begin(history)
    spec.begin(history)
    assert same_drafts(spec, fresh, history)


def test_a_smaller_table_keeps_the_strongest_rows(tmp_path):
    spec = AdedSpeculator(vocab=5000, cost=CostModel.flat(), max_mb=1.0)
    rng = np.random.default_rng(0)
    spec.begin([7, 8, 9] * 300 + [int(t) for t in rng.integers(0, 5000, size=6000)])
    path = tmp_path / "learned.npz"
    save_learned(spec, path)
    small = AdedSpeculator(vocab=5000, cost=CostModel.flat(), max_mb=0.01)
    assert load_learned(small, path)
    assert small.model.n_rows <= 0.75 * small.model.tables.keys.shape[0]  # still bounded
    assert 9 in small.model.row(7, 8)


def test_the_archive_of_earlier_answers_is_kept_and_may_be_missing(tmp_path):
    spec = taught()
    spec.archive.add([5, 6, 7, 8])
    prompt = list(spec.learned.tokens)
    spec.learn(prompt + [9, 10, 11], 3, spec.propose(prompt + [9, 10, 11], 8), 1, 0.01)
    path = tmp_path / "learned.npz"
    save_learned(spec, path)
    fresh = AdedSpeculator(vocab=100, cost=CostModel.flat(), max_mb=1.0)
    assert load_learned(fresh, path)
    # the last answer too, though no next request has archived it yet
    assert fresh.archive.tokens.tolist() == [-1, 5, 6, 7, 8, -1, 9, 10, 11]
    assert len(spec.archive) == 5  # and saving did not archive it twice
    with np.load(path) as z:  # a file from before the archive: rows kept, archive empty
        data = {k: v for k, v in z.items() if k != "archive"}
    with open(path, "wb") as f:
        np.savez(f, **data)
    older = AdedSpeculator(vocab=100, cost=CostModel.flat(), max_mb=1.0)
    assert load_learned(older, path)
    assert older.model.n_rows == spec.model.n_rows and len(older.archive) == 0


@pytest.mark.parametrize("damage", ["truncated", "garbage", "version", "vocab", "nan",
                                    "archive"])
def test_a_damaged_or_foreign_file_means_starting_fresh(tmp_path, damage):
    spec = taught()
    path = tmp_path / "learned.npz"
    save_learned(spec, path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a zip" * 100)
    else:
        with np.load(path) as z:
            data = dict(z)
        if damage == "version":
            data["version"] = np.array(VERSION + 1)
        elif damage == "vocab":
            data["vocab"] = np.array(101)
        elif damage == "archive":  # a token past the vocabulary
            data["archive"] = np.array([-1, 5, 100], np.int32)
        else:
            data["wts"] = data["wts"].copy()
            data["wts"][0, 0] = np.nan
        with open(path, "wb") as f:
            np.savez(f, **data)
    fresh = AdedSpeculator(vocab=100, cost=CostModel.flat(), max_mb=1.0)
    before = fresh.model.snapshot()
    assert not load_learned(fresh, path)
    after = fresh.model.snapshot()
    assert all(np.array_equal(x, y) for x, y in zip(before[:6], after[:6], strict=True))


def test_a_calibration_of_another_shape_keeps_the_rows_and_starts_afresh(tmp_path):
    """A file from a drafter with fewer kinds of candidates (before the renamed copies'
    level) still holds its rows and trust; only its calibration is not taken."""
    spec = taught()
    path = tmp_path / "learned.npz"
    save_learned(spec, path)
    with np.load(path) as z:
        data = dict(z)
    data["tried"], data["kept"] = data["tried"][:-1], data["kept"][:-1]
    with open(path, "wb") as f:
        np.savez(f, **data)
    fresh = AdedSpeculator(vocab=100, cost=CostModel.flat(), max_mb=1.0)
    default = fresh.accept.table.copy()
    assert load_learned(fresh, path)
    assert fresh.model.n_rows == spec.model.n_rows
    assert fresh.trust_state() == spec.trust_state()
    assert np.array_equal(fresh.accept.table, default)


@pytest.mark.model
def test_the_app_session_remembers_what_its_drafter_learned(tmp_path, monkeypatch):
    """A session that answered writes its learning when it closes; the next session of
    the same model starts from it, and one with learn_across_runs off does not."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ask = [Message("user", "Write a haiku about a lighthouse.")]
    greedy = SamplingSettings(temperature=0.0, max_tokens=48)
    remembering = replace(CFG, learn_across_runs=True)
    first = open_model(remembering)
    first.answer(ask, greedy)
    first_state = first.drafter_state()
    model_path = first.info.model_path
    first.close()
    files = list((tmp_path / "cache").rglob("learned-*.npz"))
    assert files and files[0] == learned_path(files[0].parent, model_path)
    second = open_model(remembering)
    try:
        again = second.drafter_state()
        def rows(state):
            keys = state[0][0]
            return np.sort(keys[keys != -1])

        assert np.array_equal(rows(first_state), rows(again))  # the same tri-gram rows
        assert second.answer(ask, greedy)[2].tokens > 0
    finally:
        second.close()
    files[0].unlink()
    off = open_model(CFG)  # learn_across_runs off
    off.answer(ask, greedy)
    off.close()
    assert not list((tmp_path / "cache").rglob("learned-*.npz"))


@pytest.mark.model
def test_the_bench_measures_a_second_run_from_a_saved_state(tmp_path):
    from test_cli import assert_one_line_error, run

    state = tmp_path / "state.npz"
    common = ["bench", "--methods", "plain,aded", "--limit", "1", "--max-tokens", "16"]
    r = run(*common, "--save-drafter-state", str(state))
    assert r.returncode == 0, r.stderr
    assert state.is_file()
    r = run(*common, "--drafter-state", str(state), "--json", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stderr
    (tmp_path / "bad.npz").write_bytes(b"not a drafter state")
    assert_one_line_error(run(*common, "--drafter-state", str(tmp_path / "bad.npz")),
                          "not a drafter state for this model")
