"""Write the drafter's chat prior: what the embedded model itself answers to everyday
requests (docs/measure/corpus/chat_prompts.txt, none of them in the bench's prompt set),
one document per answer: greedy, then --samples more drawn at temperature 0.8 (seeded),
for the phrasings a sampled chat takes too. A tri-gram prior of the model's own phrasing ("Here's a
...", list and heading habits) predicts its chat answers better than any human corpus.

    python docs/measure/corpus/make_chat_corpus.py --samples 1 > assets/corpus/chat-smollm2.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aded_chat.engine import Message, SamplingSettings
from aded_chat.engine.decode.session import ChatSession
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.models import embedded_model_path

PROMPTS = Path(__file__).with_name("chat_prompts.txt")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=0)
    args = ap.parse_args()
    backend = LlamaBackend(embedded_model_path(), n_ctx=2048, n_threads=2)
    session = ChatSession(backend)
    runs = [SamplingSettings(temperature=0.0, max_tokens=256)]
    runs += [SamplingSettings(temperature=0.8, max_tokens=256, seed=1 + i)
             for i in range(args.samples)]
    lines = [x.replace("\\n", "\n") for x in PROMPTS.read_text("utf-8").splitlines() if x]
    docs = []
    for settings in runs:
        for line in lines:
            text, _, _ = session.answer([Message("user", line)], settings, speculative=False)
            docs.append(text.strip())
    sys.stdout.write("\n\n\n".join(docs) + "\n")
    backend.close()


if __name__ == "__main__":
    main()
