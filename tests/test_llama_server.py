"""The bench's llama.cpp peers against the real llama-server, built from the vendored
llama.cpp of the installed llama-cpp-python by docs/measure/build_llama_server.sh (about
4 minutes on two cores, once per machine: the binary is kept under ~/.cache/aded-chat-dev,
as pip keeps its wheels), or the one $ADED_LLAMA_SERVER or PATH names."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import assert_one_line_error, run

ROOT = Path(__file__).resolve().parents[1]
BUILD = (Path.home() / ".cache" / "aded-chat-dev"
         / f"llama-server-{importlib.metadata.version('llama-cpp-python')}")

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def llama_server() -> str:
    found = os.environ.get("ADED_LLAMA_SERVER") or shutil.which("llama-server")
    if found:
        return found
    r = subprocess.run(["bash", str(ROOT / "docs/measure/build_llama_server.sh"), str(BUILD)],
                       env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                       text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


def prompts_file(tmp_path: Path) -> Path:
    p = tmp_path / "p.jsonl"
    rows = [{"id": "edit", "category": "edit_code", "messages": [{"role": "user", "content":
             "Rename x to value:\ndef f(x):\n    return x * 2 + x\n"}]},
            {"id": "chat", "category": "chat", "messages": [{"role": "user", "content":
             "Name three colours."}]}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def servers_running(binary: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and cmd and cmd[0] == binary.encode():
            pids.append(int(proc.name))
    return pids


def test_llama_server_modes_are_bench_methods(tmp_path, llama_server):
    out = tmp_path / "bench.json"
    r = run("bench", "--prompts", str(prompts_file(tmp_path)), "--max-tokens", "32",
            "--repeat", "2", "--threads", "2", "--llama-server", llama_server,
            "--methods", "plain,llama-server:ngram-mod,llama-server:ngram-map-k",
            "--json", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    methods = rep["settings"]["methods"]
    assert methods == ["plain", "llama-server:none", "llama-server:ngram-mod",
                       "llama-server:ngram-map-k"]
    for row in rep["prompts"]:
        none = row["llama-server:none"]
        assert none["text"].strip() and 0 < none["tokens"] <= 32
        assert none["tokens_per_s"] > 0 and none["drafted_tokens"] == 0
        assert none["speedup"] == pytest.approx(none["tokens_per_s"]
                                                / row["plain"]["tokens_per_s"])
        for mode in ("llama-server:ngram-mod", "llama-server:ngram-map-k"):
            m = row[mode]
            assert "error" not in m, m
            assert m["speedup"] == pytest.approx(m["tokens_per_s"] / none["tokens_per_s"])
            assert m["identical_to_plain"] == (m["text"] == none["text"])
            assert 0 <= m["accepted_tokens"] <= m["drafted_tokens"]
    assert set(rep["geomean_speedup_vs_plain"]) == set(methods[1:])
    assert "llama-server:ngram-mod" in r.stdout
    assert servers_running(llama_server) == []  # every server stopped with the run


def test_a_llama_server_that_fails_is_reported_on_its_rows(tmp_path):
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\necho 'error: this build cannot load models' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = tmp_path / "bench.json"
    r = run("bench", "--prompts", str(prompts_file(tmp_path)), "--max-tokens", "8",
            "--llama-server", str(fake), "--methods", "plain,aded,llama-server:ngram-mod",
            "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    rep = json.loads(out.read_text())
    for row in rep["prompts"]:
        assert "cannot load models" in row["llama-server:none"]["error"]
        assert "error" in row["llama-server:ngram-mod"]
        assert row["aded"]["speedup"] > 0  # the rest of the run went on


def test_a_missing_llama_server_is_one_line(tmp_path):
    assert_one_line_error(
        run("bench", "--llama-server", str(tmp_path / "nowhere"),
            "--methods", "plain,llama-server:ngram-mod"), "not an executable file")
    assert_one_line_error(
        run("bench", "--methods", "plain,llama-server:ngram-fast"),
        "unknown llama-server mode ngram-fast")


def test_a_peer_starts_with_llama_cpp_s_kernels_not_the_ones_exact_greedy_chose(
        tmp_path, monkeypatch):
    """Exact greedy answers turn ggml's tiled matmul off in the bench's own process
    (engine.llama.kernels); a llama-server peer is started with the user's environment,
    so it runs llama.cpp's defaults. A value the user set reaches both."""
    seen = tmp_path / "env.txt"
    fake = tmp_path / "llama-server"
    fake.write_text(f"#!/bin/sh\nenv > '{seen}'\necho 'error: a fake' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = tmp_path / "bench.json"
    for user, ours, peer in ((None, "off", None), ("1", "on", "1")):
        monkeypatch.delenv("GGML_CPU_TILED_MM", raising=False)
        r = run("bench", "--prompts", str(prompts_file(tmp_path)), "--max-tokens", "4",
                "--llama-server", str(fake), "--methods", "plain,llama-server:ngram-mod",
                "--json", str(out), env={"GGML_CPU_TILED_MM": user} if user else None)
        assert r.returncode == 0, r.stderr
        assert json.loads(out.read_text())["settings"]["tiled_matmul"] == ours
        env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
        assert env.get("GGML_CPU_TILED_MM") == peer


@pytest.mark.parametrize("kv, flags", [
    ("f16", []),
    ("q8_0", ["--cache-type-k", "q8_0", "--cache-type-v", "q8_0"]),
    ("q8_0/f16", ["--cache-type-k", "q8_0", "--cache-type-v", "f16"]),
])
def test_a_peer_gets_the_same_kv_cache_types(kv, flags):
    """The peer's keys and values are stored as ours are (the CPU default keeps keys in
    Q8_0 and values in F16), so both compute attention with the same kernels."""
    from aded_chat.engine.llama.backend import BackendInfo

    from aded_chat.llama_server import LlamaServer

    info = BackendInfo(model_path="m.gguf", model_desc="m", n_vocab=10, n_ctx=512,
                       n_layers=2, gpu_layers=0, compute="CPU", n_threads=2,
                       partial_kv_removal=True, kv_cache=kv)
    cmd = LlamaServer("llama-server", "ngram-mod", info).command()
    got = [a for i, a in enumerate(cmd)
           if a.startswith("--cache-type") or cmd[i - 1].startswith("--cache-type")]
    assert got == flags
