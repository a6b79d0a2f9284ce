"""A thin, typed owner of one llama.cpp model and context.

Everything above this module speaks in NumPy arrays and Python ints; everything in it
is the low-level llama-cpp-python API. The context is created with several sequences
and a unified KV cache so that a whole draft tree can be verified in one llama_decode.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from ..draft.tree import MAX_TREE
from ..errors import DecodeError, ModelLoadError
from . import kernels
from .batch import fill_tree_batch

GGUF_MAGIC = b"GGUF"

# llama.cpp logs through one global callback. We keep the recent lines (the loader's
# "offloaded N/M layers" and the reason a load failed) and print only when verbose.
_log_lines: collections.deque[str] = collections.deque(maxlen=400)
_error_lines: collections.deque[str] = collections.deque(maxlen=20)  # ERROR level only
_log_verbose = False
_log_lock = threading.Lock()


# ggml's levels (ggml.h): NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (a continuation)
_LOG_DEBUG, _LOG_ERROR, _LOG_CONT = 1, 4, 5
_last_level = 0


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    global _last_level
    if level != _LOG_CONT:
        _last_level = level
    if _log_verbose:
        os.write(2, text)
    if _last_level == _LOG_DEBUG:  # tens of thousands of lines per load: not kept
        return
    line = text.decode("utf-8", errors="replace")
    with _log_lock:
        _log_lines.append(line)
        if _last_level == _LOG_ERROR:
            _error_lines.append(line)


llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
_backend_ready = False
# llama_get_logits returning a plain address: llama-cpp-python's binding returns a
# float pointer, which costs two ctypes objects and a cast after every decode (~20 us
# with caches cold, a few percent of a small model's step).
_logits_address = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(
    ctypes.cast(llama_cpp.llama_get_logits, ctypes.c_void_p).value)


def set_verbose(verbose: bool) -> None:
    """Show llama.cpp's own log on stderr (hidden by default)."""
    global _log_verbose
    _log_verbose = verbose


def _load_failure() -> str:
    """llama.cpp's own reason a load failed: its first error line that says more than
    'failed to load model', without the function names it starts with."""
    with _log_lock:
        lines = [ln.strip() for ln in _error_lines]
    for line in lines:
        reason = re.sub(r"^(\w+: )+", "", line)
        reason = re.sub(r"^error loading model: (\w+: )*", "", reason)
        if reason and not reason.startswith("failed to load model"):
            return reason
    return "llama.cpp could not load it (run with --verbose for its log)"


def _recent_log(pattern: str) -> list[re.Match]:
    rx = re.compile(pattern)
    with _log_lock:
        return [m for line in _log_lines if (m := rx.search(line))]


@contextlib.contextmanager
def _interruptible(flag: threading.Event):
    """Ctrl+C sets flag instead of raising: llama.cpp calls back into Python while it
    loads (its log, its progress), and an exception raised in a ctypes callback is
    printed and lost, so the load would go on. The progress callback reads the flag and
    stops the load; the caller raises KeyboardInterrupt after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: flag.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def check_gguf_file(path: Path) -> None:
    """Fail with a readable message before llama.cpp sees a file it would choke on."""
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelLoadError(f"model path is not a file: {path}")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"not a GGUF model file: {path}")


def gpu_offload_supported() -> bool:
    return bool(llama_cpp.llama_supports_gpu_offload())


def compute_backend_name() -> str:
    """Which ggml backend this build of llama.cpp runs on (CPU, CUDA, Metal, ...)."""
    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    for name, key in (("CUDA", "CUDA"), ("Metal", "METAL"), ("Vulkan", "VULKAN"),
                      ("ROCm", "HIP"), ("SYCL", "SYCL")):
        if key in info.upper():
            return name
    return "CPU"


# llama.cpp's threads past eight rarely speed a small model's decode up on a laptop.
MAX_DEFAULT_THREADS = 8


def default_threads(reserve_core: bool = False) -> int:
    """llama.cpp threads when none are set: one per core, up to MAX_DEFAULT_THREADS.
    reserve_core leaves one core to a UI beside the model: llama.cpp's threads wait for
    each other at every layer, so a UI that takes a slice of any core they run on delays
    them all (on a 2-vCPU machine the app decoded at 58% of headless speed with two
    threads and at 95% with one: BENCHMARKS.md)."""
    cores = os.cpu_count() or 2
    return max(1, min(MAX_DEFAULT_THREADS, cores - 1 if reserve_core else cores))


@dataclass(frozen=True)
class BackendInfo:
    """What the status bar and the benchmark report say about the running model."""

    model_path: str
    model_desc: str
    n_vocab: int
    n_ctx: int
    n_layers: int
    gpu_layers: int
    compute: str
    n_threads: int
    partial_kv_removal: bool
    kv_cache: str = "f16"

    @property
    def offload(self) -> str:
        if self.gpu_layers <= 0:
            return f"{self.compute}"
        return f"{self.compute} {self.gpu_layers}/{self.n_layers} layers"


# The KV cache's number types a user may choose, keys' then values' (ggml_type values).
# f16 is llama.cpp's default. ggml-cpu's flash attention sums a single token's attention
# over 512+ cells split across threads only where the keys are F16 (or F32), and
# batches of 64+ rows through a tiled kernel on the same condition; with keys in q8_0
# or bf16 every row, alone or in a batch, takes the one path, so a batch is computed
# exactly as one token is (BENCHMARKS.md).
KV_CACHE_TYPES = {"f16": (1, 1), "q8_0/f16": (8, 1), "q8_0": (8, 8), "bf16": (30, 30)}
# "auto": q8_0 keys and f16 values where the model runs on the CPU: greedy answers then
# equal plain decoding's at any thread count. Values in f16 rather than q8_0 make long
# contexts cheaper (2,000 tokens, SmolLM2: prompt evaluation takes 25% less time, a
# decoded token 5%, a 16-row batch 28%; BENCHMARKS.md, session 15), since each value
# row is read without being dequantized. f16 where the model is offloaded to a GPU
# (whose batch kernels differ from one token's whatever the cache type).
KV_CACHE_CHOICES = ("auto", *KV_CACHE_TYPES)


def resolve_kv_cache(kv_cache: str, n_gpu_layers: int) -> str:
    if kv_cache == "auto":
        return "q8_0/f16" if n_gpu_layers == 0 else "f16"
    return kv_cache


def kv_cache_tag(kv_cache: str) -> str:
    """The cache type in a file name (q8_0/f16 -> q8_0-f16)."""
    return kv_cache.replace("/", "-")


class LlamaBackend:
    """One model, one context, one reusable batch, and the KV-memory operations.

    `decode()` takes plain arrays (token, position, sequence membership, wants-logits)
    so the tree verifier and the plain decoder share one code path.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        n_ctx: int = 4096,
        n_gpu_layers: int | None = None,
        n_seq_max: int = MAX_TREE - 1,
        n_batch: int = 512,
        n_threads: int | None = None,
        reserve_core: bool = False,
        kv_cache: str = "f16",
        verbose: bool = False,
    ) -> None:
        global _backend_ready
        set_verbose(verbose)
        path = Path(model_path).expanduser()
        check_gguf_file(path)
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True
        kernels.lock()  # ggml reads its matmul switch at this process's first matmul

        if n_gpu_layers is None:
            n_gpu_layers = 999 if gpu_offload_supported() else 0
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = int(n_gpu_layers)
        kv_cache = resolve_kv_cache(kv_cache, int(n_gpu_layers))
        # No repacked weights (llama.cpp's CPU "extra buffer types", AMX among them), on
        # every CPU: they switch kernels between one token and a batch, so a tree's
        # logits would drift from plain decoding's, which speculation must not do. Also
        # seen (BENCHMARKS.md): with the llama.cpp that llama-cpp-python 0.3.36 vendors,
        # the AMX path segfaulted on batches of a few dozen tokens on an Intel Sapphire
        # Rapids vCPU, in llama-cpp-python's own `Llama` too. Without them an AMD EPYC and
        # that Xeon measured the same decode speed (within 0.5 ms a step), so the setting
        # does not depend on the CPU. GPU layers are unaffected.
        mparams.use_extra_bufts = False
        interrupted = threading.Event()

        @llama_cpp.llama_progress_callback
        def progress(fraction: float, user_data: ctypes.c_void_p) -> bool:
            return not interrupted.is_set()

        mparams.progress_callback = progress
        with _log_lock:
            _log_lines.clear()
            _error_lines.clear()
        with _interruptible(interrupted):
            model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
        if interrupted.is_set():
            if model:
                llama_cpp.llama_model_free(model)
            raise KeyboardInterrupt
        if not model:
            raise ModelLoadError(f"cannot load model {path}: {_load_failure()}")
        self._model = model

        self.n_threads = n_threads or default_threads(reserve_core)
        cparams = llama_cpp.llama_context_default_params()
        n_ctx_train = llama_cpp.llama_model_n_ctx_train(model)
        cparams.n_ctx = int(min(n_ctx, n_ctx_train) if n_ctx_train > 0 else n_ctx)
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = n_seq_max
        cparams.kv_unified = True
        cparams.type_k, cparams.type_v = KV_CACHE_TYPES[kv_cache]
        cparams.n_threads = self.n_threads
        cparams.n_threads_batch = self.n_threads
        cparams.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            llama_cpp.llama_model_free(model)
            self._model = None
            raise ModelLoadError(f"cannot create a context for {path} (n_ctx={cparams.n_ctx})")
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(model)

        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self.n_batch = n_batch
        self.n_seq_max = n_seq_max
        self.partial_kv_removal = not (
            llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model)
        )
        self.bos = int(llama_cpp.llama_vocab_bos(self._vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.decode_cpu_s = 0.0  # this thread's CPU time in llama_decode, all calls summed
        self._pieces: dict[int, bytes] = {}
        self._views: dict[tuple[int, int], np.ndarray] = {}
        self._logits = np.zeros((0, 0), np.float32)
        self._eog = np.zeros(self.n_vocab, dtype=np.bool_)
        # ... and with the chat template's control tokens, what no answer goes on past
        self.turn_ends = np.zeros(self.n_vocab, dtype=np.bool_)
        for tok in range(self.n_vocab):
            if llama_cpp.llama_vocab_is_eog(self._vocab, tok):
                self._eog[tok] = True
            if self._eog[tok] or llama_cpp.llama_vocab_is_control(self._vocab, tok):
                self.turn_ends[tok] = True
        # Every decode without a sequence list writes its tokens into every sequence: the
        # committed text is in all of them (engine.decode.kv), so a tree's branches attend
        # to it without a copy per branch, which costs context x branches (BENCHMARKS.md).
        # (A recurrent model's state is per sequence, and it drafts no trees: sequence 0.)
        self.n_every = n_seq_max if self.partial_kv_removal else 1
        self._alloc_batch(n_batch, n_seq_max)

        offloaded = _recent_log(r"offloaded (\d+)/(\d+) layers")
        n_layers = int(llama_cpp.llama_model_n_layer(model))
        gpu_layers = int(offloaded[-1].group(1)) if offloaded else 0
        desc = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(model, desc, 256)
        self.info = BackendInfo(
            model_path=str(path),
            model_desc=desc.value.decode("utf-8", errors="replace"),
            n_vocab=self.n_vocab,
            n_ctx=self.n_ctx,
            n_layers=n_layers,
            gpu_layers=min(gpu_layers, n_layers + 1),
            compute=compute_backend_name() if gpu_layers > 0 else "CPU",
            n_threads=self.n_threads,
            partial_kv_removal=self.partial_kv_removal,
            kv_cache=kv_cache,
        )

    # -- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> LlamaBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- metadata ---------------------------------------------------------------------

    def chat_template(self) -> str | None:
        tmpl = llama_cpp.llama_model_chat_template(self._model, None)
        return tmpl.decode("utf-8", errors="replace") if tmpl else None

    def token_text(self, token: int) -> str:
        """The vocabulary's text of a token, special tokens included (for templates)."""
        return llama_cpp.llama_vocab_get_text(self._vocab, token).decode("utf-8", "replace")

    # -- tokens -----------------------------------------------------------------------

    def tokenize(self, text: str, *, parse_special: bool = False) -> list[int]:
        """Tokenize without adding BOS. User text must use parse_special=False so that
        a pasted "<|im_end|>" stays literal text instead of becoming a control token."""
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, cap, False, parse_special)
        if n < 0:
            cap = -n
            buf = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), buf, cap, False, parse_special
            )
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """Bytes of one token as generated text (special tokens render as nothing)."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
        out = buf.raw[:n]
        self._pieces[token] = out
        return out

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(self._eog[token])

    # -- decoding ---------------------------------------------------------------------

    def _alloc_batch(self, cap: int, n_seq: int) -> None:
        # A llama_batch built over NumPy buffers: filling it is slice assignment, not a
        # Python loop over ctypes fields, which keeps the per-step host cost small.
        self._b_tok = np.zeros(cap, dtype=np.int32)
        self._b_pos = np.zeros(cap, dtype=np.int32)
        self._b_nseq = np.zeros(cap, dtype=np.int32)
        self._b_seq = np.zeros((cap, n_seq), dtype=np.int32)
        self._b_logits = np.zeros(cap, dtype=np.int8)
        self._every = np.arange(self.n_every, dtype=np.int32)
        # decode_tree's sequences for nodes in every sequence (a root-only tree)
        self._every_rows = np.tile(self._every, (cap, 1))  # (C order, as a tree's layout)
        self._every_n = np.full(cap, self.n_every, np.int32)
        # load decode_tree's compiled code now, not in the middle of the first answer
        fill_tree_batch(self._b_tok, self._b_pos, self._b_nseq, self._b_seq, self._b_logits,
                        self._every, 0, self._every[:0], self._every[:0], self._every_rows[:0],
                        self._every_n, 0, self.n_every, 0)
        i32p = ctypes.POINTER(ctypes.c_int32)
        row = self._b_seq.strides[0]
        base = self._b_seq.ctypes.data
        self._b_seq_ptrs = (i32p * cap)(*[ctypes.cast(base + i * row, i32p) for i in range(cap)])
        self._batch = llama_cpp.llama_batch(
            n_tokens=0,
            token=self._b_tok.ctypes.data_as(i32p),
            embd=None,
            pos=self._b_pos.ctypes.data_as(i32p),
            n_seq_id=self._b_nseq.ctypes.data_as(i32p),
            seq_id=self._b_seq_ptrs,
            logits=self._b_logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )
        self._cap = cap

    def decode(
        self,
        tokens: np.ndarray,
        positions: np.ndarray,
        *,
        seq_ids: np.ndarray | None = None,
        n_seq: np.ndarray | None = None,
        logits: np.ndarray | None = None,
        outputs_from: int | None = None,
    ) -> np.ndarray:
        """Evaluate one batch; return the logits of the entries that asked for them,
        as a (n_outputs, n_vocab) view valid until the next decode.

        seq_ids[i, :n_seq[i]] lists the sequences entry i belongs to (default: every
        sequence, `n_every` of them). `logits` marks the entries that want logits
        (default: the last); or `outputs_from`: every entry from that one on does.
        """
        n = len(tokens)
        if n == 0 or n > self._cap:
            raise ValueError(f"batch of {n} entries (capacity {self._cap})")
        self._b_tok[:n] = tokens
        self._b_pos[:n] = positions
        if seq_ids is None:
            self._b_nseq[:n] = self.n_every
            self._b_seq[:n, : self.n_every] = self._every
        else:
            self._b_nseq[:n] = n_seq
            self._b_seq[:n, : seq_ids.shape[1]] = seq_ids
        if outputs_from is not None:
            self._b_logits[:outputs_from] = 0
            self._b_logits[outputs_from:n] = 1
            n_logits = n - outputs_from
        elif logits is None:
            self._b_logits[:n] = 0
            self._b_logits[n - 1] = 1
            n_logits = 1
        else:
            self._b_logits[:n] = logits
            n_logits = int(np.count_nonzero(logits))
        return self._run(n, n_logits)

    def decode_tree(self, tokens: np.ndarray, depths: np.ndarray, start: int,
                    seq_ids: np.ndarray | None = None, n_seq: np.ndarray | None = None,
                    behind: np.ndarray | None = None, every_row: bool = False) -> np.ndarray:
        """Evaluate a draft tree after `behind` (tokens kept but not yet in the cache, at
        the positions before `start`): node i at start + depths[i], in the sequences
        seq_ids[i, :n_seq[i]] (default: every sequence). Returns the nodes' logits,
        (len(tokens), n_vocab); with every_row, `behind`'s rows ask for logits too (a
        steady batch: the same outputs every step), which are not returned. decode() for
        a verification step, in one compiled call."""
        n_behind = 0 if behind is None else len(behind)
        n = n_behind + len(tokens)
        if len(tokens) == 0 or n > self._cap:
            raise ValueError(f"batch of {n} entries (capacity {self._cap})")
        if seq_ids is None:
            seq_ids, n_seq = self._every_rows[: len(tokens)], self._every_n
        fill_tree_batch(self._b_tok, self._b_pos, self._b_nseq, self._b_seq, self._b_logits,
                        self._every if behind is None else behind, n_behind, tokens, depths,
                        seq_ids, n_seq, start, self.n_every, int(every_row))
        if every_row:
            return self._run(n, n)[n_behind:]
        return self._run(n, len(tokens))

    def decode_one(self, token: int, pos: int) -> np.ndarray:
        """Evaluate one token at `pos` in every sequence (a plain step) and return its
        logits row: decode() for the commonest batch, without its array handling."""
        self._b_tok[0] = token
        self._b_pos[0] = pos
        self._b_nseq[0] = self.n_every
        self._b_seq[0, : self.n_every] = self._every
        self._b_logits[0] = 1
        return self._run(1, 1)[0]

    def _run(self, n: int, n_logits: int) -> np.ndarray:
        self._batch.n_tokens = n
        cpu0 = time.thread_time()
        rc = llama_cpp.llama_decode(self._ctx, self._batch)
        # A GPU computes the batch after llama_decode returns; llama_get_logits waits for
        # it (a CUDA wait spins on the CPU). That wait is the decode's, not host work.
        addr = _logits_address(self._ctx) if rc == 0 else 0
        self.decode_cpu_s += time.thread_time() - cpu0
        if rc != 0:
            what = "no free KV-cache slot (context full)" if rc == 1 else f"error {rc}"
            raise DecodeError(f"llama_decode failed: {what}")
        self._logits = self._logits_view(addr, n_logits)
        return self._logits

    def _logits_view(self, addr: int, n_out: int) -> np.ndarray:
        # np.ctypeslib.as_array builds a new ctypes type per call (milliseconds here);
        # the output buffer moves only when it grows, so views are cached by address.
        key = (addr, n_out)
        view = self._views.get(key)
        if view is None:
            buf = (ctypes.c_float * (n_out * self.n_vocab)).from_address(addr)
            view = np.frombuffer(buf, dtype=np.float32).reshape(n_out, self.n_vocab)
            self._views[key] = view
        return view

    def logits_row(self, index: int) -> np.ndarray:
        """Logits of the index-th output of the last decode (-1: the last one)."""
        return self._logits[index]

    def prefill(self, tokens: list[int], start: int,
                after_chunk: Callable[[int], None] | None = None) -> np.ndarray:
        """Evaluate tokens at positions start.. (in every sequence), in n_batch chunks;
        return the logits of the last one (shape (1, n_vocab)). after_chunk(done) is
        called after each chunk but the last (it may raise to stop: what was evaluated
        stays in the cache)."""
        arr = np.asarray(tokens, dtype=np.int32)
        out = None
        for i in range(0, len(arr), self.n_batch):
            chunk = arr[i : i + self.n_batch]
            pos = np.arange(start + i, start + i + len(chunk), dtype=np.int32)
            out = self.decode(chunk, pos)
            if after_chunk is not None and i + len(chunk) < len(arr):
                after_chunk(i + len(chunk))
        assert out is not None
        return out

    def sampler_chain(self, settings) -> SamplerChain:
        """llama.cpp's sampler chain for one answer with these SamplingSettings."""
        return SamplerChain(self, settings)

    # -- KV memory --------------------------------------------------------------------

    def kv_remove(self, seq: int, p0: int, p1: int = -1) -> bool:
        """Take positions p0..p1 (-1: to the end) out of sequence `seq` (-1: all)."""
        return bool(llama_cpp.llama_memory_seq_rm(self._mem, seq, p0, p1))

    def kv_copy(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        llama_cpp.llama_memory_seq_cp(self._mem, src, dst, p0, p1)

    def kv_keep(self, seq: int) -> None:
        llama_cpp.llama_memory_seq_keep(self._mem, seq)

    def kv_clear(self) -> None:
        llama_cpp.llama_memory_clear(self._mem, True)


class SamplerChain:
    """One llama_sampler chain: the repetition penalty, then greedy or top-k, top-p,
    min-p, temperature and a seeded draw, in llama.cpp's own order and arithmetic."""

    def __init__(self, backend: LlamaBackend, s) -> None:
        self._backend = backend
        params = llama_cpp.llama_sampler_chain_default_params()
        params.no_perf = True
        chain = llama_cpp.llama_sampler_chain_init(params)
        add = llama_cpp.llama_sampler_chain_add
        if s.repeat_penalty != 1.0:
            add(chain, llama_cpp.llama_sampler_init_penalties(
                backend.n_vocab, s.repeat_last_n, s.repeat_penalty, 0.0, 0.0))
        if s.greedy:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            if s.top_k > 0:
                add(chain, llama_cpp.llama_sampler_init_top_k(s.top_k))
            if s.top_p < 1.0:
                add(chain, llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
            if s.min_p > 0.0:
                add(chain, llama_cpp.llama_sampler_init_min_p(s.min_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(s.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(s.seed))
        self._chain = chain

    def accept(self, token: int) -> None:
        """Record a token the chain did not draw (the prompt, for the penalty's window)."""
        llama_cpp.llama_sampler_accept(self._chain, token)

    def sample(self, index: int) -> int:
        """Draw from the logits of the last batch's entry `index`, and record it."""
        return int(llama_cpp.llama_sampler_sample(self._chain, self._backend._ctx, index))

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None

    def __del__(self) -> None:  # pragma: no cover
        try:
            self.close()
        except Exception:
            pass
