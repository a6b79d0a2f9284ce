"""What verifying n tokens costs on this model and machine: measured at load, cached per
model file, threads and GPU layers, refined online. With engine.draft.acceptance it lets the
drafter keep the tree size (zero included) that maximises expected tokens per second, so
the same engine drafts little on a compute-bound CPU and much on a GPU where a batch
costs about one token. No Numba here: the app measures this before the drafter loads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import EngineError
from ..llama import kernels
from ..llama.backend import LlamaBackend, kv_cache_tag
from ..llama.models import file_identity
from .tree import MAX_TREE

# Batch sizes timed at load. Dense around 8: CUDA's small-batch matmul kernels (MMVQ)
# cover at most 8 tokens, so a GPU's curve can step up at 9; a table kept point by point
# lets the drafter stop just before such a cliff instead of averaging it into a line.
PROBE_SIZES = (1, 2, 3, 4, 6, 8, 9, 12, 16, 24, 32, 48, MAX_TREE)
# The most tokens one verification step can yield: engine.draft.aded drafts at most 8 deep,
# and the model adds its own token after the last accepted one.
STEP_TOKENS_MAX = 9
# The built-in GPU-like curve (`--cost-curve flat`): every batch up to MAX_TREE costs
# what one token does, as on a CUDA or Metal GPU for small batches of a small model.
# 5 ms is one token of a 1B Q4 model on a laptop GPU; only the ratio to host time matters.
FLAT_SECONDS = 0.005
# What a steady batch's table says any larger batch costs, in steady batches: no tree
# that large is ever verified, and the search's effort is sized to what is affordable
STEADY_BEYOND = 100.0
# How fast the switch estimate follows one-token steps after a batch: they are as rare
# as drafts, so faster than the table's 0.05.
SWITCH_ALPHA = 0.2


class CostCurveError(EngineError):
    """A --cost-curve file that cannot be used; the message says why."""


class CostModel:
    """Seconds per llama_decode of n tokens (n = 1..MAX_TREE), measured at load and
    refined online with each step's own timing. A foreign curve (another machine's,
    replayed here) is frozen: this machine's timings say nothing about it."""

    def __init__(self, seconds: np.ndarray, *, frozen: bool = False, switch: float = 0.0):
        self.cost = np.asarray(seconds, dtype=np.float64)  # index n, cost[0] unused
        self.frozen = frozen
        # What a one-token step costs more right after a batch than after another one
        # token: llama.cpp reuses the last step's compute graph when the batch has the
        # same shape (on CUDA, a captured graph), so a batch costs a rebuild on the way
        # back: 0.3 ms on this CPU timed alone, 0.7-1.1 ms of a 5.5 ms SmolLM2 token in a
        # chat, most of a token on the H200 (BENCHMARKS.md, session 20).
        self.switch = float(switch)
        self._last_n = 1
        self.steady_rows = 0  # CostModel.steady's rows (0: batches as wide as each draft)

    @classmethod
    def from_probes(cls, sizes: list[int], seconds: list[float], *,
                    frozen: bool = False) -> CostModel:
        """The table through the probes, point by point: linear between two probes, the
        last two probes' slope past the end. A probe that cost more than a larger one is
        a stall of a shared machine, not its batch's cost (a batch never costs less than
        a smaller one), so each probe is first lowered to the cheapest probe at or above
        its size: a stall cannot raise the table, while a real cliff (every size past it
        dearer) survives."""
        order = np.argsort(np.asarray(sizes))
        x = np.asarray(sizes, dtype=np.float64)[order]
        y = np.asarray(seconds, dtype=np.float64)[order]
        if len(x) == 0 or x[0] != 1 or not np.all(y > 0):
            raise CostCurveError("a cost curve needs a positive time for batch size 1")
        y = np.minimum.accumulate(y[::-1])[::-1]
        n = np.arange(MAX_TREE + 2, dtype=np.float64)
        cost = np.interp(n, x, y)
        if len(x) >= 2 and x[-1] < n[-1]:
            slope = max(0.0, (y[-1] - y[-2]) / (x[-1] - x[-2]))
            past = n > x[-1]
            cost[past] = y[-1] + slope * (n[past] - x[-1])
        cost[0] = cost[1]
        return cls(cost, frozen=frozen)

    @classmethod
    def flat(cls, seconds: float = FLAT_SECONDS) -> CostModel:
        """The built-in GPU-like curve: every batch size costs the same (frozen)."""
        return cls(np.full(MAX_TREE + 2, seconds), frozen=True)

    @classmethod
    def steady(cls, rows: int, seconds: float) -> CostModel:
        """What the drafter plans with when every step is verified as a batch of exactly
        `rows` rows (padded: engine.decode.verify): any tree up to that size costs the
        same, so every row is worth filling, and none larger is ever verified (frozen;
        the cost past `rows` only keeps the search's effort to that size)."""
        if not 2 <= rows <= MAX_TREE:
            raise CostCurveError(f"a steady batch has 2 to {MAX_TREE} rows, not {rows}")
        cost = np.full(MAX_TREE + 2, float(seconds))
        cost[rows + 1:] = STEADY_BEYOND * seconds
        steady = cls(cost, frozen=True)
        steady.steady_rows = rows
        return steady

    @classmethod
    def from_curve_file(cls, spec: str) -> CostModel:
        """Another machine's curve, to plan exactly as the drafter would there: `flat`,
        or a JSON file mapping batch size to seconds, either on its own or as the
        `verify_cost_s` of a bench report (`aded-chat bench --json`), with that report's
        `verify_switch_s` where it has one."""
        if spec == "flat":
            return cls.flat()
        try:
            data = json.loads(Path(spec).expanduser().read_text(encoding="utf-8"))
        except OSError as exc:
            raise CostCurveError(f"cannot read cost curve {spec}: {exc.strerror}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CostCurveError(f"cost curve {spec} is not JSON: {exc}") from None
        switch = 0.0
        if isinstance(data, dict) and isinstance(data.get("verify_cost_s"), dict):
            switch = data.get("verify_switch_s", 0.0)
            data = data["verify_cost_s"]
        try:
            points = sorted((int(k), float(v)) for k, v in data.items())
        except (AttributeError, TypeError, ValueError):
            raise CostCurveError(f"cost curve {spec}: expected {{\"1\": seconds, \"2\": "
                                 f"seconds, ...}}") from None
        if not points or any(k < 1 or not np.isfinite(v) or v <= 0 for k, v in points):
            raise CostCurveError(f"cost curve {spec}: batch sizes must be 1 or more and "
                                 f"seconds positive and finite")
        try:
            curve = cls.from_probes([k for k, _ in points], [v for _, v in points],
                                    frozen=True)
        except CostCurveError as exc:
            raise CostCurveError(f"cost curve {spec}: {exc}") from None
        if not isinstance(switch, (int, float)) or not 0 <= switch < 1:
            raise CostCurveError(f"cost curve {spec}: verify_switch_s must be seconds")
        curve.switch = float(switch)
        return curve

    def as_dict(self) -> dict[str, float]:
        """Seconds per batch size, 1..MAX_TREE: the shape from_curve_file reads."""
        return {str(n): float(self.cost[n]) for n in range(1, MAX_TREE + 1)}

    @classmethod
    def measure(cls, backend: LlamaBackend, context: int = 128, reps: int = 3) -> CostModel:
        """Time decodes of each probe size after a short context. The minimum of reps:
        stalls from a shared machine hit any batch size alike and are not its cost.
        Probing stops at the first size that costs STEP_TOKENS_MAX plain tokens: no step
        yields more tokens than that, so neither it nor any larger size can pay (on a CPU
        this skips the slowest probes; on a GPU every size is probed)."""
        backend.kv_clear()
        ctx_tokens = np.full(context, max(backend.bos, 0), np.int32)
        backend.prefill(list(ctx_tokens), 0)
        sizes, secs = [], []
        for size in PROBE_SIZES:
            toks = np.full(size, max(backend.bos, 0), np.int32)
            pos = np.arange(context, context + size, dtype=np.int32)
            runs = []
            for _ in range(reps):
                t0 = time.perf_counter()
                backend.decode(toks, pos, logits=np.ones(size, np.int8))
                runs.append(time.perf_counter() - t0)
                backend.kv_remove(-1, context, -1)
            sizes.append(size)
            secs.append(float(min(runs)))
            if secs[-1] >= STEP_TOKENS_MAX * secs[0]:
                break
        switch = measure_switch(backend, context, reps)
        backend.kv_clear()
        curve = cls.from_probes(sizes, secs)
        curve.switch = switch
        return curve

    def observe(self, n: int, seconds: float, alpha: float = 0.05) -> None:
        """Blend one measured step into the table, keeping it non-decreasing in n.
        A step far slower than expected is a stall of the machine, not the batch's cost.
        A batch of two or more moves every size from two up by the same factor: those
        sizes are seen a few times an answer (one token hundreds of times), and the probe
        timed them at a short context, best of three, so in chats they ran 10-40% dearer
        than the table said while c(1) followed its own steps (BENCHMARKS.md, session 7);
        a factor keeps the measured shape (a cliff survives) and corrects its level
        within a few drafts. A one-token step right after a batch goes to the switch
        instead (its excess over c(1)). Called every step: scalar work for one token, no
        NumPy temporaries (a few of those cost more than the step's whole draft search
        once llama_decode has cooled the caches)."""
        cost = self.cost
        after_batch, self._last_n = self._last_n > 1, n
        if self.frozen or not 1 <= n < len(cost):
            return
        old = float(cost[n])
        if n == 1 and after_batch:  # the batch's rebuild, not what one token costs
            if seconds < 3.0 * old:  # (a graph capture can cost a token; a stall more)
                self.switch += SWITCH_ALPHA * (max(0.0, seconds - old) - self.switch)
            return
        if seconds >= 2.0 * old:
            return
        if n > 1:
            batch = cost[2:]
            batch *= 1.0 + alpha * (seconds / old - 1.0)
            if batch[0] < cost[1]:
                np.maximum(batch, cost[1], out=batch)
            return
        new = old + alpha * (seconds - old)
        cost[0] = cost[1] = new
        i = 2  # a rise carries on to the larger sizes it passes
        while i < len(cost) and cost[i] < new:
            cost[i] = new
            i += 1

    def row_s(self) -> float:
        """What one more row of a batch costs, on average over the table."""
        return (float(self.cost[MAX_TREE]) - float(self.cost[1])) / (MAX_TREE - 1)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"cost": self.cost.tolist(), "switch": self.switch}))

    @classmethod
    def load(cls, path: Path) -> CostModel | None:
        try:
            data = json.loads(path.read_text())
            cost = np.asarray(data["cost"], dtype=np.float64)
            switch = float(data.get("switch", 0.0))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if cost.shape != (MAX_TREE + 2,) or not np.all(cost > 0) or not 0 <= switch < 1:
            return None
        return cls(cost, switch=switch)


def measure_switch(backend: LlamaBackend, context: int, reps: int) -> float:
    """What one token costs more right after a batch of four than after one token, at
    position `context` of a cache that holds `context` tokens (CostModel.measure's
    probes time each size after the same size, reusing its graph)."""
    tok = max(backend.bos, 0)
    batch = np.full(4, tok, np.int32)
    after_one, after_batch = [], []
    for _ in range(reps):
        for runs, first in ((after_one, None), (after_batch, batch)):
            if first is None:
                backend.decode_one(tok, context)
            else:
                backend.decode(first, np.arange(context, context + 4, dtype=np.int32))
            backend.kv_remove(-1, context, -1)
            t0 = time.perf_counter()
            backend.decode_one(tok, context)
            runs.append(time.perf_counter() - t0)
            backend.kv_remove(-1, context, -1)
    return max(0.0, min(after_batch) - min(after_one))


def load_or_measure(backend: LlamaBackend, cache: Path | None) -> CostModel:
    """The cached cost table for this model, threads, offload and KV cache type, else a
    fresh measurement (a few seconds on a small model), saved for the next start."""
    path = None
    if cache is not None:
        kv = "" if backend.info.kv_cache == "f16" else f"-kv{kv_cache_tag(backend.info.kv_cache)}"
        path = cache / (f"cost3-{file_identity(Path(backend.info.model_path))}"
                        f"-t{backend.n_threads}-g{backend.info.gpu_layers}{kv}"
                        f"{kernels.cache_tag()}.json")
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
