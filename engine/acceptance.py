"""How often drafts of a given estimated probability are accepted: the other half of the
cost-aware budget (engine.cost is the first). With both, the drafter keeps the tree size
(zero included) that maximises expected tokens per second.
"""

from __future__ import annotations

import numpy as np

from engine.mcts import N_BUCKETS, N_LEVELS


class AcceptanceModel:
    """Calibration from the drafter's conditional probability (by back-off level and
    bucket) to the observed chance the model accepts a node whose parent it accepted.
    Starts from the drafter's own estimate (a Beta prior worth a few observations)."""

    PRIOR_WEIGHT = 4.0

    def __init__(self) -> None:
        centers = (np.arange(N_BUCKETS) + 0.5) / N_BUCKETS
        scale = np.array([1.0, 0.5, 0.5, 0.2])[:, None]  # weak and back-off rows
        self.tried = np.full((N_LEVELS, N_BUCKETS), self.PRIOR_WEIGHT)
        self.kept = self.tried * centers[None, :] * scale
        self.table = self.kept / self.tried

    def observe(self, parents: np.ndarray, levels: np.ndarray, buckets: np.ndarray,
                path: list[int]) -> None:
        """Nodes whose parent was accepted were tested; those on the path were kept."""
        on_path = np.zeros(len(parents), np.bool_)
        on_path[path] = True
        for node in range(1, len(parents)):  # at most MAX_TREE nodes: cheaper than add.at
            if on_path[parents[node]]:
                lv, bk = levels[node], buckets[node]
                self.tried[lv, bk] += 1.0
                self.kept[lv, bk] += on_path[node]
                self.table[lv, bk] = self.kept[lv, bk] / self.tried[lv, bk]
