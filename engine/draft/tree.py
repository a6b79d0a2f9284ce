"""The draft tree: plain data between the drafter and the verifier.

Node 0 is the root: the newest token the model chose, not yet in the KV cache. Every
other node is a drafted token whose parent comes before it. The verifier needs, for each
node, the KV sequences it belongs to: one sequence per leaf, a node in the sequences of
every leaf below it, so each branch attends only to its own ancestors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# Tokens in one verification batch, root included. The context is created with as many
# KV sequences (one per leaf; a tree of n nodes has at most n - 1 leaves) and the cost
# curve is measured up to this size. Below 64: from 64 rows on, llama.cpp's CPU matmul
# takes another path, and even at one thread a batch's logits then differ from one
# token's (SmolLM2 Q4_1: by up to 0.93; 63 rows and fewer: bit-identical).
MAX_TREE = 63


@dataclass
class DraftTree:
    tokens: np.ndarray  # int32 [n]
    parents: np.ndarray  # int32 [n], -1 for the root
    depths: np.ndarray  # int32 [n], 0 for the root
    probs: np.ndarray  # float32 [n], drafter's probability that the path to the node is kept
    _children: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)
    # batch_layout(), when the drafter has already computed it (engine.draft.mcts)
    layout: tuple | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # (.tolist() first: a comprehension over NumPy scalars costs ~1 us a node, which a
        # 63-node tree on a GPU's step budget of a few ms cannot spare)
        keys = zip(self.parents[1:].tolist(), self.tokens[1:].tolist(), strict=True)
        self._children = dict(zip(keys, range(1, len(self.tokens)), strict=True))

    @classmethod
    def root_only(cls, token: int) -> DraftTree:
        return cls(np.array([token], np.int32), np.array([-1], np.int32),
                   np.zeros(1, np.int32), np.ones(1, np.float32))

    def __len__(self) -> int:
        return len(self.tokens)

    def child(self, node: int, token: int) -> int:
        """Index of node's child holding token, or -1."""
        return self._children.get((node, token), -1)

    def check(self) -> None:
        """Invariants every drafter must keep (used by tests)."""
        n = len(self)
        assert self.parents[0] == -1 and self.depths[0] == 0
        for i in range(1, n):
            p = int(self.parents[i])
            assert 0 <= p < i, "parents come before children"
            assert self.depths[i] == self.depths[p] + 1
        assert len(self._children) == n - 1, "siblings hold distinct tokens"

    def leaves(self) -> int:
        has_child = np.zeros(len(self), np.bool_)
        has_child[self.parents[1:]] = True
        return int(len(self) - np.count_nonzero(has_child))

    def within(self, max_leaves: int) -> DraftTree:
        """This tree, or its longest prefix with at most max_leaves leaves (a prefix is a
        tree: parents come first). The drafter already keeps to the limit; this is the
        verifier's guarantee that no tree needs more KV sequences than the context has."""
        if max_leaves < 1:
            raise ValueError("a tree needs at least one KV sequence")
        if len(self) - 1 <= max_leaves or self.leaves() <= max_leaves:
            return self  # (a tree of n nodes has at most n - 1 leaves: most need no count)
        has_child = np.zeros(len(self), np.bool_)
        leaves, k = 1, 1
        while k < len(self):
            p = int(self.parents[k])
            if has_child[p]:
                if leaves == max_leaves:
                    break
                leaves += 1
            has_child[p] = True
            k += 1
        return DraftTree(self.tokens[:k], self.parents[:k], self.depths[:k], self.probs[:k])

    def padded(self, n: int) -> DraftTree:
        """This tree grown to n nodes by a chain below its last node (always a leaf:
        children come after their parents), each link repeating that node's token. A
        steady batch (engine.decode.verify) verifies every step with the same rows, so
        that a GPU replays one captured graph; the padding is verified like any draft
        and is rarely kept. It adds no leaf, so no KV sequence."""
        k = n - len(self)
        if k <= 0:
            return self
        last = len(self) - 1
        return DraftTree(
            np.concatenate([self.tokens, np.full(k, self.tokens[last], np.int32)]),
            np.concatenate([self.parents, np.arange(last, last + k, dtype=np.int32)]),
            np.concatenate([self.depths, self.depths[last] + np.arange(1, k + 1,
                                                                     dtype=np.int32)]),
            np.concatenate([self.probs, np.zeros(k, np.float32)]))

    def sequences(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(seq_ids [n, L], n_seq [n], leaf_seq [n]): KV sequence membership per node,
        one sequence per leaf; leaf_seq[i] is one sequence that passes through node i."""
        n = len(self)
        has_child = np.zeros(n, np.bool_)
        has_child[self.parents[1:]] = True
        leaves = np.flatnonzero(~has_child)
        member = np.zeros((n, len(leaves)), np.bool_)
        cols = np.arange(len(leaves))
        node = leaves
        for _ in range(int(self.depths.max()) + 1):  # every leaf climbs to the root at once
            member[node, cols] = True
            node = np.maximum(self.parents[node], 0)  # the root stays the root
        n_seq = member.sum(axis=1).astype(np.int32)
        seq_ids = np.argsort(~member, axis=1, kind="stable").astype(np.int32)
        return seq_ids, n_seq, seq_ids[:, 0].copy()

    def batch_layout(self, every: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                 np.ndarray, int]:
        """(seq_ids [n, every], n_seq [n], leaf_seq [n], trunk [n], leaves): KV sequence
        membership for a batch whose `every` sequences all hold the conversation. The
        trunk (the nodes above every leaf) goes into all of them, so that once kept it
        needs no copying; any other node into its leaves' sequences (sequences()).
        Needs leaves <= every."""
        if self.layout is not None and self.layout[0].shape[1] == every:
            return self.layout
        seq_ids, n_seq, leaf_seq = self.sequences()
        leaves = seq_ids.shape[1]
        trunk = n_seq == leaves
        full = np.empty((len(self), every), np.int32)
        full[:] = np.arange(every, dtype=np.int32)
        full[:, :leaves] = seq_ids
        return full, np.where(trunk, every, n_seq).astype(np.int32), leaf_seq, trunk, leaves


def accept_walk(
    tree: DraftTree,
    sample_at: Callable[[int], int],
    is_stop: Callable[[int], bool],
    max_emit: int,
    trusted: Callable[[int], bool] | None = None,
) -> tuple[list[int], list[int]]:
    """Walk from the root, drawing the model's token at each node and descending while a
    child holds it. Returns (emitted tokens, path of nodes whose tokens are now verified).

    Every emitted token is the model's own draw at its verification logits, so the text
    is what plain decoding draws from the same logits and sampler state. When `trusted`
    says no for a node, the walk stops there without drawing: the path then ends one node
    beyond the emitted tokens, and that node's successor is left to a later decode.
    """
    node = 0
    emitted: list[int] = []
    path = [0]
    while len(emitted) < max_emit:
        if trusted is not None and not trusted(node):
            break
        tok = sample_at(node)
        emitted.append(tok)
        if is_stop(tok):
            break
        nxt = tree.child(node, tok)
        if nxt < 0 or len(emitted) >= max_emit:
            break
        node = nxt
        path.append(nxt)
    return emitted, path
