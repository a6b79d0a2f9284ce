"""Our plain decoding vs llama-cpp-python's create_chat_completion on the first four
prompts, alternating, twice (the bench measures this reference once, on the first one).

usage (from the repository root):
    .venv/bin/python docs/measure/plain_vs_llama_cpp_python.py [MODEL]
"""

import json
import statistics
import sys

from aded_chat.engine.llama.sampling import SamplingSettings
from aded_chat.engine.llama.template import Message

from aded_chat.bench import PromptLookup, run_session
from aded_chat.config import Config
from aded_chat.runtime import open_model

model = sys.argv[1] if len(sys.argv) > 1 else None
session = open_model(Config(), model=model, drafter=False)
info = session.info
hl = PromptLookup(info.model_path, info.n_ctx, info.n_threads, info.gpu_layers)
settings = SamplingSettings(temperature=0.0, max_tokens=256)
with open("assets/prompts.jsonl", encoding="utf-8") as f:
    prompts = [json.loads(line) for line in f][:4]
ours, theirs = [], []
for _ in range(2):
    for p in prompts:
        msgs = [Message(**m) for m in p["messages"]]
        a = run_session(session, msgs, settings, speculative=False)
        b = PromptLookup.run(hl.plain, msgs, settings)
        ours.append(a["tokens_per_s"])
        theirs.append(b["tokens_per_s"])
        print(f"{p['id']}: ours {a['tokens_per_s']:.1f} tok/s, theirs "
              f"{b['tokens_per_s']:.1f}", flush=True)
print(f"median ratio {statistics.median(x / y for x, y in zip(ours, theirs, strict=True)):.3f}")
