"""Every key binding, generated from the bindings themselves so it cannot go stale."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

EXTRA_KEYS = [
    ("enter", "send the message"),
    ("ctrl+j / shift+enter", "new line in the message"),
    ("/read PATH", "attach a text file to the next message (typed in the box)"),
    ("/drop", "remove the files attached to the next message"),
    ("shift+tab / click", "select a message (from the box: the newest one)"),
    ("up / down (k / j)", "on a selected message: the one before / after"),
    ("c (or y)", "on a selected message: copy it"),
    ("1 … 9", "on a selected message: copy its code block of that number"),
    ("i / enter", "on a selected message: back to the box"),
    ("ctrl+p", "command palette (also: regenerate with the same settings and seed)"),
]


FIGURES_HELP = [
    "## The stats bar",
    "",
    "- **tok/s**: answer tokens after the first, over the wall time from the first token "
    "to the last (prompt evaluation excluded: it is the `prompt` figure).",
    "- **tok/step**: tokens each verification step added (1.00 is plain decoding).",
    "- **accept**: drafted tokens the model agreed with, over all drafted.",
    "- **tree**: draft tokens verified in the last step (0: ADED chose not to draft).",
    "- **vs plain**: tok/s over plain decoding's rate on the same model and threads: "
    "the median `llama_decode` time of this answer's own one-token steps when it has "
    "eight, else the session's recent plain steps; `—` until there are any. An answer "
    "that drafted nothing reads about 1.00x.",
    "- **ctx**: tokens the context holds after the answer (its prompt and its tokens) "
    "over the context's size, and how many prompt tokens were reused from the cache "
    "instead of evaluated again. When old turns no longer fit they are left out, and the "
    "answer says so.",
    "",
    "Copies go to the system clipboard (pbcopy, wl-copy, xclip, xsel, clip.exe) where one "
    "is reachable, else through the terminal (OSC 52: works over SSH and in tmux when the "
    "terminal allows it); the note after each copy says which.",
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape,f1,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 72; height: 80%; border: thick $primary;
                                  background: $surface; padding: 0 1; }
    """

    def __init__(self, bindings: list[tuple[str, str]]):
        super().__init__()
        self.rows = EXTRA_KEYS + bindings

    def compose(self) -> ComposeResult:
        lines = ["# aded-chat keys", "", "| key | action |", "|---|---|"]
        lines += [f"| `{k}` | {d} |" for k, d in self.rows]
        lines += ["", "Hover an answer (or press `ctrl+t`) to see its speed and acceptance.",
                  "", *FIGURES_HELP, "", "Press `escape` to close."]
        with VerticalScroll():
            yield Markdown("\n".join(lines))
