"""`aded-chat bench`: plain, llama-cpp-python prompt lookup (pld), ADED and llama.cpp's
own draft-free modes (llama-server:MODE) on one model, methods interleaved prompt by
prompt, median of --repeat runs.

Speedups are ratios measured in the same run, because this machine is noisy: ADED's
and pld's against plain, each llama-server mode's against llama-server:none (the same
program without speculation), and llama-server:none's against plain.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from aded_chat.engine import (
    CostModel,
    Message,
    SamplingSettings,
    common_prefix,
    projected_speedup,
    read_cost_curve,
    tiled_matmul_off,
)
from aded_chat.errors import UsageError
from aded_chat.llama_server import PREFIX, LlamaServer, PeerError, find_binary, modes_of
from aded_chat.runtime import open_model
from aded_chat.stats_text import speedup

METHODS = ("plain", "pld", "aded")
SERVER_PLAIN = PREFIX + "none"
PLD_DRAFT_TOKENS = 2  # llama-cpp-python's docs: 10 suits a GPU, 2 a CPU-only machine


def default_prompts() -> Path:
    return Path(str(importlib.resources.files("aded_chat.assets") / "prompts.jsonl"))


def load_prompts(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read prompt file {path}: {exc.strerror}") from None
    prompts = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            msgs = [Message(m["role"], m["content"]) for m in obj["messages"]]
            prompts.append({"id": str(obj["id"]), "category": str(obj["category"]),
                            "messages": msgs})
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{path}:{no}: expected {{\"id\", \"category\", \"messages\"}}"
                             ) from None
    if not prompts:
        raise UsageError(f"no prompts in {path}")
    return prompts


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def geomean(xs: list[float]) -> float:
    xs = [x for x in xs if x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else 0.0


def first_divergence(a: list[int], b: list[int]) -> int | None:
    """Where two answers' tokens first differ; None when they are the same."""
    d = common_prefix(a, b)
    return None if d == len(a) == len(b) else d


class PromptLookup:
    """llama-cpp-python's high-level API: plain create_chat_completion (the reference our
    own plain decoding must match) and with LlamaPromptLookupDecoding as documented."""

    def __init__(self, model_path: str, n_ctx: int, n_threads: int, n_gpu_layers: int):
        import llama_cpp.llama_cpp as low
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        kw = dict(model_path=model_path, n_ctx=n_ctx, n_threads=n_threads,
                  n_threads_batch=n_threads, n_gpu_layers=n_gpu_layers, verbose=False)
        # Same weight layout as our backend (no repacked/AMX buffers: see engine.llama.backend);
        # the high-level Llama has no option for it, so its defaults are patched here.
        default = low.llama_model_default_params

        def params():
            p = default()
            p.use_extra_bufts = False
            return p

        low.llama_model_default_params = params
        try:
            self.plain = Llama(**kw)
            self.pld = Llama(**kw, draft_model=LlamaPromptLookupDecoding(
                num_pred_tokens=PLD_DRAFT_TOKENS))
        finally:
            low.llama_model_default_params = default

    @staticmethod
    def run(llm, messages: list[Message], settings: SamplingSettings) -> dict:
        llm.reset()
        t_first = None
        n = 0
        parts = []
        for chunk in llm.create_chat_completion(
            [m.as_dict() for m in messages], max_tokens=settings.max_tokens,
            temperature=settings.temperature, top_k=settings.top_k if settings.temperature
            else 1, top_p=settings.top_p, min_p=settings.min_p,
            repeat_penalty=settings.repeat_penalty, seed=settings.seed, stream=True,
        ):
            delta = chunk["choices"][0]["delta"].get("content")
            if delta:
                if t_first is None:
                    t_first = time.perf_counter()
                else:
                    n += 1
                parts.append(delta)
        secs = time.perf_counter() - t_first if t_first else 0.0
        return {"text": "".join(parts), "tokens": n + 1, "decode_seconds": secs,
                "tokens_per_s": n / secs if secs > 0 else 0.0}


def run_session(session, messages, settings, *, speculative: bool, gaps=None,
                foreign_cost=None) -> dict:
    """One answer. With foreign_cost (another machine's verification curve, which the
    drafter planned against) the row also carries the speedup projected for that machine."""
    session.reset()
    text, tokens, st = session.answer(messages, settings, speculative=speculative,
                                      logit_gaps=gaps)
    row = {"text": text, "token_ids": tokens, "tokens": st.tokens,
           "decode_seconds": st.decode_s, "tokens_per_s": st.tokens_per_s,
           "steps": st.steps, "drafted_tokens": st.drafted, "accepted_tokens": st.accepted,
           "tokens_per_step": st.tokens_per_step,
           "median_host_ms": st.median_host_ms, "median_host_cpu_ms": st.median_host_cpu_ms,
           "mean_tree_nodes": st.drafted / st.steps + 1 if st.steps else 1.0,
           "redecoded_steps": sum(1 for _, again in st.batches_per_step if again),
           "carried_tokens": st.carried, "near_tie_stops": st.near_ties,
           "prompt_tokens": st.prompt_tokens, "prompt_tokens_per_s": st.prompt_tokens_per_s}
    if foreign_cost is not None and speculative:
        row["projected_speedup"] = projected_speedup(st, foreign_cost)
    return row


def median_run(runs: list[dict]) -> dict:
    runs = sorted(runs, key=lambda r: r["tokens_per_s"])
    out = dict(runs[len(runs) // 2])
    out["runs_tokens_per_s"] = [r["tokens_per_s"] for r in runs]
    return out


def _start_servers(binary: str | None, methods: list[str], info
                   ) -> tuple[dict[str, LlamaServer], dict[str, str]]:
    """One llama-server per llama-server:MODE method; those that fail to start are
    reported on every row (the run goes on without them)."""
    servers: dict[str, LlamaServer] = {}
    down: dict[str, str] = {}
    for m in methods:
        if m.startswith(PREFIX):
            servers[m] = LlamaServer(binary, m[len(PREFIX):], info)
            try:
                servers[m].start()
            except PeerError as exc:
                down[m] = str(exc)
                print(f"# {exc}", file=sys.stderr)
    return servers, down


def _baseline(m: str) -> str:
    """The method a method's speedup is measured against, in the same program."""
    return SERVER_PLAIN if m.startswith(PREFIX) and m != SERVER_PLAIN else "plain"


def _bench_prompt(p: dict, methods: list[str], session, settings, curve, hl,
                  servers: dict[str, LlamaServer], down: dict[str, str], repeat: int
                  ) -> dict:
    """One prompt: every method --repeat times, interleaved; its median row."""
    msgs = p["messages"]
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    failed = dict(down)  # a peer that failed on this prompt: reported, the run goes on
    learned = session.drafter_state()
    for _ in range(max(1, repeat)):
        for m in methods:
            if m == "plain":
                runs[m].append(run_session(session, msgs, settings, speculative=False))
            elif m == "aded":
                session.restore_drafter(learned)
                runs[m].append(run_session(session, msgs, settings, speculative=True,
                                           foreign_cost=curve))
            elif m not in failed:
                try:
                    if m in servers:
                        runs[m].append(servers[m].answer(msgs, settings))
                    else:
                        runs[m].append(PromptLookup.run(hl.pld, msgs, settings))
                except Exception as exc:  # the peer's own failure, not a reason to stop
                    failed[m] = (str(exc) if isinstance(exc, PeerError)
                                 else f"{type(exc).__name__}: {exc}")[:200]
    row = {"id": p["id"], "category": p["category"]}
    medians = {m: median_run(runs[m]) for m in methods if m not in failed}
    for m in methods:
        base = _baseline(m)
        if m in failed or (m != "plain" and base not in medians):
            row[m] = {"error": failed.get(m) or f"its baseline {base} failed"}
            continue
        r = medians[m]
        if m != "plain":
            ref = medians[base]
            if "token_ids" in r:
                d = first_divergence(ref["token_ids"], r["token_ids"])
            else:
                d = first_divergence(session.tokenize(ref["text"]), session.tokenize(r["text"]))
            r["identical_to_plain"] = d is None
            if d is not None:
                r["divergence_index"] = d
                if base == "plain":  # the plain logits' top-2 gap where they part
                    gaps: list[float] = []
                    run_session(session, msgs, settings, speculative=False, gaps=gaps)
                    # token d was drawn at step d-1's root (token 0 at the prompt)
                    r["divergence_logit_gap"] = gaps[d - 1] if 0 < d <= len(gaps) else None
            r["speedup"] = r["tokens_per_s"] / ref["tokens_per_s"] if ref["tokens_per_s"] else 0
        row[m] = r
    for r in medians.values():
        r.pop("token_ids", None)
    return row


def run_bench(cfg, args) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS and not m.startswith(PREFIX)]
    if unknown or not methods:
        raise UsageError(f"unknown method {unknown[0] if unknown else '(none)'}; "
                         f"choose from {','.join(METHODS)}")
    for flag, value in (("--repeat", args.repeat), ("--limit", args.limit),
                        ("--per-category", args.per_category)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1")
    if "plain" not in methods:
        methods.insert(0, "plain")  # every speedup is a ratio to plain in the same run
    binary = None
    if modes_of(methods):
        binary = find_binary(args.llama_server)
        if SERVER_PLAIN not in methods:  # each mode's own plain, in the same program
            methods.insert(1, SERVER_PLAIN)
    prompts = load_prompts(Path(args.prompts) if args.prompts else default_prompts())
    if args.per_category:
        seen: dict[str, int] = {}
        kept = []
        for p in prompts:
            seen[p["category"]] = seen.get(p["category"], 0) + 1
            if seen[p["category"]] <= args.per_category:
                kept.append(p)
        prompts = kept
    if args.limit:
        prompts = prompts[: args.limit]
    settings = SamplingSettings(temperature=args.temperature, seed=1234,
                                max_tokens=args.max_tokens)
    settings = replace(settings, top_k=cfg.generation.top_k, top_p=cfg.generation.top_p,
                       min_p=cfg.generation.min_p)

    curve = read_cost_curve(args.cost_curve)
    if curve is not None and cfg.steady_batch:
        # every step is the same batch: the GPU the curve came from would replay one
        # graph and pay no switch between shapes
        curve = CostModel(curve.cost, frozen=True)
    t0 = time.perf_counter()
    # a bench starts from the corpus prior (or --drafter-state), never from what earlier
    # chats taught the drafter, and leaves the app's learned file alone
    session = open_model(cfg, model=args.model, verbose=args.verbose, cost_curve=curve,
                         remember=False, guard_near_ties=args.guard_near_ties or None)
    ready_s = time.perf_counter() - t0
    if "aded" in methods and not session.speculator_ready:
        raise UsageError(session.speculator_error or "the ADED drafter is not available")
    if args.drafter_state and not session.load_drafter(Path(args.drafter_state)):
        raise UsageError(f"--drafter-state {args.drafter_state}: not a drafter state for "
                         f"this model (missing, damaged or another vocabulary)")
    info = session.info
    hl = None
    if "pld" in methods:
        hl = PromptLookup(info.model_path, info.n_ctx, info.n_threads, info.gpu_layers)
    print(f"# {info.model_desc} | {info.offload} | {info.n_threads} threads | {machine()} | "
          f"ready in {ready_s:.2f} s",
          file=sys.stderr)

    servers, down = _start_servers(binary, methods, info)
    try:
        results = []
        for p in prompts:
            row = _bench_prompt(p, methods, session, settings, curve, hl, servers, down,
                                args.repeat)
            if hl is not None and not results:  # once, a reference for our plain decoding
                try:
                    row["llama_cpp_python_plain"] = PromptLookup.run(hl.plain, p["messages"],
                                                                     settings)
                except Exception as exc:  # reported beside the table, never the end
                    print(f"# llama-cpp-python reference failed: {exc}"[:200],
                          file=sys.stderr)
            results.append(row)
            print(_row_line(row, methods), file=sys.stderr)
    finally:
        for srv in servers.values():
            srv.close()
    if args.save_drafter_state and not session.save_drafter(Path(args.save_drafter_state)):
        print(f"# could not write {args.save_drafter_state}", file=sys.stderr)

    report = {
        "model": info.model_path, "model_desc": info.model_desc, "backend": info.offload,
        "machine": machine(), "ready_seconds": ready_s,
        "settings": {**settings.as_dict(), "methods": methods, "repeat": args.repeat,
                     "pld_draft_tokens": PLD_DRAFT_TOKENS, "threads": info.n_threads,
                     "gpu_layers": info.gpu_layers, "kv_cache": info.kv_cache,
                     "exact_rows": session.exact_rows, "steady_batch": cfg.steady_batch,
                     "tiled_matmul": "off" if tiled_matmul_off() else "on"},
        "prompts": results,
        "geomean_speedup_vs_plain": _geomeans(results, methods),
    }
    ref = [r for r in results if "llama_cpp_python_plain" in r]
    if ref and ref[0]["llama_cpp_python_plain"]["tokens_per_s"] > 0:
        r = ref[0]
        report["plain_vs_llama_cpp_python"] = (
            r["plain"]["tokens_per_s"] / r["llama_cpp_python_plain"]["tokens_per_s"])
        report["llama_cpp_python_plain_same_text"] = (
            r["plain"]["text"] == r["llama_cpp_python_plain"]["text"])
    if "aded" in methods:
        report["aded_identical_rate"] = sum(r["aded"]["identical_to_plain"] for r in results
                                            ) / len(results)
        report["aded_median_host_ms"] = statistics.median(
            r["aded"]["median_host_ms"] for r in results)
        report["aded_median_host_cpu_ms"] = statistics.median(
            r["aded"]["median_host_cpu_ms"] for r in results)
        report["trigram_mb"] = session.drafter_table_mb
        # what verifying n tokens cost by the end of the run (measured at load, refined
        # online): the curve every drafting decision above was made against
        report["verify_cost_s"] = session.verify_costs()
        report["verify_switch_s"] = session.verify_switch()
        report["cost_curve"] = args.cost_curve or "measured here"
        if curve is not None:
            report["tokens_per_step"] = geomean([r["aded"]["tokens_per_step"]
                                                 for r in results])
            report["aded_acceptance"] = sum(r["aded"]["accepted_tokens"] for r in results) / max(
                1, sum(r["aded"]["drafted_tokens"] for r in results))
            report["projected_speedup"] = _geomeans(results, ["aded"], "projected_speedup")[
                "aded"]
    print(format_report(report, methods))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=_json_default))
    return 0


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))


def _guard_text(exact_rows: int) -> str:
    """Greedy verification's near-tie guard, as the session ran it (engine.decode.exact)."""
    return f"off (batches of up to {exact_rows} rows are exact)" if exact_rows > 1 else "on"


def _geomeans(results: list[dict], methods: list[str], key: str = "speedup") -> dict:
    out = {}
    for m in methods:
        if m == "plain":
            continue
        cats: dict[str, list[float]] = {}
        for r in results:
            if key in r[m]:  # (not a failed peer's row)
                cats.setdefault(r["category"], []).append(r[m][key])
        out[m] = {"overall": geomean([x for xs in cats.values() for x in xs]),
                  **{c: geomean(xs) for c, xs in cats.items()}}
    return out


def _row_line(row: dict, methods: list[str]) -> str:
    parts = [f"{row['id']:<16} {row['category']:<10} plain {row['plain']['tokens_per_s']:6.1f}"]
    for m in methods:
        if m == "plain":
            continue
        r = row[m]
        if "error" in r:
            parts.append(f"{m} failed: {r['error']}")
            continue
        same = "=" if r["identical_to_plain"] else f"≠@{r['divergence_index']}"
        parts.append(f"{m} {r['tokens_per_s']:6.1f} ({speedup(r['speedup'])} {same})")
        if "drafted_tokens" in r:
            parts.append(f"acc {r['accepted_tokens']}/{r['drafted_tokens']}")
    return " | ".join(parts)


def format_report(report: dict, methods: list[str]) -> str:
    spec = [m for m in methods if m != "plain"]
    lines = ["| prompt | category | plain tok/s | " + " | ".join(
        f"{m} tok/s (speedup)" for m in spec) + " | aded accepted/drafted | identical |",
        "|---|---|---|" + "---|" * len(spec) + "---|---|"]
    for r in report["prompts"]:
        cells = [r["id"], r["category"], f"{r['plain']['tokens_per_s']:.1f}"]
        for m in spec:
            cells.append("failed" if "error" in r[m] else
                         f"{r[m]['tokens_per_s']:.1f} ({speedup(r[m]['speedup'])})")
        a = r.get("aded")
        cells.append(f"{a['accepted_tokens']}/{a['drafted_tokens']}" if a else "-")
        same = [m for m in spec if r[m].get("identical_to_plain")]
        cells.append(",".join(same) if same else "no")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| geomean speedup vs plain | " + " | ".join(spec) + " |")
    lines.append("|---|" + "---|" * len(spec))
    g = report["geomean_speedup_vs_plain"]
    cats = list(dict.fromkeys(c for m in spec for c in g[m])) if spec else []
    for c in cats:
        lines.append(f"| {c} | " + " | ".join(
            speedup(g[m][c]) if c in g[m] else "failed" for m in spec) + " |")
    extra = []
    if any(m.startswith(PREFIX) for m in spec):
        extra.append(f"llama-server modes: speedup and identity against {SERVER_PLAIN} "
                     f"(the same program without speculation); {SERVER_PLAIN} against plain")
    if "plain_vs_llama_cpp_python" in report:
        extra.append(f"plain vs llama-cpp-python create_chat_completion (first prompt): "
                     f"{speedup(report['plain_vs_llama_cpp_python'])}, same text: "
                     f"{report['llama_cpp_python_plain_same_text']}")
    if "aded_identical_rate" in report:
        exact_rows = report["settings"].get("exact_rows", 1)
        extra.append(f"aded identical to plain: {100 * report['aded_identical_rate']:.0f}% | "
                     f"median host overhead {report['aded_median_host_ms']:.3f} ms/step "
                     f"({report['aded_median_host_cpu_ms']:.3f} ms CPU) | "
                     f"tri-gram table {report['trigram_mb']:.1f} MB | greedy near-tie "
                     f"guard {_guard_text(exact_rows)}")
    costs = report.get("verify_cost_s")
    if costs:
        one = costs["1"]
        extra.append(f"verification cost the drafter ended with ({report['cost_curve']}): "
                     f"one token {1000 * one:.2f} ms, "
                     + ", ".join(f"{n} tokens {costs[str(n)] / one:.2f}x" for n in (2, 8, 16)
                                 if str(n) in costs)
                     + f"; one token right after a batch "
                       f"+{1000 * report.get('verify_switch_s', 0.0):.2f} ms")
    if "projected_speedup" in report:
        proj = report["projected_speedup"]
        extra.append(
            f"PROJECTED on the cost curve {report['cost_curve']} (not measured: this run's "
            f"steps replayed on that curve): {report['tokens_per_step']:.2f} tok/step, "
            f"acceptance {100 * report['aded_acceptance']:.0f}%, speedup "
            + ", ".join(f"{c} {speedup(v)}" for c, v in proj.items()))
    plain_pp = [r["plain"]["prompt_tokens_per_s"] for r in report["prompts"]
                if r.get("plain", {}).get("prompt_tokens_per_s")]
    if plain_pp:
        extra.append(f"prompt evaluation {statistics.median(plain_pp):.0f} tok/s (plain, median) "
                     f"| ggml's tiled K-quant matmul "
                     f"{report['settings'].get('tiled_matmul', 'on')}")
    extra.append(f"ready in {report['ready_seconds']:.2f} s")
    return "\n".join(lines + [""] + extra)
