"""Which of ggml's CPU matmul kernels this process computes batches with.

On an x86 CPU, ggml multiplies K-quant (and IQ) weights by eight or more rows at once
with a tiled kernel (ggml-cpu/tiled) that sums in another order than the kernel one
token goes through, so a verification batch of eight or more tokens gets logits that
differ from plain decoding's in the last bits (Qwen2.5-Coder-0.5B Q4_K_M: by up to 0.45).
Greedy verification could then only be exact within seven tokens (engine.decode.exact).
With the tiled kernel off (GGML_CPU_TILED_MM=0), every batch goes through the one-token
kernels and is computed exactly as single tokens are, at any width. A single token's
decode is unchanged; what it costs is prompt evaluation on such models (BENCHMARKS.md,
session 13, Qwen2.5-Coder-0.5B Q4_K_M: 12% slower over the bench's prompts, 19% at 512
tokens), and wide batches run ~10% dearer. Other weight types never take that kernel.

ggml reads the switch once, at the process's first matmul, so it is chosen before any
model decodes and holds for the whole process. A value the user set is left alone.
"""

from __future__ import annotations

import os

TILED_MATMUL_ENV = "GGML_CPU_TILED_MM"
_USER_SETTING = os.environ.get(TILED_MATMUL_ENV)  # as the process was started
_locked: str | None = None  # the switch as the first model found it (ggml has read it)
_is_locked = False


def _atoi(text: str) -> int:
    """C's atoi, as ggml parses the switch: leading digits after an optional sign."""
    s = text.strip()
    sign, i = 1, 0
    if s and s[0] in "+-":
        sign, i = (-1 if s[0] == "-" else 1), 1
    j = i
    while j < len(s) and s[j].isdigit():
        j += 1
    return sign * int(s[i:j]) if j > i else 0


def exact_batch_kernels() -> bool:
    """Have this process compute batches with the one-token kernels (the tiled matmul
    off), unless the user set GGML_CPU_TILED_MM or a model has already run. Returns
    whether the tiled matmul is off."""
    if _USER_SETTING is None and not _is_locked:
        os.environ[TILED_MATMUL_ENV] = "0"
    return tiled_matmul_off()


def lock() -> None:
    """Called when the process's first model is loaded: from its first matmul on, ggml
    keeps the switch as it is now, whatever the environment says later."""
    global _locked, _is_locked
    if not _is_locked:
        _locked, _is_locked = os.environ.get(TILED_MATMUL_ENV), True


def tiled_matmul_off() -> bool:
    """Whether ggml's tiled K-quant matmul is off in this process."""
    value = _locked if _is_locked else os.environ.get(TILED_MATMUL_ENV)
    return value is not None and _atoi(value) == 0


def cache_tag() -> str:
    """What measurements of batches (exactness, cost) depend on, for their cache keys."""
    return "-tiled0" if tiled_matmul_off() else ""


def user_environment() -> dict[str, str]:
    """This process's environment with the switch as the user gave it: for another
    llama.cpp program it starts (the bench's llama-server peers keep their defaults)."""
    env = dict(os.environ)
    if _USER_SETTING is None:
        env.pop(TILED_MATMUL_ENV, None)
    else:
        env[TILED_MATMUL_ENV] = _USER_SETTING
    return env
