"""The cost model and the acceptance calibration."""

import numpy as np

from engine.acceptance import AcceptanceModel
from engine.cost import MAX_TREE, CostModel


def test_cost_table_is_a_robust_line_through_the_probes():
    sizes = [1, 2, 4, 8, 16, 32]
    c = CostModel.from_probes(sizes, [0.01] + [0.007 + 0.005 * n for n in sizes[1:]])
    assert c.cost.shape == (MAX_TREE + 2,)
    assert c.cost[1] == 0.01
    assert np.allclose(c.cost[2:], 0.007 + 0.005 * np.arange(2, MAX_TREE + 2))
    stalled = CostModel.from_probes(sizes, [0.012, 0.017, 0.027, 0.45, 0.087, 0.167])
    assert stalled.cost[8] < 0.06  # one stalled probe does not make 8 tokens look costly
    assert np.all(np.diff(stalled.cost[1:]) >= 0)
    c.observe(4, 1.0, alpha=0.5)
    assert np.all(np.diff(c.cost[1:]) >= 0) and c.cost[5] >= c.cost[4]


def test_cost_roundtrip(tmp_path):
    c = CostModel.from_probes([1, 32], [0.01, 0.02])
    c.save(tmp_path / "c.json")
    assert np.allclose(CostModel.load(tmp_path / "c.json").cost, c.cost)
    (tmp_path / "bad.json").write_text("{")
    assert CostModel.load(tmp_path / "bad.json") is None


def test_acceptance_learns_from_tested_nodes_only():
    a = AcceptanceModel()
    before = a.table.copy()
    parents = np.array([-1, 0, 0, 1, 3], np.int32)
    levels = np.zeros(5, np.int32)
    buckets = np.array([0, 9, 2, 5, 5], np.int32)
    for _ in range(50):
        a.observe(parents, levels, buckets, path=[0, 1])  # node 1 kept, 2 and 3 rejected
    assert a.table[0, 9] > before[0, 9]
    assert a.table[0, 2] < before[0, 2]
    assert a.table[0, 5] < before[0, 5]  # node 3 was tested (parent 1 kept) and rejected
    assert a.tried[0, 5] == AcceptanceModel.PRIOR_WEIGHT + 50  # node 4 never tested
