"""A verification batch written into llama_batch's buffers in one compiled call.

With the drafter's trees as wide as a GPU affords (tens of rows), building the batch with
NumPy took a dozen calls a step (positions from depths, the tokens carried from the last
step joined in front, sequence lists broadcast, flags set), each tens of microseconds with
the caches cold from the step's other work (BENCHMARKS.md, session 21).
"""

from __future__ import annotations

import numba as nb


@nb.njit(cache=True)
def fill_tree_batch(b_tok, b_pos, b_nseq, b_seq, b_logits, behind, n_behind, tokens, depths,
                    seq_ids, n_seq, start, every, behind_logits):
    """Rows 0..n_behind-1: behind[:n_behind] at positions start-n_behind.., in every
    sequence, asking for logits only with behind_logits; then the tree's nodes at
    start + depth, in seq_ids[i, :n_seq[i]], each asking for its logits. Returns the
    batch's entries."""
    b = n_behind
    for i in range(b):
        b_tok[i] = behind[i]
        b_pos[i] = start - b + i
        b_nseq[i] = every
        for s in range(every):
            b_seq[i, s] = s
        b_logits[i] = behind_logits
    width = seq_ids.shape[1]
    for j in range(tokens.shape[0]):
        r = b + j
        b_tok[r] = tokens[j]
        b_pos[r] = start + depths[j]
        b_nseq[r] = n_seq[j]
        for s in range(width):
            b_seq[r, s] = seq_ids[j, s]
        b_logits[r] = 1
    return b + tokens.shape[0]
