"""One verification step: the whole draft tree in one llama_decode, then the KV cache
trimmed to the branch the model kept. Knows nothing of how the tree was made."""

from __future__ import annotations

import time

import numpy as np

from engine.backend import LlamaBackend
from engine.sampling import Sampler
from engine.tree import DraftTree, accept_walk


def verify_tree(
    backend: LlamaBackend,
    tree: DraftTree,
    n_past: int,
    sampler: Sampler,
    max_emit: int,
    logit_gaps: list[float] | None = None,
) -> tuple[list[int], int, float]:
    """Evaluate tree at positions n_past + depth; return (emitted tokens, number of
    tree nodes now kept in sequence 0 of the cache, seconds spent in llama_decode).

    On return the cache holds exactly the root and the accepted drafted tokens."""
    n = len(tree)
    positions = tree.depths + np.int32(n_past)
    seq_ids = n_seq = leaf_seq = None
    n_leaves = 1
    if n > 1:
        seq_ids, n_seq, leaf_seq = tree.sequences()
        n_leaves = seq_ids.shape[1]
        for s in range(1, n_leaves):  # every branch attends to the whole context
            backend.kv_copy(0, s, -1, -1)
    t0 = time.perf_counter()
    logits = backend.decode(tree.tokens, positions, seq_ids=seq_ids, n_seq=n_seq,
                            logits=np.ones(n, np.int8))
    decode_s = time.perf_counter() - t0
    if logit_gaps is not None:  # diagnostics: how close the root's top two logits are
        top2 = np.partition(logits[0], -2)[-2:]
        logit_gaps.append(float(top2[1] - top2[0]))

    ctx = backend.ctx_ptr
    emitted, path = accept_walk(
        tree, lambda node: sampler.sample(ctx, node, logits[node]), backend.is_eog, max_emit
    )
    kept = len(path)
    if n_leaves > 1:  # keep the accepted branch's sequence, renamed to 0
        s = int(leaf_seq[path[-1]])
        if s != 0:
            backend.kv_keep(s)
            backend.kv_copy(s, 0, -1, -1)
        backend.kv_keep(0)
    backend.kv_remove(0, n_past + kept, -1)
    return emitted, kept, decode_s
