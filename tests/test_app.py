"""The Textual app driven with Pilot, on the real embedded model."""

from __future__ import annotations

import pytest
from aded_chat.engine import default_threads
from app_helpers import CFG, make_app, pace, send, wait_until

from aded_chat.app import ChatApp
from aded_chat.config import Config
from aded_chat.store import Store
from aded_chat.widgets.message import MessageView
from aded_chat.widgets.prompt_input import PromptInput
from aded_chat.widgets.stats_bar import StatsBar

pytestmark = pytest.mark.model


def bar_text(app) -> str:
    return str(app.query_one(StatsBar).query_one("#stats-text").render())


async def test_send_streams_an_answer_with_stats(tmp_path, session):
    app = make_app(tmp_path / "c.db", session)
    async with app.run_test() as pilot:
        await send(pilot, app, "Say hello")
        # a short answer can start and finish between two polls: wait for its stats
        await wait_until(pilot, lambda: app.last_stats is not None and not app.generating)
        await pilot.pause(0.1)
        views = list(app.query(MessageView))
        assert [v.role for v in views] == ["user", "assistant"]
        assert views[1].content.strip()
        assert "tok/s" in bar_text(app)
        stored = app.store.messages(app.conv.id)
        assert stored[1].status == "done" and stored[1].stats["tokens"] > 0
        assert app.conv.title == "Say hello"


async def test_stop_keeps_the_partial_answer_and_restart_finds_it(tmp_path, session,
                                                                 monkeypatch):
    pace(monkeypatch, session)
    db = tmp_path / "c.db"
    app = make_app(db, session)
    long = Config(generation=CFG.generation.__class__(temperature=0.0, max_tokens=400))
    app.cfg = long
    async with app.run_test() as pilot:
        await send(pilot, app, "Count from 1 to 300, one number per line.")
        await wait_until(pilot, lambda: app._streaming is not None
                         and len(app._streaming.content) > 10)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.generating)
        cid = app.conv.id
        stored = app.store.messages(cid)
        assert stored[-1].status == "stopped" and stored[-1].content
        assert stored[-1].stats["finish_reason"] == "cancelled"
        partial = stored[-1].content
        app.store.close()
    app2 = make_app(db, session)
    async with app2.run_test() as pilot:
        await pilot.pause(0.2)
        assert app2.conv.id == cid
        views = list(app2.query(MessageView))
        assert views[-1].content == partial and views[-1].status == "stopped"


async def test_switch_and_delete_with_confirmation(tmp_path, session):
    store = Store(tmp_path / "c.db")
    a = store.create_conversation("first")
    store.add_message(a.id, "user", "question A")
    b = store.create_conversation("second")
    store.add_message(b.id, "user", "question B")
    store.close()
    app = make_app(tmp_path / "c.db", session)
    async with app.run_test() as pilot:
        await pilot.pause(0.2)
        assert app.conv.id == b.id  # newest first
        sidebar = app.query_one("#sidebar")
        sidebar.focus()
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: app.conv.id == a.id)
        await pilot.pause(0.1)
        assert [v.content for v in app.query(MessageView)] == ["question A"]
        await pilot.press("ctrl+d")
        await pilot.pause(0.1)
        await pilot.press("n")  # declined: nothing deleted
        await pilot.pause(0.1)
        assert len(app.store.conversations()) == 2
        await pilot.press("ctrl+d")
        await pilot.pause(0.1)
        await pilot.press("y")
        await wait_until(pilot, lambda: len(app.store.conversations()) == 1)
        assert app.store.conversations()[0].id == b.id


async def test_empty_and_huge_messages_do_not_crash(tmp_path, session):
    app = make_app(tmp_path / "c.db", session)
    async with app.run_test() as pilot:
        await send(pilot, app, "   ")
        await pilot.pause(0.1)
        assert app.store.messages(app.conv.id) == []
        await send(pilot, app, "x" * 100_000)  # longer than the context
        await wait_until(pilot, lambda: not app.generating)
        await pilot.pause(0.2)
        # the failed turn leaves no trace, and nothing typed is lost: it is back in the box
        assert app.store.messages(app.conv.id) == []
        assert list(app.query(MessageView)) == []
        assert app.query_one(PromptInput).text == "x" * 100_000
        assert app.is_running


def test_corrupt_database_is_moved_aside(tmp_path):
    db = tmp_path / "c.db"
    db.write_bytes(b"this is not a database" * 100)
    store = Store(db)
    assert store.recovered_from is not None and store.recovered_from.exists()
    assert store.conversations() == []
    store.close()


async def test_export_and_help(tmp_path, session):
    store = Store(tmp_path / "c.db")
    c = store.create_conversation("export me")
    store.add_message(c.id, "user", "hi")
    store.add_message(c.id, "assistant", "```python\nprint(1)\n```", stats={"tokens": 3})
    store.close()
    app = make_app(tmp_path / "c.db", session)
    async with app.run_test() as pilot:
        await pilot.pause(0.1)
        path = app.export_markdown()
        text = path.read_text()
        assert "# export me" in text and "print(1)" in text
        await pilot.press("f1")
        await pilot.pause(0.1)
        assert app.screen.__class__.__name__ == "HelpScreen"


async def steady(pilot) -> None:
    """A snapshot must not depend on where the cursor blink or a redraw happens to be."""
    pilot.app.query_one(PromptInput).cursor_blink = False
    await pilot.pause(0.3)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.3)


def test_main_screen_snapshot(snap_compare, tmp_path, session):
    store = Store(tmp_path / "c.db")
    c = store.create_conversation("Snapshot")
    store.add_message(c.id, "user", "What is 2 + 2?")
    store.add_message(c.id, "assistant", "2 + 2 = **4**.\n\n```python\nprint(2 + 2)\n```")
    store.close()
    app = make_app(tmp_path / "c.db", session)
    assert snap_compare(app, terminal_size=(100, 30), run_before=steady)


def test_help_screen_snapshot(snap_compare, tmp_path, session):
    app = make_app(tmp_path / "c.db", session)
    assert snap_compare(app, press=["f1"], terminal_size=(100, 40), run_before=steady)


def test_default_threads_leave_a_core_to_the_ui_when_asked(monkeypatch):
    for cores, app, headless in ((1, 1, 1), (2, 1, 2), (4, 3, 4), (16, 8, 8), (None, 1, 2)):
        monkeypatch.setattr("os.cpu_count", lambda c=cores: c)
        assert default_threads(reserve_core=True) == app
        assert default_threads() == headless


async def test_app_loads_its_model_in_the_background_with_a_core_spare(tmp_path):
    app = ChatApp(CFG, store=Store(tmp_path / "c.db"))
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.session is not None)
        session = app.session
        assert session.info.n_threads == default_threads(reserve_core=True)
        await wait_until(pilot, lambda: not session.speculator_loading)
        await send(pilot, app, "Say hello")
        await wait_until(pilot, lambda: app.last_stats is not None and not app.generating)
        assert app.last_stats.tokens > 0
    session.close()
