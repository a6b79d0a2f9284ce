"""How often drafts of a given estimated probability are accepted: the other half of the
cost-aware budget (engine.draft.cost is the first). With both, the drafter keeps the tree size
(zero included) that maximises expected tokens per second.

The calibration learns from the whole searched tree, not only from what was verified:
the tokens the model emitted say whether every searched node whose parent lies on the
emitted path would have been accepted, drafted or not. A step that decodes plainly
therefore still tests the drafter's best guesses, so a calibration that once turned
pessimistic (and stopped drafting) sees when drafts would pay again.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

from .mcts import (
    ARCHIVE_COPY_LEVEL,
    COPY_LEVEL,
    N_BUCKETS,
    N_LEVELS,
    OWN_COPY_LEVEL,
    RENAMED_COPY_LEVEL,
)

# Each observation discounts a cell's earlier ones by this factor: a cell remembers about
# its last 30 tests, so the calibration follows the conversation (copying pasted code,
# then free prose) instead of averaging over everything since the model was loaded.
DECAY = 0.97


class Calibration(NamedTuple):
    """The acceptance calibration as the Numba kernels take it (AcceptanceModel owns it):
    per back-off level and probability bucket, decayed counts of tested and kept nodes,
    and their ratio, the chance the model accepts such a node."""

    tried: np.ndarray  # float64 [N_LEVELS, N_BUCKETS]
    kept: np.ndarray  # float64 [N_LEVELS, N_BUCKETS]
    table: np.ndarray  # float64 [N_LEVELS, N_BUCKETS]: kept / tried


@nb.njit(cache=True)
def observe_tree(parents, depths, tokens, levels, buckets, emitted, calib):
    """Count each node (parents before children) whose parent is on the emitted path and
    whose depth the emitted tokens reach as tested; those holding the emitted token there
    as kept. Returns the number of nodes tested."""
    tried, kept, table = calib.tried, calib.kept, calib.table
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


# Where each back-off level's calibration starts: the drafter's own estimate, scaled.
# A well-supported tri-gram row and a copy are taken at their word; a row seen once and
# the bigram back-off at half of it (a context seen once says "100%" far more often than
# it is right); the unigram back-off at a fifth (it knows nothing of the context).
LEVEL_TRUST = (1.0, 0.5, 0.5, 0.2, 1.0, 1.0, 1.0, 1.0)
# Copies start from their match length instead (engine.draft.lookup.match_bucket: 3,
# 4-5, 6-8, 9-15, 16+ tokens matched, then the same with the tri-gram agreeing): a
# 3-token match is often chance, a long one nearly always the text being copied.
COPY_PRIOR = (0.3, 0.45, 0.6, 0.75, 0.85, 0.5, 0.65, 0.8, 0.9, 0.95)
OWN_COPY_TRUST = 0.8  # an answer repeating itself strays from the copy more than a paste
RENAMED_COPY_TRUST = 0.8  # ... and a renaming may stop where the copy goes on
ARCHIVE_COPY_TRUST = 0.8  # an earlier answer to a like request parts from this one sooner
PRIOR_WEIGHT = 4.0  # the starting estimate counts as this many observations (a Beta prior)


class AcceptanceModel:
    """Calibration from the drafter's conditional probability (by back-off level and
    bucket) to the observed chance the model accepts a node whose parent it accepted."""

    def __init__(self) -> None:
        centers = (np.arange(N_BUCKETS) + 0.5) / N_BUCKETS
        tried = np.full((N_LEVELS, N_BUCKETS), PRIOR_WEIGHT)
        kept = tried * centers[None, :] * np.array(LEVEL_TRUST)[:, None]
        copies = np.array(COPY_PRIOR)
        kept[COPY_LEVEL] = tried[COPY_LEVEL] * copies
        kept[OWN_COPY_LEVEL] = tried[OWN_COPY_LEVEL] * copies * OWN_COPY_TRUST
        kept[RENAMED_COPY_LEVEL] = tried[RENAMED_COPY_LEVEL] * copies * RENAMED_COPY_TRUST
        kept[ARCHIVE_COPY_LEVEL] = tried[ARCHIVE_COPY_LEVEL] * copies * ARCHIVE_COPY_TRUST
        self.calib = Calibration(tried, kept, kept / tried)

    @property
    def table(self) -> np.ndarray:
        """The calibrated chance of acceptance per (level, bucket)."""
        return self.calib.table

    def snapshot(self) -> tuple:
        return self.calib.tried.copy(), self.calib.kept.copy()

    def restore(self, snap: tuple) -> None:
        tried, kept = snap
        self.calib.tried[...] = tried
        self.calib.kept[...] = kept
        self.calib.table[...] = kept / tried
