"""Host work per verification step with wide trees: what a GPU exposes and a CPU hides.

The drafter is handed a curve that is flat up to --nodes tokens and prohibitive past it,
and an optimistic calibration, so every step drafts a tree of about that size; the
figure is the median CPU time per step outside llama_decode (drafting, the tree's
sequences, reading logits, near-tie gaps, sampling, learning, KV edits).

    python docs/measure/host_per_step.py --model qwen.gguf --nodes 32 --nodes 63

Most of this time is caches left cold by the step's own work (Python, NumPy, the
drafter's tables), not by the decode (BENCHMARKS.md, session 21), so a GPU host pays it
too, less what a faster CPU does; the CUDA check (docs/measure/gpu) runs this script
there. --json writes the figures (CPU and wall medians, per tree size).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
from aded_chat.engine.decode.session import ChatSession
from aded_chat.engine.draft.aded import AdedSpeculator
from aded_chat.engine.draft.cost import CostModel
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.models import embedded_model_path
from aded_chat.engine.llama.sampling import SamplingSettings
from aded_chat.engine.llama.template import Message

from aded_chat.runtime import corpus_files

PROMPTS = ["Write a Python function that checks whether a string is a palindrome.",
           "Explain how a hash map works, briefly.",
           "Rename x to value in: def f(x):\n    return x * 2 + x\n"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a GGUF file (default: the embedded model)")
    ap.add_argument("--nodes", type=int, action="append", default=[])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    backend = LlamaBackend(args.model or str(embedded_model_path()), n_ctx=2048,
                           n_threads=args.threads)
    greedy = SamplingSettings(temperature=0.0, max_tokens=args.max_tokens)
    rows = []
    for nodes in args.nodes or [32, 63]:
        curve = CostModel.from_probes([1, nodes, nodes + 1], [0.002, 0.002, 1.0], frozen=True)
        spec = AdedSpeculator.for_backend(backend, corpus_files(),
                                          Path(tempfile.mkdtemp()), cost=curve)
        session = ChatSession(backend, speculator=spec)
        host, wall, sizes = [], [], []
        for text in PROMPTS:
            spec.accept.table[:] = 0.95
            session.reset()
            _, _, st = session.answer([Message("user", text)], greedy)
            wide = [i for i, (t, _) in enumerate(st.batches_per_step) if t >= 0.75 * nodes]
            host += [st.host_cpu_s_per_step[i] for i in wide]
            wall += [st.host_s_per_step[i] for i in wide]
            sizes += [st.batches_per_step[i][0] for i in wide]
        if not host:
            print(f"no step drafted a tree of {nodes} tokens (--max-tokens too small?)")
            continue
        row = {"nodes": nodes, "mean_tree": float(np.mean(sizes)), "steps": len(host),
               "median_host_cpu_ms": 1e3 * statistics.median(host),
               "median_host_wall_ms": 1e3 * statistics.median(wall)}
        rows.append(row)
        print(f"{backend.info.model_desc} (vocab {backend.n_vocab}), trees of "
              f"{row['mean_tree']:.0f} tokens ({len(host)} steps): host "
              f"{row['median_host_cpu_ms']:.3f} ms CPU, {row['median_host_wall_ms']:.3f} ms "
              f"wall per step (median)")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"model": backend.info.model_desc, "vocab": backend.n_vocab,
             "compute": backend.info.compute, "gpu_layers": backend.info.gpu_layers,
             "trees": rows}, indent=1))
    backend.close()


if __name__ == "__main__":
    main()
