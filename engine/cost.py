"""What verifying n tokens costs on this model and machine: measured at load, cached per
model file, threads and GPU layers, refined online. With engine.acceptance it lets the
drafter keep the tree size (zero included) that maximises expected tokens per second, so
the same engine drafts little on a compute-bound CPU and much on a GPU where a batch
costs about one token. No Numba here: the app measures this before the drafter loads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from engine.backend import LlamaBackend
from engine.models import file_identity

MAX_TREE = 32  # tokens in one verification batch, root included
PROBE_SIZES = (1, 2, 4, 8, 16, 32)


class CostModel:
    """Seconds per llama_decode of n tokens (n = 1..MAX_TREE), measured at load and
    refined online with each step's own timing."""

    def __init__(self, seconds: np.ndarray):
        self.cost = np.asarray(seconds, dtype=np.float64)  # index n, cost[0] unused

    @classmethod
    def from_probes(cls, sizes: list[int], seconds: list[float]) -> CostModel:
        """One token costs what it measured; batches of two or more follow a line
        a + b*n fitted by Theil-Sen (the median of pairwise slopes), so one probe hit by a
        stall of a shared machine cannot bend the table. (On a CPU the step from one token
        to two is larger than the slope after it: one line through all would hide it.)"""
        one = float(seconds[list(sizes).index(1)])
        pts = [(n, s) for n, s in zip(sizes, seconds, strict=True) if n >= 2]
        x = np.array([p[0] for p in pts], dtype=np.float64)
        y = np.array([p[1] for p in pts], dtype=np.float64)
        n = np.arange(MAX_TREE + 2, dtype=np.float64)
        if len(x) >= 2:
            i, j = np.triu_indices(len(x), k=1)
            slope = max(0.0, float(np.median((y[j] - y[i]) / (x[j] - x[i]))))
            cost = float(np.median(y - slope * x)) + slope * n
        else:
            cost = np.full(len(n), y[0] if len(y) else one)
        cost = np.maximum(cost, one)
        cost[:2] = one
        return cls(cost)

    @classmethod
    def measure(cls, backend: LlamaBackend, context: int = 128, reps: int = 4) -> CostModel:
        """Time decodes of each probe size after a short context. The minimum of reps:
        stalls from a shared machine hit any batch size alike and are not its cost."""
        backend.kv_clear()
        ctx_tokens = np.full(context, max(backend.bos, 0), np.int32)
        backend.prefill(list(ctx_tokens), 0)
        secs = []
        for size in PROBE_SIZES:
            toks = np.full(size, max(backend.bos, 0), np.int32)
            pos = np.arange(context, context + size, dtype=np.int32)
            runs = []
            for _ in range(reps):
                t0 = time.perf_counter()
                backend.decode(toks, pos, logits=np.ones(size, np.int8))
                runs.append(time.perf_counter() - t0)
                backend.kv_remove(0, context, -1)
            secs.append(float(min(runs)))
        backend.kv_clear()
        return cls.from_probes(list(PROBE_SIZES), secs)

    def observe(self, n: int, seconds: float, alpha: float = 0.05) -> None:
        """Blend one measured step into the table, keeping it non-decreasing in n.
        A step far slower than expected is a stall of the machine, not the batch's cost.
        Called every step: scalar work only, no NumPy temporaries (a few of those cost
        more than the step's whole draft search once llama_decode has cooled the caches)."""
        cost = self.cost
        if not 1 <= n < len(cost):
            return
        old = float(cost[n])
        if seconds >= 2.0 * old:
            return
        new = old + alpha * (seconds - old)
        if new < old:  # a fall stops at the smaller size's cost
            cost[n] = max(new, float(cost[n - 1]))
        else:  # a rise carries on to the larger sizes it passes
            i = n
            while i < len(cost) and cost[i] < new:
                cost[i] = new
                i += 1

    def ratio(self, n: int) -> float:
        return float(self.cost[n] / self.cost[1])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"cost": self.cost.tolist()}))

    @classmethod
    def load(cls, path: Path) -> CostModel | None:
        try:
            data = json.loads(path.read_text())
            cost = np.asarray(data["cost"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if cost.shape != (MAX_TREE + 2,) or not np.all(cost > 0):
            return None
        return cls(cost)


def load_or_measure(backend: LlamaBackend, cache: Path | None) -> CostModel:
    """The cached cost table for this model, threads, offload and KV cache type, else a
    fresh measurement (about a second on a small model), saved for the next start."""
    path = None
    if cache is not None:
        kv = "" if backend.info.kv_cache == "f16" else f"-kv{backend.info.kv_cache}"
        path = cache / (f"cost-{file_identity(Path(backend.info.model_path))}"
                        f"-t{backend.n_threads}-g{backend.info.gpu_layers}{kv}.json")
        cost = CostModel.load(path)
        if cost is not None:
            return cost
    cost = CostModel.measure(backend)
    if path is not None:
        try:
            cost.save(path)
        except OSError:
            pass
    return cost
