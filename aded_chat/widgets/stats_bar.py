"""The live bar: its figures (aded_chat.stats_text.bar_text), the context gauge
(stats_text.gauge_text) and a sparkline of recent rates."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static


class StatsBar(Horizontal):
    DEFAULT_CSS = """
    StatsBar { height: 1; background: $panel; }
    StatsBar > #stats-text { width: 1fr; padding: 0 1; }
    StatsBar > #stats-ctx { width: auto; padding: 0 1; color: $text-muted; }
    StatsBar > Sparkline { width: 16; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.history: list[float] = []

    def compose(self) -> ComposeResult:
        yield Static("loading model…", id="stats-text", markup=False)  # file names
        yield Static("", id="stats-ctx", markup=False)
        yield Sparkline([], id="stats-spark")

    def show(self, text: str, gauge: str | None = None) -> None:
        """The figures; and the context gauge when given (None keeps the one shown)."""
        self.query_one("#stats-text", Static).update(text)
        if gauge is not None:
            self.query_one("#stats-ctx", Static).update(gauge)

    def record(self, tokens_per_s: float) -> None:
        """Add a finished answer's rate to the sparkline (last 30 answers)."""
        self.history = (self.history + [tokens_per_s])[-30:]
        self.query_one(Sparkline).data = list(self.history)
