"""In-app vs headless decoding speed (issue 4, BENCHMARKS.md): one session, one prompt,
the drafter's state restored before every run, app (driven by Pilot) and headless
alternating which goes first.

usage (from the repository root): .venv/bin/python docs/measure/app_ratio.py THREADS PAIRS [plain]
"""

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from aded_chat.engine.llama.template import Message

from aded_chat.app import ChatApp
from aded_chat.config import Config
from aded_chat.runtime import open_model
from aded_chat.store import Store
from aded_chat.widgets.prompt_input import PromptInput

threads, pairs = int(sys.argv[1]), int(sys.argv[2])
speculative = not (len(sys.argv) > 3 and sys.argv[3] == "plain")
CFG = Config(threads=threads, speculative=speculative,
             generation=Config().generation.__class__(temperature=0.0, max_tokens=256))
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
session = open_model(CFG)
snapshot = session.drafter_state()


def headless():
    session.restore_drafter(snapshot)
    msgs = [Message("system", CFG.system_prompt), Message("user", PROMPT)]
    return session.answer(msgs, CFG.generation, speculative=speculative)[2]


async def in_app(tmp):
    session.restore_drafter(snapshot)
    app = ChatApp(CFG, store=Store(Path(tmp) / "c.db"), session=session)
    async with app.run_test(size=(120, 40)) as pilot:
        prompt = app.query_one(PromptInput)
        prompt.text = PROMPT
        prompt.focus()
        await pilot.press("enter")
        while app.last_stats is None or app.generating:
            await asyncio.sleep(0.05)
        return app.last_stats


results = []
for i in range(pairs):
    with tempfile.TemporaryDirectory() as tmp:
        if i % 2:
            a = asyncio.run(in_app(tmp))
            h = headless()
        else:
            h = headless()
            a = asyncio.run(in_app(tmp))
    results.append((a.tokens_per_s, h.tokens_per_s))
    print(f"pair {i}: app {a.tokens_per_s:.1f} tok/s ({a.tokens} tok), headless "
          f"{h.tokens_per_s:.1f} ({h.tokens} tok), ratio {a.tokens_per_s / h.tokens_per_s:.3f}",
          flush=True)
print(f"threads {threads}, speculative {speculative}: median ratio "
      f"{statistics.median(a / h for a, h in results):.3f}, median app "
      f"{statistics.median(a for a, _ in results):.1f}, median headless "
      f"{statistics.median(h for _, h in results):.1f}")
