"""How often drafts of a given estimated probability are accepted: the other half of the
cost-aware budget (engine.cost is the first). With both, the drafter keeps the tree size
(zero included) that maximises expected tokens per second.

The calibration learns from the whole searched tree, not only from what was verified:
the tokens the model emitted say whether every searched node whose parent lies on the
emitted path would have been accepted, drafted or not. A step that decodes plainly
therefore still tests the drafter's best guesses, so a calibration that once turned
pessimistic (and stopped drafting) sees when drafts would pay again.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .mcts import COPY_LEVEL, N_BUCKETS, N_LEVELS, OWN_COPY_LEVEL

# Each observation discounts a cell's earlier ones by this factor: a cell remembers about
# its last 30 tests, so the calibration follows the conversation (copying pasted code,
# then free prose) instead of averaging over everything since the model was loaded.
DECAY = 0.97


@nb.njit(cache=True)
def observe_tree(parents, depths, tokens, levels, buckets, emitted, tried, kept, table):
    """Count each node (parents before children) whose parent is on the emitted path and
    whose depth the emitted tokens reach as tested; those holding the emitted token there
    as kept. Returns the number of nodes tested."""
    n = parents.shape[0]
    on_path = np.zeros(n, np.bool_)
    on_path[0] = True
    tested = 0
    for i in range(1, n):
        d = depths[i]
        if not on_path[parents[i]] or d > emitted.shape[0]:
            continue
        hit = tokens[i] == emitted[d - 1]
        on_path[i] = hit
        lv, bk = levels[i], buckets[i]
        tried[lv, bk] = DECAY * tried[lv, bk] + 1.0
        kept[lv, bk] = DECAY * kept[lv, bk] + (1.0 if hit else 0.0)
        table[lv, bk] = kept[lv, bk] / tried[lv, bk]
        tested += 1
    return tested


class AcceptanceModel:
    """Calibration from the drafter's conditional probability (by back-off level and
    bucket) to the observed chance the model accepts a node whose parent it accepted.
    Starts from the drafter's own estimate (a Beta prior worth a few observations)."""

    PRIOR_WEIGHT = 4.0

    def __init__(self) -> None:
        centers = (np.arange(N_BUCKETS) + 0.5) / N_BUCKETS
        scale = np.array([1.0, 0.5, 0.5, 0.2, 1.0, 1.0])[:, None]  # weak, back-off rows
        self.tried = np.full((N_LEVELS, N_BUCKETS), self.PRIOR_WEIGHT)
        self.kept = self.tried * centers[None, :] * scale
        # copies, by the length of their match (a 3-token match is often chance) and
        # whether the tri-gram agrees (engine.lookup.match_bucket)
        copies = np.array([0.3, 0.45, 0.6, 0.75, 0.85, 0.5, 0.65, 0.8, 0.9, 0.95])
        self.kept[COPY_LEVEL] = self.tried[COPY_LEVEL] * copies
        self.kept[OWN_COPY_LEVEL] = self.tried[OWN_COPY_LEVEL] * copies * 0.8
        self.table = self.kept / self.tried

    def observe(self, parents: np.ndarray, depths: np.ndarray, tokens: np.ndarray,
                levels: np.ndarray, buckets: np.ndarray, emitted: np.ndarray) -> int:
        """Learn from a searched tree (node 0 the root) and the tokens the model emitted
        after the root; returns how many nodes that tested."""
        return observe_tree(parents, depths, tokens, levels, buckets, emitted,
                            self.tried, self.kept, self.table)
