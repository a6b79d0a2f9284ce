"""A conversation on one loaded model: prompt fitting, KV-cache reuse across turns, and
the decode loop that plain and speculative decoding share.

Invariant: sequence 0 of the KV cache holds exactly `kv_tokens`, at positions 0..n-1.
A new turn evaluates only the tokens after the longest common prefix with them.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
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
PLAIN_WINDOW = 64  # one-token steps behind the plain rate
# Greedy verification treats a top-2 logit gap below this as a tie that a batch's
# slightly different arithmetic may have decided (engine.verify); the divergences from
# plain decoding measured in BENCHMARKS.md were at gaps of 0.002-0.16.
TIE_GAP = 0.25
PLAIN_MIN_STEPS = 8


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
        self.speculator_error: str | None = None
        self._loading: Future | None = None
        self._loader: threading.Thread | None = None
        self.kv_tokens: list[int] = []
        self.last_stats: AnswerStats | None = None
        # Wall time of recent one-token steps (plain decoding, or ADED choosing not to
        # draft): the measured plain rate that the speedup figure compares against.
        self._plain_steps: deque[float] = deque(maxlen=PLAIN_WINDOW)

    # -- the drafter ------------------------------------------------------------------

    def load_speculator(self, factory: Callable[[], Speculator]) -> None:
        """Build the drafter on a thread: answers decode plainly until it is ready, so a
        chat opens as soon as the model is loaded (the drafter's Numba code and corpus
        prior take a few more seconds). The factory may use the tokenizer, not the
        context."""
        fut: Future = Future()

        def run() -> None:
            try:
                fut.set_result(factory())
            except BaseException as exc:  # reported in the stats, never raised in a thread
                fut.set_exception(exc)

        self._loading = fut
        self._loader = threading.Thread(target=run, name="drafter-load", daemon=True)
        self._loader.start()

    def wait_for_speculator(self, timeout: float | None = None) -> bool:
        """Block until the drafter is loaded (or failed); True when it is ready."""
        if self._loader is not None:
            self._loader.join(timeout)
        self._take_speculator()
        return self.speculator is not None

    def _take_speculator(self) -> None:
        fut = self._loading
        if fut is None or not fut.done():
            return
        self._loading = None
        try:
            self.speculator = fut.result()
        except Exception as exc:
            self.speculator_error = f"drafter failed to load: {exc}"

    @property
    def speculator_loading(self) -> bool:
        return self._loading is not None and not self._loading.done()

    @property
    def plain_tokens_per_s(self) -> float | None:
        """1 / the median wall time of recent one-token steps, once there are a few."""
        if len(self._plain_steps) < PLAIN_MIN_STEPS:
            return None
        return 1.0 / statistics.median(self._plain_steps)

    def close(self) -> None:
        """Free the model, after the drafter's loader (which may be tokenizing) is done."""
        if self._loader is not None:
            self._loader.join()
        self.backend.close()

    # -- prompt -----------------------------------------------------------------------

    def _tokenize(self, text: str, special: bool) -> list[int]:
        return self.backend.tokenize(text, parse_special=special)

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        toks = self.template.tokens(messages, self._tokenize)
        b = self.backend
        if b.add_bos and b.bos >= 0 and (not toks or toks[0] != b.bos):
            toks = [b.bos, *toks]
        return toks

    def check_messages(self, messages: Sequence[Message]) -> None:
        """Raise TemplateRenderError (one sentence) when the model's chat template cannot
        render these messages, before a caller saves them as a conversation."""
        self.template.render(messages)

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
        self._take_speculator()
        spec = self.speculator if speculative else None
        if speculative and spec is None:
            stats.fallback = ("drafter loading" if self.speculator_loading
                              else self.speculator_error)
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
        tied = False  # the last step stopped at a near-tie: decode the next token alone
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
                t_step, cpu_step = time.perf_counter(), time.thread_time()
                decode_cpu0 = backend.decode_cpu_s
                if spec is not None and not tied:
                    tree = spec.propose(history, min(room, backend.n_batch))
                else:
                    tree = DraftTree.root_only(pending)
                v = verify_tree(backend, tree, n_past, sampler,
                                settings.max_tokens - len(output), logit_gaps,
                                TIE_GAP if settings.greedy else 0.0)
                emitted, decode_s, tied = v.emitted, v.decode_s, v.tie
                if v.kept:
                    self.kv_tokens.append(pending)
                    self.kv_tokens += emitted[: v.kept - 1]
                if emitted:
                    pending = emitted[-1]
                output += emitted
                history += emitted
                if spec is not None:
                    spec.learn(history, len(emitted), tree, v.accepted + 1, decode_s)
                step = StepStats(
                    emitted=len(emitted), drafted=v.nodes - 1, accepted=v.accepted,
                    decode_s=decode_s,
                    host_s=time.perf_counter() - t_step - decode_s,
                    host_cpu_s=(time.thread_time() - cpu_step
                                - (backend.decode_cpu_s - decode_cpu0)),
                    redecoded=v.redecoded,
                )
                stats.add_step(step)
                if step.drafted == 0:  # a plain step; a drafter's search time is not plain's
                    self._plain_steps.append(decode_s + (step.host_s if spec is None else 0.0))
                    if stats.plain_tokens_per_s is None:  # the first answers: show it early
                        stats.plain_tokens_per_s = self.plain_tokens_per_s
                stats.decode_s = time.perf_counter() - t_first
                yield Chunk(decoder.feed(emitted), emitted, step, stats)
        except GeneratorExit:
            stats.finish_reason = stats.finish_reason or "cancelled"
            raise
        finally:
            stats.decode_s = time.perf_counter() - t_first
            # the median over the last steps, once per answer rather than per step
            stats.plain_tokens_per_s = self.plain_tokens_per_s
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
