"""What each KV cache type costs as the conversation grows (BENCHMARKS.md, session 15).

For each cache type and context length: the prompt evaluation of that many tokens, then
what a batch of n tokens costs after it (c(1) is a plain decoding step, c(4..16) the
verification batches a drafter weighs), each the median of 10 timings. The cache types
are loaded in turn, three rounds, and each figure is the median of its rounds, so a
slow minute of this machine falls on every type alike.

    python docs/measure/kv_long_context.py [--model PATH] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from aded_chat.engine.llama import kernels
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.models import resolve_model

CONTEXTS = (300, 1000, 2000)
SIZES = (1, 4, 8, 16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--types", default="q8_0,q8_0/f16,f16")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    kernels.exact_batch_kernels()  # as the app computes batches (GGML_CPU_TILED_MM=0)
    types = args.types.split(",")
    path = resolve_model(args.model, None)
    rng = np.random.default_rng(0)
    times: dict[tuple, list[float]] = {}
    for _ in range(args.rounds):
        for kv in types:
            b = LlamaBackend(path, n_ctx=4096, n_threads=args.threads, kv_cache=kv)
            try:
                for ctx in CONTEXTS:
                    prompt = rng.integers(100, min(20000, b.n_vocab), ctx).tolist()
                    b.kv_clear()
                    t0 = time.perf_counter()
                    b.prefill(prompt, 0)
                    times.setdefault((kv, ctx, "prompt"), []).append(time.perf_counter() - t0)
                    for n in SIZES:
                        toks = np.full(n, prompt[-1], np.int32)
                        pos = np.arange(ctx, ctx + n, dtype=np.int32)
                        runs = []
                        for _ in range(12):
                            t0 = time.perf_counter()
                            b.decode(toks, pos, outputs_from=0)
                            runs.append(time.perf_counter() - t0)
                            b.kv_remove(-1, ctx, -1)
                        times.setdefault((kv, ctx, n), []).append(statistics.median(runs[2:]))
            finally:
                b.close()
    print(f"{path.name}, {args.threads} threads, median of {args.rounds} rounds (ms)")
    print("| context | KV cache | prompt | " + " | ".join(f"c({n})" for n in SIZES) + " |")
    print("|---|---|---|" + "---|" * len(SIZES))
    for ctx in CONTEXTS:
        for kv in types:
            cells = [statistics.median(times[(kv, ctx, k)]) * 1e3 for k in ("prompt", *SIZES)]
            print(f"| {ctx} | {kv} | " + " | ".join(f"{c:.1f}" if c >= 100 else f"{c:.2f}"
                                                    for c in cells) + " |")


if __name__ == "__main__":
    main()
