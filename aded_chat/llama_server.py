"""llama.cpp's own `llama-server` as a bench peer: its draft-free speculative modes
(`--spec-type ngram-*`, vendor/llama.cpp/docs/speculative.md) on the same model,
threads, context and KV cache type, read through its HTTP API and its own timings.

Each mode runs in its own server process on a free loopback port. A peer's plain rate is
llama-server's own `--spec-type none`, so each speedup is a ratio within one program.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import platformdirs

from aded_chat.engine import BackendInfo, Message, SamplingSettings, user_environment
from aded_chat.errors import UsageError

PREFIX = "llama-server:"
MODES = ("none", "ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache")
# ngram-mod keeps one hash pool for every request a server answers, ngram-cache its
# dynamic n-gram statistics: a repeat of a prompt would find its own earlier answer
# there. Their servers restart before each answer (the others keep nothing between
# requests), so no peer drafts from the answer it is being timed on.
STATEFUL = {"ngram-mod", "ngram-cache"}
START_TIMEOUT_S = 180.0
ANSWER_TIMEOUT_S = 600.0


class PeerError(Exception):
    """A llama-server that would not start or answer; the message says what it said."""


def default_binary() -> str | None:
    """llama-server on PATH, else where docs/measure/build_llama_server.sh puts it."""
    found = shutil.which("llama-server")
    if found:
        return found
    version = importlib.metadata.version("llama-cpp-python")
    built = (Path(platformdirs.user_cache_dir("aded-chat"))
             / f"llama-server-{version}" / "bin" / "llama-server")
    return str(built) if built.is_file() else None


def find_binary(path: str | None) -> str:
    binary = path or default_binary()
    if not binary:
        raise UsageError("llama-server not found: pass --llama-server PATH, or build it from "
                         "the installed llama-cpp-python's source with "
                         "docs/measure/build_llama_server.sh")
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise UsageError(f"--llama-server {binary}: not an executable file")
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """One llama-server process for one --spec-type."""

    def __init__(self, binary: str, mode: str, info: BackendInfo):
        self.binary, self.mode, self.info = binary, mode, info
        self._proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()
        self.port = 0

    def command(self) -> list[str]:
        i = self.info
        cmd = [self.binary, "-m", i.model_path, "-t", str(i.n_threads), "-tb",
               str(i.n_threads), "-c", str(i.n_ctx), "-ngl", str(i.gpu_layers), "-np", "1",
               "--no-repack", "--jinja", "--host", "127.0.0.1", "--port", str(self.port),
               "--spec-type", self.mode, "--no-webui"]
        if i.kv_cache != "f16":
            k, _, v = i.kv_cache.partition("/")  # "q8_0/f16": keys, values
            cmd += ["--cache-type-k", k, "--cache-type-v", v or k]
        return cmd

    def start(self) -> None:
        self.port = _free_port()
        self._log.seek(0)
        self._log.truncate()
        # llama.cpp's defaults (the kernels this process chose for exact batches are
        # not the peer's: engine.llama.kernels)
        self._proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT,
                                      env=user_environment())
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PeerError(f"llama-server --spec-type {self.mode} exited "
                                f"({self._proc.returncode}): {self._last_line()}")
            try:
                with urllib.request.urlopen(self._url("/health"), timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise PeerError(f"llama-server --spec-type {self.mode} did not start in "
                        f"{START_TIMEOUT_S:.0f} s")

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        self.stop()
        self._log.close()

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _last_line(self) -> str:
        self._log.seek(0)
        lines = [ln for ln in self._log.read().decode("utf-8", "replace").splitlines()
                 if ln.strip()]
        return lines[-1][:200] if lines else "no output"

    def answer(self, messages: list[Message], settings: SamplingSettings) -> dict:
        """One answer, as the bench's rows hold it; decode speed from the server's own
        timings (the first token, from the prompt's logits, is not decode time)."""
        if self.mode in STATEFUL:
            self.restart()
        greedy = settings.temperature <= 0
        body = {"messages": [m.as_dict() for m in messages], "stream": False,
                "max_tokens": settings.max_tokens, "temperature": settings.temperature,
                "top_k": 1 if greedy else settings.top_k, "top_p": settings.top_p,
                "min_p": settings.min_p, "repeat_penalty": settings.repeat_penalty,
                "repeat_last_n": settings.repeat_last_n, "seed": settings.seed,
                "cache_prompt": False}
        req = urllib.request.Request(self._url("/v1/chat/completions"),
                                     json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=ANSWER_TIMEOUT_S) as r:
                reply = json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            alive = self._proc is not None and self._proc.poll() is None
            raise PeerError(f"llama-server --spec-type {self.mode}: {exc}"
                            + ("" if alive else f" ({self._last_line()})")) from None
        t = reply.get("timings", {})
        n = int(t.get("predicted_n", 0))
        secs = float(t.get("predicted_ms", 0.0)) / 1000.0
        return {"text": reply["choices"][0]["message"].get("content") or "", "tokens": n,
                "decode_seconds": secs, "tokens_per_s": float(t.get("predicted_per_second", 0)),
                "drafted_tokens": int(t.get("draft_n", 0)),
                "accepted_tokens": int(t.get("draft_n_accepted", 0))}


def modes_of(methods: list[str]) -> list[str]:
    """The llama-server modes a --methods list names, checked."""
    modes = [m[len(PREFIX):] for m in methods if m.startswith(PREFIX)]
    for mode in modes:
        if mode not in MODES:
            raise UsageError(f"unknown llama-server mode {mode}; choose from "
                             f"{', '.join(MODES)}")
    return modes
