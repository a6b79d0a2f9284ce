"""Draft trees from the MCTS: invariants, and a size that follows the measured cost."""

import numpy as np

from engine.aded import AdedSpeculator
from engine.cost import CostModel
from engine.tree import DraftTree

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
