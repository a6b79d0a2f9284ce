"""A conversation on one loaded model: prompt fitting, cache reuse across turns, and the
decode loop that plain and speculative decoding share: one prefill, then steps of
propose (the drafter) -> verify (one llama_decode of the tree) -> learn.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..draft.cost import CostModel
from ..draft.tree import MAX_TREE, DraftTree
from ..errors import ContextOverflowError, PrefillCancelled
from ..llama.backend import BackendInfo, LlamaBackend
from ..llama.detok import StreamDecoder
from ..llama.models import model_identity
from ..llama.sampling import Sampler, SamplingSettings
from ..llama.template import ChatTemplate, Message
from .kv import KvCache
from .stats import AnswerStats, StepStats

DEFAULT_SETTINGS = SamplingSettings()
PLAIN_WINDOW = 64  # one-token steps behind the plain rate
# Greedy verification treats a top-2 logit gap below this as a tie that a batch's
# slightly different arithmetic may have decided (engine.decode.verify); the divergences
# from plain decoding measured in BENCHMARKS.md were at gaps of 0.002-0.16. Not applied
# where batches are computed exactly as single tokens are (engine.decode.exact).
TIE_GAP = 0.25
PLAIN_MIN_STEPS = 8
# What the drafter learned is written after an answer at most this often (and at close):
# a crash loses at most this much learning, and answers do not each pay for a write.
SAVE_EVERY_S = 120.0


class Speculator(Protocol):
    """What the decode loop needs from a drafter (engine.draft.aded implements it)."""

    def begin(self, prompt: list[int]) -> None: ...
    def propose(self, history: list[int], room: int) -> DraftTree: ...
    def learn(self, history: list[int], n_new: int, tree: DraftTree, kept: int,
              decode_s: float, batch: int) -> None: ...
    cost: CostModel  # what verifying n tokens costs, as the drafter plans with it

    def snapshot(self) -> object: ...
    def restore(self, state: object) -> None: ...
    def save_learned(self, path: Path) -> None: ...
    def load_learned(self, path: Path) -> bool: ...
    @property
    def table_mb(self) -> float: ...


@dataclass
class Chunk:
    """What the decode loop yields: new text, its tokens, and the answer's figures so far."""

    text: str
    tokens: list[int]
    stats: AnswerStats


@dataclass
class _Answer:
    """One answer in progress: what a step reads and advances."""

    settings: SamplingSettings
    sampler: Sampler
    spec: Speculator | None
    stats: AnswerStats
    pending: int  # the newest chosen token, not yet in the cache: the next tree's root
    history: list[int]  # prompt + answer so far
    decoder: StreamDecoder
    t_first: float
    n_out: int = 1
    tied: bool = False  # the last step stopped at a near-tie: decode the next token alone
    logit_gaps: list[float] | None = field(default=None, repr=False)
    max_rows: int = MAX_TREE  # a verification batch's rows, the tokens carried in included
    tie_gap: float = 0.0  # greedy verification's near-tie guard (0: off)
    steady_rows: int = 0  # every step's batch rows (ChatSession.steady_rows; 0: off)
    # the tree of a step that drafts nothing (its root is set before each use)
    root: DraftTree = field(default_factory=lambda: DraftTree.root_only(0), repr=False)


class ChatSession:
    """A conversation's engine: the model, its chat template, its cache and its drafter.
    open_session (engine.loader) builds one; everything above the engine uses only the
    public methods and properties here."""

    def __init__(self, backend: LlamaBackend, template: ChatTemplate | None = None,
                 speculator: Speculator | None = None):
        self._backend = backend
        if template is None:
            bos = backend.token_text(backend.bos) if backend.bos >= 0 else ""
            template = ChatTemplate(backend.chat_template(), bos_token=bos)
        self._template = template
        self._speculator = speculator
        self.speculator_error: str | None = None
        self._loading: Future | None = None
        self._loader: threading.Thread | None = None
        self._cache = KvCache(backend)
        self.last_stats: AnswerStats | None = None
        # Wall time of recent one-token steps (plain decoding, or ADED choosing not to
        # draft): the measured plain rate that the speedup figure compares against.
        self._plain_steps: deque[float] = deque(maxlen=PLAIN_WINDOW)
        self._learned_path: Path | None = None
        self._learned_saved = time.monotonic()
        self._learned_dirty = False
        self._identity: dict | None = None  # model_identity, read once when first asked
        # batches of up to this many rows give each row the logits one token would
        # (engine.decode.exact; 1: none does): greedy verification keeps its batches
        # within them and needs no near-tie guard. The loader sets it from a probe.
        self.exact_rows = 1
        # Every speculative step a batch of exactly this many rows (0: off), so that a
        # GPU replays one captured compute graph (engine.decode.verify); the drafter then
        # plans with CostModel.steady. The loader sets it.
        self.steady_rows = 0

    # -- what is loaded ---------------------------------------------------------------

    @property
    def info(self) -> BackendInfo:
        """The model, where it runs, threads, context and KV cache type."""
        return self._backend.info

    def tokenize(self, text: str) -> list[int]:
        return self._backend.tokenize(text)

    def provenance(self, settings: SamplingSettings, stats: AnswerStats) -> dict:
        """What made an answer, to keep with it: the model file (name, size, a hash of its
        header), the sampling settings with the seed actually drawn, and the engine
        settings that can change a token at a near-tie (KV cache type, threads)."""
        if self._identity is None:
            self._identity = model_identity(Path(self.info.model_path))
        info = self.info
        return {"model": self._identity,
                "settings": {**settings.as_dict(), "seed": stats.seed},
                "engine": {"backend": info.offload, "kv_cache": info.kv_cache,
                           "threads": info.n_threads, "n_ctx": info.n_ctx,
                           "speculative": stats.speculative,
                           "exact_rows": self.exact_rows,
                           **({"steady_rows": self.steady_rows} if self.steady_rows else {})}}

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
        return self._speculator is not None

    def _take_speculator(self) -> None:
        fut = self._loading
        if fut is None or not fut.done():
            return
        self._loading = None
        try:
            self._speculator = fut.result()
        except Exception as exc:
            self.speculator_error = f"drafter failed to load: {exc}"

    @property
    def speculator_loading(self) -> bool:
        return self._loading is not None and not self._loading.done()

    @property
    def speculator_ready(self) -> bool:
        self._take_speculator()
        return self._speculator is not None

    def drafter_state(self) -> object:
        """Everything the drafter has learned (the bench replays each prompt from one
        state); pass it to restore_drafter. None without a drafter."""
        return self._speculator.snapshot() if self.speculator_ready else None

    def restore_drafter(self, state: object) -> None:
        if state is not None and self.speculator_ready:
            self._speculator.restore(state)

    def remember_drafter_in(self, path: Path | None) -> None:
        """Keep what the drafter learns in this file (engine.draft.memory): after an
        answer at most every SAVE_EVERY_S, and when the session closes."""
        self._learned_path = path

    def save_drafter(self, path: Path | None = None) -> bool:
        """Write what the drafter has learned (to `path`, else the remembered file);
        False when there is nothing to write or the file cannot be written."""
        path = path or self._learned_path
        if path is None or not self.speculator_ready:
            return False
        try:
            self._speculator.save_learned(path)
        except OSError:
            return False
        self._learned_saved, self._learned_dirty = time.monotonic(), False
        return True

    def load_drafter(self, path: Path) -> bool:
        """Replace what the drafter knows with a saved state; False when the file is
        missing, damaged or from another model's vocabulary (nothing changes then)."""
        return self.speculator_ready and self._speculator.load_learned(path)

    @property
    def drafter_table_mb(self) -> float:
        return self._speculator.table_mb if self.speculator_ready else 0.0

    def verify_costs(self) -> dict[int, float]:
        """Seconds per verification batch size the drafter plans with (measured at load,
        refined online; or the foreign curve it was given): empty without a drafter."""
        return self._speculator.cost.as_dict() if self.speculator_ready else {}

    def verify_switch(self) -> float:
        """Seconds a one-token step costs more right after a batch (CostModel.switch),
        which the drafter charges every draft: 0.0 without a drafter."""
        return self._speculator.cost.switch if self.speculator_ready else 0.0

    @property
    def plain_tokens_per_s(self) -> float | None:
        """1 / the median wall time of recent one-token steps, once there are a few."""
        if len(self._plain_steps) < PLAIN_MIN_STEPS:
            return None
        return 1.0 / statistics.median(self._plain_steps)

    def close(self) -> None:
        """Keep what the drafter learned, then free the model (after the drafter's loader,
        which may be tokenizing, is done)."""
        if self._loader is not None:
            self._loader.join()
        if self._learned_dirty:
            self.save_drafter()
        self._backend.close()

    # -- prompt -----------------------------------------------------------------------

    def _tokenize(self, text: str, special: bool) -> list[int]:
        return self._backend.tokenize(text, parse_special=special)

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        toks = self._template.tokens(messages, self._tokenize)
        b = self._backend
        if b.add_bos and b.bos >= 0 and (not toks or toks[0] != b.bos):
            toks = [b.bos, *toks]
        return toks

    def check_messages(self, messages: Sequence[Message]) -> None:
        """Raise TemplateRenderError (one sentence) when the model's chat template cannot
        render these messages, before a caller saves them as a conversation."""
        self._template.render(messages)

    def fit_prompt(self, messages: Sequence[Message], max_tokens: int
                   ) -> tuple[list[int], int]:
        """Prompt tokens that leave room to answer, dropping the oldest turns (never the
        system prompt, never the newest message). Returns (tokens, turns dropped)."""
        n_ctx = self._backend.n_ctx
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

    def reset(self) -> None:
        """Forget the cached conversation: the next answer evaluates its whole prompt."""
        self._cache.clear()

    # -- decoding ---------------------------------------------------------------------

    def generate(
        self,
        messages: Sequence[Message],
        settings: SamplingSettings = DEFAULT_SETTINGS,
        *,
        speculative: bool = True,
        cancel: threading.Event | None = None,
        on_prefill: Callable[[int, int], None] | None = None,
        logit_gaps: list[float] | None = None,
    ) -> Iterator[Chunk]:
        """Stream the answer to `messages`. Stops on an end-of-generation token, at
        settings.max_tokens, when the context is full, or when `cancel` is set.
        A long prompt is evaluated in chunks: on_prefill(done, total) hears of each, and
        `cancel` set meanwhile raises PrefillCancelled before any token (the evaluated
        chunks stay cached). logit_gaps, if given, receives the top-2 logit gap at each
        step's root."""
        ans = self._prefill(messages, settings.with_seed(), speculative, logit_gaps,
                            self._prefill_progress(cancel, on_prefill))
        yield Chunk(ans.decoder.feed([ans.pending]), [ans.pending], ans.stats)
        try:
            while (reason := self._stop_reason(ans, cancel)) is None:
                emitted = self._step(ans)
                yield Chunk(ans.decoder.feed(emitted), emitted, ans.stats)
            ans.stats.finish_reason = reason
        except GeneratorExit:
            ans.stats.finish_reason = ans.stats.finish_reason or "cancelled"
            raise
        finally:
            self._finish(ans)
        tail = ans.decoder.flush()
        if tail:
            yield Chunk(tail, [], ans.stats)

    @staticmethod
    def _prefill_progress(cancel: threading.Event | None,
                          on_prefill: Callable[[int, int], None] | None
                          ) -> Callable[[int, int], None]:
        def progress(done: int, total: int) -> None:
            if cancel is not None and cancel.is_set():
                raise PrefillCancelled(f"prompt evaluation stopped at {done} of {total} "
                                       f"tokens")
            if on_prefill is not None:
                on_prefill(done, total)
        return progress

    def _prefill(self, messages: Sequence[Message], settings: SamplingSettings,
                 speculative: bool, logit_gaps: list[float] | None,
                 progress: Callable[[int, int], None]) -> _Answer:
        """Fit and evaluate the prompt, choose the drafter (or say why not), and draw the
        answer's first token from the prompt's logits."""
        t_start = time.perf_counter()
        prompt, dropped = self.fit_prompt(messages, settings.max_tokens)
        stats = AnswerStats(prompt_tokens=len(prompt), dropped_turns=dropped, seed=settings.seed,
                            plain_tokens_per_s=self.plain_tokens_per_s,
                            n_ctx=self._backend.n_ctx)
        self._take_speculator()
        spec = self._speculator if speculative else None
        if speculative and spec is None:
            stats.fallback = ("drafter loading" if self.speculator_loading
                              else self.speculator_error)
        if spec is not None and not self._backend.partial_kv_removal:
            spec, stats.fallback = None, "model cannot trim its cache (recurrent/hybrid)"
        stats.speculative = spec is not None
        self.last_stats = stats
        stats.prompt_evaluated = self._cache.bring_to(prompt, progress)
        sampler = Sampler(settings, self._backend)
        sampler.remember(prompt)
        if spec is not None:
            spec.begin(prompt)
            stats.trigram_mb = spec.table_mb
        first = sampler.sample(-1, self._backend.logits_row(-1))
        t_first = time.perf_counter()
        stats.prompt_s = t_first - t_start
        stats.tokens = 1
        # Greedy answers are plain decoding's exactly where batches are computed as one
        # token is: within exact_rows rows. Elsewhere a near-tie guard stands in.
        exact = settings.greedy and self.exact_rows > 1
        max_rows = min(self._backend.n_batch, MAX_TREE, self.exact_rows if exact else MAX_TREE)
        steady = self.steady_rows if spec is not None else 0
        if steady:
            # Every token comes from a batch of the same rows: a near-tie guard's one-token
            # step would change the shape (greedy answers are then plain decoding's only
            # where batches of that many rows are exact: steady <= exact_rows).
            exact = False
            max_rows = min(self._backend.n_batch, steady)
        return _Answer(settings, sampler, spec, stats, first, list(prompt) + [first],
                       StreamDecoder(self._backend.piece), t_first, logit_gaps=logit_gaps,
                       max_rows=max_rows, steady_rows=steady,
                       tie_gap=TIE_GAP if settings.greedy and not exact and not steady
                       else 0.0)

    def _stop_reason(self, ans: _Answer, cancel: threading.Event | None) -> str | None:
        if self._backend.is_eog(ans.pending):
            return "stop"
        if ans.n_out >= ans.settings.max_tokens:
            return "length"
        if cancel is not None and cancel.is_set():
            return "cancelled"
        if self._cache.room < 1:
            return "context full"
        return None

    def _step(self, ans: _Answer) -> list[int]:
        """One verification step: propose a tree, verify it in one batch, learn from what
        the model kept. Returns the tokens it added to the answer."""
        backend, spec, stats = self._backend, ans.spec, ans.stats
        t_step, cpu_step = time.perf_counter(), time.thread_time()
        decode_cpu0 = backend.decode_cpu_s
        if spec is not None and not ans.tied:
            # the tokens behind share the batch, which stays within max_rows; and a tree
            # of n rows emits at most n tokens, so none is drafted past max_tokens (an
            # answer cut at its length would verify a whole draft to keep one token)
            tree = spec.propose(ans.history, min(self._cache.room,
                                                 ans.max_rows - len(self._cache.behind),
                                                 ans.settings.max_tokens - ans.n_out))
        else:
            tree = ans.root
            tree.tokens[0] = ans.pending
        v = self._cache.verify(tree, ans.sampler, ans.settings.max_tokens - ans.n_out,
                               ans.logit_gaps, ans.tie_gap,
                               spec.cost.row_s() if len(tree) > 1 else None,
                               ans.steady_rows)
        emitted, ans.tied = v.emitted, v.tie
        if emitted:
            ans.pending = emitted[-1]
        ans.n_out += len(emitted)
        ans.history += emitted
        if spec is not None:
            spec.learn(ans.history, len(emitted), tree, v.accepted + 1, v.decode_s,
                       v.carried + v.nodes)
        step = StepStats(
            emitted=len(emitted), drafted=v.nodes - 1, accepted=v.accepted,
            decode_s=v.decode_s, host_s=time.perf_counter() - t_step - v.decode_s,
            host_cpu_s=(time.thread_time() - cpu_step
                        - (backend.decode_cpu_s - decode_cpu0)),
            redecoded=v.redecoded, carried=v.carried, near_tie=v.tie,
        )
        stats.add_step(step)
        if step.drafted == 0 and not v.carried:  # a plain step (a search is not plain's)
            self._plain_steps.append(step.decode_s + (step.host_s if spec is None else 0.0))
            if stats.plain_tokens_per_s is None:  # the first answers: show it early
                stats.plain_tokens_per_s = self.plain_tokens_per_s
        stats.decode_s = time.perf_counter() - ans.t_first
        return emitted

    def _finish(self, ans: _Answer) -> None:
        stats = ans.stats
        stats.decode_s = time.perf_counter() - ans.t_first
        # the median over the last steps, once per answer rather than per step
        stats.plain_tokens_per_s = self.plain_tokens_per_s
        if ans.spec is not None:
            stats.trigram_mb = ans.spec.table_mb
            self._learned_dirty = True
            if time.monotonic() - self._learned_saved >= SAVE_EVERY_S:
                self.save_drafter()
        ans.sampler.close()

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
