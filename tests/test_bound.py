"""Kernels called through their compiled entry point (engine.draft.bound)."""

import numba as nb
import numpy as np
from aded_chat.engine.draft import aded
from aded_chat.engine.draft.aded import AdedSpeculator
from aded_chat.engine.draft.bound import BoundKernel
from aded_chat.engine.draft.cost import CostModel


@nb.njit
def _first_plus(pair, x):
    return pair[0] + x


def test_a_bound_kernel_binds_once_and_again_for_other_types():
    k = BoundKernel(_first_plus)
    assert k((1, 2), 3) == 4
    entry = k._entry
    assert k((5, 6), 1) == 6 and k._entry is entry  # same types: the same entry point
    # a longer tuple than the bound version takes: the entry point cannot unbox it, and
    # the dispatcher picks (and the kernel binds to) the version for three
    assert k((1, 2, 3), 1) == 2
    assert k._entry is not entry


def test_bound_and_dispatched_kernels_draft_and_learn_the_same():
    flat = CostModel.flat()
    rng = np.random.default_rng(3)
    text = [int(t) for t in rng.integers(1, 40, 400)] * 3
    runs = []
    for bound in (True, False):
        spec = AdedSpeculator(vocab=64, cost=CostModel(flat.cost.copy(), frozen=True),
                              max_mb=1.0)
        if not bound:
            spec._mcts_draft, spec._batch_layout, spec._absorb = (
                aded.mcts_draft, aded.batch_layout, aded.absorb)
        spec.begin(text[:300])
        history, trees = text[:300], []
        for t in text[300:420]:
            tree = spec.propose(history, room=64)
            trees.append((tree.tokens.tolist(), tree.parents.tolist(),
                          tree.layout[0].tolist() if tree.layout else None))
            history = history + [t]
            spec.learn(history, 1, tree, 1 + int(tree.child(0, t) > 0), 0.005)
        runs.append((trees, spec.model.snapshot()[1].tolist(), spec.accept.table.tolist()))
    assert any(len(tokens) > 1 for tokens, _, _ in runs[0][0])  # it drafted trees
    assert runs[0] == runs[1]


def test_the_warm_up_binds_every_kernel_a_step_calls_even_where_it_drafts_nothing():
    """On a CPU's curve the warm-up's own search drafts nothing; the first real draft
    must not be the one that loads the batch layout's compiled code (a stall in the
    middle of the first answer)."""
    cpu = CostModel.from_probes([1, 2, 4, 8], [0.006, 0.013, 0.02, 0.03], frozen=True)
    spec = AdedSpeculator(vocab=64, cost=cpu, max_mb=1.0)
    spec.warm_up()
    assert spec._searched == 0 and len(spec.learned) == 0  # it learned nothing
    for kernel in (spec._mcts_draft, spec._absorb, spec._batch_layout):
        assert kernel._entry is not None


def test_numbas_cache_is_named_by_the_drafters_source(tmp_path, monkeypatch):
    """A kernel cached with a helper from another module keeps the old helper when only
    the helper's file changes (Numba checks a function against its own file): the cache
    folder changes with any drafter source, and earlier folders go."""
    import shutil
    from pathlib import Path

    import aded_chat.engine.draft as draft

    src = tmp_path / "draft"
    shutil.copytree(Path(draft.__file__).parent, src,
                    ignore=shutil.ignore_patterns("__pycache__"))
    before = draft.source_digest(src)
    lookup = src / "lookup.py"
    lookup.write_text(lookup.read_text() + "\n# a changed helper\n")
    assert draft.source_digest(src) != before

    monkeypatch.setattr(draft._platformdirs, "user_cache_dir", lambda app: str(tmp_path))
    old = tmp_path / "numba" / "draft_0123"
    old.mkdir(parents=True)
    here = Path(draft._numba_cache_dir())
    assert here.parent == tmp_path / "numba"
    assert here.name == draft.source_digest(Path(draft.__file__).parent)
    assert not old.exists()
    here.mkdir()
    (here / "index").write_text("cached")
    assert Path(draft._numba_cache_dir()) == here and (here / "index").exists()
