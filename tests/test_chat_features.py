"""What users of other terminal chat clients expect, driven with Pilot on the real
embedded model: search, copy any message or code block, attach files, the context
gauge and dropped-turn notice, prompt progress with Esc, and the record of what made
each answer. Snapshots cover the search screen, numbered code blocks, the gauge and an
attachment."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest
from aded_chat.engine import AnswerStats
from app_helpers import CFG, make_app, send, wait_until
from test_app import bar_text, steady

from aded_chat import clipboard
from aded_chat.runtime import open_model
from aded_chat.screens.search import SearchScreen
from aded_chat.store import Store
from aded_chat.widgets.message import MessageView
from aded_chat.widgets.prompt_input import PromptInput
from aded_chat.widgets.stats_bar import StatsBar

pytestmark = pytest.mark.model

CODE_ANSWER = ("Two ways:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nor with a "
               "lambda:\n\n```python\nadd = lambda a, b: a + b\n```\n")
NOON = time.mktime((2026, 11, 2, 12, 0, 0, 0, 0, -1))  # fixed dates for snapshots


def seeded_store(path) -> Store:
    store = Store(path)
    a = store.create_conversation("Adding numbers")
    store.add_message(a.id, "user", "How do I add two numbers in Python?")
    store.add_message(a.id, "assistant", CODE_ANSWER)
    b = store.create_conversation("Soup")
    store.add_message(b.id, "user", "A recipe for onion soup, please.")
    store.add_message(b.id, "assistant", "Slice the onions, brown them slowly in butter.")
    store.db.execute("UPDATE messages SET created = ?", (NOON,))
    store.db.execute("UPDATE conversations SET updated = ? + id", (NOON,))
    return store


@pytest.fixture
def no_system_clipboard(monkeypatch, tmp_path):
    """No clipboard tool on PATH and no display: copies go through OSC 52."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for var in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)


# -- find ------------------------------------------------------------------------------


async def test_search_finds_an_answer_and_opens_its_conversation_there(tmp_path, session):
    seeded_store(tmp_path / "c.db").close()
    app = make_app(tmp_path / "c.db", session)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.2)
        await send(pilot, app, "Say hello")  # a new answer, indexed as it is saved
        await wait_until(pilot, lambda: app.last_stats is not None and not app.generating)
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen))
        await pilot.press(*"lambd")
        await pilot.pause(0.2)
        assert len(app.screen.hits) == 1
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, SearchScreen))
        await pilot.pause(0.2)
        assert app.conv.title == "Adding numbers"
        assert isinstance(app.focused, MessageView) and "lambda" in app.focused.content
        # the live answer is searchable too, from the palette's screen as from the key
        stored = app.store.messages(app.store.conversations()[0].id)
        word = stored[-1].content.split()[0].strip(".,!")
        assert any(h.message_id == stored[-1].id for h in app.store.search(word))


def test_search_screen_snapshot(snap_compare, tmp_path, session, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    seeded_store(tmp_path / "c.db").close()
    app = make_app(tmp_path / "c.db", session)
    assert snap_compare(app, press=["ctrl+f", *"add"], terminal_size=(100, 24),
                        run_before=steady)


# -- copy ------------------------------------------------------------------------------


async def test_any_message_and_any_code_block_copy_clean(tmp_path, session,
                                                         no_system_clipboard):
    seeded_store(tmp_path / "c.db").close()
    app = make_app(tmp_path / "c.db", session)
    sent: list[str] = []
    app.copy_to_clipboard = sent.append  # the OSC 52 writer
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.2)
        await app.open_message(app.store.conversations()[-1].id,
                               app.store.messages(app.store.conversations()[-1].id)[1].id)
        await pilot.pause(0.2)
        answer = app.focused
        assert isinstance(answer, MessageView) and answer.code_blocks() == [
            "def add(a, b):\n    return a + b", "add = lambda a, b: a + b"]
        await pilot.press("2")
        assert sent[-1] == "add = lambda a, b: a + b"
        await pilot.press("1")
        assert sent[-1] == "def add(a, b):\n    return a + b"
        assert "│" not in sent[-1] and not sent[-1].startswith(" ")
        await pilot.press("3")  # there is no third block: nothing copied
        assert len(sent) == 2
        await pilot.press("up")  # the question before it
        assert app.focused.role == "user"
        await pilot.press("c")
        assert sent[-1] == "How do I add two numbers in Python?"
        await pilot.press("down", "down")  # past the last message: back to the box
        assert isinstance(app.focused, PromptInput)
        await pilot.press("shift+tab")  # from the box: the newest message
        assert app.focused is answer
        notes = [n.message for n in app._notifications]
        assert any("the terminal (OSC 52)" in n for n in notes)


async def test_a_real_answers_code_block_copies_through_the_system_clipboard(
        tmp_path, session, monkeypatch):
    """Where a clipboard tool and a display exist, it is used (and named)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    got = tmp_path / "clipboard.txt"
    tool = bin_dir / "xclip"
    tool.write_text(f"#!/bin/sh\ncat > {got}\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("DISPLAY", ":0")
    for var in ("WAYLAND_DISPLAY", "SSH_CONNECTION", "SSH_TTY"):
        monkeypatch.delenv(var, raising=False)
    app = make_app(tmp_path / "c.db", session)
    app.cfg = replace(CFG, generation=replace(CFG.generation, max_tokens=80))
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, "Write a Python function that adds two numbers.")
        await wait_until(pilot, lambda: app.last_stats is not None and not app.generating)
        await pilot.pause(0.3)
        view = list(app.query(MessageView))[-1]
        blocks = view.code_blocks()
        assert blocks, view.content  # greedy SmolLM2 answers this with a fenced block
        await pilot.press("ctrl+k")
        assert got.read_text() == blocks[-1] and blocks[-1] in view.content
        assert any("system clipboard (xclip)" in n.message for n in app._notifications)
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.1 22 10.0.0.2 5000")
    assert clipboard.system_copy("x") is None  # over SSH the remote clipboard is no use


def test_numbered_code_blocks_snapshot(snap_compare, tmp_path, session):
    seeded_store(tmp_path / "c.db").close()
    app = make_app(tmp_path / "c.db", session)

    # the newest conversation (Soup) opens first: show the one with code
    async def open_code(pilot):
        cid = pilot.app.store.conversations()[-1].id
        await pilot.app.open_message(cid, pilot.app.store.messages(cid)[1].id)
        await steady(pilot)
    assert snap_compare(app, terminal_size=(100, 30), run_before=open_code)


# -- attach ----------------------------------------------------------------------------


async def test_read_attaches_a_file_that_the_answer_sees(tmp_path, session):
    src = tmp_path / "greet.py"
    src.write_text("def greet(name):\n    return 'Hello, ' + name\n")
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2")
    app = make_app(tmp_path / "c.db", session)
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, f"/read {tmp_path / 'blob.bin'}")
        await pilot.pause(0.1)
        assert app.attached == [] and app.query_one(PromptInput).text.startswith("/read")
        assert any("binary file" in n.message for n in app._notifications)
        await send(pilot, app, f"/read {src}")
        await pilot.pause(0.1)
        assert [a.name for a in app.attached] == ["greet.py"]
        assert "greet.py (45 B)" in str(app.query_one("#attached").render())
        await send(pilot, app, "Add a docstring.")
        await wait_until(pilot, lambda: app.last_stats is not None and not app.generating)
        user = app.store.messages(app.conv.id)[0]
        assert user.content.startswith("File `greet.py` (45 B):\n```py\ndef greet(name):")
        assert user.content.endswith("```\n\nAdd a docstring.")
        assert app.last_stats.prompt_tokens > 40  # the file reached the model
        assert app.conv.title == "Add a docstring."  # named after what was typed
        assert app.attached == [] and not app.query_one("#attached").display
        view = list(app.query(MessageView))[0]
        assert view.query_one("Collapsible").title == "greet.py · 45 B"


def test_attachment_view_snapshot(snap_compare, tmp_path, session):
    store = Store(tmp_path / "c.db")
    c = store.create_conversation("Attached")
    from aded_chat.attachments import Attachment, compose_turn
    store.add_message(c.id, "user", compose_turn("What does this do?", [
        Attachment("greet.py", 45, "def greet(name):\n    return 'Hello, ' + name\n")]))
    store.add_message(c.id, "assistant", "It greets `name`.")
    store.close()
    app = make_app(tmp_path / "c.db", session)
    assert snap_compare(app, terminal_size=(100, 24), run_before=steady)


# -- the context -----------------------------------------------------------------------


async def test_the_gauge_counts_the_context_and_what_the_cache_reused(tmp_path, session):
    app = make_app(tmp_path / "c.db", session)
    async with app.run_test(size=(140, 30)) as pilot:
        await send(pilot, app, "Say hello")
        await wait_until(pilot, lambda: app.last_stats is not None and not app.generating)
        first = app.last_stats
        gauge = str(app.query_one(StatsBar).query_one("#stats-ctx").render())
        assert f"{first.prompt_tokens + first.tokens}/{session.info.n_ctx}" in gauge
        app.last_stats = None
        await send(pilot, app, "And goodbye?")
        await wait_until(pilot, lambda: app.last_stats is not None and not app.generating)
        second = app.last_stats
        assert second.prompt_reused >= first.prompt_tokens  # the first turn stayed cached
        gauge = str(app.query_one(StatsBar).query_one("#stats-ctx").render())
        assert f"{second.prompt_reused} reused" in gauge


def test_gauge_snapshot(snap_compare, tmp_path, session):
    app = make_app(tmp_path / "c.db", session)

    async def with_stats(pilot):
        pilot.app.last_stats = AnswerStats(
            speculative=True, prompt_tokens=2900, prompt_evaluated=40, prompt_s=0.1, tokens=120,
            decode_s=1.0, steps=80, drafted=90, accepted=40, n_ctx=4096, tree_nodes_last=3)
        pilot.app._show_idle()
        await steady(pilot)
    assert snap_compare(app, terminal_size=(120, 12), run_before=with_stats)


@pytest.fixture(scope="module")
def small_session():
    s = open_model(replace(CFG, n_ctx=512))
    yield s
    s.close()


async def test_dropped_turns_are_said_in_the_conversation(tmp_path, small_session):
    store = Store(tmp_path / "c.db")
    c = store.create_conversation("Long")
    for i in range(4):
        store.add_message(c.id, "user", f"Story {i}: " + "lorem ipsum dolor " * 30)
        store.add_message(c.id, "assistant", "Noted.")
    store.close()
    app = make_app(tmp_path / "c.db", small_session)
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, "Say hi")
        await wait_until(pilot, lambda: app.last_stats is not None and not app.generating)
        assert app.last_stats.dropped_turns > 0
        notice = list(app.query(MessageView))[-1].query_one("#dropped")
        assert notice.display and f"{app.last_stats.dropped_turns} earlier turn" in str(
            notice.render())
    app2 = make_app(tmp_path / "c.db", small_session)  # and after a restart
    async with app2.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.2)
        assert list(app2.query(MessageView))[-1].query_one("#dropped").display


async def test_a_long_paste_shows_progress_and_esc_gives_it_back(tmp_path, session):
    app = make_app(tmp_path / "c.db", session)
    paste = "Summarize this log:\n" + "\n".join(
        f"{i:04d} worker-{i % 7} finished job {i * 37 % 1000} in {i % 13}.{i % 10} s"
        for i in range(110))
    session.reset()
    async with app.run_test(size=(140, 30)) as pilot:
        await send(pilot, app, paste)
        await wait_until(pilot, lambda: "reading the prompt" in bar_text(app), timeout=60)
        assert "Esc stops" in bar_text(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.generating)
        await pilot.pause(0.1)
        assert app.query_one(PromptInput).text == paste  # back in the box, as typed
        assert app.store.messages(app.conv.id) == []  # nothing saved as a turn
        assert any("Stopped before the answer began" in n.message
                   for n in app._notifications)


# -- what made an answer ----------------------------------------------------------------


async def test_answers_record_what_made_them_and_can_be_made_again(tmp_path, session):
    app = make_app(tmp_path / "c.db", session)
    app.cfg = replace(CFG, generation=replace(CFG.generation, temperature=0.9,
                                              max_tokens=24))
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, "Tell me a story about a dragon.")
        await wait_until(pilot, lambda: app.last_stats is not None and not app.generating)
        first = app.store.messages(app.conv.id)[-1]
        p = first.provenance
        assert p["model"]["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
        assert len(p["model"]["header_sha256"]) == 64 and p["model"]["bytes"] > 0
        assert p["settings"]["temperature"] == 0.9 and p["settings"]["seed"] == first.stats[
            "seed"]
        assert p["engine"]["kv_cache"] == session.info.kv_cache
        app.last_stats = None
        await app.run_action("regenerate_same")
        await wait_until(pilot, lambda: app.last_stats is not None and not app.generating)
        again = app.store.messages(app.conv.id)[-1]
        assert again.created > first.created and again.content == first.content
        assert again.provenance["settings"] == p["settings"]
        path = app.export_markdown()
        assert f"seed {p['settings']['seed']}" in path.read_text()
