"""Replay plain answers through the drafter, without the model: how many tokens a step
would yield under a cost curve, in seconds instead of a bench's minutes.

Each prompt is answered once by plain greedy decoding, one token at a time (cached in
--record, so later replays skip the model). The drafter then walks that answer as the
decode loop does: propose a tree, keep the longest branch that matches the answer, add
the model's own next token, learn. Greedy verification of a tree depends only on its
tokens, so tokens per step are what the engine gets wherever batched and one-token
logits agree (bit for bit at one thread). A kept branch that is not the batch's first
entries is evaluated again to keep the cache's cells in order (engine.decode.verify):
at the head of the next batch, or with --separate in a decode of its own, as before.
`modelled` = tokens x c(1) / the summed cost of every batch: the speedup without host
time (the bench's projection adds it). `--curve measured` is the probe's table, timed
at a short context: it runs optimistic against a chat's batches (SmolLM2 here: 1.11x
modelled, where a bench measured 1.05x). To model a bench run, replay on the curve it
ended with, `--curve RUN.json` (its `verify_cost_s`, the probe as the run's own steps
corrected it): 1.06x for that run (BENCHMARKS.md, session 14).

    python docs/measure/draft_replay.py --record /tmp/rec-smol.npz --curve flat
    python docs/measure/draft_replay.py --record /tmp/rec-smol.npz --curve measured
    python docs/measure/draft_replay.py --record /tmp/rec-smol.npz --curve RUN.json --carry
    python docs/measure/draft_replay.py --model qwen.gguf --record /tmp/rec-qwen.npz \
        --curve measured --carry --max-rows 7   # exact greedy's cap for that model
    python docs/measure/draft_replay.py --record /tmp/rec-smol.npz \
        --curve docs/measure/gpu/h200/curve-llama1b-shape.json --carry --steady-batch 4
    python docs/measure/draft_replay.py --record /tmp/rec-day2.npz \
        --prompts docs/measure/next_day_prompts.jsonl --curve flat --carry \
        --drafter-state S   # from what a bench run learned (bench --save-drafter-state S)
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from aded_chat.engine.decode.session import ChatSession
from aded_chat.engine.draft.aded import AdedSpeculator
from aded_chat.engine.draft.cost import CostModel, load_or_measure
from aded_chat.engine.draft.tree import MAX_TREE
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.models import embedded_model_path

from aded_chat.bench import default_prompts, load_prompts
from aded_chat.config import cache_dir
from aded_chat.runtime import corpus_files


def record(backend: LlamaBackend, prompts: list[dict], max_tokens: int) -> dict:
    """Plain greedy answers: {id: (prompt tokens, answer tokens)}."""
    session = ChatSession(backend)
    out = {}
    for p in prompts:
        prompt = session.prompt_tokens(p["messages"])
        backend.kv_clear()
        row = backend.prefill(prompt, 0)[0]
        toks = []
        for i in range(max_tokens):
            toks.append(int(row.argmax()))
            if backend.is_eog(toks[-1]):
                break
            row = backend.decode(np.array(toks[-1:], np.int32),
                                 np.array([len(prompt) + i], np.int32))[0]
        out[p["id"]] = (np.asarray(prompt, np.int32), np.asarray(toks, np.int32))
    return out


def replay(spec: AdedSpeculator, prompt: np.ndarray, answer: np.ndarray, separate: bool,
           max_rows: int = MAX_TREE, max_tokens: int | None = None,
           switch: float = 0.0) -> tuple[int, float]:
    """(steps, summed verification cost) of one answer; max_tokens, the answer's limit,
    bounds each tree as the decode loop does; `switch` seconds are added to each batch
    (CostModel.switch: the one-token step after it rebuilds its compute graph)."""
    cost = spec.cost.cost
    spec.begin(prompt.tolist())
    history = prompt.tolist() + [int(answer[0])]
    j, steps, spent, behind = 1, 0, 0.0, 0  # answer[j]: the next token to produce
    while j < len(answer):
        room = max_rows - behind  # as the decode loop's room
        if max_tokens is not None:
            room = min(room, max_tokens - j)
        tree = spec.propose(history, room)
        path = [0]
        while j + len(path) - 1 < len(answer):
            kids = np.flatnonzero(tree.parents == path[-1])
            hit = kids[tree.tokens[kids] == answer[j + len(path) - 1]]
            if len(hit) == 0:
                break
            path.append(int(hit[0]))
        n_new = min(len(path), len(answer) - j)
        history += answer[j:j + n_new].tolist()
        batch = len(tree) + behind
        spec.learn(history, n_new, tree, len(path), float(cost[batch]), batch)
        spent += float(cost[batch]) + (switch if batch > 1 else 0.0)
        gap = next((i for i, v in enumerate(path) if v != i), len(path))
        behind = len(path) - gap
        if separate and behind:
            spent += float(cost[behind])
            behind = 0
        j += n_new
        steps += 1
    return steps, spent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(embedded_model_path()))
    ap.add_argument("--record", required=True, help="npz of plain answers (made if absent)")
    ap.add_argument("--curve", default="flat",
                    help="flat, measured (the probe's table), or a curve JSON file (a "
                         "bench report: the curve that run ended with)")
    ap.add_argument("--switch-ms", type=float,
                    help="what a one-token step costs more after a batch (CostModel.switch; "
                         "a measured curve's own by default): counted in each batch's cost")
    ap.add_argument("--unaware", action="store_true",
                    help="the drafter plans without the switch (as before session 20)")
    ap.add_argument("--steady-batch", type=int, metavar="N",
                    help="every step one batch of N rows (--steady-batch): each step costs "
                         "the curve's c(N), padding never counted as kept")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-cache", default="auto", help="as the bench's (auto: q8_0 on a CPU)")
    ap.add_argument("--prompts", help="a prompt file in the bench's format (default: its own)")
    ap.add_argument("--carry", action="store_true",
                    help="keep what the drafter learned from one prompt to the next, as the "
                         "bench does (default: every prompt starts from the prior)")
    ap.add_argument("--separate", action="store_true",
                    help="re-evaluate out-of-order kept tokens in a decode of their own")
    ap.add_argument("--drafter-state", metavar="FILE",
                    help="start from what an earlier run learned (bench --save-drafter-state)")
    ap.add_argument("--save-drafter-state", metavar="FILE",
                    help="write what the drafter learned over these answers (as the bench's "
                         "--save-drafter-state; with --carry, one run's learning)")
    ap.add_argument("--max-rows", type=int, default=MAX_TREE,
                    help="batch rows a step may use, as exact greedy decoding caps them "
                         "(engine.decode.exact: 7 for Qwen2.5-Coder Q4_K_M here)")
    args = ap.parse_args()
    prompts = load_prompts(Path(args.prompts) if args.prompts else default_prompts())
    backend = LlamaBackend(args.model, n_ctx=4096, n_threads=args.threads,
                           kv_cache=args.kv_cache)
    path = Path(args.record)
    if path.exists():
        with np.load(path) as z:
            rec = {p["id"]: (z[f"{p['id']}/prompt"], z[f"{p['id']}/answer"]) for p in prompts}
    else:
        rec = record(backend, prompts, args.max_tokens)
        np.savez(path, **{f"{i}/{k}": a for i, r in rec.items()
                          for k, a in zip(("prompt", "answer"), r, strict=True)})
    if args.curve == "measured":
        curve = load_or_measure(backend, cache_dir())
        curve.frozen = True
    else:
        curve = CostModel.from_curve_file(args.curve)
    switch = curve.switch if args.switch_ms is None else args.switch_ms / 1000
    curve.switch = 0.0 if args.unaware else switch
    plan = curve
    if args.steady_batch:  # every step one batch of that many rows: one shape, no switch
        plan = CostModel.steady(args.steady_batch, float(curve.cost[args.steady_batch]))
        args.max_rows, switch = args.steady_batch, 0.0
    spec = AdedSpeculator.for_backend(backend, list(corpus_files()),
                                      Path(tempfile.mkdtemp()), cost=plan)
    if args.drafter_state and not spec.load_learned(Path(args.drafter_state)):
        raise SystemExit(f"{args.drafter_state}: not a drafter state for this model")
    state = spec.snapshot()
    by_cat = defaultdict(list)
    c1 = float(curve.cost[1])
    for p in prompts:
        if not args.carry:
            spec.restore(state)
        prompt, answer = rec[p["id"]]
        steps, spent = replay(spec, prompt, answer, args.separate, args.max_rows,
                              args.max_tokens, switch)
        row = ((len(answer) - 1) / max(1, steps), (len(answer) - 1) * c1 / max(spent, c1))
        by_cat[p["category"]].append(row)
        by_cat["overall"].append(row)
        print(f"{p['id']:16s} {row[0]:5.2f} tok/step  {row[1]:5.2f}x")
    print("category      tok/step  modelled")
    for cat in ["overall", *sorted(set(by_cat) - {"overall"})]:
        g = [math.exp(np.mean(np.log([r[i] for r in by_cat[cat]]))) for i in (0, 1)]
        print(f"{cat:12s} {g[0]:8.2f} {g[1]:8.2f}x")
    if args.save_drafter_state:
        spec.save_learned(Path(args.save_drafter_state))
    backend.close()


if __name__ == "__main__":
    main()
