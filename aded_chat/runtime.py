"""Opening a model for the app: backend, template, and the ADED speculator with its
corpus prior from the files shipped in aded_chat.assets."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from aded_chat.config import Config, cache_dir
from engine.backend import LlamaBackend
from engine.cost import CostModel, load_or_measure
from engine.models import resolve_model
from engine.session import ChatSession


def corpus_files() -> list[Path]:
    root = importlib.resources.files("aded_chat.assets") / "corpus"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith((".txt", ".py")))


def app_threads() -> int:
    """llama.cpp threads beside a UI: one core fewer than the machine has. llama.cpp's
    threads wait for each other at every layer, so a UI that takes a slice of any core
    they run on delays them all: on a 2-vCPU machine the app decoded at 58% of headless
    speed with two threads and at 95% with one (BENCHMARKS.md)."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def load_cost_curve(spec: str | None) -> CostModel | None:
    """The --cost-curve flag's curve (None: measure this machine's). Read before the
    model loads, so a bad file ends in one line at once."""
    return CostModel.from_curve_file(spec) if spec else None


def open_session(
    cfg: Config,
    *,
    model: str | None = None,
    n_gpu_layers: int | None = None,
    n_ctx: int | None = None,
    verbose: bool = False,
    speculator: bool = True,
    wait_for_drafter: bool = True,
    reserve_core: bool = False,
    cost_curve: CostModel | None = None,
) -> ChatSession:
    """Load the model and, unless speculator is off, its ADED drafter. With
    wait_for_drafter False the session is returned as soon as the model is loaded and
    the drafter attaches itself a few seconds later (the app does this). reserve_core
    leaves one core to the UI when the config does not set threads (see app_threads).
    cost_curve, when given, replaces this machine's measured verification costs: the
    drafter then plans as it would on the machine that curve came from."""
    path = resolve_model(model if model is not None else cfg.model, cfg.models_path)
    backend = LlamaBackend(
        path,
        n_ctx=n_ctx or cfg.n_ctx,
        n_gpu_layers=n_gpu_layers if n_gpu_layers is not None else cfg.gpu_layers,
        n_threads=cfg.threads or (app_threads() if reserve_core else None),
        kv_cache=cfg.kv_cache,
        verbose=verbose,
    )
    session = ChatSession(backend)
    if speculator:
        # measuring uses the context, so it happens here, not beside a decode
        cost = cost_curve if cost_curve is not None else load_or_measure(backend, cache_dir())

        def build():
            from engine.aded import AdedSpeculator  # imports Numba: keep it off the start

            return AdedSpeculator.for_backend(backend, corpus_files(), cache_dir(), cost=cost)

        session.load_speculator(build)
        if wait_for_drafter:
            session.wait_for_speculator()
    return session
