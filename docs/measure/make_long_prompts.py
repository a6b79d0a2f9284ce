"""Write long_prompts.jsonl: bench prompts of 1,000-2,000 tokens (BENCHMARKS.md, session 15).

The repo's prompt set is short (50-400 tokens), where the KV cache's number type and the
attention over the context hardly show. These four paste a module of Python's standard
library (none of them in the drafter's corpus) and ask what a user would: add type hints,
summarize, tabulate, and, in a second turn, rewrite a function. The file is committed;
this script says where it came from (it reads the running Python's own sources).

    python docs/measure/make_long_prompts.py > docs/measure/long_prompts.jsonl
    aded-chat bench --prompts docs/measure/long_prompts.jsonl --kv-cache q8_0/f16 --repeat 3
"""

from __future__ import annotations

import bisect
import colorsys
import json
import string
import sys
from json import decoder
from pathlib import Path


def source(module, limit: int | None = None) -> str:
    text = Path(module.__file__).read_text(encoding="utf-8")
    if limit is not None and len(text) > limit:
        text = text[: text.rindex("\n\n", 0, limit)]  # whole definitions only
    return text


def fenced(text: str) -> str:
    return f"```python\n{text.rstrip()}\n```"


def user(text: str) -> dict:
    return {"role": "user", "content": text}


PROMPTS = [
    ("long-colorsys", "edit_code", [user(
        f"Here is a Python module:\n\n{fenced(source(colorsys))}\n\n"
        "Add type hints to every function and return the whole module.")]),
    ("long-decoder", "summarize", [user(
        f"{fenced(source(decoder, 7000))}\n\n"
        "Summarize what this code does as a bulleted list, one bullet per function or "
        "class.")]),
    ("long-string", "summarize", [user(
        f"{fenced(source(string, 6000))}\n\n"
        "Make a Markdown table of every class and function defined here, with a one-line "
        "description of each.")]),
    ("long-bisect", "multiturn", [
        user(f"What does this module do?\n\n{fenced(source(bisect))}"),
        {"role": "assistant", "content":
            "It keeps a list sorted without sorting it again after each insertion. "
            "`bisect_left` and `bisect_right` find, by binary search, where an item would "
            "go (before or after equal items); `insort_left` and `insort_right` insert it "
            "there. All take optional `lo` and `hi` bounds and a `key` function. At the "
            "end the module imports the C implementation from `_bisect` when it exists."},
        user("Rewrite bisect_left with a comment on every line, and show a short example "
             "of calling it.")]),
]


def main() -> None:
    for pid, category, messages in PROMPTS:
        sys.stdout.write(json.dumps({"id": pid, "category": category,
                                     "messages": messages}) + "\n")


if __name__ == "__main__":
    main()
