"""Inference library for aded-chat: llama.cpp, plain decoding and ADED speculation.

The public surface is what this module exports: open a session with `open_session`,
stream answers from `ChatSession.generate`, read `AnswerStats`. Three rooms hold the
rest, along the data path:

- `llama/`: the llama.cpp wrapper (the only importer of llama_cpp): model, batches,
  KV cache, sampler chain, chat template, detokenizer, model files.
- `draft/`: the ADED drafter: tri-gram tables, copy lookup, tree search, acceptance
  calibration, the verification cost curve, the draft tree handed to the verifier.
- `decode/`: the loop: prompt and cache reuse, verification steps, statistics.

Nothing here imports a UI; the app in aded_chat/ is built on top (docs/DESIGN.md).
"""

from .decode.session import ChatSession, Chunk
from .decode.stats import AnswerStats, StepStats, projected_speedup
from .draft.cost import CostCurveError, CostModel
from .draft.lookup import common_prefix
from .errors import (
    ContextOverflowError,
    DecodeError,
    EngineError,
    ModelLoadError,
    PrefillCancelled,
)
from .limits import SettingsError, check_load, check_sampling
from .llama.backend import KV_CACHE_CHOICES, BackendInfo, default_threads
from .llama.kernels import tiled_matmul_off, user_environment
from .llama.models import ModelEntry, embedded_model_path, list_models, resolve_model
from .llama.sampling import SEED_MAX, SamplingSettings
from .llama.template import Message, TemplateRenderError
from .loader import SessionOptions, open_session, read_cost_curve

__all__ = [
    "KV_CACHE_CHOICES", "SEED_MAX", "AnswerStats", "BackendInfo", "ChatSession", "Chunk",
    "ContextOverflowError", "CostCurveError", "CostModel", "DecodeError", "EngineError",
    "Message", "ModelEntry", "ModelLoadError", "PrefillCancelled", "SamplingSettings",
    "SessionOptions", "SettingsError", "StepStats", "TemplateRenderError", "check_load",
    "check_sampling", "common_prefix", "default_threads", "embedded_model_path", "list_models",
    "open_session", "projected_speedup", "read_cost_curve", "resolve_model", "tiled_matmul_off",
    "user_environment",
]
