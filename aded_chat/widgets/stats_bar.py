"""The live bar: its text (aded_chat.stats_text.bar_text) and a sparkline of recent rates."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static


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
