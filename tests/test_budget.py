"""The cost model and the acceptance calibration."""

import json

import numpy as np
import pytest
from aded_chat.engine.draft.acceptance import DECAY, PRIOR_WEIGHT, AcceptanceModel, observe_tree
from aded_chat.engine.draft.cost import MAX_TREE, CostCurveError, CostModel


def test_cost_table_is_kept_point_by_point_through_the_probes():
    sizes = [1, 2, 4, 8, 16, 32]
    secs = [0.01] + [0.007 + 0.005 * n for n in sizes[1:]]
    c = CostModel.from_probes(sizes, secs)
    assert c.cost.shape == (MAX_TREE + 2,)
    assert c.cost[1] == 0.01
    assert np.allclose(c.cost[2:], 0.007 + 0.005 * np.arange(2, MAX_TREE + 2))  # a line stays one
    for n, s in zip(sizes, secs, strict=True):
        assert c.cost[n] == s


def test_a_kernel_cliff_survives_and_a_stall_does_not():
    # CUDA's small-batch kernels cover up to 8 tokens: 9 and more cost far more
    cliff = CostModel.from_probes([1, 2, 4, 8, 9, 16, 32, 64],
                                  [0.010, 0.010, 0.0102, 0.0105, 0.020, 0.021, 0.023, 0.03])
    assert cliff.cost[8] < 0.011 and cliff.cost[9] == 0.020
    assert np.all(np.diff(cliff.cost[1:]) >= 0)
    # a probe slower than a larger batch is a stall of the machine: lowered to it
    stalled = CostModel.from_probes([1, 2, 4, 8, 16, 32],
                                    [0.012, 0.017, 0.027, 0.45, 0.087, 0.167])
    assert stalled.cost[8] <= 0.087
    assert np.all(np.diff(stalled.cost[1:]) >= 0)
    c = CostModel.from_probes([1, 2, 4], [0.01, 0.02, 0.03])
    c.observe(4, 1.0, alpha=0.5)
    assert np.all(np.diff(c.cost[1:]) >= 0) and c.cost[5] >= c.cost[4]


def test_the_drafter_stops_before_a_cliff():
    """With a table whose every node is likely, the tree fills the cheap sizes and stops
    before the size where the cost doubles."""
    from aded_chat.engine.draft.aded import AdedSpeculator

    cliff = CostModel.from_probes([1, 8, 9, 64], [0.010, 0.0105, 0.030, 0.031])
    spec = AdedSpeculator(vocab=100, cost=cliff, max_mb=1.0)
    spec.begin([1, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 30)
    tree = spec.propose([9, 10], room=64)
    assert 2 <= len(tree) <= 8


def test_cost_curves_from_another_machine(tmp_path):
    flat = CostModel.from_curve_file("flat")
    assert flat.frozen and np.all(flat.cost == flat.cost[1])
    flat.observe(4, 1.0, alpha=0.5)  # this machine's timings say nothing about that one
    assert np.all(flat.cost == flat.cost[1])
    measured = CostModel.from_probes([1, 2, 4, 8, 16, 32], [0.01, 0.02, 0.03, 0.05, 0.09, 0.17])
    report = tmp_path / "report.json"  # the bench report's shape, and the curve alone
    report.write_text(json.dumps({"model": "x", "verify_cost_s": measured.as_dict()}))
    alone = tmp_path / "curve.json"
    alone.write_text(json.dumps({"1": 0.002, "8": 0.0021, "9": 0.004, "64": 0.005}))
    assert np.allclose(CostModel.from_curve_file(str(report)).cost, measured.cost)
    report.write_text(json.dumps({"verify_cost_s": measured.as_dict(), "verify_switch_s": 0.004}))
    with_switch = CostModel.from_curve_file(str(report))  # the rebuild after a batch too
    assert with_switch.switch == 0.004
    replayed = CostModel.from_curve_file(str(alone))
    assert replayed.frozen and replayed.cost[8] < 0.0022 and replayed.cost[9] == 0.004
    for text in ("{", "[1, 2]", '{"2": 0.01}', '{"1": -1}', '{"1": "x"}', '{"0": 0.01}'):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(CostCurveError):
            CostModel.from_curve_file(str(bad))
    with pytest.raises(CostCurveError, match="cannot read"):
        CostModel.from_curve_file(str(tmp_path / "missing.json"))


def test_online_cost_updates_follow_the_running_maximum_rule():
    """observe() blends a one-token step into c(1) and scales every batch size from two
    up by what one of them took, the table kept non-decreasing: it must equal doing
    just that and then taking the running maximum of the whole table."""
    rng = np.random.default_rng(3)
    c = CostModel.from_probes([1, 2, 4, 8, 16, 32], [0.01, 0.02, 0.03, 0.05, 0.09, 0.17])
    ref = c.cost.copy()
    last = 1
    for _ in range(2000):
        n = int(rng.integers(0, MAX_TREE + 3))
        seconds = float(rng.uniform(0.0, 0.4)) * (ref[n] / 0.1 if 2 <= n < len(ref) else 1.0)
        after_batch, last = last > 1, n
        if n == 1 and after_batch:
            pass  # the batch's rebuild: CostModel.switch, not c(1)
        elif n == 1 and seconds < 2.0 * ref[1]:  # c(1) falls and rises with its steps
            ref[0] = ref[1] = ref[1] + 0.3 * (seconds - ref[1])
            ref[:] = np.maximum.accumulate(ref)
        elif 2 <= n < len(ref) and seconds < 2.0 * ref[n]:
            ref[2:] *= 1.0 + 0.3 * (seconds / ref[n] - 1.0)
            ref[:] = np.maximum.accumulate(ref)
        c.observe(n, seconds, alpha=0.3)
        assert np.allclose(c.cost, ref, rtol=1e-12, atol=0)


def test_batches_dearer_than_measured_raise_every_batch_size_and_keep_the_shape():
    """Steps of 4 tokens that take 30% more than the table says raise every size from 2
    up by that much within a hundred steps; c(1) and the table's shape (a cliff
    included) stay as they were."""
    c = CostModel.from_probes([1, 2, 4, 8, 9, 32], [0.010, 0.018, 0.025, 0.038, 0.060, 0.1])
    before = c.cost.copy()
    for _ in range(100):
        c.observe(4, 1.3 * before[4])
    assert c.cost[1] == before[1]
    assert np.allclose(c.cost[2:] / before[2:], 1.3, rtol=0.01)
    assert c.cost[9] - c.cost[8] > 0.02  # the cliff survives
    for _ in range(200):  # much cheaper than measured: never below one token's cost
        c.observe(4, 0.2 * before[4])
    assert np.all(c.cost[2:] >= c.cost[1]) and np.all(np.diff(c.cost[1:]) >= 0)


def test_a_batch_is_charged_the_rebuild_of_the_one_token_step_after_it():
    """llama.cpp reuses a compute graph (on CUDA a captured one) while the batch shape
    stays the same: a one-token step after a batch costs more than one after one token.
    That excess is learned as CostModel.switch, which the drafter charges every draft;
    c(1) keeps following one-token steps in a row."""
    c = CostModel.from_probes([1, 2, 4, 8, 16, 32], [0.010, 0.018, 0.025, 0.038, 0.06, 0.1])
    before = c.cost.copy()
    for _ in range(50):
        c.observe(4, before[4])
        c.observe(1, before[1] + 0.004)  # rebuilding the one-token graph: 4 ms
        c.observe(1, before[1])
    assert c.switch == pytest.approx(0.004, rel=0.01)
    assert np.allclose(c.cost, before)
    c.observe(1, 0.5 * before[1])  # a one-token step in a row still moves c(1)
    assert c.cost[1] < before[1]
    for _ in range(50):  # no dearer after a batch (most CPUs): the switch fades
        c.observe(8, c.cost[8])
        c.observe(1, c.cost[1])
    assert c.switch < 1e-6


def test_the_drafter_charges_a_draft_its_switch():
    """A draft is dropped when the one-token step after its batch costs more than the draft
    could save; one that still pays keeps the size the table alone gave it."""
    from aded_chat.engine.draft.aded import AdedSpeculator

    text = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 30
    rows = {}
    for tokens in (0, 2, 100):  # the switch, in tokens' time
        flat = CostModel.flat(0.005)
        flat.switch = tokens * 0.005
        spec = AdedSpeculator(vocab=100, cost=flat, max_mb=1.0)
        spec.begin(text)
        rows[tokens] = len(spec.propose([9, 10], room=64))
    assert rows[0] == rows[2] > 8 and rows[100] == 1


def test_cost_roundtrip(tmp_path):
    c = CostModel.from_probes([1, 32], [0.01, 0.02])
    c.switch = 0.003
    c.save(tmp_path / "c.json")
    back = CostModel.load(tmp_path / "c.json")
    assert np.allclose(back.cost, c.cost) and back.switch == 0.003
    (tmp_path / "bad.json").write_text("{")
    assert CostModel.load(tmp_path / "bad.json") is None


def test_acceptance_learns_from_tested_nodes_only():
    a = AcceptanceModel()
    before = a.table.copy()
    #            root  1   2   3   4
    parents = np.array([-1, 0, 0, 1, 3], np.int32)
    depths = np.array([0, 1, 1, 2, 3], np.int32)
    tokens = np.array([7, 11, 12, 13, 14], np.int32)
    levels = np.zeros(5, np.int32)
    buckets = np.array([0, 9, 2, 5, 6], np.int32)
    for _ in range(50):  # the model emitted 11 then 99: node 1 kept, 2 and 3 rejected
        assert observe_tree(parents, depths, tokens, levels, buckets,
                            np.array([11, 99], np.int32), a.calib) == 3
    assert a.table[0, 9] > before[0, 9]
    assert a.table[0, 2] < before[0, 2]
    assert a.table[0, 5] < before[0, 5]  # node 3 was tested (parent 1 kept) and rejected
    assert a.calib.tried[0, 6] == PRIOR_WEIGHT  # node 4 never tested


def test_acceptance_learns_beyond_what_was_verified():
    """One emitted token (a plain step) tests only depth 1; three test a whole branch,
    whether or not the drafter had kept it for verification."""
    parents = np.array([-1, 0, 1, 2], np.int32)
    depths = np.array([0, 1, 2, 3], np.int32)
    tokens = np.array([7, 11, 12, 13], np.int32)
    levels = np.array([0, 0, 1, 2], np.int32)
    buckets = np.array([0, 3, 3, 3], np.int32)
    a = AcceptanceModel()
    assert observe_tree(parents, depths, tokens, levels, buckets,
                        np.array([11], np.int32), a.calib) == 1
    assert a.calib.tried[1, 3] == PRIOR_WEIGHT
    assert observe_tree(parents, depths, tokens, levels, buckets,
                        np.array([11, 12, 13], np.int32), a.calib) == 3
    w = PRIOR_WEIGHT
    assert np.isclose(a.calib.tried[0, 3], (w * DECAY + 1) * DECAY + 1)  # tested twice
    for lv in (1, 2):
        assert np.isclose(a.calib.tried[lv, 3], w * DECAY + 1)  # tested once, and kept
        assert a.table[lv, 3] > AcceptanceModel().table[lv, 3]


def test_acceptance_follows_recent_evidence():
    """Old evidence fades: after a long run of hits, a shorter run of misses wins."""
    parents, depths = np.array([-1, 0], np.int32), np.array([0, 1], np.int32)
    tokens, levels, buckets = (np.array([7, 11], np.int32), np.zeros(2, np.int32),
                               np.array([0, 5], np.int32))
    a = AcceptanceModel()
    for _ in range(300):
        observe_tree(parents, depths, tokens, levels, buckets, np.array([11], np.int32), a.calib)
    assert a.table[0, 5] > 0.95
    for _ in range(40):
        observe_tree(parents, depths, tokens, levels, buckets, np.array([12], np.int32), a.calib)
    assert a.table[0, 5] < 0.5


def test_a_projection_charges_each_batch_the_curve_s_switch():
    """Projected on another machine's curve, an answer's steps cost c(batch) each, and a
    batch also the one-token step after it (CostModel.switch): two plain steps and one
    batch of 3 that kept all three tokens (after the prompt's first token)."""
    from aded_chat.engine.decode.stats import AnswerStats, projected_speedup

    st = AnswerStats(speculative=True, tokens=6, steps=3, batches_per_step=[(1, 0), (3, 0),
                                                                          (1, 0)],
                     host_cpu_s_per_step=[0.0, 0.0, 0.0])
    curve = CostModel.flat(0.01)
    assert projected_speedup(st, curve) == pytest.approx(5 / 3)
    curve.switch = 0.01  # the step after the batch cost a token more
    assert projected_speedup(st, curve) == pytest.approx(5 / 4)


def test_a_steady_batch_costs_the_same_up_to_its_rows_and_is_never_outgrown():
    steady = CostModel.steady(4, 0.002)
    assert steady.frozen and steady.switch == 0.0
    assert np.all(steady.cost[:5] == 0.002) and np.all(steady.cost[5:] > 2 * 0.002)
    steady.observe(4, 0.02, alpha=0.5)  # every step is that batch: nothing to learn
    assert steady.cost[4] == 0.002
    for rows in (1, 0, MAX_TREE + 1):
        with pytest.raises(CostCurveError):
            CostModel.steady(rows, 0.002)
