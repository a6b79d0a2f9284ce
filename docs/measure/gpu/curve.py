"""Measure a verification cost curve c(1..MAX_TREE): seconds per llama_decode of n tokens
(logits for all n) after a context of --context tokens, every size, the minimum of
--reps, and what one token costs more right after a batch (CostModel.switch). Writes the
JSON that `--cost-curve FILE` reads (seconds per batch size under "verify_cost_s", the
switch under "verify_switch_s"), with what produced it.

    python docs/measure/gpu/curve.py --model M.gguf --out curve.json [--sizes 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
from aded_chat.engine.draft.cost import CostModel, measure_switch
from aded_chat.engine.draft.tree import MAX_TREE
from aded_chat.engine.llama.backend import LlamaBackend


def measure(backend: LlamaBackend, sizes: list[int], context: int, reps: int) -> dict:
    backend.kv_clear()
    filler = max(backend.bos, 0)
    backend.prefill([filler] * context, 0)
    secs = {}
    for n in sizes:
        toks = np.full(n, filler, np.int32)
        pos = np.arange(context, context + n, dtype=np.int32)
        runs = []
        for _ in range(reps + 1):  # the first run of a size warms its kernels up
            t0 = time.perf_counter()
            backend.decode(toks, pos, logits=np.ones(n, np.int8))
            runs.append(time.perf_counter() - t0)
            backend.kv_remove(-1, context, -1)
        secs[str(n)] = float(min(runs[1:]))
    switch = measure_switch(backend, context, reps)
    after = steps_after_batch(backend, context, reps)
    backend.kv_clear()
    return secs, switch, after


def steps_after_batch(backend: LlamaBackend, context: int, reps: int, steps: int = 4
                      ) -> list[float]:
    """Seconds of each of the `steps` one-token steps after a batch of four, the median of
    reps. llama.cpp's CUDA backend captures a graph only once two batches in a row have
    the same shape, so after a batch the first step should run uncaptured, the second
    capture, and the rest replay (the case for --steady-batch); a CPU shows them level."""
    tok = max(backend.bos, 0)
    for _ in range(3):  # one-token steps first: the graph captured
        backend.decode_one(tok, context)
        backend.kv_remove(-1, context, -1)
    runs = []
    for _ in range(reps):
        backend.decode(np.full(4, tok, np.int32), np.arange(context, context + 4,
                                                            dtype=np.int32))
        backend.kv_remove(-1, context, -1)
        row = []
        for _ in range(steps):
            t0 = time.perf_counter()
            backend.decode_one(tok, context)
            row.append(time.perf_counter() - t0)
            backend.kv_remove(-1, context, -1)
        runs.append(row)
    return [float(x) for x in np.median(np.asarray(runs), axis=0)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sizes", help="comma-separated (default: every size 1..MAX_TREE)")
    ap.add_argument("--n-gpu-layers", type=int)
    args = ap.parse_args()
    sizes = ([int(x) for x in args.sizes.split(",")] if args.sizes
             else list(range(1, MAX_TREE + 1)))
    backend = LlamaBackend(args.model, n_ctx=1024, n_gpu_layers=args.n_gpu_layers)
    info = backend.info
    secs, switch, after = measure(backend, sizes, args.context, args.reps)
    CostModel.from_probes([int(k) for k in secs], list(secs.values()))  # it must load
    report = {"model": info.model_path, "model_desc": info.model_desc,
              "backend": info.offload, "threads": info.n_threads,
              "machine": platform.node(), "context": args.context, "reps": args.reps,
              "verify_cost_s": secs, "verify_switch_s": switch,
              "one_token_steps_after_batch_s": after}
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    one = secs[str(sizes[0])]
    print(f"{info.model_desc} | {info.offload}: " + " ".join(
        f"c({k})={v / one:.2f}" for k, v in secs.items() if int(k) in (1, 2, 4, 8, 9, 16, 32,
                                                                      48, MAX_TREE))
          + f" | one token after a batch: +{switch / one:.2f}"
          + " | steps after a batch: " + " ".join(f"{t / one:.2f}" for t in after))
    backend.close()


if __name__ == "__main__":
    main()
