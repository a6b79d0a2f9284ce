"""Find any old message: full-text search over every conversation as you type."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from aded_chat.store import HIT_END, HIT_START, SearchHit, Store, StoreError

RESULTS_MAX = 50


def hit_content(hit: SearchHit) -> Content:
    """Two lines: the conversation and when, then the snippet with the matches marked."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(hit.created))
    who = "you" if hit.role == "user" else hit.role
    head = Content.assemble((hit.title, "bold"), (f"  {when} · {who}", "dim"))
    parts: list[tuple[str, str] | str] = []
    for i, piece in enumerate(" ".join(hit.snippet.split()).split(HIT_START)):
        if i == 0:
            parts.append(piece)
            continue
        match, _, rest = piece.partition(HIT_END)
        parts += [(match, "bold reverse"), rest]
    return Content.assemble(head, "\n  ", *parts)


class SearchScreen(ModalScreen[SearchHit | None]):
    BINDINGS = [("escape", "dismiss(None)", "Close"),
                ("down", "results", "Results")]
    DEFAULT_CSS = """
    SearchScreen { align: center middle; }
    SearchScreen > Vertical { width: 100; height: 80%; border: thick $primary;
                              background: $surface; padding: 0 1; }
    SearchScreen OptionList { height: 1fr; border: none; }
    SearchScreen #count { color: $text-muted; }
    """

    def __init__(self, store: Store, query: str = ""):
        super().__init__()
        self.store = store
        self.query_text = query
        self.hits: list[SearchHit] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Search every conversation (words match as prefixes)")
            yield Input(self.query_text, placeholder="words to find…", id="query")
            yield Label("", id="count", markup=False)  # may say a StoreError (a path)
            yield OptionList(id="hits")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        if self.query_text:
            self._search(self.query_text)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._search(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.hits:
            self.dismiss(self.hits[0])

    def _search(self, query: str) -> None:
        try:
            self.hits = self.store.search(query, RESULTS_MAX) if query.strip() else []
        except StoreError as exc:
            self.hits = []
            self.query_one("#count", Label).update(str(exc))
            return
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options(Option(hit_content(h), id=str(i)) for i, h in enumerate(self.hits))
        n = len(self.hits)
        self.query_one("#count", Label).update(
            "" if not query.strip() else "no message matches" if not n else
            f"{n}{'+' if n == RESULTS_MAX else ''} messages · enter opens the best, "
            f"↓ to choose")

    def action_results(self) -> None:
        if self.hits:
            self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.hits[int(event.option.id)])
