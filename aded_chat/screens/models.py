"""Pick a model: the embedded one, files in the models folder or a path; or download one
from the Hugging Face Hub into the folder (aded_chat.pull) and load it."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, ListItem, ListView, ProgressBar, TabbedContent

from aded_chat.engine import ModelEntry


class ModelPickerScreen(ModalScreen[str | None]):
    BINDINGS = [("escape", "dismiss(None)", "Cancel")]
    DEFAULT_CSS = """
    ModelPickerScreen { align: center middle; }
    ModelPickerScreen > Vertical { width: 90; height: auto; max-height: 80%;
                                   border: thick $primary; background: $surface; padding: 0 1; }
    ModelPickerScreen ListView { height: auto; max-height: 15; }
    ModelPickerScreen TabbedContent { height: auto; }
    ModelPickerScreen ProgressBar { margin: 1 0 0 0; }
    ModelPickerScreen #pull-status { color: $text-muted; }
    """

    def __init__(self, entries: list[ModelEntry], models_dir: Path):
        super().__init__()
        self.entries = entries
        self.models_dir = models_dir
        self.downloading = False

    def compose(self) -> ComposeResult:
        with Vertical(), TabbedContent("On this machine", "Download"):
            with Vertical(id="local"):
                yield Label(f"Models (folder: {self.models_dir})", markup=False)
                yield ListView(*[ListItem(Label(f"{e.name}  ({e.size_bytes / 1e6:.0f} MB)",
                                                markup=False))
                                 for e in self.entries], id="models")
                yield Label("or a path to a GGUF file:")
                yield Input(placeholder="/path/to/model.gguf", id="path")
            with Vertical(id="download"):
                yield Label("A Hugging Face Hub repository, optionally with a quantization "
                            "(enter downloads it into the models folder, checks it and "
                            "loads it):")
                yield Input(placeholder="bartowski/SmolLM2-360M-Instruct-GGUF:Q4_K_M",
                            id="pull")
                yield ProgressBar(id="pull-progress", show_eta=True)
                yield Label("", id="pull-status", markup=False)

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        self.dismiss(str(self.entries[event.index].path))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if event.input.id == "pull":
            if value and not self.downloading:
                self.download(value)
            return
        self.dismiss(value or None)

    def _status(self, text: str) -> None:
        self.query_one("#pull-status", Label).update(text)

    def _progress(self, done: int, total: int) -> None:
        self.query_one(ProgressBar).update(total=total or None, progress=done)

    @work(thread=True, exclusive=True, group="pull")
    def download(self, spec: str) -> None:
        from aded_chat.pull import PullError, pull

        self.downloading = True
        self.app.call_from_thread(self._status, f"looking up {spec}…")
        try:
            path = pull(spec, self.models_dir,
                        progress=lambda d, t: self.app.call_from_thread(self._progress, d, t),
                        say=lambda line: self.app.call_from_thread(self._status, line))
        except PullError as exc:
            self.app.call_from_thread(self._status, str(exc))
            return
        finally:
            self.downloading = False
        self.app.call_from_thread(self.dismiss, str(path))
