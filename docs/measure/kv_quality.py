"""What a quantized KV cache costs: prompt evaluation speed and the model's distributions.

For each bench prompt, the F16-cache greedy answer is evaluated (teacher-forced, one
batch with logits at every answer position) with each KV cache type; against F16 it
reports the mean KL divergence of the next-token distributions, how often the top
token agrees, and the prompt evaluation rate (prompt in one batch, best of 3).

    python docs/measure/kv_quality.py [--model PATH] [--threads 2] [--limit 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from aded_chat.engine import (
    ChatSession,
    Message,
    SamplingSettings,
    embedded_model_path,
)
from aded_chat.engine.llama.backend import KV_CACHE_TYPES, LlamaBackend

from aded_chat.bench import default_prompts


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    model = args.model or str(embedded_model_path())
    prompts = [json.loads(line) for line in default_prompts().read_text().splitlines()
               if line.strip()][: args.limit]
    settings = SamplingSettings(temperature=0.0, max_tokens=args.max_tokens)
    # the reference: F16 cache, greedy answers, prompt and answer tokens
    cases = []
    ref = LlamaBackend(model, n_ctx=4096, n_threads=args.threads)
    session = ChatSession(ref)
    for p in prompts:
        msgs = [Message(m["role"], m["content"]) for m in p["messages"]]
        prompt, _ = session.fit_prompt(msgs, settings.max_tokens)
        _, answer, _ = session.answer(msgs, settings, speculative=False)
        cases.append((p["id"], prompt, answer))
    ref.close()
    results = {}
    for kv in KV_CACHE_TYPES:
        b = LlamaBackend(model, n_ctx=4096, n_threads=args.threads, kv_cache=kv)
        rates, rows = [], []
        for _, prompt, answer in cases:
            best = float("inf")
            for _ in range(3):
                b.kv_clear()
                t0 = time.perf_counter()
                b.prefill(prompt, 0)
                best = min(best, time.perf_counter() - t0)
            rates.append(len(prompt) / best)
            b.kv_clear()
            b.prefill(prompt[:-1], 0)
            toks = np.asarray([prompt[-1], *answer[:-1]], np.int32)
            pos = np.arange(len(prompt) - 1, len(prompt) - 1 + len(toks), dtype=np.int32)
            rows.append(log_softmax(b.decode(toks, pos, logits=np.ones(len(toks), np.int8))))
        b.close()
        results[kv] = (statistics.median(rates), rows)
    base_rate, base_rows = results["f16"]
    print(f"{len(cases)} prompts, {args.threads} threads, answers of up to "
          f"{args.max_tokens} tokens (F16-cache greedy), model {model}")
    print("| KV cache | prompt tok/s (median) | vs f16 | mean KL to f16 (nats/token) "
          "| top-1 agrees with f16 |")
    print("|---|---|---|---|---|")
    for kv, (rate, rows) in results.items():
        kls, agree, n = [], 0, 0
        for lp, lq in zip(base_rows, rows, strict=True):
            kls.append(float((np.exp(lp) * (lp - lq)).sum(axis=-1).mean()))
            agree += int((lp.argmax(-1) == lq.argmax(-1)).sum())
            n += lp.shape[0]
        print(f"| {kv} | {rate:.0f} | {rate / base_rate:.2f}x | {statistics.mean(kls):.2e} "
              f"| {100 * agree / n:.2f}% |")


if __name__ == "__main__":
    main()
