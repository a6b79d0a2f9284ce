"""A conversation on one loaded model: prompt fitting, KV-cache reuse across turns, and
the decode loop that plain and speculative decoding share.

Invariant: sequence 0 of the KV cache holds exactly `kv_tokens`, at positions 0..n-1.
A new turn evaluates only the tokens after the longest common prefix with them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.backend import LlamaBackend
from engine.detok import StreamDecoder
from engine.errors import ContextOverflowError
from engine.sampling import Sampler, SamplingSettings
from engine.stats import AnswerStats, StepStats
from engine.template import ChatTemplate, Message
from engine.tree import DraftTree
from engine.verify import verify_tree

DEFAULT_SETTINGS = SamplingSettings()


class Speculator(Protocol):
    """What the decode loop needs from a drafter (engine.aded implements it)."""

    def begin(self, prompt: list[int]) -> None: ...
    def propose(self, history: list[int], room: int) -> DraftTree: ...
    def learn(self, history: list[int], n_new: int, tree: DraftTree, kept: int,
              decode_s: float) -> None: ...
    @property
    def table_mb(self) -> float: ...


@dataclass
class Chunk:
    """What the decode loop yields: new text and the figures so far."""

    text: str
    tokens: list[int]
    step: StepStats | None
    stats: AnswerStats


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class ChatSession:
    def __init__(self, backend: LlamaBackend, template: ChatTemplate | None = None,
                 speculator: Speculator | None = None):
        self.backend = backend
        if template is None:
            bos = backend.token_text(backend.bos) if backend.bos >= 0 else ""
            template = ChatTemplate(backend.chat_template(), bos_token=bos)
        self.template = template
        self.speculator = speculator
        self.kv_tokens: list[int] = []
        self.last_stats: AnswerStats | None = None
        self.plain_tokens_per_s: float | None = None

    # -- prompt -----------------------------------------------------------------------

    def _tokenize(self, text: str, special: bool) -> list[int]:
        return self.backend.tokenize(text, parse_special=special)

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        toks = self.template.tokens(messages, self._tokenize)
        b = self.backend
        if b.add_bos and b.bos >= 0 and (not toks or toks[0] != b.bos):
            toks = [b.bos, *toks]
        return toks

    def fit_prompt(self, messages: Sequence[Message], max_tokens: int
                   ) -> tuple[list[int], int]:
        """Prompt tokens that leave room to answer, dropping the oldest turns (never the
        system prompt, never the newest message). Returns (tokens, turns dropped)."""
        n_ctx = self.backend.n_ctx
        reserve = max(16, min(max_tokens, n_ctx // 4))
        msgs = list(messages)
        dropped = 0
        while True:
            toks = self.prompt_tokens(msgs)
            if len(toks) + reserve <= n_ctx:
                return toks, dropped
            first = 1 if msgs and msgs[0].role == "system" else 0
            if len(msgs) - first <= 1:
                raise ContextOverflowError(
                    f"the message is too long: {len(toks)} prompt tokens, and the context "
                    f"holds {n_ctx} with {reserve} kept for the answer; shorten it or raise "
                    f"--n-ctx"
                )
            del msgs[first]
            dropped += 1

    def _evaluate_prompt(self, prompt: list[int]) -> int:
        """Bring the cache to `prompt`, evaluating only what is new; returns that count."""
        reuse = common_prefix(self.kv_tokens, prompt)
        if reuse == len(prompt):
            reuse -= 1  # the last token must be evaluated to get its logits
        self.backend.kv_remove(0, reuse, -1)
        self.kv_tokens = self.kv_tokens[:reuse]
        self.backend.prefill(prompt[reuse:], reuse)
        self.kv_tokens = list(prompt)
        return len(prompt) - reuse

    def reset(self) -> None:
        self.backend.kv_clear()
        self.kv_tokens = []

    # -- decoding ---------------------------------------------------------------------

    def generate(
        self,
        messages: Sequence[Message],
        settings: SamplingSettings = DEFAULT_SETTINGS,
        *,
        speculative: bool = True,
        cancel: threading.Event | None = None,
        logit_gaps: list[float] | None = None,
    ) -> Iterator[Chunk]:
        """Stream the answer to `messages`. Stops on an end-of-generation token, at
        settings.max_tokens, when the context is full, or when `cancel` is set.
        logit_gaps, if given, receives the top-2 logit gap at each step's root."""
        settings = settings.with_seed()
        backend = self.backend
        t_start = time.perf_counter()
        prompt, dropped = self.fit_prompt(messages, settings.max_tokens)
        stats = AnswerStats(prompt_tokens=len(prompt), dropped_turns=dropped, seed=settings.seed,
                            plain_tokens_per_s=self.plain_tokens_per_s)
        spec = self.speculator if speculative else None
        if spec is not None and not backend.partial_kv_removal:
            spec, stats.fallback = None, "model cannot trim its cache (recurrent/hybrid)"
        stats.speculative = spec is not None
        self.last_stats = stats

        try:
            stats.prompt_evaluated = self._evaluate_prompt(prompt)
        except BaseException:
            self.reset()  # a failed or interrupted prefill leaves the cache unknown
            raise
        sampler = Sampler(settings, backend.n_vocab)
        sampler.remember(prompt)
        if spec is not None:
            spec.begin(prompt)
            stats.trigram_mb = spec.table_mb
        pending = sampler.sample(backend.ctx_ptr, -1, backend.logits_row(-1))
        t_first = time.perf_counter()
        stats.prompt_s = t_first - t_start
        stats.tokens = 1
        output = [pending]
        history = list(prompt) + [pending]
        decoder = StreamDecoder(backend.piece)
        yield Chunk(decoder.feed([pending]), [pending], None, stats)

        try:
            while True:
                if backend.is_eog(pending):
                    stats.finish_reason = "stop"
                    break
                if len(output) >= settings.max_tokens:
                    stats.finish_reason = "length"
                    break
                if cancel is not None and cancel.is_set():
                    stats.finish_reason = "cancelled"
                    break
                n_past = len(self.kv_tokens)
                room = backend.n_ctx - n_past
                if room < 1:
                    stats.finish_reason = "context full"
                    break
                t_step = time.perf_counter()
                if spec is not None:
                    tree = spec.propose(history, min(room, backend.n_batch))
                else:
                    tree = DraftTree.root_only(pending)
                emitted, kept, decode_s = verify_tree(
                    backend, tree, n_past, sampler, settings.max_tokens - len(output),
                    logit_gaps,
                )
                self.kv_tokens.append(pending)
                self.kv_tokens += emitted[: kept - 1]
                pending = emitted[-1]
                output += emitted
                history += emitted
                if spec is not None:
                    spec.learn(history, len(emitted), tree, kept, decode_s)
                step = StepStats(
                    emitted=len(emitted), drafted=len(tree) - 1, accepted=kept - 1,
                    decode_s=decode_s,
                    host_s=time.perf_counter() - t_step - decode_s,
                )
                stats.add_step(step)
                stats.decode_s = time.perf_counter() - t_first
                yield Chunk(decoder.feed(emitted), emitted, step, stats)
        except GeneratorExit:
            stats.finish_reason = stats.finish_reason or "cancelled"
            raise
        finally:
            stats.decode_s = time.perf_counter() - t_first
            if spec is not None:
                stats.trigram_mb = spec.table_mb
            sampler.close()
        tail = decoder.flush()
        if tail:
            yield Chunk(tail, [], None, stats)

    def answer(self, messages: Sequence[Message], settings: SamplingSettings = DEFAULT_SETTINGS,
               **kw) -> tuple[str, list[int], AnswerStats]:
        """The whole answer at once (tests, benchmark)."""
        parts: list[str] = []
        tokens: list[int] = []
        stats = AnswerStats()
        for chunk in self.generate(messages, settings, **kw):
            parts.append(chunk.text)
            tokens += chunk.tokens
            stats = chunk.stats
        return "".join(parts), tokens, stats
