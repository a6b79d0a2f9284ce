"""A/B of the long copy draft (engine.draft.mcts.LONG_COPY): the same drafter with copy
chains up to LONG_COPY deep and with them cut at the tree search's depth (as before it),
interleaved with plain decoding, prompt by prompt, median of --repeat; the drafter starts
each prompt from the same state in both arms.

usage: .venv/bin/python docs/measure/long_copy_ab.py [--model PATH] [--repeat 3]
       [--categories edit_code,summarize] [--max-tokens 256]
"""

import argparse
import statistics
from dataclasses import replace

import numpy as np
from aded_chat.engine import SamplingSettings

from aded_chat.bench import default_prompts, load_prompts
from aded_chat.config import load_config
from aded_chat.runtime import open_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--categories", default="")
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args()
    cfg = replace(load_config(), learn_across_runs=False)
    session = open_model(cfg, model=args.model)
    spec = session._speculator  # a measurement: switch the chain depth in place
    long_out = spec._out
    short_out = long_out._replace(chain=np.zeros(spec.max_depth, np.int32))
    settings = SamplingSettings(temperature=0.0, max_tokens=args.max_tokens)
    cats = set(filter(None, args.categories.split(",")))
    ratios: dict[str, list[float]] = {"long": [], "short": []}
    print("| prompt | plain tok/s | short: x, tok/step | long: x, tok/step |")
    print("|---|---|---|---|")
    for p in load_prompts(default_prompts()):
        if cats and p["category"] not in cats:
            continue
        msgs = p["messages"]
        state = session.drafter_state()
        runs = {"plain": [], "short": [], "long": []}
        for rep in range(args.repeat):  # the arms' order alternates: no arm always last
            for arm in ("plain", "short", "long") if rep % 2 == 0 else ("long", "short",
                                                                        "plain"):
                session.reset()
                if arm != "plain":
                    session.restore_drafter(state)
                    spec._out = short_out if arm == "short" else long_out
                _, _, st = session.answer(msgs, settings, speculative=arm != "plain")
                runs[arm].append((st.tokens_per_s, st.tokens_per_step))
        med = {a: sorted(r)[len(r) // 2] for a, r in runs.items()}
        for arm in ("short", "long"):
            ratios[arm].append(med[arm][0] / med["plain"][0])
        print(f"| {p['id']} | {med['plain'][0]:.1f} | {med['short'][0] / med['plain'][0]:.2f}x,"
              f" {med['short'][1]:.2f} | {med['long'][0] / med['plain'][0]:.2f}x, "
              f"{med['long'][1]:.2f} |", flush=True)
    for arm, xs in ratios.items():
        print(f"geomean {arm}: {statistics.geometric_mean(xs):.3f}x over {len(xs)} prompts")


if __name__ == "__main__":
    main()
