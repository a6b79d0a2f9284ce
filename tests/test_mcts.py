"""Draft trees from the MCTS: invariants, and a size that follows the measured cost."""

import numpy as np
from aded_chat.engine.draft.aded import AdedSpeculator
from aded_chat.engine.draft.cost import CostModel
from aded_chat.engine.draft.mcts import COPY_LEVEL
from aded_chat.engine.draft.tree import MAX_TREE, DraftTree

CPU = CostModel.from_probes([1, 2, 4, 8, 16, 32], [0.012, 0.021, 0.028, 0.043, 0.078, 0.156])
GPU = CostModel.from_probes([1, 2, 4, 8, 16, 32], [0.010, 0.0101, 0.0102, 0.0104, 0.011, 0.012])


def trained(cost, text):
    spec = AdedSpeculator(vocab=100, cost=CostModel(cost.cost.copy()), max_mb=1.0)
    spec.begin(text)
    return spec


REPEAT = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 30


def test_tree_invariants_and_most_likely_branch():
    spec = trained(GPU, REPEAT)
    tree = spec.propose([9, 10], room=64)
    assert isinstance(tree, DraftTree)
    tree.check()
    assert tree.tokens[0] == 10
    assert len(tree) > 1 and tree.child(0, 1) > 0  # after (9, 10) comes 1
    node, chain = 0, []
    while True:  # the best-supported branch follows the repeated pattern
        kids = [i for i in range(len(tree)) if tree.parents[i] == node]
        if not kids:
            break
        node = max(kids, key=lambda i: tree.probs[i])
        chain.append(int(tree.tokens[node]))
    assert chain[:4] == [1, 2, 3, 4]
    assert np.all(tree.probs[1:] <= 1.0) and np.all(tree.probs[1:] > 0)
    for i in range(1, len(tree)):
        assert tree.probs[i] <= tree.probs[tree.parents[i]] + 1e-6


def branching_text(n=3000, seed=0):
    """A chain whose next token is cur+1 (70%) or cur+2 (30%): likely, never certain."""
    rng = np.random.default_rng(seed)
    out = [1]
    for _ in range(n):
        out.append((out[-1] + (1 if rng.random() < 0.7 else 2)) % 20 + 1)
    return out


def test_tree_size_follows_cost():
    text = branching_text()
    cpu = trained(CPU, text).propose(text[-2:], room=64)
    gpu = trained(GPU, text).propose(text[-2:], room=64)
    cpu.check()
    gpu.check()
    assert len(gpu) > len(cpu) >= 1
    assert len(gpu) > 8  # on a flat cost curve alternatives are worth verifying too
    assert max(np.bincount(gpu.parents[1:])) > 1


def test_no_evidence_means_no_draft_on_a_cpu():
    rng = np.random.default_rng(0)
    spec = trained(CPU, rng.integers(0, 100, size=3000).tolist())
    tree = spec.propose([3, 4], room=64)
    assert len(tree) == 1  # plain decoding is the best bet


def test_room_limits_the_tree():
    tree = trained(GPU, REPEAT).propose([9, 10], room=3)
    assert len(tree) <= 3


def test_plain_steps_still_calibrate_the_drafter():
    """A step the budget decodes plainly still tests the searched candidates, so a
    pessimistic calibration can recover (it would otherwise never see a draft again)."""
    rng = np.random.default_rng(0)
    spec = trained(CPU, rng.integers(0, 100, size=3000).tolist())
    history = [3, 4]
    tree = spec.propose(history, room=64)
    assert len(tree) == 1
    before = spec.accept.calib.tried.sum()
    spec.learn(history + [5], 1, tree, 1, 0.012)
    assert spec.accept.calib.tried.sum() > before


def test_search_stops_early_only_when_no_tree_can_pay():
    from aded_chat.engine.draft.mcts import worth_searching

    limit = 31
    assert not worth_searching(0.3, CPU.cost, limit, 1.0)  # CPU: 0.3 per node never pays
    assert worth_searching(0.9, CPU.cost, limit, 1.0)
    assert not worth_searching(0.9, CPU.cost, limit, 0.2)  # recent drafts fell far short
    assert worth_searching(0.05, GPU.cost, limit, 1.0)  # a flat curve: anything may pay


def test_trust_falls_with_failed_drafts_and_recovers_on_plain_steps():
    spec = trained(GPU, REPEAT)
    assert spec.trust == 1.0
    history = [9, 10]
    failed = 0
    for _ in range(10):  # every draft rejected: the model says 99 each time
        tree = spec.propose(history, room=64)
        if len(tree) == 1:
            break  # trust fell far enough that plain decoding is the better bet
        failed += 1
        history = history + [99]
        spec.learn(history, 1, tree, 1, 0.010)
        history = history + [9, 10]  # (context for the next draft, not learned)
    low = spec.trust
    assert failed >= 2 and low < 0.6
    plain = DraftTree.root_only(10)
    for _ in range(30):
        spec._searched = 0
        spec.learn(history, 1, plain, 1, 0.010)
    assert spec.trust > low + 0.3


FLAT = CostModel.flat()
CLIFF = CostModel.from_probes([1, 8, 9, 64], [0.010, 0.0102, 0.021, 0.024])


def random_cost(rng) -> CostModel:
    """Flat, CPU-steep, or flat with a step after 8 tokens, each with some noise."""
    kind = rng.integers(3)
    base = [FLAT, CPU, CLIFF][kind].cost
    return CostModel(base * np.maximum.accumulate(rng.uniform(0.95, 1.05, size=base.shape)))


def test_trees_never_need_more_sequences_or_nodes_than_allowed():
    """Whatever the cost curve and the calibration (random acceptance tables, up to
    optimistic ones that want the widest trees), a tree keeps to its leaf and node
    limits and stays a tree."""
    rng = np.random.default_rng(11)
    text = branching_text(2000, seed=4)
    for trial in range(60):
        spec = AdedSpeculator(vocab=100, cost=random_cost(rng), max_mb=1.0,
                              max_leaves=int(rng.integers(1, 40)))
        spec.begin(text)
        spec.accept.table[:] = rng.uniform(0.3, 1.0, size=spec.accept.table.shape)
        room = int(rng.integers(1, 80))
        for _ in range(5):
            hist = text[: int(rng.integers(2, len(text)))]
            tree = spec.propose(hist, room=room)
            tree.check()
            assert len(tree) <= min(room, MAX_TREE), trial
            assert tree.leaves() <= spec.max_leaves, (trial, tree.leaves())


def test_a_flat_curve_builds_wide_trees_within_the_context_sequences():
    text = branching_text()
    spec = AdedSpeculator(vocab=100, cost=CostModel.flat(), max_mb=1.0, max_leaves=16,
                          n_sims=300)  # a search wide enough to want more leaves
    spec.begin(text)
    spec.accept.table[:] = 0.95
    tree = spec.propose(text[-2:], room=128)
    assert tree.leaves() == 16 or len(tree) == MAX_TREE  # it wanted more than 16 leaves
    assert len(tree) > 16


def test_the_likeliest_branch_is_the_batchs_first_entries():
    """Depth first, the better child first: a node's first child is the next entry, so the
    branch the model most often keeps is already in position order in the cache."""
    text = branching_text()
    spec = trained(CostModel.flat(), text)
    spec.accept.table[:] = 0.9
    tree = spec.propose(text[-2:], room=64)
    tree.check()
    assert len(tree) > 8
    for i in range(len(tree) - 1):
        kids = np.flatnonzero(tree.parents == i)
        if kids.size:
            assert kids[0] == i + 1


def test_a_long_copy_is_drafted_deeper_than_the_search_goes():
    """Pasted text being copied: the chain that followed the match is drafted on its own,
    past the search's depth, when the cost curve says it pays; not on a curve where each
    drafted token costs half a plain one."""
    rng = np.random.default_rng(1)
    passage = rng.integers(10, 100, size=60).tolist()
    text = rng.integers(10, 100, size=200).tolist() + passage + \
        rng.integers(10, 100, size=200).tolist() + passage[:12]
    spec = trained(GPU, text[:-1])
    tree = spec.propose(text, room=64)
    tree.check()
    depth = len(tree) - 1
    assert depth > spec.max_depth  # deeper than the tree search reaches
    assert list(tree.parents[1:]) == list(range(depth))  # one chain
    assert tree.tokens[1:].tolist() == passage[12:12 + depth]
    steep = CostModel(np.arange(MAX_TREE + 2, dtype=np.float64) * 0.01 + 0.01, frozen=True)
    no_long = trained(steep, text[:-1]).propose(text, room=64)
    assert len(no_long) - 1 <= spec.max_depth


def test_a_copy_stops_where_the_turn_ends():
    """A copy of an earlier turn runs on into the chat template (end of turn, the next
    request), which no answer writes: the draft stops before the first such token."""
    rng = np.random.default_rng(1)
    END = 7  # stands for <|im_end|>: a control token
    passage = rng.integers(10, 100, size=40).tolist()
    passage[25] = END
    text = rng.integers(10, 100, size=200).tolist() + passage + \
        rng.integers(10, 100, size=200).tolist() + passage[:12]
    spec = trained(GPU, text[:-1])
    spec.turn_ends[END] = True
    tree = spec.propose(text, room=64)
    tree.check()
    assert END not in tree.tokens[1:].tolist()
    assert len(tree) - 1 == 25 - 12  # the copy, as far as the end of the turn
    assert tree.tokens[1:].tolist() == passage[12:25]


def test_a_branch_that_reaches_the_search_depth_goes_on_as_a_copy():
    """Too short a match for a long copy (which would stop at the search's depth), but
    the tree's likeliest branch reaches that depth inside the passage: the branch goes
    on with what followed the passage where verifying more costs little, as the batch's
    first entries; not where each drafted token costs a plain one."""
    rng = np.random.default_rng(3)
    passage = rng.integers(10, 100, size=60).tolist()
    text = rng.integers(10, 100, size=200).tolist() + passage + \
        rng.integers(10, 100, size=200).tolist() + passage[:4]
    spec = trained(GPU, text[:-1])
    spec.accept.table[:] = 0.2  # copies of the prompt are kept, other guesses seldom
    spec.accept.table[COPY_LEVEL] = 0.95
    tree = spec.propose(text, room=64)
    tree.check()
    deepest = int(tree.depths.max())
    assert deepest > spec.max_depth
    assert list(tree.parents[1:deepest + 1]) == list(range(deepest))
    assert tree.tokens[1:deepest + 1].tolist() == passage[4:4 + deepest]
    steep = CostModel(np.arange(MAX_TREE + 2, dtype=np.float64) * 0.01 + 0.01, frozen=True)
    spec = trained(steep, text[:-1])
    spec.accept.table[:] = 0.2
    spec.accept.table[COPY_LEVEL] = 0.95
    assert spec.propose(text, room=64).depths.max() <= spec.max_depth


def test_long_copies_that_miss_stop_being_drafted():
    """A long copy has a trust of its own: after long drafts of which the model kept
    nothing, the drafter's copies get shorter, though the text still matches the
    passage."""
    rng = np.random.default_rng(2)
    passage = rng.integers(10, 100, size=60).tolist()
    text = rng.integers(10, 100, size=200).tolist() + passage + \
        rng.integers(10, 100, size=200).tolist() + passage[:14]
    # each drafted token costs a twentieth of a plain one: misses cost something
    gentle = CostModel(0.01 * (1 + 0.05 * np.arange(-1, MAX_TREE + 1)), frozen=True)
    spec = trained(gentle, text[:-1])
    history = list(text)
    depths = []
    for i in range(4):
        tree = spec.propose(history, room=64)
        depths.append(len(tree) - 1)
        history.append(passage[14 + i])  # the text goes on as copied, but the step
        spec.learn(history, 1, tree, 1, 0.01)  # reports no drafted token kept
    assert depths[0] > spec.max_depth
    assert spec.copy_trust < 0.5
    assert len(spec.propose(history, room=64)) - 1 < depths[0]


def test_the_compiled_batch_layout_is_the_tree_s_own():
    """The drafter hands the verifier each tree's KV sequence layout computed in Numba
    (mcts.batch_layout); it must be exactly what DraftTree.batch_layout computes."""
    from aded_chat.engine.draft.mcts import batch_layout

    rng = np.random.default_rng(7)
    for n in [1, 2, 3, 8, 33, MAX_TREE]:
        for _ in range(20):
            parents = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, n)], np.int32)
            depths = np.zeros(n, np.int32)
            for i in range(1, n):
                depths[i] = depths[parents[i]] + 1
            plain = DraftTree(np.arange(n, dtype=np.int32), parents, depths,
                              np.ones(n, np.float32))
            every = max(plain.leaves(), int(rng.integers(1, MAX_TREE)))
            want = plain.batch_layout(every)
            got = batch_layout(parents, every)
            assert got[4] == want[4]
            for w, g in zip(want[:4], got[:4], strict=True):
                assert g.dtype == w.dtype and np.array_equal(g, w)
            # the trunk is in every sequence, the rest in their own leaves' sequences
            assert np.array_equal(want[1] == every, want[3])
    spec = trained(GPU, REPEAT)
    tree = spec.propose([9, 10], room=64)
    assert tree.layout is not None and len(tree) > 2


def test_a_thin_tri_gram_row_is_mixed_with_its_bigram_back_off():
    # After 5, the conversation shows 6 (many times) and 7 (after 4, 5 once); the context
    # (4, 5) has been seen once, with 7. Its row alone would offer only 7.
    text = [1, 5, 6, 2] * 20 + [4, 5, 7, 3]
    spec = trained(GPU, text)
    tree = spec.propose([4, 5], room=64)
    tree.check()
    assert tree.child(0, 7) > 0 and tree.child(0, 6) > 0
    assert tree.probs[tree.child(0, 7)] > 0 and tree.probs[tree.child(0, 6)] > 0


def test_a_steady_batch_is_filled_to_its_rows():
    """Every row of a steady batch is paid for whether drafted or not, so the search
    fills the room it is given (and its effort is sized to that room, not to 63 rows)."""
    text = branching_text()
    spec = AdedSpeculator(vocab=100, cost=CostModel.steady(6, 0.002), max_mb=1.0)
    spec.begin(text)
    sizes = [len(spec.propose(text[: i + 2], room=room)) for i in range(40, 80)
             for room in (6, 3)]
    assert sizes == [6, 3] * 40
    assert spec._search_effort() < AdedSpeculator(vocab=100, cost=CostModel.flat(),
                                                  max_mb=1.0)._search_effort()
