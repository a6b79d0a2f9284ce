"""What ggml's tiled K-quant matmul buys and costs on this CPU (engine.llama.kernels):
with it on (llama.cpp's default) and off (what exact greedy answers use), each in a
fresh process since ggml reads the switch once: prompt evaluation over the bench's
prompts, decode time for batches of 1-32 rows, and the widest batch computed exactly
as single tokens are.

    python docs/measure/tiled_matmul.py --model qwen.gguf
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SIZES = (1, 2, 4, 7, 8, 12, 16, 24, 32)


def child(model: str, threads: int) -> dict:
    import numpy as np
    from aded_chat.engine.decode.exact import probe
    from aded_chat.engine.decode.session import ChatSession
    from aded_chat.engine.llama.backend import LlamaBackend

    from aded_chat.bench import default_prompts, load_prompts

    b = LlamaBackend(model, n_ctx=4096, n_threads=threads, kv_cache="q8_0")
    session = ChatSession(b)
    rates = []
    for p in load_prompts(default_prompts()):
        toks = session.prompt_tokens(p["messages"])
        best = float("inf")
        for _ in range(3):
            b.kv_clear()
            t0 = time.perf_counter()
            b.prefill(toks, 0)
            best = min(best, time.perf_counter() - t0)
        rates.append(len(toks) / best)
    rng = np.random.default_rng(0)
    b.kv_clear()
    b.prefill(list(rng.integers(100, 20000, 512).astype(np.int32)), 0)
    cost = {}
    for n in SIZES:
        best = float("inf")
        for _ in range(5):
            toks = rng.integers(100, 20000, n).astype(np.int32)
            t0 = time.perf_counter()
            b.decode(toks, np.arange(512, 512 + n, dtype=np.int32), logits=np.ones(n, np.int8))
            best = min(best, time.perf_counter() - t0)
            b.kv_remove(-1, 512, -1)
        cost[n] = best
    return {"prompt_tokens_per_s": statistics.median(rates),
            "decode_ms": {n: 1e3 * s for n, s in cost.items()}, "exact_rows": probe(b)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.threads)))
        return
    rows = {}
    for name, switch in (("tiled on (default)", "1"), ("tiled off (exact)", "0")):
        env = {**os.environ, "GGML_CPU_TILED_MM": switch}
        out = subprocess.run([sys.executable, __file__, "--model", args.model, "--threads",
                              str(args.threads), "--child"], env=env, capture_output=True,
                             text=True, check=True).stdout
        rows[name] = json.loads(out.strip().splitlines()[-1])
    print("| | prompt eval (tok/s, median of prompts) | exact rows | "
          + " | ".join(f"c({n})" for n in SIZES) + " |")
    print("|---|---|---|" + "---|" * len(SIZES))
    for name, r in rows.items():
        c1 = r["decode_ms"]["1"]
        print(f"| {name} | {r['prompt_tokens_per_s']:.0f} | {r['exact_rows']} | "
              f"{c1:.1f} ms | " + " | ".join(f"{r['decode_ms'][str(n)] / c1:.2f}"
                                            for n in SIZES[1:]) + " |")


if __name__ == "__main__":
    main()
