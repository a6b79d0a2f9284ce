"""ggml's tiled K-quant matmul, off where greedy answers must be exact (engine.llama.kernels):
the switch is the user's where they set it, is read once a process, and makes a K-quant
model's batches exact at any width."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aded_chat.engine.draft.tree import MAX_TREE
from aded_chat.engine.llama import kernels


@pytest.fixture
def fresh(monkeypatch):
    """The module as a process starts it, with the user's setting `user` (None: unset)."""

    def start(user):
        monkeypatch.setattr(kernels, "_USER_SETTING", user)
        monkeypatch.setattr(kernels, "_is_locked", False)
        monkeypatch.setattr(kernels, "_locked", None)
        if user is None:
            monkeypatch.delenv(kernels.TILED_MATMUL_ENV, raising=False)
        else:
            monkeypatch.setenv(kernels.TILED_MATMUL_ENV, user)

    return start


def test_the_switch_is_read_as_ggml_reads_it():
    assert [kernels._atoi(s) for s in ("0", "1", " 2x", "-1", "", "off", "00")] == [
        0, 1, 2, -1, 0, 0, 0]


def test_exact_kernels_turn_the_tiled_matmul_off_unless_the_user_chose(fresh):
    fresh(None)
    assert not kernels.tiled_matmul_off() and kernels.cache_tag() == ""
    assert kernels.exact_batch_kernels()
    assert os.environ[kernels.TILED_MATMUL_ENV] == "0" and kernels.cache_tag() == "-tiled0"
    assert kernels.TILED_MATMUL_ENV not in kernels.user_environment()  # a peer's defaults
    fresh("1")
    assert not kernels.exact_batch_kernels()
    assert os.environ[kernels.TILED_MATMUL_ENV] == "1"
    assert kernels.user_environment()[kernels.TILED_MATMUL_ENV] == "1"


def test_once_a_model_has_run_the_switch_stays_as_it_was(fresh):
    fresh(None)
    kernels.lock()  # the process's first model: ggml reads the switch at its first matmul
    assert not kernels.exact_batch_kernels()
    assert kernels.TILED_MATMUL_ENV not in os.environ
    os.environ[kernels.TILED_MATMUL_ENV] = "0"  # too late for ggml
    assert not kernels.tiled_matmul_off()


@pytest.fixture(scope="module")
def kquant(tmp_path_factory):
    """The embedded model re-quantized to Q4_K_M: K-quant weights, whose batches of eight
    rows and more ggml computes with its tiled matmul."""
    import ctypes

    import llama_cpp
    from aded_chat.engine.llama.models import embedded_model_path

    out = tmp_path_factory.mktemp("kquant") / "smollm2-q4_k_m.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(str(embedded_model_path()).encode(),
                                        str(out).encode(), ctypes.byref(params))
    assert rc == 0
    return out


def _check(model: Path, cache: Path, *extra: str, switch: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != kernels.TILED_MATMUL_ENV}
    if switch is not None:
        env[kernels.TILED_MATMUL_ENV] = switch
    script = Path(__file__).with_name("kquant_check.py")
    done = subprocess.run([sys.executable, str(script), str(model), str(cache), *extra],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.model
def test_a_k_quant_model_is_exact_at_any_width_with_the_tiled_matmul_off(kquant, tmp_path):
    """Each in a fresh process, two threads, Q8_0 cache. With exact kernels the probe finds
    every width exact, and wide greedy trees on a flat curve give plain decoding's text;
    a user's GGML_CPU_TILED_MM=1 is kept, and batches are then as by default."""
    fast = _check(kquant, tmp_path, "exact")
    assert fast["tiled_off"] and fast["exact_rows"] == MAX_TREE
    assert fast["identical"] == [True, True]
    assert fast["widest"] > 8  # wider than the tiled matmul's eight rows
    default = _check(kquant, tmp_path)
    kept = _check(kquant, tmp_path, "exact", switch="1")
    assert not default["tiled_off"] and not kept["tiled_off"]
    assert kept["exact_rows"] == default["exact_rows"]
    if default["exact_rows"] == MAX_TREE:
        pytest.skip("this CPU never takes ggml's tiled matmul (no AVX2)")
    assert default["exact_rows"] < 8


def test_exact_greedy_asks_for_exact_kernels_before_the_model_loads(monkeypatch):
    """The config's exact_greedy reaches the loader, which sets the switch before the
    backend exists (ggml reads it at the process's first matmul)."""
    from dataclasses import replace

    from aded_chat.engine import loader
    from app_helpers import CFG

    from aded_chat import runtime

    seen = []
    monkeypatch.setattr(runtime, "open_session", lambda path, o: seen.append(o.exact_kernels))
    for exact_greedy in (True, False):
        runtime.open_model(replace(CFG, exact_greedy=exact_greedy))
    assert seen == [True, False]

    order = []

    class Stop(Exception):
        pass

    def backend(*a, **kw):
        order.append("backend")
        raise Stop

    monkeypatch.setattr(loader.kernels, "exact_batch_kernels", lambda: order.append("switch"))
    monkeypatch.setattr(loader, "LlamaBackend", backend)
    for exact in (True, False):
        with pytest.raises(Stop):
            loader.open_session("m.gguf", loader.SessionOptions(exact_kernels=exact))
    assert order == ["switch", "backend", "backend"]
