"""Pick a model: the embedded one, files in the models folder, or a path."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, ListItem, ListView

from aded_chat.engine import ModelEntry


class ModelPickerScreen(ModalScreen[str | None]):
    BINDINGS = [("escape", "dismiss(None)", "Cancel")]
    DEFAULT_CSS = """
    ModelPickerScreen { align: center middle; }
    ModelPickerScreen > Vertical { width: 90; height: auto; max-height: 80%;
                                   border: thick $primary; background: $surface; padding: 1 2; }
    ModelPickerScreen ListView { height: auto; max-height: 15; }
    """

    def __init__(self, entries: list[ModelEntry], models_dir: str):
        super().__init__()
        self.entries = entries
        self.models_dir = models_dir

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Models (folder: {self.models_dir})", markup=False)
            yield ListView(*[ListItem(Label(f"{e.name}  ({e.size_bytes / 1e6:.0f} MB)",
                                            markup=False))
                             for e in self.entries], id="models")
            yield Label("or a path to a GGUF file:")
            yield Input(placeholder="/path/to/model.gguf", id="path")

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        self.dismiss(str(self.entries[event.index].path))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)
