"""One chat message: a role label and a Markdown body that can grow while streaming."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Markdown, Static

from aded_chat.stats_text import summary_text


class MessageView(Vertical):
    """A message in the conversation view."""

    DEFAULT_CSS = """
    MessageView { height: auto; margin: 0 1 1 1; padding: 0 1; }
    MessageView.user { border-left: thick $primary; }
    MessageView.assistant { border-left: thick $success; }
    MessageView.stopped { border-left: thick $warning; }
    MessageView > Label { color: $text-muted; }
    MessageView > Markdown { margin: 0; padding: 0; }
    MessageView > #text { margin: 0 0 1 0; }
    """

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
        if self.role == "assistant":
            yield Markdown(self.content)
        else:  # what the person typed, as typed: line breaks and indentation kept
            yield Static(self.content, id="text", markup=False)

    def on_mount(self) -> None:
        self._refresh_meta()

    def _label(self) -> str:
        name = {"user": "You", "assistant": "Assistant", "system": "System"}.get(
            self.role, self.role)
        return name + ("  [stopped]" if self.status == "stopped" else "")

    def _refresh_meta(self) -> None:
        self.set_class(self.status == "stopped", "stopped")
        if self.role == "assistant":
            self.tooltip = summary_text(self.stats)

    @property
    def body(self) -> Markdown:
        return self.query_one(Markdown)

    async def append(self, text: str) -> None:
        self.content += text
        await self.body.append(text)

    def finish(self, stats: dict | None, status: str) -> None:
        self.stats, self.status = stats, status
        self.query_one("#role", Label).update(self._label())
        self._refresh_meta()
