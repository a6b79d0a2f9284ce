"""The ceiling of copy drafting on a bench run's plain answers (BENCHMARKS.md, session 4).

An oracle drafter that copies what followed the longest earlier match of the newest
tokens (prompt and answer so far, at least MIN tokens), and that knows how many of those
tokens the model will accept: each step it drafts the number of them that makes the
step fastest per token on the cost curve the run ended with (its `verify_cost_s`:
the probe's table as the run's own steps corrected it, what ADED planned with by the
end; a fresh probe at a short context runs optimistic against a chat's batches). No
real drafter knows how far a copy will go, so this is an upper bound for copying; the
tri-gram adds little on top on a CPU.

usage (from the repository root, after `aded-chat bench --json RUN.json`):
  .venv/bin/python docs/measure/copy_oracle.py RUN.json
"""

import json
import math
import sys

from aded_chat.engine.decode.session import ChatSession
from aded_chat.engine.draft.cost import CostModel
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.models import resolve_model

from aded_chat.bench import default_prompts, load_prompts

run = json.load(open(sys.argv[1]))
backend = LlamaBackend(resolve_model(run["model"], None), n_ctx=4096,
                       n_threads=run["settings"].get("threads") or None)
session = ChatSession(backend)
cost = CostModel.from_curve_file(sys.argv[1]).cost
prompts = {p["id"]: p for p in load_prompts(default_prompts())}


def copy_chain(stream: list[int], min_match: int, max_len: int = 16) -> list[int]:
    last, n = stream[-1], len(stream)
    best_j, best_m = -1, min_match - 1
    for j in range(n - 2, -1, -1):
        if stream[j] != last:
            continue
        m = 1
        while m < 32 and j - m >= 0 and stream[j - m] == stream[n - 1 - m]:
            m += 1
        if m > best_m:
            best_j, best_m = j, m
    return stream[best_j + 1: best_j + 1 + max_len] if best_j >= 0 else []


def oracle_speedup(prompt: list[int], out: list[int], min_match: int) -> float:
    seconds, i, stream = 0.0, 1, prompt + out[:1]
    while i < len(out):
        chain = copy_chain(stream, min_match)
        a = 0  # chain tokens the model will accept
        while a < len(chain) and i + a < len(out) and chain[a] == out[i + a]:
            a += 1
        k = max(range(a + 1), key=lambda j: (j + 1) / cost[j + 1])
        seconds += cost[k + 1]
        stream += out[i:i + k + 1]
        i += k + 1
    return (len(out) - 1) * cost[1] / seconds


def geomean(xs):
    return math.exp(sum(map(math.log, xs)) / len(xs))


by_cat: dict[str, list[tuple[float, float, float]]] = {}
print("| prompt | oracle, match >= 2 | oracle, match >= 3 | aded (this run) |")
print("|---|---|---|---|")
for row in run["prompts"]:
    prompt = session.prompt_tokens(prompts[row["id"]]["messages"])
    out = backend.tokenize(row["plain"]["text"])[:run["settings"]["max_tokens"]]
    two, three = oracle_speedup(prompt, out, 2), oracle_speedup(prompt, out, 3)
    aded = row["aded"]["speedup"]
    by_cat.setdefault(row["category"], []).append((two, three, aded))
    print(f"| {row['id']} | {two:.2f}x | {three:.2f}x | {aded:.2f}x |")
print()
print("| category (geomean) | oracle, match >= 2 | oracle, match >= 3 | aded (this run) |")
print("|---|---|---|---|")
for cat, rows in by_cat.items():
    print(f"| {cat} | " + " | ".join(f"{geomean([r[i] for r in rows]):.2f}x"
                                       for i in range(3)) + " |")
