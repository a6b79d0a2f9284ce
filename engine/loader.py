"""The engine's one way in: a model file and options in, a ready ChatSession out.

It loads the backend, reads or measures the verification cost curve and whether its
batches are exact (before the drafter exists, since measuring uses the context), and
builds the ADED drafter on a thread, so a chat can open as soon as the model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .decode.exact import load_or_probe
from .decode.session import ChatSession
from .draft.cost import CostModel, load_or_measure
from .draft.memory import learned_path
from .draft.tree import MAX_TREE
from .llama import kernels
from .llama.backend import LlamaBackend


@dataclass(frozen=True)
class SessionOptions:
    n_ctx: int = 4096
    n_gpu_layers: int | None = None  # None: every layer when llama.cpp can offload
    threads: int | None = None  # None: engine.llama.backend.default_threads
    reserve_core: bool = False  # the default leaves a core to a UI beside the model
    kv_cache: str = "auto"  # engine.llama.backend.KV_CACHE_CHOICES
    verbose: bool = False  # llama.cpp's log on stderr
    drafter: bool = True  # ADED; False: plain decoding only
    wait_for_drafter: bool = True  # False: return once the model is loaded
    cost_curve: CostModel | None = None  # another machine's curve (read_cost_curve)
    corpus: tuple[Path, ...] = ()  # text files whose tri-grams are the drafter's prior
    cache_dir: Path | None = None  # the prior and the measured curve, per model file
    learned_dir: Path | None = None  # what the drafter learned, kept across runs (None: not)
    # greedy near-tie guard: None where batches are not exact (engine.decode.exact);
    # True on every step, as a GPU must (to measure what that costs)
    guard_near_ties: bool | None = None
    # compute batches with the one-token kernels (engine.llama.kernels: ggml's tiled
    # K-quant matmul off), so that greedy batches of any width are exact on a CPU; asked
    # with the drafter off too, so plain answers are the speculative ones' token for
    # token. The process's first model decides it for the process
    exact_kernels: bool = False
    # every speculative step a batch of exactly this many rows (0: off): for a GPU whose
    # one-token steps replay a captured graph, which a batch of another shape interrupts
    # (engine.decode.verify)
    steady_rows: int = 0


def read_cost_curve(spec: str | None) -> CostModel | None:
    """The curve a --cost-curve flag names (`flat`, or a JSON file), or None to measure
    this machine's. Read before the model loads, so a bad file ends in one line at once."""
    return CostModel.from_curve_file(spec) if spec else None


def open_session(model: str | Path, options: SessionOptions = SessionOptions()
                 ) -> ChatSession:
    """Load `model` (a GGUF path) and, unless options.drafter is off, its drafter.
    Raises ModelLoadError (one sentence) for a file llama.cpp cannot use."""
    o = options
    if o.exact_kernels:
        kernels.exact_batch_kernels()
    # A steady batch's tree has at most steady_rows - 1 leaves, so it needs no more KV
    # sequences; each committed token goes into every one of them, and freeing or copying
    # cells walks them all (a 62-sequence context's seq_rm cost 69 us a step against
    # 34 us with three: BENCHMARKS.md, session 22)
    seqs = {"n_seq_max": o.steady_rows - 1} if o.steady_rows else {}
    backend = LlamaBackend(model, n_ctx=o.n_ctx, n_gpu_layers=o.n_gpu_layers,
                           n_threads=o.threads, reserve_core=o.reserve_core,
                           kv_cache=o.kv_cache, verbose=o.verbose, **seqs)
    session = ChatSession(backend)
    if o.drafter:
        rows = 1 if o.guard_near_ties else load_or_probe(backend, o.cache_dir)
        if o.cost_curve is not None and rows < MAX_TREE:
            rows = 1  # another machine's curve: its trees, as wide as it would verify them
        session.exact_rows = rows
        cost = o.cost_curve if o.cost_curve is not None else load_or_measure(backend,
                                                                              o.cache_dir)
        if o.steady_rows:
            cost = CostModel.steady(o.steady_rows, float(cost.cost[o.steady_rows]))
            session.steady_rows = o.steady_rows

        def build():
            from .draft.aded import AdedSpeculator  # imports Numba: keep it off the start

            return AdedSpeculator.for_backend(backend, list(o.corpus), o.cache_dir, cost=cost,
                                              learned=learned)

        learned = learned_path(o.learned_dir, model) if o.learned_dir is not None else None
        session.remember_drafter_in(learned)
        session.load_speculator(build)
        if o.wait_for_drafter:
            session.wait_for_speculator()
    return session
