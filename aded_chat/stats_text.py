"""Answer figures as text, for every place that shows them: the live bar, a message's
tooltip and export, `ask`'s stats line and the bench's rows. One wording and one number
format per figure, whichever surface shows it.

Figures read a stats dict: AnswerStats.as_dict(), or the one stored with a message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aded_chat.engine import AnswerStats


def rate(tokens_per_s: float) -> str:
    return f"{tokens_per_s:.1f} tok/s"


def speedup(ratio: float) -> str:
    return f"{ratio:.2f}x"


def _spec(d: dict) -> bool:
    return bool(d.get("speculative"))


GAUGE_CELLS = 8
_EIGHTHS = " ▏▎▍▌▋▊▉"


def gauge(used: int, size: int, cells: int = GAUGE_CELLS) -> str:
    """A bar of `cells` characters filled in eighths: how full the context is."""
    eighths = round(cells * 8 * min(max(used / size, 0.0), 1.0)) if size > 0 else 0
    full, part = divmod(eighths, 8)
    return ("█" * full + (_EIGHTHS[part] if part else "")).ljust(cells)


def context(d: dict) -> str | None:
    """Context gauge: tokens in use / the context's size, and how many of this answer's
    prompt tokens came from the cache (not evaluated again)."""
    size = d.get("n_ctx") or 0
    if not size:
        return None
    used, reused = d.get("context_used", 0), d.get("prompt_reused", 0)
    return (f"ctx {gauge(used, size)} {used}/{size}"
            + (f", {reused} reused" if reused > 0 else ""))


def provenance_text(p: dict | None) -> str:
    """What produced an answer, on one line: model file, size and header hash, sampling
    settings and seed, KV cache and threads."""
    if not p:
        return "no record of what produced this answer"
    model, s, e = p.get("model", {}), p.get("settings", {}), p.get("engine", {})
    parts = [f"{model.get('file', '?')} ({model.get('bytes', 0) / 1e6:.0f} MB, header "
             f"{str(model.get('header_sha256', ''))[:12]})"]
    t = s.get("temperature", 0.0)
    parts.append("greedy" if not t else
                 f"T={t:g} top_k={s.get('top_k')} top_p={s.get('top_p'):g} "
                 f"min_p={s.get('min_p'):g}")
    if s.get("repeat_penalty", 1.0) != 1.0:
        parts.append(f"repeat_penalty={s['repeat_penalty']:g}")
    parts.append(f"seed {s.get('seed')}")
    if e:
        parts.append(f"{e.get('backend')}, {e.get('kv_cache')} cache, "
                     f"{e.get('threads')} threads"
                     + ("" if e.get("speculative") else ", plain decoding"))
    return " | ".join(parts)


FIGURES: dict[str, Callable[[dict], str | None]] = {
    "tokens": lambda d: f"{d.get('tokens', 0)} tokens",
    "rate": lambda d: rate(d.get("tokens_per_s", 0.0)),
    "generated": lambda d: f"generated {d.get('tokens', 0)} tok, "
                           f"{rate(d.get('tokens_per_s', 0.0))}",
    "per_step": lambda d: f"{d.get('tokens_per_step', 0):.2f} tok/step" if _spec(d) else None,
    "acceptance": lambda d: (f"accept {100 * d.get('acceptance_rate', 0):.0f}%"
                             if _spec(d) else None),
    "accepted": lambda d: (f"accepted {d.get('accepted', 0)}/{d.get('drafted', 0)}"
                           if _spec(d) else None),
    "tree": lambda d: f"tree {d.get('tree_nodes_last', 0)}" if _spec(d) else None,
    "plain": lambda d: None if _spec(d) else "plain" + (
        f" ({d['fallback']})" if d.get("fallback") else ""),
    "fallback": lambda d: f"plain: {d['fallback']}" if d.get("fallback") else None,
    # "—" when there is no sound plain rate yet (the first answers of a session)
    "speedup": lambda d: (f"{speedup(d['speedup'])} vs plain" if d.get("speedup")
                          else "— vs plain" if _spec(d) else None),
    "prompt_rate": lambda d: (f"prompt {d['prompt_tokens_per_s']:.0f} tok/s"
                              if d.get("prompt_tokens_per_s") else None),
    "prompt_tokens": lambda d: f"prompt {d.get('prompt_tokens', 0)} tok",
    "prompt": lambda d: (f"prompt {d.get('prompt_tokens', 0)} tok "
                         f"({d.get('prompt_evaluated', 0)} evaluated, "
                         f"{d.get('prompt_tokens_per_s', 0):.0f} tok/s)"),
    "context": context,
    "dropped": lambda d: (f"dropped {d['dropped_turns']} old turns"
                          if d.get("dropped_turns") else None),
    "finish": lambda d: d.get("finish_reason") or None,
}

# What each surface shows, most watched first (a narrow terminal cuts the end).
BAR = ("rate", "per_step", "acceptance", "tree", "plain", "speedup", "prompt_rate")
SUMMARY = ("tokens", "rate", "per_step", "accepted", "speedup", "prompt_tokens", "context",
           "finish")
ASK = ("prompt", "generated", "per_step", "accepted", "fallback", "dropped")


class _Live:
    """Live stats read as a stats dict, figure by figure: the bar refreshes four times a
    second while an answer streams, and needs none of as_dict's other work."""

    def __init__(self, stats: AnswerStats):
        self._stats = stats

    def get(self, key: str, default=None):
        return getattr(self._stats, key, default)

    def __contains__(self, key: str) -> bool:
        return hasattr(self._stats, key)

    def __getitem__(self, key: str):
        return getattr(self._stats, key)


def describe(stats: dict | AnswerStats | None, figures: Sequence[str]) -> list[str]:
    """The named figures that apply to these stats, as text, in order."""
    if stats is None:
        return []
    d = _Live(stats) if isinstance(stats, AnswerStats) else stats
    return [t for t in (FIGURES[f](d) for f in figures) if t]


def gauge_text(stats: AnswerStats | None) -> str:
    """The bar's context gauge (kept apart from the figures, so a narrow terminal never
    cuts it off): empty before the first answer."""
    return (context(_Live(stats)) or "") if stats is not None else ""


def bar_text(stats: AnswerStats | None, backend: str, state: str = "") -> str:
    """The live stats bar: the state, the figures, where the model runs."""
    if stats is None:
        return f"{state or 'ready'} | {backend}"
    return " | ".join(([state] if state else []) + describe(stats, BAR) + [backend])


def summary_text(stats: dict | None) -> str:
    """One line for a stored answer (tooltip, export, the stats key)."""
    return " | ".join(describe(stats, SUMMARY)) if stats else "no stats"


def ask_line(stats: AnswerStats, backend: str) -> str:
    """`ask`'s line on stderr after the answer."""
    return " | ".join(describe(stats, ASK) + [backend, stats.finish_reason])
