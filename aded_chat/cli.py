"""The `aded-chat` command: the chat app by default, `ask`, `models`, `bench`.

User errors end in one line on stderr and exit status 2; Ctrl+C ends an answer cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace

from aded_chat import __version__
from aded_chat.attachments import BYTES_PER_TOKEN_MAX, AttachError, compose_turn, read_attachment
from aded_chat.config import ConfigError, check_config, load_config
from aded_chat.engine import KV_CACHE_CHOICES, EngineError, SettingsError, check_sampling
from aded_chat.errors import UsageError
from aded_chat.stats_text import ask_line

EXIT_USAGE = 2
EXIT_OUTPUT = 1  # stdout closed or full, as `echo hi >/dev/full` exits
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a reader that went away


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see {self.prog} --help)")


def _model_flags(p: argparse.ArgumentParser, *, sub: bool = False) -> None:
    """The flags that choose and load the model, on the root and on each subcommand.
    A subcommand's copy has no defaults of its own, so `aded-chat --model X ask` and
    `aded-chat ask --model X` mean the same and neither overwrites the other."""
    kw = {"default": argparse.SUPPRESS} if sub else {}
    p.add_argument("--model", metavar="PATH", help="GGUF file, or a file name in the models "
                   "folder (default: config, else the embedded SmolLM2-135M)", **kw)
    p.add_argument("--n-gpu-layers", type=int, metavar="N",
                   help="layers to offload (default: all when llama.cpp can offload)", **kw)
    p.add_argument("--n-ctx", type=int, metavar="N", help="context size in tokens", **kw)
    p.add_argument("--threads", type=int, metavar="N",
                   help="llama.cpp CPU threads (default: config, else one per core)", **kw)
    p.add_argument("--kv-cache", choices=KV_CACHE_CHOICES, metavar="TYPE",
                   help="KV cache number types: auto (default: q8_0/f16 on a CPU, keys Q8_0 "
                   "and values F16, where greedy answers then equal plain decoding's "
                   "exactly; f16 on a GPU), f16, q8_0/f16, q8_0 or bf16", **kw)
    p.add_argument("--cost-curve", metavar="FILE", help="draft as on another machine: a "
                   "JSON verification cost curve (seconds per batch size, as `bench --json` "
                   "writes it) or 'flat' (a GPU-like curve); replaces this machine's", **kw)
    p.add_argument("--steady-batch", type=int, metavar="N", help="verify every step as a "
                   "batch of exactly N rows (2 to 63), drafts padded: on a CUDA GPU each step "
                   "then replays one captured graph (default: config, else 0, off)", **kw)
    p.add_argument("--plain", action="store_true", help="turn speculative decoding off", **kw)
    p.add_argument("--verbose", action="store_true", help="show llama.cpp's log", **kw)


def _sampling_flags(p: argparse.ArgumentParser, *, temperature_default=None) -> None:
    p.add_argument("--temperature", type=float, default=temperature_default, metavar="T",
                   help="0 = greedy (default from config)")
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("--max-tokens", type=int, metavar="N")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aded-chat", description="Chat with a local GGUF model, accelerated "
                     "by adaptive tri-gram draft trees verified in one llama.cpp batch.")
    parser.add_argument("--version", action="version", version=f"aded-chat {__version__}")
    _model_flags(parser)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    ask = sub.add_parser("ask", help="answer one prompt on stdout (headless)")
    _model_flags(ask, sub=True)
    _sampling_flags(ask)
    ask.add_argument("--system", metavar="TEXT", help="system prompt")
    ask.add_argument("--json", action="store_true", help="print one JSON object instead")
    ask.add_argument("-f", "--file", action="append", default=[], metavar="FILE",
                     help="attach a text file (fenced and named before the prompt); "
                     "repeatable")
    ask.add_argument("prompt", nargs="?", default="",
                     help="the prompt, or - to read standard input (may be empty with -f)")

    sub.add_parser("models", help="list the embedded model and the models folder")

    pull = sub.add_parser("pull", help="download a GGUF model from the Hugging Face Hub")
    pull.add_argument("spec", metavar="REPO[:QUANT]", help="a Hub repository, optionally "
                      "with a quantization (Q4_K_M, Q8_0, …) or a file name after the colon")

    hist = sub.add_parser("history", help="list conversations, or search every message")
    hist.add_argument("query", nargs="*", help="words to find (prefixes match: 'tok' finds "
                      "'tokens'); none: list conversations")
    hist.add_argument("--show", type=int, metavar="ID", help="print conversation ID as "
                      "Markdown (with --json: as JSON)")
    hist.add_argument("--limit", type=int, default=20, metavar="N", help="at most N rows")
    hist.add_argument("--json", action="store_true", help="print JSON instead")

    bench = sub.add_parser("bench", help="compare plain, prompt-lookup and ADED decoding")
    _model_flags(bench, sub=True)
    bench.add_argument("--prompts", metavar="FILE.jsonl", help="prompt set (default: shipped)")
    bench.add_argument("--methods", default="plain,pld,aded", help="comma-separated: plain, "
                       "pld (llama-cpp-python's prompt lookup), aded, and llama.cpp's own "
                       "modes as llama-server:MODE (ngram-simple, ngram-map-k, ngram-map-k4v, "
                       "ngram-mod, ngram-cache)")
    bench.add_argument("--drafter-state", metavar="FILE", help="start ADED from what an "
                       "earlier run learned (written by --save-drafter-state)")
    bench.add_argument("--save-drafter-state", metavar="FILE", help="write what ADED "
                       "learned during this run (a second run starts from it)")
    bench.add_argument("--llama-server", metavar="PATH", help="the llama-server binary for "
                       "llama-server:* methods (default: on PATH, else the one "
                       "docs/measure/build_llama_server.sh built)")
    bench.add_argument("--guard-near-ties", action="store_true",
                       help="stop greedy verification at near-ties even where batches are "
                            "exact, as on a GPU (what that costs, on a foreign curve)")
    bench.add_argument("--max-tokens", type=int, default=256)
    bench.add_argument("--temperature", type=float, default=0.0)
    bench.add_argument("--repeat", type=int, default=1, help="runs per prompt (median)")
    bench.add_argument("--json", metavar="OUT", help="write the full report here")
    bench.add_argument("--limit", type=int, help="only the first N prompts")
    bench.add_argument("--per-category", type=int, metavar="N",
                       help="only the first N prompts of each category")
    return parser


def _settings(cfg, args):
    s = cfg.generation
    if getattr(args, "temperature", None) is not None:
        s = replace(s, temperature=args.temperature)
    if getattr(args, "seed", None) is not None:
        s = replace(s, seed=args.seed)
    if getattr(args, "max_tokens", None) is not None:
        s = replace(s, max_tokens=args.max_tokens)
    try:
        check_sampling(s)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    return s


def _text(s: str) -> str:
    """Text from argv or a byte stream that may not be UTF-8: undecodable bytes become
    U+FFFD, as they would in any editor, instead of failing when the prompt is encoded."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _out(text: str) -> None:
    """Write to stdout now; a closed or full stdout is an OutputError, not a traceback."""
    if sys.stdout is None:
        raise OutputError("standard output is closed")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as exc:
        raise OutputError(getattr(exc, "strerror", None) or str(exc)) from None


class OutputError(Exception):
    """The answer could not be written to standard output."""


def cmd_ask(cfg, args) -> int:
    from aded_chat.engine import Message, read_cost_curve
    from aded_chat.runtime import open_model

    prompt = (sys.stdin.buffer.read().decode("utf-8", "replace") if args.prompt == "-"
              else _text(args.prompt))
    try:
        files = [read_attachment(f, cfg.n_ctx * BYTES_PER_TOKEN_MAX) for f in args.file]
    except AttachError as exc:
        raise UsageError(str(exc)) from None
    if not prompt.strip() and not files:
        raise UsageError("empty prompt")
    prompt = compose_turn(prompt, files)
    settings = _settings(cfg, args)
    session = open_model(cfg, model=args.model, verbose=args.verbose,
                         drafter=cfg.speculative and not args.plain,
                         cost_curve=read_cost_curve(args.cost_curve))
    system = _text(args.system) if args.system is not None else cfg.system_prompt
    messages = ([Message("system", system)] if system else []) + [Message("user", prompt)]
    parts: list[str] = []
    stats = None
    interrupted = False
    gen = session.generate(messages, settings, speculative=not args.plain)
    try:
        for chunk in gen:
            stats = chunk.stats
            parts.append(chunk.text)
            if not args.json:
                _out(chunk.text)
    except KeyboardInterrupt:
        gen.close()
        interrupted = True
    if stats is None:
        stats = session.last_stats
    if interrupted and stats is not None:
        stats.finish_reason = "interrupted"
    if args.json:
        info = session.info
        _out(json.dumps({"text": "".join(parts), "model": info.model_path,
                          "backend": info.offload, "threads": info.n_threads,
                          "kv_cache": info.kv_cache,
                          "settings": settings.as_dict(),
                          "stats": stats.as_dict() if stats else None}, ensure_ascii=False,
                         allow_nan=False) + "\n")
    else:
        _out("\n")
        if stats is not None:
            sys.stderr.write(ask_line(stats, session.info.offload) + "\n")
    return EXIT_INTERRUPTED if interrupted else 0


def cmd_models(cfg, args) -> int:
    from aded_chat.engine import list_models

    entries = list_models(cfg.models_path)
    for e in entries:
        print(f"{e.name}\t{e.size_bytes / 1e6:.0f} MB\t{e.path}")
    print(f"# models folder: {cfg.models_path}", file=sys.stderr)
    return 0


def cmd_pull(cfg, args) -> int:
    from aded_chat.pull import PullError, pull

    try:
        path = pull(args.spec, cfg.models_path,
                    say=lambda line: print(line, file=sys.stderr))
    except PullError as exc:
        raise UsageError(str(exc)) from None
    _out(f"{path}\n")
    print(f"# use it: aded-chat --model {path.stem}", file=sys.stderr)
    return 0


def cmd_history(cfg, args) -> int:
    from aded_chat.history import run_history

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    return run_history(args)


def cmd_bench(cfg, args) -> int:
    from aded_chat.bench import run_bench

    return run_bench(cfg, args)


def cmd_chat(cfg, args) -> int:
    from aded_chat.app import run_app

    return run_app(cfg, args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        cfg = load_config()
        if getattr(args, "threads", None) is not None and args.threads < 1:
            raise UsageError("--threads must be at least 1")
        flags = {"threads": args.threads, "kv_cache": args.kv_cache, "n_ctx": args.n_ctx,
                 "n_gpu_layers": args.n_gpu_layers, "steady_batch": args.steady_batch}
        cfg = replace(cfg, **{k: v for k, v in flags.items() if v is not None})
        try:
            check_config(cfg)
        except SettingsError as exc:
            raise UsageError(str(exc).replace("n_ctx", "--n-ctx").replace(
                "steady_batch", "--steady-batch")) from None
        command = {"ask": cmd_ask, "models": cmd_models, "bench": cmd_bench,
                   "history": cmd_history, "pull": cmd_pull}.get(
            args.command, cmd_chat)
        return command(cfg, args)
    except UsageError as exc:
        _error(f"error: {exc}")
    except ConfigError as exc:
        _error(f"config error: {exc}")
    except EngineError as exc:
        _error(f"error: {exc}")
    except OutputError as exc:
        _error(f"cannot write the answer: {exc}")
        return EXIT_OUTPUT
    except BrokenPipeError:  # `aded-chat ask ... | head`: the reader has what it wanted
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    return EXIT_USAGE


def _error(text: str) -> None:
    if sys.stderr is not None:
        try:
            print(f"aded-chat: {text}", file=sys.stderr)
        except OSError:
            pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush meets no broken pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
