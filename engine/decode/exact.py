"""Whether this context computes a verification batch exactly as it computes one token.

Greedy verification guards near-ties (engine.decode.verify): where a batch's logits may
differ from plain decoding's in the last bits, a node whose top two logits nearly tie
ends the walk and its successor is left to a one-token decode. That guard is exactness
bought with speed: on a flat, GPU-like curve it cost 15% of the tokens per step (the
repo's 20 prompts: 2.87 -> 2.43), every tie a whole step for one token. Where batches
are computed bit for bit as single tokens are, it buys nothing, so it is dropped there.

Which contexts those are is read from llama.cpp (BENCHMARKS.md, "Where a batch's logits
differ"): on a CPU, an F16 cache with two or more threads splits a single token's
flash attention over 512+ cells across the threads (a batch never splits), so it is
never exact past 256 cached tokens; the weights decide the rest (K-quant and Q4_0 models
switch to a tiled matmul for batches of eight rows and more: Qwen2.5-Coder-0.5B Q4_K_M
is bit-exact up to seven rows and off by up to 0.45 in a logit from eight, more than
the guard's gap, so the guard alone let 3 of 20 greedy answers drift). The weights'
part is measured: a chain of tokens decoded one at a time and then in batches of the
sizes a tree uses, after a context past the 256-cell boundary, every logit compared bit
for bit; the answer is the largest batch that is exact, and greedy decoding keeps its
batches within it (engine.decode.session). A GPU's batch kernels differ from one
token's; it keeps the guard unprobed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..draft.tree import MAX_TREE
from ..llama import kernels
from ..llama.backend import LlamaBackend, kv_cache_tag
from ..llama.models import file_identity

PROBE_CONTEXT = 272  # past the 256-cell boundary at which the KV view grows
# every size up to the kernels' switch at eight rows, then the sizes wide trees use
PROBE_SIZES = (2, 3, 4, 5, 6, 7, 8, 9, 16, 32, MAX_TREE)
PROBE_VERSION = 2


def splits_single_token_attention(backend: LlamaBackend) -> bool:
    """An F16 cache with two or more threads: one token's attention is summed in another
    order than a batch's once the cache passes 256 cells."""
    return backend.info.kv_cache == "f16" and backend.n_threads > 1


def probe(backend: LlamaBackend) -> int:
    """The largest batch (in rows) that gives each row exactly the logits decoding its
    tokens one at a time gives, every smaller PROBE_SIZES size exact too (a size between
    two probed ones counts as the smaller); 1 where no batch is exact. Leaves the cache
    empty."""
    if backend.info.gpu_layers > 0 or splits_single_token_attention(backend):
        return 1
    rng = np.random.default_rng(0)
    vocab = backend.n_vocab
    context = rng.integers(0, vocab, PROBE_CONTEXT, dtype=np.int32)
    chain = rng.integers(0, vocab, max(PROBE_SIZES), dtype=np.int32)
    try:
        backend.kv_clear()
        backend.prefill(list(context), 0)
        single = np.empty((len(chain), vocab), np.float32)
        for i, tok in enumerate(chain):
            pos = PROBE_CONTEXT + i
            single[i] = backend.decode(np.array([tok], np.int32), np.array([pos], np.int32))[0]
        exact = 1
        for size in PROBE_SIZES:
            backend.kv_remove(-1, PROBE_CONTEXT, -1)
            rows = backend.decode(chain[:size],
                                  np.arange(PROBE_CONTEXT, PROBE_CONTEXT + size, dtype=np.int32),
                                  logits=np.ones(size, np.int8))
            if not np.array_equal(rows, single[:size]):
                return exact
            exact = size
        return exact
    finally:
        backend.kv_clear()


def load_or_probe(backend: LlamaBackend, cache: Path | None) -> int:
    """The cached answer for this model file, threads, offload and KV cache type, else a
    fresh probe (3 seconds on the embedded model on two CPU cores), saved for the next
    start."""
    path = None
    if cache is not None:
        info = backend.info
        path = cache / (f"exact{PROBE_VERSION}-{file_identity(Path(info.model_path))}"
                        f"-t{backend.n_threads}-g{info.gpu_layers}-kv{kv_cache_tag(info.kv_cache)}"
                        f"{kernels.cache_tag()}.json")
        try:
            rows = int(json.loads(path.read_text())["exact_rows"])
            if 1 <= rows <= MAX_TREE:
                return rows
        except (OSError, ValueError, KeyError, TypeError):
            pass
    rows = probe(backend)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"exact_rows": rows}))
        except OSError:
            pass
    return rows
