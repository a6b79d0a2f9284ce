"""Pick a file to attach: a folder tree from the working directory, or a typed path."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Input, Label


class AttachScreen(ModalScreen[str | None]):
    BINDINGS = [("escape", "dismiss(None)", "Cancel")]
    DEFAULT_CSS = """
    AttachScreen { align: center middle; }
    AttachScreen > Vertical { width: 90; height: 80%; border: thick $primary;
                              background: $surface; padding: 0 1; }
    AttachScreen DirectoryTree { height: 1fr; }
    """

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Attach a text file (from {self.folder}), or type its path:",
                        markup=False)
            yield Input(placeholder="path/to/file", id="path")
            yield DirectoryTree(self.folder)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(str(event.path))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)
