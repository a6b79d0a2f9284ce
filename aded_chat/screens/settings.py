"""Per-conversation system prompt and generation settings."""

from __future__ import annotations

from dataclasses import replace

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Switch, TextArea

from aded_chat.engine import SamplingSettings, SettingsError, check_sampling

FIELDS = [("temperature", float), ("top_p", float), ("top_k", int), ("min_p", float),
          ("repeat_penalty", float), ("max_tokens", int), ("seed", int)]


class SettingsScreen(ModalScreen[tuple[str, SamplingSettings, bool] | None]):
    BINDINGS = [("escape", "dismiss(None)", "Cancel")]
    DEFAULT_CSS = """
    SettingsScreen { align: center middle; }
    SettingsScreen > Vertical { width: 80; height: auto; max-height: 95%;
                                border: thick $primary; background: $surface; padding: 1 2; }
    SettingsScreen TextArea { height: 5; }
    SettingsScreen Grid { grid-size: 4; grid-gutter: 0 1; height: auto;
                          grid-columns: 1fr 1fr 1fr 1fr; }
    SettingsScreen Horizontal { height: auto; margin-top: 1; }
    SettingsScreen #error { color: $error; }
    """

    def __init__(self, system_prompt: str, settings: SamplingSettings, speculative: bool):
        super().__init__()
        self.system_prompt = system_prompt
        self.settings = settings
        self.speculative = speculative

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("System prompt")
            yield TextArea(self.system_prompt, id="system")
            with Grid():
                for name, _ in FIELDS:
                    value = getattr(self.settings, name)
                    yield Label(name.replace("_", " "))
                    yield Input("" if value is None else str(value), id=name,
                                placeholder="random" if name == "seed" else "")
            with Horizontal():
                yield Label("speculative decoding (ADED) ")
                yield Switch(self.speculative, id="speculative")
            yield Label("", id="error", markup=False)
            with Horizontal():
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        values = {}
        for name, kind in FIELDS:
            raw = self.query_one(f"#{name}", Input).value.strip()
            if name == "seed" and not raw:
                values[name] = None
                continue
            try:
                values[name] = kind(raw)
            except ValueError:
                self.query_one("#error", Label).update(f"{name}: not a {kind.__name__}")
                return
        settings = replace(self.settings, **values)
        try:
            check_sampling(settings)  # the same ranges as flags and the config file
        except SettingsError as exc:
            self.query_one("#error", Label).update(str(exc))
            return
        self.dismiss((self.query_one("#system", TextArea).text, settings,
                      self.query_one("#speculative", Switch).value))
