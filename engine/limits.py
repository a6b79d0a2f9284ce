"""What settings a person may give, checked in one place for flags, the config file and
the settings screen: a value llama.cpp would take but cannot use (a NaN temperature, a
negative context, 100,000 threads) is one clear sentence instead of a hang or a wrong
answer later."""

from __future__ import annotations

import math
import os

from .draft.tree import MAX_TREE
from .errors import EngineError
from .llama.sampling import SEED_MAX, SamplingSettings


class SettingsError(EngineError):
    """A setting out of its range; the message names it and the range."""


def max_threads() -> int:
    """More threads than this only make llama.cpp's threads wait for each other."""
    return max(8, 4 * (os.cpu_count() or 1))


def check_sampling(s: SamplingSettings) -> None:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise SettingsError(what)

    finite = all(math.isfinite(v) for v in (s.temperature, s.top_p, s.min_p,
                                             s.repeat_penalty))
    need(finite, "temperature, top_p, min_p and repeat_penalty must be finite numbers")
    need(s.temperature >= 0, f"temperature must be 0 (greedy) or more, not {s.temperature}")
    need(0 < s.top_p <= 1, f"top_p must be above 0 and at most 1, not {s.top_p}")
    need(0 <= s.min_p <= 1, f"min_p must be between 0 and 1, not {s.min_p}")
    need(s.top_k >= 0, f"top_k must be 0 (off) or more, not {s.top_k}")
    need(s.repeat_penalty > 0, f"repeat_penalty must be above 0 (1 = off), not "
                               f"{s.repeat_penalty}")
    need(s.repeat_last_n >= 0, f"repeat_last_n must be 0 or more, not {s.repeat_last_n}")
    need(s.max_tokens >= 1, f"max_tokens must be at least 1, not {s.max_tokens}")
    need(s.seed is None or 0 <= s.seed <= SEED_MAX,
         f"seed must be between 0 and {SEED_MAX}, not {s.seed}")


def check_load(*, n_ctx: int | None = None, threads: int | None = None,
               n_gpu_layers: int | None = None, steady_rows: int | None = None) -> None:
    """The model-loading options (None: not given). threads 0 means automatic,
    steady_rows 0 off."""
    if steady_rows and not 2 <= steady_rows <= MAX_TREE:
        raise SettingsError(f"steady_batch must be 0 (off) or 2 to {MAX_TREE} rows, not "
                            f"{steady_rows}")
    if n_ctx is not None and not 16 <= n_ctx <= 1 << 24:
        raise SettingsError(f"n_ctx must be between 16 and {1 << 24} tokens, not {n_ctx}")
    if threads is not None and not 0 <= threads <= max_threads():
        raise SettingsError(f"threads must be between 1 and {max_threads()} (0: automatic), "
                            f"not {threads}")
    if n_gpu_layers is not None and n_gpu_layers < -1:
        raise SettingsError(f"n_gpu_layers must be -1 (all) or more, not {n_gpu_layers}")
