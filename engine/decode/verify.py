"""One verification step: the whole draft tree in one llama_decode, then the KV cache
trimmed to the branch the model kept. Knows nothing of how the tree was made.

On a CPU, llama.cpp (0.3.36's) computes a batch of the embedded model with the same
arithmetic as one token but for one kernel: with two or more threads, a single token's
flash attention over 512 or more cache cells is split across the threads and the parts
are summed in another order (ggml-cpu ops.cpp, use_split_kv_path). (K-quant weights
also change matmul kernels at eight tokens.) Past 256 cached tokens a batch's logits
then differ from plain decoding's in the last bits (up to ~1.8), and so do the cache
entries a batch writes (BENCHMARKS.md). Where greedy decoding's top two logits nearly
tie, that can flip the choice; with `tie_gap` set, the walk stops before such a node
and leaves its successor to a one-token decode, as plain decoding would compute it.
The cache's cells are kept in position order, as plain decoding writes them, because
attention sums over cells in cell order (_restore_cell_order); with one thread the
speculative text is then plain decoding's, token for token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..draft.tree import DraftTree, accept_walk
from ..llama.backend import LlamaBackend
from ..llama.sampling import Sampler

# What copying kept nodes below a branching into every other KV sequence costs: one
# llama_memory_seq_cp per sequence, each a pass over all the cache's cells (and a
# seq_rm per leaf before them): 0.18 ms a step on a 4096-cell context with 62
# sequences on the flat curve (BENCHMARKS.md, session 7).
COPY_S = 2e-4


@dataclass
class Verified:
    emitted: list[int]  # the model's tokens, in order
    kept: int  # tree nodes now kept (the root first): in the cache, or in `behind`
    accepted: int  # drafted tokens the model agreed with
    decode_s: float  # seconds inside llama_decode
    tie: bool  # stopped at a near-tie: the next step must decode one token alone
    nodes: int  # tree nodes evaluated (the root included)
    redecoded: int  # kept tokens evaluated again, in a decode of their own
    carried: int = 0  # the last step's `behind` tokens, evaluated first in this batch
    # the last kept tokens, taken out of the cache to keep its cells in position order:
    # the next batch evaluates them first (_restore_cell_order)
    behind: list[int] = field(default_factory=list)


def top2(row: np.ndarray) -> tuple[int, float]:
    """The argmax and the top logit minus the runner-up (0 for an exact tie). Sets the
    maximum aside for a second max instead of sorting: two passes over the row."""
    i = int(row.argmax())
    top = row[i]
    row[i] = -np.inf
    second = row.max()
    row[i] = top
    return i, float(top - second)


def top2_gap(row: np.ndarray) -> float:
    return top2(row)[1]


def verify_tree(
    backend: LlamaBackend,
    tree: DraftTree,
    n_past: int,
    sampler: Sampler,
    max_emit: int,
    logit_gaps: list[float] | None = None,
    tie_gap: float = 0.0,
    behind: list[int] | None = None,
    row_s: float | None = None,
    steady_rows: int = 0,
) -> Verified:
    """Evaluate `behind` at positions n_past.. and the tree after them, in one batch;
    walk the tree and trim the cache to the kept branch. A node whose top-2 logit gap is
    below tie_gap (for greedy decoding of a batch) ends the walk before its successor is
    drawn; that node is then emitted (its parent chose it) but not kept, so it is the
    next step's root.

    On return every sequence holds `behind`, the root and the kept drafted tokens, but
    for the last kept tokens when they are returned in Verified.behind for the next
    batch. Kept nodes below a branching are copied into every sequence, unless
    `row_s` (what a batch row costs, seconds) says evaluating them again at the head
    of the next batch is cheaper than COPY_S.
    A tree with more leaves than the context has KV sequences is cut to a prefix that
    fits.

    With `steady_rows`, every batch has exactly that many rows, each asking for its
    logits: the tree is padded (DraftTree.padded), and a step that drafts nothing is a
    padded batch too. A GPU then replays one captured compute graph every step: llama.cpp's
    CUDA backend captures a graph only once two batches in a row have the same shape, so
    a batch between one-token steps runs uncaptured, and so do the one-token step after
    it and the capture after that (ggml-cuda.cu, ggml_backend_cuda_graph_compute). Not
    padded where the context has no room for the rows."""
    if len(tree) == 1 and not behind and max_emit > 0 and not steady_rows:
        return _plain_step(backend, int(tree.tokens[0]), n_past, sampler, logit_gaps)
    tree = tree.within(backend.n_seq_max)
    b = len(behind) if behind else 0
    start = n_past + b  # the root's position
    if steady_rows and start + steady_rows - b <= backend.n_ctx:
        tree = tree.padded(steady_rows - b)
    n = len(tree)
    seq_ids = n_seq = leaf_seq = trunk = None
    n_leaves, every = 1, backend.n_every
    if n > 1:  # one sequence per leaf; the committed text is already in all of them
        # (the trunk goes into every sequence: kept, it needs no copying afterwards)
        seq_ids, n_seq, leaf_seq, trunk, n_leaves = tree.batch_layout(every)
    t0 = time.perf_counter()
    # `behind` goes into every sequence, as the root does; logits of the tree's nodes
    # only: row i is node i, batch entry b + i
    logits = backend.decode_tree(tree.tokens, tree.depths, start, seq_ids, n_seq,
                                 np.asarray(behind, np.int32) if b else None,
                                 every_row=steady_rows > 0)
    decode_s = time.perf_counter() - t0
    if logit_gaps is not None:  # diagnostics: how close the root's top two logits are
        logit_gaps.append(top2_gap(logits[0]))

    trusted = None
    argmax: dict[int, int] = {}  # the near-tie check's argmax, which greedy draws reuse
    if tie_gap > 0 and n > 1:
        def trusted(node: int) -> bool:
            argmax[node], gap = top2(logits[node])
            return gap >= tie_gap
    emitted, path = accept_walk(
        tree, lambda node: sampler.sample(b + node, logits[node], argmax.get(node)),
        backend.is_eog, max_emit, trusted,
    )
    kept = len(emitted)  # the path, less a node the walk stopped at
    tie = kept < len(path)
    # Drop every node deeper than the kept path, in one seq_rm (each walks every cell):
    # from the first branching on where those kept nodes are evaluated again instead.
    # The trunk (the root and the nodes above every leaf, alone at their depth) is in
    # every sequence already; kept nodes below it leave their siblings' sequences and
    # are copied into every other sequence.
    branched = kept
    if n > 1 and kept > 1:
        branched = next((d for d in range(1, kept) if not trunk[path[d]]), kept)
        if branched < kept and not tie and row_s is not None and (
                row_s * (kept - branched) < COPY_S):
            backend.kv_remove(-1, start + branched, -1)
            left = tree.tokens[np.asarray(path[branched:kept])].tolist()
            return Verified(emitted, kept, len(path) - 1, decode_s, tie, n, 0, b, left)
    if kept < n:  # (a chain kept whole, a plain step's root included, left nothing after it)
        backend.kv_remove(-1, start + kept, -1)
    if branched < kept:
        s = int(leaf_seq[path[-1]])  # a leaf below the whole kept path
        lo, hi = start + branched, start + kept
        for x in range(n_leaves):
            if x != s:
                backend.kv_remove(x, lo, hi)
        for x in range(every):
            if x != s:
                backend.kv_copy(s, x, lo, hi)
    redecoded, left = 0, []
    if n_leaves > 1:  # (a chain's kept nodes are always its first entries)
        # After a near-tie the next step decodes its root alone, as plain decoding
        # does; evaluate the out-of-order tokens now rather than in that batch.
        redecoded, left, secs = _restore_cell_order(backend, tree, path[:kept], start,
                                                    defer=not tie)
        decode_s += secs
    return Verified(emitted, kept, len(path) - 1, decode_s, tie, n, redecoded, b, left)


def _plain_step(backend: LlamaBackend, root: int, n_past: int, sampler: Sampler,
                logit_gaps: list[float] | None) -> Verified:
    """A tree that is its root alone: one token decoded and drawn, as plain decoding
    does. The commonest step on a CPU (and every step without a drafter), so it skips
    the tree's batch layout and walk: a small model decodes a token in a few ms, and
    their Python work was a few percent of that."""
    t0 = time.perf_counter()
    row = backend.decode_one(root, n_past)
    decode_s = time.perf_counter() - t0
    if logit_gaps is not None:
        logit_gaps.append(top2_gap(row))
    return Verified([sampler.sample(0, row)], 1, 0, decode_s, False, 1, 0)


def _restore_cell_order(backend: LlamaBackend, tree: DraftTree, kept_path: list[int],
                        n_past: int, defer: bool) -> tuple[int, list[int], float]:
    """Keep the cache's cells in position order; returns (tokens evaluated again, tokens
    left for the next batch, seconds it took).

    llama.cpp gives a batch's entries cells in batch order, and a later token takes the
    first free cell. When the kept branch is not the batch's first entries (a sibling
    that came earlier was rejected), its cells sit after a freed one, and the next token
    would fill that hole *before* them. Attention sums over cells in cell order, so the
    logits would then differ in the last bits from plain decoding's, which writes every
    cell in order (BENCHMARKS.md). So the kept tokens after the first hole are taken out
    and evaluated again, in order, into the cells from the hole on: with `defer`, at the
    head of the next step's batch (where a GPU verifies a batch for about the price of
    one token, a decode of their own would cost a whole step), else now."""
    gap = next((i for i, node in enumerate(kept_path) if node != i), len(kept_path))
    if gap == len(kept_path):
        return 0, [], 0.0
    backend.kv_remove(-1, n_past + gap, -1)
    tokens = tree.tokens[np.asarray(kept_path[gap:])]
    if defer:
        return 0, tokens.tolist(), 0.0
    t0 = time.perf_counter()
    backend.decode(tokens, np.arange(n_past + gap, n_past + len(kept_path), dtype=np.int32))
    return len(tokens), [], time.perf_counter() - t0
