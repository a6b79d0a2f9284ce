"""The live bar: decode speed, acceptance, tree size, speedup over plain, backend."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static

from aded_chat.engine import AnswerStats


def format_stats(stats: AnswerStats | None, backend: str, state: str = "") -> str:
    if stats is None:
        return f"{state or 'ready'} | {backend}"
    # What a person watches first comes first: a narrow terminal cuts the end.
    parts = [f"{stats.tokens_per_s:.1f} tok/s"]
    if stats.speculative:
        parts.append(f"{stats.tokens_per_step:.2f} tok/step")
        parts.append(f"accept {100 * stats.acceptance_rate:.0f}%")
        parts.append(f"tree {stats.tree_nodes_last}")
    else:
        parts.append("plain" + (f" ({stats.fallback})" if stats.fallback else ""))
    if stats.speedup:
        parts.append(f"{stats.speedup:.2f}x vs plain")
    if stats.prompt_tokens_per_s:
        parts.append(f"prompt {stats.prompt_tokens_per_s:.0f} tok/s")
    parts.append(backend)
    if state:
        parts.insert(0, state)
    return " | ".join(parts)


class StatsBar(Horizontal):
    DEFAULT_CSS = """
    StatsBar { height: 1; background: $panel; }
    StatsBar > Static { width: 1fr; padding: 0 1; }
    StatsBar > Sparkline { width: 16; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.history: list[float] = []

    def compose(self) -> ComposeResult:
        yield Static("loading model…", id="stats-text", markup=False)  # file names
        yield Sparkline([], id="stats-spark")

    def show(self, text: str) -> None:
        self.query_one("#stats-text", Static).update(text)

    def record(self, tokens_per_s: float) -> None:
        """Add a finished answer's rate to the sparkline (last 30 answers)."""
        self.history = (self.history + [tokens_per_s])[-30:]
        self.query_one(Sparkline).data = list(self.history)
