"""The app's settings turned into the engine's options: which model, where the caches
live, and the corpus prior shipped in aded_chat.assets."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from aded_chat.config import Config, cache_dir
from aded_chat.engine import ChatSession, CostModel, SessionOptions, open_session, resolve_model


def corpus_files() -> tuple[Path, ...]:
    """The drafter's corpus prior: text files, documents separated by two blank lines."""
    root = importlib.resources.files("aded_chat.assets") / "corpus"
    return tuple(sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".txt")))


def open_model(
    cfg: Config,
    *,
    model: str | None = None,
    verbose: bool = False,
    drafter: bool = True,
    wait_for_drafter: bool = True,
    reserve_core: bool = False,
    cost_curve: CostModel | None = None,
    remember: bool = True,
    guard_near_ties: bool | None = None,
) -> ChatSession:
    """Load the configured model (or `model`: a path or a name in the models folder) and,
    unless drafter is off, its ADED drafter. reserve_core leaves a core to the UI when
    the config does not set threads; cost_curve replaces this machine's measured one.
    remember (with the config's learn_across_runs) keeps what the drafter learns in the
    cache folder, per model, and starts from it next time. guard_near_ties=True keeps
    greedy verification's near-tie guard on where batches are exact too (as a GPU
    needs it: the bench measures what it costs); None takes the config's exact_greedy
    (off: the guard, and batches of any width)."""
    if guard_near_ties is None and not cfg.exact_greedy:
        guard_near_ties = True
    path = resolve_model(model if model is not None else cfg.model, cfg.models_path)
    return open_session(path, SessionOptions(
        n_ctx=cfg.n_ctx, n_gpu_layers=cfg.gpu_layers, threads=cfg.threads or None,
        reserve_core=reserve_core, kv_cache=cfg.kv_cache, verbose=verbose, drafter=drafter,
        wait_for_drafter=wait_for_drafter, cost_curve=cost_curve, corpus=corpus_files(),
        cache_dir=cache_dir(), guard_near_ties=guard_near_ties,
        exact_kernels=cfg.exact_greedy, steady_rows=cfg.steady_batch,
        learned_dir=cache_dir() / "learned" if remember and cfg.learn_across_runs else None,
    ))
