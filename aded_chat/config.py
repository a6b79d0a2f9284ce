"""User configuration: a TOML file under platformdirs' config dir; flags override it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import platformdirs

from aded_chat.engine import (
    KV_CACHE_CHOICES,
    SamplingSettings,
    SettingsError,
    check_load,
    check_sampling,
)

APP = "aded-chat"


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the line."""


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP))


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP))


def config_path() -> Path:
    return config_dir() / "config.toml"


@dataclass(frozen=True)
class Config:
    model: str = ""  # a path or a file name in models_dir; empty = the embedded model
    models_dir: str = ""  # empty = <user data dir>/models
    n_ctx: int = 4096
    n_gpu_layers: int = -1  # -1 = every layer when llama.cpp can offload, else 0
    threads: int = 0  # llama.cpp CPU threads; 0 = one per core up to 8 (the app: one fewer)
    kv_cache: str = "auto"  # the KV cache's number types: auto, f16, q8_0/f16, q8_0 or bf16
    speculative: bool = True
    # greedy batches only as wide as llama.cpp computes exactly (false: any width, with a
    # near-tie guard: faster on K-quant weights, but an answer may differ from plain's)
    exact_greedy: bool = True
    learn_across_runs: bool = True  # the drafter keeps what it learned, per model
    # every speculative step verified as a batch of exactly this many rows (0: off; 2 to
    # MAX_TREE): for a CUDA GPU, whose captured graph a batch of another shape interrupts
    steady_batch: int = 0
    theme: str = "textual-dark"
    system_prompt: str = "You are a helpful assistant."
    generation: SamplingSettings = field(default_factory=SamplingSettings)

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir).expanduser() if self.models_dir else data_dir() / "models"

    @property
    def gpu_layers(self) -> int | None:
        return None if self.n_gpu_layers < 0 else self.n_gpu_layers


_TOP = {f.name: f for f in fields(Config) if f.name != "generation"}
_GEN = {f.name: f for f in fields(SamplingSettings)}
_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool,
          "int | None": int}


def _check(section: str, key: str, value, spec) -> None:
    want = _TYPES.get(str(spec.type), object)
    bad = not isinstance(value, want) or (want is int and isinstance(value, bool))
    if bad:
        raise ConfigError(f"{config_path()}: [{section}] {key} = {value!r} has the wrong type")


def load_config(path: Path | None = None) -> Config:
    """Read the config file if there is one; a broken file is an error, not a shrug."""
    path = path or config_path()
    try:
        if not path.is_file():
            return Config()
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    top: dict = {}
    gen: dict = {}
    for key, value in data.items():
        if key == "generation" and isinstance(value, dict):
            for k, v in value.items():
                if k not in _GEN:
                    raise ConfigError(f"{path}: unknown key [generation] {k}")
                _check("generation", k, v, _GEN[k])
                gen[k] = float(v) if _GEN[k].type == "float" else v
        elif key in _TOP:
            _check("top level", key, value, _TOP[key])
            if key == "kv_cache" and value not in KV_CACHE_CHOICES:
                raise ConfigError(f"{path}: kv_cache = {value!r} must be one of "
                                  f"{', '.join(KV_CACHE_CHOICES)}")
            top[key] = value
        else:
            raise ConfigError(f"{path}: unknown key {key}")
    cfg = replace(Config(**top), generation=replace(SamplingSettings(), **gen))
    try:
        check_config(cfg)
    except SettingsError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cfg


def check_config(cfg: Config) -> None:
    """The one range check for every setting, whether a flag or the file gave it."""
    check_sampling(cfg.generation)
    check_load(n_ctx=cfg.n_ctx, threads=cfg.threads, n_gpu_layers=cfg.n_gpu_layers,
               steady_rows=cfg.steady_batch)


DEFAULT_CONFIG_TEXT = """\
# aded-chat configuration. Command-line flags override these values.
# model = "/path/to/model.gguf"   # empty: the embedded SmolLM2-135M-Instruct
# models_dir = ""                 # empty: <user data dir>/models
# n_ctx = 4096
# n_gpu_layers = -1               # -1: all layers when llama.cpp was built with GPU offload
# threads = 0                     # llama.cpp CPU threads; 0: one per core up to 8,
#                                 # and in the chat app one fewer, left to the UI
# kv_cache = "auto"               # q8_0/f16 on a CPU (keys Q8_0, values F16): greedy
#                                 # answers equal plain decoding's token for token;
#                                 # "f16" evaluates a long prompt in about a quarter less
#                                 # time, but at a near-tie of the top two logits a batch
#                                 # may then pick the other token; "q8_0" takes the least
#                                 # memory (f16 on a GPU)
# speculative = true
# exact_greedy = true             # greedy answers equal plain decoding's. On a CPU
#                                 # ggml's tiled K-quant matmul is then off for the run
#                                 # (GGML_CPU_TILED_MM=0, unless you set it), so batches
#                                 # of any width are exact, and K-quant prompts evaluate
#                                 # 12-19% slower; where batches still differ, trees keep
#                                 # within the widest exact one. false: wide trees with
#                                 # a near-tie guard; an answer may then differ
# learn_across_runs = true        # the drafter keeps what it learned from answers, per
#                                 # model, under the user cache dir (requests like earlier
#                                 # ones draft from those answers)
# steady_batch = 0                # on a CUDA GPU: verify every step as a batch of this
#                                 # many rows (e.g. 4), so each step replays one captured
#                                 # graph; 0: batches as wide as each draft, one token
#                                 # when nothing is drafted (the right choice on a CPU)
# theme = "textual-dark"
# system_prompt = "You are a helpful assistant."

[generation]
# temperature = 0.0               # 0 = greedy
# top_k = 40
# top_p = 0.95
# min_p = 0.05
# repeat_penalty = 1.0
# max_tokens = 512
# seed = 42
"""
