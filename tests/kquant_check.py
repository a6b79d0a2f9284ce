"""Run in a fresh process (ggml reads its matmul switch once, at a process's first
matmul): how many rows a K-quant model's batches are exact for, and, where every width
is, whether wide greedy trees on a flat curve give plain decoding's text.

    python tests/kquant_check.py MODEL.gguf CACHE_DIR [exact]   -> one JSON line
"""

import json
import sys
from pathlib import Path

from aded_chat.engine.decode import exact
from aded_chat.engine.decode.session import ChatSession
from aded_chat.engine.draft.aded import AdedSpeculator
from aded_chat.engine.draft.cost import CostModel
from aded_chat.engine.draft.tree import MAX_TREE
from aded_chat.engine.llama import kernels
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.sampling import SamplingSettings
from aded_chat.engine.llama.template import Message

from aded_chat.runtime import corpus_files

model, cache = sys.argv[1], Path(sys.argv[2])
if sys.argv[3:] == ["exact"]:
    kernels.exact_batch_kernels()
backend = LlamaBackend(model, n_ctx=1024, n_threads=2, kv_cache="q8_0")
out = {"tiled_off": kernels.tiled_matmul_off(), "exact_rows": exact.probe(backend)}
if out["exact_rows"] == MAX_TREE:
    spec = AdedSpeculator.for_backend(backend, list(corpus_files()), cache,
                                      cost=CostModel.flat())
    s = ChatSession(backend, speculator=spec)
    s.exact_rows = MAX_TREE
    greedy = SamplingSettings(temperature=0.0, max_tokens=120)
    out["identical"], out["widest"] = [], 0
    for text in ("Rename x to value in: def f(x):\n    y = x * 2\n    return x + y\n",
                 "Explain how rain forms, in a few sentences."):
        m = [Message("user", text)]
        s.reset()
        _, plain, _ = s.answer(m, greedy, speculative=False)
        s.reset()
        _, fast, st = s.answer(m, greedy, speculative=True)
        out["identical"].append(fast == plain)
        out["widest"] = max(out["widest"], *(rows for rows, _ in st.batches_per_step))
backend.close()
print(json.dumps(out))
