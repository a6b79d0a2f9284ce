"""Regenerate corpus/smollm2-chat.txt: answers of the embedded model to seed prompts.

The tri-gram prior should look like what models write in a chat, so part of the corpus
is written by a small instruct model itself (greedy, no drafting). The seed prompts
below are disjoint from the benchmark prompts in prompts.jsonl. Run from the checkout:

    .venv/bin/python assets/make_corpus.py
"""

from pathlib import Path

from engine.backend import LlamaBackend
from engine.models import embedded_model_path
from engine.sampling import SamplingSettings
from engine.session import ChatSession
from engine.template import Message

TOPICS = ["photosynthesis", "compound interest", "the water cycle", "black holes",
          "how vaccines work", "the French Revolution", "machine learning", "volcanoes",
          "the immune system", "inflation", "electric cars", "the internet",
          "recycling plastic", "sleep", "climate change", "the stock market"]
TEMPLATES = ["Explain {} in simple terms.", "Give me five key facts about {}.",
             "Write a short paragraph about {} for a school newsletter.",
             "What are common misconceptions about {}?"]
TASKS = ["sorts a list of dictionaries by a key", "reads a CSV file and prints each row",
         "computes the factorial of a number", "finds the largest element in a list",
         "merges two sorted lists", "counts vowels in a string",
         "converts Celsius to Fahrenheit", "checks whether a number is prime",
         "flattens a nested list", "removes whitespace from the ends of every line",
         "validates an email address with a regular expression",
         "returns the n most common words in a text"]
CODE_TEMPLATES = ["Write a Python function that {}.",
                  "Write a Python function that {}, with a docstring and type hints."]


def main() -> None:
    backend = LlamaBackend(embedded_model_path(), n_ctx=2048)
    session = ChatSession(backend)
    prompts = [t.format(x) for i, x in enumerate(TOPICS) for t in TEMPLATES[i % 2::2]]
    prompts += [CODE_TEMPLATES[i % 2].format(x) for i, x in enumerate(TASKS)]
    settings = SamplingSettings(temperature=0.0, max_tokens=256)
    out = []
    for i, p in enumerate(prompts):
        msgs = [Message("system", "You are a helpful assistant."), Message("user", p)]
        text, _, _ = session.answer(msgs, settings, speculative=False)
        out.append(text.strip())
        print(i, len(text), flush=True)
    path = Path(__file__).parent / "corpus" / "smollm2-chat.txt"
    path.write_text("\n\n\n".join(out) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
