"""One chat message: a role label and a body that can grow while streaming.

Answers render as Markdown with their code blocks numbered; a user turn shows what was
typed as typed, and each attached file collapsed under its name and size. A message
takes focus (click, tab, shift+tab from the prompt) so it can be copied whole or a code
block by number; the copying itself is the app's (it knows the clipboard)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message as UIMessage
from textual.widgets import Collapsible, Label, Markdown, Static
from textual.widgets._markdown import MarkdownFence

from aded_chat.attachments import split_turn
from aded_chat.stats_text import summary_text


class NumberedFence(MarkdownFence):
    """A code block titled with its number in the message (the key that copies it)."""

    DEFAULT_CSS = """
    NumberedFence { width: 100%; border-top: wide $secondary 40%; border-title-align: right;
                    border-title-color: $text-muted; }
    """

    def on_mount(self) -> None:
        self.markdown_view.number_blocks()

    @property
    def markdown_view(self) -> AnswerMarkdown:
        return self._markdown  # the Markdown document this block belongs to


class AnswerMarkdown(Markdown):
    BLOCKS = {**Markdown.BLOCKS, "fence": NumberedFence, "code_block": NumberedFence}

    def code_blocks(self) -> list[str]:
        """The code of each block, in reading order: what the numbers copy."""
        return [f.code for f in self.query(NumberedFence)]

    def number_blocks(self) -> None:
        for n, fence in enumerate(self.query(NumberedFence), start=1):
            lang = f" {fence.lexer}" if fence.lexer else ""
            fence.border_title = f"[{n}]{lang}"


class MessageView(Vertical, can_focus=True):
    """A message in the conversation view."""

    BINDINGS = [
        Binding("c,y", "copy_message", "Copy message"),
        *[Binding(str(n), f"copy_block({n})", f"Copy block {n}", show=False)
          for n in range(1, 10)],
        Binding("up,k", "neighbour(-1)", "Previous", show=False),
        Binding("down,j", "neighbour(1)", "Next", show=False),
        Binding("i,enter", "to_prompt", "Back to prompt", show=False),
    ]
    DEFAULT_CSS = """
    MessageView { height: auto; margin: 0 1 1 1; padding: 0 1; }
    MessageView.user { border-left: thick $primary; }
    MessageView.assistant { border-left: thick $success; }
    MessageView.stopped { border-left: thick $warning; }
    MessageView:focus { background: $boost; border-left: thick $accent; }
    MessageView > Label { color: $text-muted; }
    MessageView > #dropped { color: $warning; }
    MessageView > Markdown { margin: 0; padding: 0; }
    MessageView > .typed { margin: 0 0 1 0; }
    MessageView > Collapsible { margin: 0 0 1 0; padding: 0; border: none;
                                background: $panel; }
    """

    class Copy(UIMessage):
        """Copy `text` (what the message's key asked for), described as `what`."""

        def __init__(self, text: str, what: str):
            super().__init__()
            self.text, self.what = text, what

    def __init__(self, role: str, content: str, *, message_id: int | None = None,
                 stats: dict | None = None, status: str = "done"):
        super().__init__(classes=role)
        self.role = role
        self.content = content
        self.message_id = message_id
        self.stats = stats
        self.status = status

    def compose(self) -> ComposeResult:
        yield Label(self._label(), id="role", markup=False)
        self._dropped = (self.stats or {}).get("dropped_turns", 0)
        yield Label(self._dropped_text(self._dropped), id="dropped", markup=False)
        if self.role == "assistant":
            yield AnswerMarkdown(self.content)
            return
        # what the person typed, as typed (line breaks and indentation kept); files folded
        for text, name, size in split_turn(self.content) or [("", None, None)]:
            if name is None:
                yield Static(text, classes="typed", markup=False)
            else:
                # a file name is plain text (a Collapsible parses a str title as markup)
                with Collapsible(title=Content(f"{name} · {size}"), collapsed=True):
                    yield Static(text, markup=False)

    def on_mount(self) -> None:
        self._refresh_meta()

    def _label(self) -> str:
        name = {"user": "You", "assistant": "Assistant", "system": "System"}.get(
            self.role, self.role)
        return name + ("  [stopped]" if self.status == "stopped" else "")

    @staticmethod
    def _dropped_text(n: int) -> str:
        if not n:
            return ""
        turns = "turn" if n == 1 else "turns"
        return (f"{n} earlier {turns} did not fit the context and were left out of what "
                f"the model saw for this answer")

    def show_dropped(self, n: int) -> None:
        """Say that old turns were left out to fit the context (n = 0: say nothing).
        Called with every streamed refresh: the label changes only when n does."""
        if n == self._dropped:
            return
        self._dropped = n
        label = self.query_one("#dropped", Label)
        label.update(self._dropped_text(n))
        label.display = bool(n)

    def _refresh_meta(self) -> None:
        self.set_class(self.status == "stopped", "stopped")
        self.query_one("#dropped", Label).display = bool(
            (self.stats or {}).get("dropped_turns"))
        if self.role == "assistant":
            self.tooltip = summary_text(self.stats)

    @property
    def body(self) -> AnswerMarkdown:
        return self.query_one(AnswerMarkdown)

    def code_blocks(self) -> list[str]:
        return self.body.code_blocks() if self.role == "assistant" else []

    async def append(self, text: str) -> None:
        self.content += text
        await self.body.append(text)

    def finish(self, stats: dict | None, status: str) -> None:
        self.stats, self.status = stats, status
        self.query_one("#role", Label).update(self._label())
        self._refresh_meta()

    # -- keys on a focused message ----------------------------------------------------

    def action_copy_message(self) -> None:
        self.post_message(self.Copy(self.content, "Message"))

    def action_copy_block(self, n: int) -> None:
        blocks = self.code_blocks()
        if not 1 <= n <= len(blocks):
            self.notify(f"This message has no code block {n}." if blocks else
                        "This message has no code block.", severity="warning")
            return
        self.post_message(self.Copy(blocks[n - 1], f"Code block {n}"))

    def action_neighbour(self, step: int) -> None:
        views = list(self.screen.query(MessageView))
        i = views.index(self) + step
        if 0 <= i < len(views):
            views[i].focus()
        elif step > 0:
            self.action_to_prompt()

    def action_to_prompt(self) -> None:
        self.screen.query_one("#prompt").focus()
