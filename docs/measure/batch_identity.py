"""Where a batch's logits differ from one-token decoding's (BENCHMARKS.md, session 4).

Evaluates 700 tokens of the corpus twice after the same 32-token start: one token per
llama_decode, then BATCH (default 4) per llama_decode, and prints the largest logit difference by
position. With flash attention (llama.cpp's CPU default) and two threads the two agree
bit for bit below 256 cached tokens and differ everywhere past it; with one thread, or keys
in Q8_0 or BF16 (q8_0/f16, q8_0, bf16), they agree everywhere.

usage (from the repository root):
  .venv/bin/python docs/measure/batch_identity.py [THREADS [KV_TYPE [MODEL [BATCH]]]]
  KV_TYPE: f16 (llama.cpp's default), q8_0/f16, q8_0 or bf16 (engine.llama.backend.KV_CACHE_TYPES)
"""

import sys

import numpy as np
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.models import resolve_model

from aded_chat.runtime import corpus_files

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
kv_type = sys.argv[2] if len(sys.argv) > 2 else "f16"
model = sys.argv[3] if len(sys.argv) > 3 else ""  # the embedded model by default

b = LlamaBackend(resolve_model(model, None), n_ctx=2048, n_threads=threads, kv_cache=kv_type)
print(b.info.model_desc, f"{threads} threads, KV cache {kv_type}")
text = " ".join(f.read_text() for f in corpus_files())[:20000]
toks = b.tokenize(text)[:700]
start, batch = 32, int(sys.argv[4]) if len(sys.argv) > 4 else 4
b.prefill(toks[:start], 0)
single = []
for i in range(start, len(toks)):
    out = b.decode(np.array([toks[i]], np.int32), np.array([i], np.int32),
                   logits=np.ones(1, np.int8))
    single.append(out[0].copy())
b.kv_remove(-1, start, -1)
diff = np.zeros(len(toks))
for s in range(start, len(toks), batch):
    e = min(s + batch, len(toks))
    out = b.decode(np.array(toks[s:e], np.int32), np.arange(s, e, dtype=np.int32),
                   logits=np.ones(e - s, np.int8))
    for j in range(e - s):
        diff[s + j] = np.abs(out[j] - single[s - start + j]).max()
for lo in range(0, len(toks), 64):
    seg = diff[max(lo, start):lo + 64]
    print(f"positions {lo:4d}-{lo + 63:4d}: largest |logit difference| {seg.max():.4f}, "
          f"positions that differ {int((seg > 0).sum())}/{len(seg)}")
