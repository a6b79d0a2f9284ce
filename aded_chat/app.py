"""The Textual chat app: conversations on the left, the streaming answer in the middle,
the live speed and acceptance bar at the bottom.

The engine runs on a thread worker and reports through messages, batched at four a
second, so the UI never holds generation back. Widgets never call the engine.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message as UIMessage
from textual.screen import Screen
from textual.widgets import Footer, Label, ListItem, ListView

from aded_chat import clipboard
from aded_chat.attachments import (
    BYTES_PER_TOKEN_MAX,
    AttachError,
    Attachment,
    compose_turn,
    human_size,
    read_attachment,
)
from aded_chat.config import Config, data_dir
from aded_chat.engine import (
    AnswerStats,
    ChatSession,
    EngineError,
    Message,
    PrefillCancelled,
    SamplingSettings,
    list_models,
)
from aded_chat.screens.attach import AttachScreen
from aded_chat.screens.confirm import ConfirmScreen
from aded_chat.screens.help import HelpScreen
from aded_chat.screens.models import ModelPickerScreen
from aded_chat.screens.search import SearchScreen
from aded_chat.screens.settings import SettingsScreen
from aded_chat.screens.text_prompt import TextPromptScreen
from aded_chat.stats_text import bar_text, gauge_text, provenance_text, summary_text
from aded_chat.store import TITLE_MAX, Conversation, SearchHit, Store, StoreError, clean_title
from aded_chat.transcript import markdown
from aded_chat.widgets.message import MessageView
from aded_chat.widgets.prompt_input import PromptInput
from aded_chat.widgets.stats_bar import StatsBar

# UI updates while streaming: at most four a second. Re-rendering the growing Markdown
# costs CPU that llama.cpp feels even on a core of its own (on a 2-vCPU machine the app
# decoded at 91% of headless speed with ten updates a second, 97% with four, 99% with
# one; BENCHMARKS.md).
STREAM_INTERVAL_S = 0.25
SAVE_INTERVAL_S = 2.0  # a streaming answer is saved at least this often


class ModelLoaded(UIMessage):
    def __init__(self, session: ChatSession | None, error: str | None, path: str | None):
        super().__init__()
        self.session, self.error, self.path = session, error, path


class Streamed(UIMessage):
    """New text and a snapshot of the figures (never the live object the worker changes)."""

    def __init__(self, text: str, stats: AnswerStats | None):
        super().__init__()
        self.text, self.stats = text, stats


class PrefillProgress(UIMessage):
    """Prompt evaluation of a long turn: tokens evaluated of the total, and the rate."""

    def __init__(self, done: int, total: int, tokens_per_s: float):
        super().__init__()
        self.done, self.total, self.tokens_per_s = done, total, tokens_per_s


class Finished(UIMessage):
    def __init__(self, stats: AnswerStats | None, status: str, error: str | None,
                 text: str = "", saved: bool = True, prefill_stopped: bool = False):
        super().__init__()
        self.stats, self.status, self.error = stats, status, error
        self.text, self.saved = text, saved
        self.prefill_stopped = prefill_stopped  # Esc before the first token


class Notice(UIMessage):
    """A toast from the worker thread."""

    def __init__(self, text: str, severity: str = "information"):
        super().__init__()
        self.text, self.severity = text, severity


# Commands without a key of their own, in the command palette (ctrl+p).
PALETTE_ONLY = [
    ("Regenerate with the same settings and seed",
     "answer the last turn again exactly as it was made", "regenerate_same"),
]


class ChatApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "aded-chat"
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+n", "new_conversation", "New"),
        Binding("ctrl+b", "toggle_sidebar", "Sidebar"),
        Binding("ctrl+r", "regenerate", "Regenerate"),
        # priority: the prompt (a TextArea) has focus almost always and binds these keys
        Binding("ctrl+e", "edit_last", "Edit last", priority=True),
        Binding("ctrl+s", "settings", "Settings"),
        Binding("ctrl+o", "pick_model", "Model"),
        Binding("f2", "rename", "Rename", show=False),
        Binding("ctrl+d", "delete", "Delete chat", show=False, priority=True),
        Binding("ctrl+f", "search", "Search", priority=True),
        Binding("ctrl+l", "attach", "Attach file", priority=True),
        Binding("ctrl+y", "copy_answer", "Copy last answer", show=False, priority=True),
        Binding("ctrl+k", "copy_code", "Copy its last code block", show=False, priority=True),
        Binding("ctrl+x", "export", "Export", show=False, priority=True),
        Binding("ctrl+t", "show_stats", "Answer stats", show=False),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(self, cfg: Config, *, model: str | None = None, verbose: bool = False,
                 store: Store, speculative: bool | None = None,
                 session: ChatSession | None = None, cost_curve=None):
        super().__init__()
        self.cfg = cfg
        self.model_spec = model
        self.load_kw = dict(verbose=verbose, cost_curve=cost_curve)
        self.store = store
        self.default_speculative = cfg.speculative if speculative is None else speculative
        self.session: ChatSession | None = session
        self.conv: Conversation | None = None
        self.generating = False
        self._cancel = threading.Event()
        self._worker_thread: threading.Thread | None = None
        self._streaming: MessageView | None = None
        self._loading = False
        self.last_stats: AnswerStats | None = None
        self.owned = True  # this process may write the shown conversation (Store.claim)
        self._asked: tuple[int | None, str] | None = None  # the user turn being answered
        self.attached: list[Attachment] = []  # files that go with the next message
        self.copied: str | None = None  # the last text copied, whichever way it went
        # the last message sent: its id, what was typed and the files, to give them back
        self._sent: tuple[int, str, list[Attachment]] | None = None

    def notify(self, message: str, *, markup: bool = False, **kw) -> None:
        """Toasts carry file names, titles and error text: never parsed as markup."""
        super().notify(message, markup=markup, **kw)

    # -- layout -----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ListView(id="sidebar")
            with Vertical(id="main"):
                yield VerticalScroll(id="log")
                yield Label("", id="attached", markup=False)
                yield PromptInput(id="prompt")
        yield StatsBar(id="stats")  # full width: the figures are what this app is about
        yield Footer()

    async def on_mount(self) -> None:
        try:
            self.theme = self.cfg.theme
        except Exception:
            self.notify(f"unknown theme {self.cfg.theme!r}", severity="warning")
        if self.store.recovered_from is not None:
            self.notify(f"The conversation database could not be read; it was moved to "
                        f"{self.store.recovered_from} and a new one was started.",
                        severity="warning", timeout=15)
        convs = self.store.conversations()
        self.conv = convs[0] if convs else self._new_conversation()
        self._refresh_sidebar()
        await self._show_conversation()
        self.query_one(PromptInput).focus()
        if self.session is None:
            self.load_model(self.model_spec)
        else:
            self._show_idle()

    # -- model ------------------------------------------------------------------------

    @property
    def backend_label(self) -> str:
        if self.session is None:
            return "no model"
        info = self.session.info
        return f"{Path(info.model_path).name} | {info.offload}"

    @work(thread=True, exclusive=True, group="load")
    def load_model(self, spec: str | None) -> None:
        from aded_chat.runtime import open_model

        self._loading = True
        self.call_from_thread(self._bar, f"loading {spec or 'embedded model'}…")
        try:
            session = open_model(self.cfg, model=spec, wait_for_drafter=False,
                                 reserve_core=True, **self.load_kw)
            self.post_message(ModelLoaded(session, None, spec))
        except EngineError as exc:
            self.post_message(ModelLoaded(None, str(exc), spec))

    def on_model_loaded(self, msg: ModelLoaded) -> None:
        self._loading = False
        if msg.error:
            self.notify(msg.error, severity="error", timeout=15)
            self._show_idle()
            return
        old = self.session
        self.session = msg.session
        if old is not None:
            old.close()
        self.notify(f"model ready: {self.backend_label}")
        self._show_idle()
        if self.session.speculator_loading:
            self._await_drafter(self.session)

    @work(thread=True, group="drafter")
    def _await_drafter(self, session: ChatSession) -> None:
        """Refresh the bar when the drafter attaches (answers run plain until then)."""
        session.wait_for_speculator()
        if session is self.session and not self.generating:
            self.call_from_thread(self._show_idle)

    def _bar(self, text: str, stats: AnswerStats | None = None) -> None:
        self.query_one(StatsBar).show(text, gauge_text(stats) if stats is not None else None)

    def _show_idle(self) -> None:
        if self._loading:
            state = "loading…"
        elif self.session is not None and self.session.speculator_loading:
            state = "ready (drafter loading)"
        else:
            state = "ready"
        self._bar(bar_text(self.last_stats, self.backend_label, state), self.last_stats)

    # -- conversations ----------------------------------------------------------------

    def _conv_settings(self) -> tuple[SamplingSettings, bool]:
        s = dict(self.conv.settings) if self.conv else {}
        speculative = s.pop("speculative", self.default_speculative)
        base = asdict(self.cfg.generation)
        base.update({k: v for k, v in s.items() if k in base})
        return SamplingSettings(**base), bool(speculative)

    def _new_conversation(self) -> Conversation:
        return self.store.create_conversation(system_prompt=self.cfg.system_prompt)

    def _refresh_sidebar(self) -> None:
        lv = self.query_one("#sidebar", ListView)
        lv.clear()
        convs = self.store.conversations()
        self._sidebar_ids = [c.id for c in convs]
        lv.extend(ListItem(Label(c.title, markup=False)) for c in convs)
        if self.conv and self.conv.id in self._sidebar_ids:
            lv.index = self._sidebar_ids.index(self.conv.id)

    async def _show_conversation(self) -> None:
        log = self.query_one("#log", VerticalScroll)
        await log.remove_children()
        views = [MessageView(m.role, m.content, message_id=m.id, stats=m.stats,
                             status="stopped" if m.status == "streaming" else m.status)
                 for m in self.store.messages(self.conv.id)]
        if views:
            await log.mount_all(views)
        log.anchor()
        self.sub_title = self.conv.title
        self.owned = self.store.claim(self.conv.id)
        if not self.owned:
            self.notify("This conversation is open in another aded-chat, which writes it: "
                        "shown read-only here. Start a new one with ctrl+n.",
                        severity="warning", timeout=10)

    def _can_write(self) -> bool:
        if not self.owned:
            self.notify("This conversation is open in another aded-chat: start a new one "
                        "(ctrl+n) to write here.", severity="warning")
        return self.owned

    @on(ListView.Selected, "#sidebar")
    async def _select_conversation(self, event: ListView.Selected) -> None:
        cid = self._sidebar_ids[event.index]
        if self.conv and cid == self.conv.id:
            return
        if self.generating:
            self.notify("an answer is streaming: press Esc to stop it first")
            return
        self.conv = self.store.conversation(cid)
        await self._show_conversation()

    async def action_new_conversation(self) -> None:
        if self.generating:
            self.notify("an answer is streaming: press Esc to stop it first")
            return
        self.conv = self._new_conversation()
        self._refresh_sidebar()
        await self._show_conversation()
        self.query_one(PromptInput).focus()

    def action_toggle_sidebar(self) -> None:
        sb = self.query_one("#sidebar")
        sb.display = not sb.display

    def action_rename(self) -> None:
        if not self._can_write():
            return

        def done(title: str | None) -> None:
            if title:
                if not self._saved(self.store.update_conversation, self.conv.id,
                                   title=clean_title(title)):
                    return
                self.conv = self.store.conversation(self.conv.id)
                self.sub_title = self.conv.title
                self._refresh_sidebar()
        self.push_screen(TextPromptScreen("Rename conversation", self.conv.title), done)

    def action_delete(self) -> None:
        if self.generating:
            self.notify("an answer is streaming: press Esc to stop it first")
            return
        if not self._can_write():
            return

        async def done(yes: bool | None) -> None:
            if not yes or not self._saved(self.store.delete_conversation, self.conv.id):
                return
            convs = self.store.conversations()
            self.conv = convs[0] if convs else self._new_conversation()
            self._refresh_sidebar()
            await self._show_conversation()
        self.push_screen(ConfirmScreen(f"Delete “{self.conv.title}” and all its messages?"),
                         done)

    # -- sending and streaming --------------------------------------------------------

    @on(PromptInput.Submitted)
    async def _submitted(self, event: PromptInput.Submitted) -> None:
        await self.send(event.text)

    async def send(self, text: str) -> None:
        command = text.strip()
        if command == "/read" or command.startswith("/read "):
            self.attach(command[len("/read"):].strip())
            return
        if command == "/drop":
            self.attached = []
            self._show_attached()
            self.query_one(PromptInput).clear()
            return
        if not text.strip() and not self.attached:
            self.notify("Type a message first.", severity="warning")
            return
        if self.generating:
            self.notify("An answer is streaming: press Esc to stop it.", severity="warning")
            return
        if self.session is None:
            self.notify("The model is still loading.", severity="warning")
            return
        if not self._can_write():
            return
        files, typed = self.attached, text
        text = compose_turn(text, files)
        try:  # a history the template cannot render is never saved
            self.session.check_messages(self._history() + [Message("user", text)])
        except EngineError as exc:
            self.notify(f"{exc}. Your message is still in the box.", severity="error",
                        timeout=15)
            return
        mid = self._saved(self.store.add_message, self.conv.id, "user", text)
        if mid is None:  # not saved: nothing sent, the text stays where it was typed
            return
        self._sent = (mid, typed, files)
        self.query_one(PromptInput).clear()
        self.attached = []
        self._show_attached()
        # titled after what was typed (or the files' names), not the fenced file text
        title = typed if typed.strip() else ", ".join(f.name for f in files)
        if self._saved(self.store.name_after, self.conv.id, title):
            self.conv = self.store.conversation(self.conv.id)
            self.sub_title = self.conv.title
            self._refresh_sidebar()
        await self.query_one("#log").mount(MessageView("user", text, message_id=mid))
        await self._answer()

    # -- attachments ------------------------------------------------------------------

    def attach(self, path: str) -> None:
        """Attach a text file to the next message (`/read PATH`, or the picker)."""
        if not path:
            self.notify("Say which file: /read PATH (or ctrl+l to pick one).",
                        severity="warning")
            return
        n_ctx = self.session.info.n_ctx if self.session else self.cfg.n_ctx
        try:
            att = read_attachment(path, n_ctx * BYTES_PER_TOKEN_MAX)
            if self.session is not None:
                n = len(self.session.tokenize(att.text))
                if n > n_ctx * 3 // 4:
                    raise AttachError(f"{att.name} is {n} tokens; the context holds {n_ctx} "
                                      f"with room kept for the answer: attach a part of it, "
                                      f"or raise --n-ctx")
        except AttachError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.attached.append(att)
        self._show_attached()
        prompt = self.query_one(PromptInput)
        if prompt.text.strip().startswith("/read"):
            prompt.clear()
        prompt.focus()

    def _show_attached(self) -> None:
        label = self.query_one("#attached", Label)
        names = ", ".join(f"{a.name} ({human_size(a.size)})" for a in self.attached)
        label.update(f"attached: {names} — sent with your next message (/drop removes)"
                     if self.attached else "")
        label.display = bool(self.attached)

    def action_attach(self) -> None:
        self.push_screen(AttachScreen(Path.cwd()),
                         lambda path: self.attach(path) if path else None)

    def _saved(self, write, *args, **kw):
        """Run a store write; on failure say why (disk full, read-only) and return None."""
        try:
            result = write(*args, **kw)
        except StoreError as exc:
            self.notify(f"{exc}. Nothing already saved was lost.", severity="error",
                        timeout=15)
            return None
        return True if result is None else result

    def _history(self) -> list[Message]:
        msgs = [Message("system", self.conv.system_prompt)] if self.conv.system_prompt else []
        msgs += [Message(m.role, m.content) for m in self.store.messages(self.conv.id)
                 if m.role in ("user", "assistant") and m.content]
        return msgs

    async def _answer(self, settings: SamplingSettings | None = None) -> None:
        """Answer the last user turn with the conversation's settings (or `settings`:
        regenerating with an earlier answer's own, seed included)."""
        conv_settings, speculative = self._conv_settings()
        settings = settings or conv_settings
        messages = self._history()
        model = Path(self.session.info.model_path).name
        users = [m for m in self.store.messages(self.conv.id) if m.role == "user"]
        self._asked = (users[-1].id, users[-1].content) if users else None
        mid = self._saved(self.store.add_message, self.conv.id, "assistant", "", model=model,
                          status="streaming")  # None: answered all the same, kept in memory
        view = MessageView("assistant", "", message_id=mid, status="streaming")
        self._streaming = view
        log = self.query_one("#log", VerticalScroll)
        await log.mount(view)
        log.anchor()
        self.generating = True
        self._cancel = threading.Event()
        self._generate(messages, settings, speculative, mid, self.conv.id, model)

    @work(thread=True, exclusive=True, group="generate")
    def _generate(self, messages: list[Message], settings: SamplingSettings,
                  speculative: bool, mid: int | None, cid: int, model: str) -> None:
        self._worker_thread = threading.current_thread()
        cancel = self._cancel
        parts: list[str] = []
        pending: list[str] = []
        stats: AnswerStats | None = None
        error: str | None = None
        last_post = last_save = time.monotonic()
        save_failed = False
        prefill_stopped = False
        t_prefill = time.monotonic()

        def on_prefill(done: int, total: int) -> None:
            nonlocal last_post
            now = time.monotonic()
            if now - last_post >= STREAM_INTERVAL_S:
                last_post = now
                self.post_message(PrefillProgress(done, total, done / (now - t_prefill)))
        session = self.session
        try:
            for chunk in session.generate(messages, settings, speculative=speculative,
                                          cancel=cancel, on_prefill=on_prefill):
                stats = chunk.stats
                parts.append(chunk.text)
                pending.append(chunk.text)
                now = time.monotonic()
                if now - last_post >= STREAM_INTERVAL_S:  # a copy: the loop keeps changing it
                    self.post_message(Streamed("".join(pending), stats.snapshot()))
                    pending, last_post = [], now
                if mid is not None and now - last_save >= SAVE_INTERVAL_S:
                    last_save = now
                    try:
                        self.store.update_message(mid, "".join(parts), status="streaming")
                    except StoreError as exc:
                        if not save_failed:
                            save_failed = True
                            self.post_message(Notice(f"{exc}. The answer goes on in memory; "
                                                     f"saving is retried.", "error"))
        except PrefillCancelled as exc:
            error, prefill_stopped = str(exc), True
        except EngineError as exc:
            error = str(exc)
        except Exception as exc:  # keep the app alive and the partial answer saved
            error = f"{type(exc).__name__}: {exc}"
        if pending:
            self.post_message(Streamed("".join(pending), stats.snapshot() if stats else None))
        stats = stats or session.last_stats
        status = "stopped" if (cancel.is_set() or error) else "done"
        provenance = session.provenance(settings, stats) if stats else None
        saved = self._save_answer(mid, cid, model, "".join(parts), status, stats, provenance)
        self.post_message(Finished(stats, status, error, "".join(parts), saved,
                                   prefill_stopped))

    def _save_answer(self, mid: int | None, cid: int, model: str, text: str, status: str,
                     stats: AnswerStats | None, provenance: dict | None) -> bool:
        """The answer's final save, retried a few times (a full disk may have room again);
        the text is never replaced by less of it (Store.update_message). An answer whose
        first save failed is added whole."""
        record = stats.as_dict() if stats else None
        for attempt in range(3):
            try:
                if mid is None:
                    self.store.add_message(cid, "assistant", text, model=model, stats=record,
                                           status=status, provenance=provenance)
                else:
                    self.store.update_message(mid, text, status=status, stats=record,
                                              provenance=provenance)
                return True
            except StoreError:
                time.sleep(0.2 * (attempt + 1))
        return False

    async def on_streamed(self, msg: Streamed) -> None:
        if self._streaming is not None and msg.stats is not None and msg.stats.dropped_turns:
            self._streaming.show_dropped(msg.stats.dropped_turns)
        if self._streaming is not None and msg.text:
            await self._streaming.append(msg.text)
        if msg.stats is not None:
            self._bar(bar_text(msg.stats, self.backend_label, "streaming"), msg.stats)

    def on_prefill_progress(self, msg: PrefillProgress) -> None:
        if self.generating:
            self._bar(f"reading the prompt: {msg.done}/{msg.total} tokens, "
                      f"{msg.tokens_per_s:.0f} tok/s | Esc stops | {self.backend_label}")

    def on_notice(self, msg: Notice) -> None:
        self.notify(msg.text, severity=msg.severity, timeout=15)

    async def on_finished(self, msg: Finished) -> None:
        self.generating = False
        view, self._streaming = self._streaming, None
        if msg.error and not msg.text.strip():
            await self._undo_failed_turn(view)
            if msg.prefill_stopped:
                self.notify(f"Stopped before the answer began ({msg.error}). Your message "
                            f"is back in the box; what was read is kept for the next try.")
            else:
                self.notify(f"{msg.error}. Your message is back in the box.",
                            severity="error", timeout=15)
            self._show_idle()
            return
        if view is not None:
            view.finish(msg.stats.as_dict() if msg.stats else None, msg.status)
        if not msg.saved:
            self.notify("The answer could not be saved (is the disk full?): it is shown here "
                        "only. Free some space, then copy it (ctrl+y) or regenerate it.",
                        severity="error", timeout=15)
        if msg.error:
            self.notify(msg.error, severity="error", timeout=10)
        if msg.stats is not None:
            self.last_stats = msg.stats
            if msg.stats.tokens > 1:
                self.query_one(StatsBar).record(msg.stats.tokens_per_s)
        self._show_idle()

    async def _undo_failed_turn(self, view: MessageView | None) -> None:
        """An answer that failed before its first word leaves no trace: its empty message
        and the user turn it answered are removed (a template that needs alternating
        roles could not render the history otherwise), and the text goes back to the box."""
        if view is not None:
            if view.message_id is not None:
                self._saved(self.store.delete_message, view.message_id)
            await view.remove()
        if self._asked is None:
            return
        uid, text = self._asked
        if uid is not None and self._saved(self.store.delete_message, uid):
            for v in self.query(MessageView):
                if v.message_id == uid:
                    await v.remove()
        prompt = self.query_one(PromptInput)
        if self._sent is not None and self._sent[0] == uid:  # as typed, files attached again
            _, text, self.attached = self._sent
            self._show_attached()
        prompt.text = text
        prompt.focus()

    def action_stop(self) -> None:
        if self.generating:
            self._cancel.set()

    async def action_regenerate(self, same: bool = False) -> None:
        """Answer the last turn again: with the conversation's settings (a fresh seed), or
        `same`: with the settings and seed the answer was made with (it comes out the
        same when the model, its file and the KV cache type are the same)."""
        if self.generating or self.session is None or not self._can_write():
            return
        msgs = self.store.messages(self.conv.id)
        if not msgs or msgs[-1].role != "assistant":
            self.notify("Nothing to regenerate.")
            return
        settings = None
        if same:
            record = (msgs[-1].provenance or {}).get("settings")
            if not record:
                self.notify("That answer has no record of its settings (it predates them).")
                return
            settings = SamplingSettings(**record)
        if not self._saved(self.store.delete_message, msgs[-1].id):
            return
        views = self.query(MessageView)
        if views:
            await views.last().remove()
        await self._answer(settings)

    async def action_regenerate_same(self) -> None:
        await self.action_regenerate(same=True)

    async def action_edit_last(self) -> None:
        if self.generating or not self._can_write():
            return
        msgs = self.store.messages(self.conv.id)
        users = [m for m in msgs if m.role == "user"]
        if not users:
            return
        last_user = users[-1]
        for m in msgs:
            if m.id >= last_user.id and not self._saved(self.store.delete_message, m.id):
                break
        await self._show_conversation()
        prompt = self.query_one(PromptInput)
        prompt.text = last_user.content
        prompt.focus()
        self.notify("Edit the message and press Enter to resend.")

    # -- settings and model -----------------------------------------------------------

    def action_settings(self) -> None:
        if not self._can_write():
            return
        settings, speculative = self._conv_settings()

        def done(result) -> None:
            if result is None:
                return
            system, new, spec = result
            if not self._saved(self.store.update_conversation, self.conv.id,
                               system_prompt=system,
                               settings={**asdict(new), "speculative": spec}):
                return
            self.conv = self.store.conversation(self.conv.id)
            self.notify("Settings saved for this conversation.")
        self.push_screen(SettingsScreen(self.conv.system_prompt, settings, speculative), done)

    def action_pick_model(self) -> None:
        if self.generating:
            self.notify("an answer is streaming: press Esc to stop it first")
            return

        def done(path: str | None) -> None:
            if path:
                self.load_model(path)
        self.push_screen(ModelPickerScreen(list_models(self.cfg.models_path),
                                           self.cfg.models_path), done)

    # -- clipboard, export, stats, help -----------------------------------------------

    def copy_text(self, text: str, what: str) -> None:
        """Copy to the system clipboard, else through the terminal; say which."""
        where = clipboard.copy(text, self.copy_to_clipboard)
        self.copied = text
        self.notify(f"{what} copied to {where}.")

    def on_message_view_copy(self, msg: MessageView.Copy) -> None:
        self.copy_text(msg.text, msg.what)

    def _last_answer_view(self) -> MessageView | None:
        views = [v for v in self.query(MessageView) if v.role == "assistant"]
        return views[-1] if views else None

    def action_copy_answer(self) -> None:
        view = self._last_answer_view()
        if view is not None and view.content:
            self.copy_text(view.content, "Answer")

    def action_copy_code(self) -> None:
        view = self._last_answer_view()
        blocks = view.code_blocks() if view is not None else []
        if not blocks:
            self.notify("No code block in the last answer.")
            return
        self.copy_text(blocks[-1], f"Code block {len(blocks)}")

    # -- search -----------------------------------------------------------------------

    def action_search(self) -> None:
        async def done(hit: SearchHit | None) -> None:
            if hit is not None:
                await self.open_message(hit.conversation_id, hit.message_id)
        self.push_screen(SearchScreen(self.store), done)

    async def open_message(self, cid: int, mid: int) -> None:
        """Show conversation cid scrolled to message mid, which takes focus."""
        if self.conv is None or cid != self.conv.id:
            if self.generating:
                self.notify("an answer is streaming: press Esc to stop it first")
                return
            self.conv = self.store.conversation(cid)
            self._refresh_sidebar()
            await self._show_conversation()
        for view in self.query(MessageView):
            if view.message_id == mid:
                view.focus()
                self.call_after_refresh(view.scroll_visible, top=True, animate=False)
                return

    def export_markdown(self) -> Path:
        """Write the conversation to a new Markdown file in the exports folder: never over
        an existing file (a numbered name instead) and never through a symbolic link."""
        out = data_dir() / "exports"
        out.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^\w.-]+", "-", self.conv.title).strip("-")[:TITLE_MAX] or "chat"
        data = markdown(self.conv, self.store.messages(self.conv.id)).encode("utf-8")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        for n in range(1, 1000):
            path = out / (f"{self.conv.id}-{safe}.md" if n == 1 else
                          f"{self.conv.id}-{safe}-{n}.md")
            try:
                fd = os.open(path, flags, 0o644)
            except FileExistsError:  # a file or a link of that name: the next number
                continue
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return path
        raise OSError(f"too many exports named {safe}")

    def action_export(self) -> None:
        try:
            path = self.export_markdown()
        except OSError as exc:
            self.notify(f"Export failed: {exc.strerror or exc}", severity="error", timeout=10)
            return
        self.notify(f"Exported to {path}")

    def action_show_stats(self) -> None:
        answers = [m for m in self.store.messages(self.conv.id) if m.role == "assistant"]
        if not answers:
            self.notify("No answer yet.", title="Last answer", timeout=10)
            return
        last = answers[-1]
        self.notify(f"{summary_text(last.stats)}\n{provenance_text(last.provenance)}",
                    title="Last answer", timeout=10)

    def action_help(self) -> None:
        rows = [(b.key, b.description) for b in self.BINDINGS]
        self.push_screen(HelpScreen(rows))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for b in self.BINDINGS:
            if b.action not in ("quit", "help"):
                yield SystemCommand(b.description, f"key: {b.key}",
                                    lambda a=b.action: self.run_action(a))
        for title, help_text, action in PALETTE_ONLY:
            yield SystemCommand(title, help_text, lambda a=action: self.run_action(a))

    # -- quitting ---------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Quit at once: the streaming answer is saved from what the screen shows, and
        its worker stops at its next step (it is not waited for here: the UI thread
        waiting on a worker that reports to it would freeze the app)."""
        if self.generating:
            self._cancel.set()
            view = self._streaming
            if view is not None and view.message_id is not None:
                try:
                    self.store.update_message(view.message_id, view.content, status="stopped")
                except StoreError:
                    pass  # the worker's own final save retries
        self.exit()

    def stop_generation_and_wait(self, timeout: float = 10.0) -> None:
        """Stop a streaming answer and wait for its worker to save it (after the app has
        exited, so the worker has no UI to wait for)."""
        self._cancel.set()
        if self._worker_thread is not None:
            self._worker_thread.join(timeout)


def run_app(cfg: Config, args) -> int:
    """The chat app; its exit status is non-zero when it ended with an error."""
    from aded_chat.engine import read_cost_curve

    curve = read_cost_curve(args.cost_curve)  # before the store and the UI: fails fast
    store_path = data_dir() / "conversations.db"
    try:
        store = Store(store_path)
    except StoreError as exc:
        raise EngineError(str(exc)) from None
    if store.read_only:
        store.close()
        raise EngineError(f"conversation database {store_path} is read-only: make it "
                          f"writable (chmod u+w) or point XDG_DATA_HOME elsewhere")
    app = ChatApp(cfg, model=args.model, verbose=args.verbose, store=store,
                  speculative=False if args.plain else None, cost_curve=curve)
    try:
        app.run()
    finally:
        app.stop_generation_and_wait()
        store.close()
    return app.return_code or 0
