"""What giving a tree's leaves the conversation costs in llama.cpp's KV bookkeeping, when
the conversation is copied into each leaf's sequence and dropped after (the engine's way
until session 6; now every sequence holds it: engine.decode.kv).

    python docs/measure/kv_bookkeeping.py
"""

from __future__ import annotations

import time

import numpy as np
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.models import embedded_model_path


def main() -> None:
    b = LlamaBackend(embedded_model_path(), n_ctx=4096, n_threads=2)
    for n in (300, 1000, 3000):
        b.kv_clear()
        toks = np.random.default_rng(0).integers(100, 5000, n).astype(np.int32)
        for i in range(0, n, b.n_batch):  # the conversation in sequence 0 only
            chunk = toks[i:i + b.n_batch]
            b.decode(chunk, np.arange(i, i + len(chunk), dtype=np.int32),
                     seq_ids=np.zeros((len(chunk), 1), np.int32),
                     n_seq=np.ones(len(chunk), np.int32))
        for leaves in (12, 30, 62):
            runs = []
            for _ in range(5):
                t0 = time.perf_counter()
                for s in range(1, leaves):
                    b.kv_copy(0, s, -1, -1)
                t1 = time.perf_counter()
                b.kv_keep(0)
                runs.append((t1 - t0, time.perf_counter() - t1))
            copy, keep = (1e3 * float(np.median([r[i] for r in runs])) for i in (0, 1))
            print(f"context {n:5d}, {leaves:2d} leaves: copies {copy:.2f} ms + keep "
                  f"{keep:.2f} ms = {copy + keep:.2f} ms a step")
    b.close()


if __name__ == "__main__":
    main()
