"""Draft-tree invariants and the acceptance walk on hand-made logits."""

import numpy as np
from aded_chat.engine.draft.tree import DraftTree, accept_walk


def make_tree():
    #        0(root=5)
    #       /        \
    #   1(tok 7)    2(tok 8)
    #     |          /     \
    #   3(tok 9)  4(tok 7) 5(tok 6)
    return DraftTree(
        tokens=np.array([5, 7, 8, 9, 7, 6], np.int32),
        parents=np.array([-1, 0, 0, 1, 2, 2], np.int32),
        depths=np.array([0, 1, 1, 2, 2, 2], np.int32),
        probs=np.ones(6, np.float32),
    )


def argmax_sampler(logits):
    return lambda node: int(np.argmax(logits[node]))


def onehot(rows, vocab=12):
    out = np.full((len(rows), vocab), -5.0)
    for i, t in enumerate(rows):
        out[i, t] = 3.0
    return out


def test_sequences_one_per_leaf():
    tree = make_tree()
    tree.check()
    seq_ids, n_seq, leaf_seq = tree.sequences()
    assert seq_ids.shape[1] == 3  # leaves 3, 4, 5
    assert n_seq.tolist() == [3, 1, 2, 1, 1, 1]
    members = [set(seq_ids[i, : n_seq[i]].tolist()) for i in range(6)]
    assert members[0] == {0, 1, 2}
    assert members[3] <= members[1] and members[4] | members[5] == members[2]
    assert members[4].isdisjoint(members[5])
    for i in range(6):
        assert leaf_seq[i] in members[i]


def test_walk_accepts_longest_agreeing_branch_plus_one():
    tree = make_tree()
    # root predicts 8 -> node 2; node 2 predicts 6 -> node 5; node 5 predicts 11
    logits = onehot([8, 0, 6, 0, 0, 11])
    emitted, path = accept_walk(tree, argmax_sampler(logits), lambda t: False, 100)
    assert emitted == [8, 6, 11]
    assert path == [0, 2, 5]


def test_walk_rejects_at_root():
    tree = make_tree()
    emitted, path = accept_walk(tree, argmax_sampler(onehot([3, 0, 0, 0, 0, 0])),
                                lambda t: False, 100)
    assert emitted == [3] and path == [0]


def test_walk_stops_on_end_of_generation_and_max_tokens():
    tree = make_tree()
    logits = onehot([7, 9, 0, 2, 0, 0])
    emitted, path = accept_walk(tree, argmax_sampler(logits), lambda t: t == 9, 100)
    assert emitted == [7, 9] and path == [0, 1]
    emitted, path = accept_walk(tree, argmax_sampler(logits), lambda t: False, 1)
    assert emitted == [7] and path == [0]


def test_root_only_is_plain_decoding():
    tree = DraftTree.root_only(4)
    tree.check()
    emitted, path = accept_walk(tree, lambda node: 10, lambda t: False, 5)
    assert emitted == [10] and path == [0]


def test_walk_stops_before_an_untrusted_node_without_drawing_there():
    tree = make_tree()
    logits = onehot([8, 0, 6, 0, 0, 11])
    drawn = []

    def sample(node):
        drawn.append(node)
        return int(np.argmax(logits[node]))

    emitted, path = accept_walk(tree, sample, lambda t: False, 100, trusted=lambda n: n != 5)
    assert emitted == [8, 6] and path == [0, 2, 5]  # node 5 verified, its successor not
    assert drawn == [0, 2]  # no draw at node 5: the sampler state is plain decoding's
    emitted, path = accept_walk(tree, sample, lambda t: False, 100, trusted=lambda n: n != 0)
    assert emitted == [] and path == [0]


def test_top2_gap():
    from aded_chat.engine.decode.verify import top2_gap

    row = np.array([0.5, 3.0, 2.75, -1.0], np.float32)
    assert abs(top2_gap(row) - 0.25) < 1e-6
    assert row[1] == 3.0  # the row is left as it was
    assert top2_gap(np.array([1.0, 4.0, 4.0], np.float32)) == 0.0


def test_within_cuts_to_the_longest_prefix_with_that_many_leaves():
    tree = make_tree()  # leaves 3, 4, 5
    assert tree.leaves() == 3
    assert tree.within(3) is tree
    two = tree.within(2)  # nodes 0-4: node 5 would be a third leaf
    two.check()
    assert len(two) == 5 and two.leaves() == 2
    one = tree.within(1)  # the root's second child would be a second leaf
    one.check()
    assert len(one) == 2 and one.leaves() == 1
    assert DraftTree.root_only(3).within(1).leaves() == 1


def test_padded_grows_a_chain_below_the_last_leaf_and_no_new_leaf():
    tree = make_tree()
    assert tree.padded(6) is tree and tree.padded(3) is tree
    big = tree.padded(9)
    big.check()
    assert len(big) == 9 and big.leaves() == tree.leaves()
    assert big.parents[6:].tolist() == [5, 6, 7]
    assert big.depths[6:].tolist() == [3, 4, 5]
    assert np.array_equal(big.tokens[:6], tree.tokens) and big.probs[6:].sum() == 0
    # a step with nothing drafted: the root and a chain, one sequence
    root = DraftTree.root_only(4).padded(4)
    root.check()
    assert root.parents.tolist() == [-1, 0, 1, 2] and root.leaves() == 1
    # the walk goes down the padding where the model agrees with it
    emitted, path = accept_walk(root, argmax_sampler(onehot([4, 4, 1, 9])), lambda t: False, 8)
    assert emitted == [4, 4, 1] and path == [0, 1, 2]
