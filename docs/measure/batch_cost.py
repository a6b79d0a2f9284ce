"""What one llama_decode of n tokens costs on this machine (BENCHMARKS.md, session 3).

usage (from the repository root): .venv/bin/python docs/measure/batch_cost.py [THREADS [MODEL]]
"""

import sys
import time

import numpy as np
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.models import resolve_model

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
model = sys.argv[2] if len(sys.argv) > 2 else ""  # the embedded model by default
b = LlamaBackend(resolve_model(model, None), n_ctx=1024, n_threads=threads)
print(b.info.model_desc, f"{threads} threads")
ctx = 128
b.prefill([1] * ctx, 0)
for size in (1, 2, 3, 4, 8, 16):
    for mode in ("all", "last"):
        toks = np.full(size, 1, np.int32)
        pos = np.arange(ctx, ctx + size, dtype=np.int32)
        want = np.ones(size, np.int8) if mode == "all" else np.eye(1, size, size - 1,
                                                                  dtype=np.int8)[0]
        runs = []
        for _ in range(15):
            t0 = time.perf_counter()
            b.decode(toks, pos, logits=want)
            runs.append(time.perf_counter() - t0)
            b.kv_remove(-1, ctx, -1)
        print(f"{size:3d} tokens, logits {mode:4s}: min {min(runs) * 1e3:.2f} ms, "
              f"median {float(np.median(runs)) * 1e3:.2f} ms")
