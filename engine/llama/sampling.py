"""Generation settings and llama.cpp's sampler chain.

Plain and speculative decoding draw every token through the same chain, in the same
order, one draw per emitted token: with the same seed and the same logits they emit the
same tokens, which is what makes speculation lossless under sampling too.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .backend import LlamaBackend

# llama.cpp reads the seed as 32 bits and takes 0xFFFFFFFF as "a random seed each time",
# so a recorded seed that reproduces its answer lies in 0..2^32 - 2.
SEED_MAX = 0xFFFFFFFE


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: int | None = None  # None: a fresh random seed per answer, recorded in stats
    max_tokens: int = 512

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def with_seed(self) -> SamplingSettings:
        """A copy with a concrete seed, so an answer can be reproduced from its record."""
        if self.seed is not None:
            return self
        return replace(self, seed=random.randrange(0, SEED_MAX + 1))

    def as_dict(self) -> dict:
        return asdict(self)


class Sampler:
    """How an answer draws its tokens: llama.cpp's chain (engine.llama.backend), with
    plain greedy's argmax taken here from logits already at hand."""

    def __init__(self, settings: SamplingSettings, backend: LlamaBackend):
        s = settings
        if not s.greedy and (s.seed is None or not 0 <= s.seed <= SEED_MAX):
            raise ValueError(f"sampler needs a seed in 0..{SEED_MAX}, not {s.seed}")
        self.settings = settings
        self._chain = backend.sampler_chain(settings)
        self._argmax = s.greedy and s.repeat_penalty == 1.0

    def remember(self, tokens: list[int]) -> None:
        """Feed prompt tokens to the repetition penalty's history."""
        if self.settings.repeat_penalty != 1.0:
            for t in tokens[-self.settings.repeat_last_n:]:
                self._chain.accept(t)

    def sample(self, index: int, logits: np.ndarray | None = None,
               argmax: int | None = None) -> int:
        """Draw from the logits of batch entry `index` and record the token. `logits`,
        when given, is that entry's row (every entry of the batch asked for logits);
        `argmax`, when given, is that row's first maximum, already found."""
        if self._argmax and argmax is not None:
            return argmax
        if self._argmax and logits is not None:
            # Plain greedy: the same first-maximum rule as llama.cpp's greedy sampler,
            # without copying the whole vocabulary into a candidate array per token.
            return int(logits.argmax())
        return self._chain.sample(index)

    def close(self) -> None:
        self._chain.close()
