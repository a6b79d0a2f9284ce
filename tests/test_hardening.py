"""The hostile-but-fair user: every case of the hardening pass (issue 10) that once lost a
conversation, printed a traceback or did the wrong thing, held to its fix.

Store faults are injected for real: another connection's lock, SQLite's page limit as a
full disk, bytes overwritten in a page, a schema that is not ours or is newer."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aded_chat.engine.errors import DecodeError, ModelLoadError
from aded_chat.engine.limits import SettingsError, check_load, check_sampling
from aded_chat.engine.llama.backend import LlamaBackend
from aded_chat.engine.llama.models import embedded_model_path
from aded_chat.engine.llama.sampling import SEED_MAX, SamplingSettings
from aded_chat.engine.llama.template import ChatTemplate
from app_helpers import CFG, make_app, pace, send, wait_until

from aded_chat.app import ChatApp
from aded_chat.config import ConfigError, load_config
from aded_chat.store import Store, StoreError, StoreWriteError
from aded_chat.widgets.message import MessageView
from aded_chat.widgets.prompt_input import PromptInput

CLI = [sys.executable, "-m", "aded_chat"]


def run_cli(*args, stdin: bytes | None = None, **kw):
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, timeout=300, **kw)


def one_line(r, needle: str, rc: int = 2) -> None:
    err = r.stderr.decode("utf-8", "replace") if isinstance(r.stderr, bytes) else r.stderr
    assert r.returncode == rc, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], err


def filled_store(path: Path) -> None:
    s = Store(path)
    c = s.create_conversation("kept")
    s.add_message(c.id, "user", "hello")
    s.add_message(c.id, "assistant", "hi there")
    s.close()


# -- 1, 5, 6: opening the database --------------------------------------------------------

def test_a_locked_database_is_in_use_not_broken(tmp_path, monkeypatch):
    import aded_chat.store as store_mod

    db = tmp_path / "c.db"
    filled_store(db)
    before = db.read_bytes()
    monkeypatch.setattr(store_mod, "BUSY_TIMEOUT_S", 0.3)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="in use by another program"):
            Store(db)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert db.read_bytes() == before and not list(tmp_path.glob("*.broken-*"))
    s = Store(db)  # once released, everything is there
    assert [c.title for c in s.conversations()] == ["kept"] and s.recovered_from is None
    s.close()


def test_a_damaged_page_is_moved_aside_with_a_notice(tmp_path):
    db = tmp_path / "c.db"
    filled_store(db)
    s = Store(db)
    for i in range(200):  # enough pages that page 3 is inside the data
        c = s.create_conversation(f"c{i}")
        s.add_message(c.id, "user", "x" * 500)
    s.close()
    with db.open("r+b") as fh:
        fh.seek(3 * 4096)
        fh.write(os.urandom(4096))
    s = Store(db)
    assert s.recovered_from is not None and s.recovered_from.exists()
    assert s.conversations() == []
    s.close()


def test_a_foreign_schema_is_moved_aside_and_a_newer_one_refused_untouched(tmp_path):
    wrong = tmp_path / "wrong.db"
    db = sqlite3.connect(wrong)
    db.executescript("create table conversations(x); pragma user_version=1;")
    db.close()
    s = Store(wrong)
    assert s.recovered_from is not None
    c = s.create_conversation()
    s.add_message(c.id, "user", "works")
    s.close()

    newer = tmp_path / "newer.db"
    filled_store(newer)
    db = sqlite3.connect(newer)
    db.execute("pragma user_version=99")
    db.close()
    before = newer.read_bytes()
    with pytest.raises(StoreError, match="newer aded-chat"):
        Store(newer)
    assert newer.read_bytes() == before and not list(tmp_path.glob("newer.db.broken-*"))


def test_a_read_only_database_opens_read_only_and_the_app_says_why(tmp_path, monkeypatch):
    db = tmp_path / "data" / "aded-chat" / "conversations.db"
    filled_store(db)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(db)
                        else real(p, mode))  # (root can write any file: mode bits say nothing)
    s = Store(db)
    assert s.read_only and [c.title for c in s.conversations()] == ["kept"]
    with pytest.raises(StoreWriteError, match="read-only"):
        s.add_message(s.conversations()[0].id, "user", "more")
    s.close()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    from aded_chat.cli import main

    assert main([]) == 2  # one line, exit 2, no app started


def test_a_data_folder_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = run_cli(env={**os.environ, "XDG_DATA_HOME": str(blocker)})
    one_line(r, "cannot create the data folder")


# -- 2: disk full ---------------------------------------------------------------------------

def fill_disk(store: Store) -> None:
    """SQLite's page limit at the current size: every write that needs a page fails with
    'database or disk is full', as on a full disk."""
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_never_shortens_saved_text(tmp_path):
    s = Store(tmp_path / "c.db")
    c = s.create_conversation()
    mid = s.add_message(c.id, "assistant", "a long partial answer")
    s.update_message(mid, "short")  # a save with less text keeps the longer
    assert s.messages(c.id)[0].content == "a long partial answer"
    fill_disk(s)
    with pytest.raises(StoreWriteError, match="disk is full"):
        s.add_message(c.id, "user", "y" * 100_000)
    assert s.messages(c.id)[0].content == "a long partial answer"
    s.close()


async def test_a_full_disk_keeps_the_typed_message_and_the_streaming_answer(tmp_path, session):
    app = make_app(tmp_path / "c.db", session)
    async with app.run_test() as pilot:
        fill_disk(app.store)
        await send(pilot, app, "z" * 50_000 + " Say hi")
        await pilot.pause(0.2)
        assert app.query_one(PromptInput).text.endswith("Say hi")  # nothing lost, not sent
        assert not app.generating and app.store.messages(app.conv.id) == []
        app.store.db.execute("PRAGMA max_page_count = 1073741823")
        long = CFG.generation.__class__(temperature=0.0, max_tokens=300)
        app.cfg = CFG.__class__(generation=long)
        await send(pilot, app, "Count from 1 to 100, one number per line.")
        fill_disk(app.store)  # the disk fills as the answer starts: every save fails
        await wait_until(pilot, lambda: not app.generating)
        await pilot.pause(0.2)
        view = list(app.query(MessageView))[-1]
        assert view.role == "assistant" and len(view.content) > 20  # shown in full
        stored = app.store.messages(app.conv.id)
        assert [m.role for m in stored] == ["user", "assistant"]  # the question is kept
        app.store.db.execute("PRAGMA max_page_count = 1073741823")
        assert app.is_running


# -- 3: two instances -----------------------------------------------------------------------

async def test_a_conversation_open_in_another_instance_is_not_written(tmp_path, session):
    db = tmp_path / "c.db"
    other = Store(db)  # the first aded-chat, which claimed its conversation
    c = other.create_conversation("theirs")
    other.add_message(c.id, "user", "their turn")
    app = make_app(db, session)
    async with app.run_test() as pilot:
        assert app.conv.id == c.id and not app.owned
        await send(pilot, app, "my turn")
        await pilot.pause(0.2)
        assert [m.content for m in app.store.messages(c.id)] == ["their turn"]
        assert app.query_one(PromptInput).text == "my turn"
        await pilot.press("ctrl+n")  # a conversation of its own is writable
        await pilot.pause(0.1)
        assert app.owned and app.conv.id != c.id
    other.close()


# -- 4, 15: text is text ------------------------------------------------------------------

async def test_markup_in_titles_messages_and_file_names_is_plain_text(tmp_path, session):
    db = tmp_path / "c.db"
    s = Store(db)
    c = s.create_conversation("[/] hi [bold]x")
    s.add_message(c.id, "user", "[/] hi")
    s.add_message(c.id, "assistant", "partial [/]", status="stopped")
    s.close()
    for _ in range(2):  # a title like this once locked the user out of every later start
        app = make_app(db, session)
        async with app.run_test() as pilot:
            await pilot.pause(0.2)
            assert app.is_running
            label = str(list(app.query(MessageView))[1].query_one("#role").render())
            assert "[stopped]" in label
            app.notify("no[/]x.gguf")
            want = len(app.store.messages(app.conv.id)) + 2

            def answered(a=app, want=want):
                return not a.generating and len(a.store.messages(a.conv.id)) == want

            await send(pilot, app, "[/] again")
            await wait_until(pilot, answered)
            await pilot.pause(0.1)
        app.store.close()


async def test_a_pasted_multi_line_message_keeps_its_lines(tmp_path, session):
    app = make_app(tmp_path / "c.db", session)
    code = "def f(x):\n    if x:\n        return 1\n    return 2"
    async with app.run_test() as pilot:
        await send(pilot, app, code)
        await wait_until(pilot, lambda: not app.generating and app.last_stats is not None)
        user = list(app.query(MessageView))[0]
        shown = str(user.query_one(".typed").render())
        assert "    if x:\n        return 1" in shown


# -- 7: export ------------------------------------------------------------------------------

async def test_export_never_overwrites_never_follows_a_link_and_reports_failure(
        tmp_path, session, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    db = tmp_path / "c.db"
    s = Store(db)
    c = s.create_conversation("Exported")
    s.add_message(c.id, "user", "hello")
    s.close()
    exports = tmp_path / "data" / "aded-chat" / "exports"
    exports.mkdir(parents=True)
    (exports / f"{c.id}-Exported.md").write_text("mine")
    target = tmp_path / "victim.txt"
    target.write_text("precious")
    (exports / f"{c.id}-Exported-2.md").symlink_to(target)
    app = make_app(db, session)
    async with app.run_test() as pilot:
        path = app.export_markdown()
        assert path.name == f"{c.id}-Exported-3.md" and "hello" in path.read_text()
        assert (exports / f"{c.id}-Exported.md").read_text() == "mine"
        assert target.read_text() == "precious"
        for f in exports.iterdir():
            f.unlink()
        exports.rmdir()
        exports.write_text("a file where the folder should be")
        app.action_export()  # a toast, not a crash
        await pilot.pause(0.1)
        assert app.is_running


# -- 8, 14: templates -----------------------------------------------------------------------

STRICT = ("{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant') }}"
          "{% endif %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>")


async def test_a_failed_answer_leaves_a_history_the_template_can_render(
        tmp_path, session, monkeypatch):
    """Gemma-like templates need alternating roles (and no system turn): after an answer
    that failed, the next message must still work."""
    old = session._template
    session._template = ChatTemplate(STRICT)
    real = session.generate
    calls = []

    def failing_once(*a, **kw):
        if not calls:
            calls.append(1)
            raise DecodeError("llama_decode failed: error -1")
        yield from real(*a, **kw)

    monkeypatch.setattr(session, "generate", failing_once)
    app = make_app(tmp_path / "c.db", session)
    try:
        async with app.run_test() as pilot:
            await send(pilot, app, "first")
            await wait_until(pilot, lambda: calls and not app.generating)
            await pilot.pause(0.2)
            assert app.query_one(PromptInput).text == "first"  # back in the box
            assert app.store.messages(app.conv.id) == []
            await send(pilot, app, "second")
            await wait_until(pilot, lambda: not app.generating and app.last_stats is not None)
            roles = [m.role for m in app.store.messages(app.conv.id)]
            assert roles == ["user", "assistant"]
    finally:
        session._template = old


def test_a_template_failure_is_one_line_in_ask_and_never_saved_in_the_app(session):
    old = session._template
    session._template = ChatTemplate("{% for m in messages %}{{ m['content'] }")
    try:
        with pytest.raises(Exception, match="chat template is broken") as info:
            session.check_messages([])
        from aded_chat.engine.errors import EngineError

        assert isinstance(info.value, EngineError)
    finally:
        session._template = old


# -- 9, 17, 18, 19: the command line --------------------------------------------------------

def test_bytes_that_are_not_utf8_are_replaced_not_a_traceback():
    r = run_cli("ask", "--max-tokens", "4", "-", stdin=b"caf\xe9 \xff\xfe hello")
    assert r.returncode == 0, r.stderr
    r = run_cli("ask", "--max-tokens", "4", "--system", b"sys \xff".decode(
        "utf-8", "surrogateescape"), "hi \udcff".encode("utf-8", "surrogateescape")
        .decode("utf-8", "surrogateescape"))
    assert r.returncode == 0, r.stderr


def test_output_that_cannot_be_written_ends_quietly_or_in_one_line():
    cmd = " ".join([*CLI, "ask", "--max-tokens", "64", "'Count from 1 to 50.'"])
    r = subprocess.run(f"{cmd} | head -c 5; exit ${{PIPESTATUS[0]}}", shell=True,
                       executable="/bin/bash", capture_output=True, timeout=300)
    assert r.returncode == 141 and b"Traceback" not in r.stderr, r.stderr
    r = subprocess.run(f"{cmd} >/dev/full", shell=True, capture_output=True, timeout=300)
    one_line(r, "No space left on device", rc=1)
    r = subprocess.run(f"{cmd} >&-", shell=True, capture_output=True, timeout=300)
    one_line(r, "cannot write the answer", rc=1)


@pytest.mark.parametrize("args, needle", [
    (["ask", "--seed", "-1", "hi"], "seed"),
    (["ask", "--seed", str(SEED_MAX + 1), "hi"], "seed"),
    (["ask", "--temperature", "nan", "hi"], "finite"),
    (["ask", "--temperature", "inf", "hi"], "finite"),
    (["--n-ctx", "-5", "ask", "hi"], "--n-ctx"),
    (["ask", "--threads", "100000", "hi"], "threads"),
    (["ask", "--max-tokens", "0", "hi"], "max_tokens"),
    (["ask", "--steady-batch", "1", "hi"], "--steady-batch"),
    (["--steady-batch", "64", "ask", "hi"], "--steady-batch"),
])
def test_values_out_of_range_are_one_line(args, needle):
    one_line(run_cli(*args), needle)


def test_one_validator_and_the_seed_that_reproduces():
    with pytest.raises(SettingsError):
        check_sampling(SamplingSettings(temperature=math.nan))
    with pytest.raises(SettingsError):
        check_load(threads=10**5)
    for _ in range(200):
        seed = SamplingSettings(temperature=1.0).with_seed().seed
        assert 0 <= seed <= SEED_MAX


def test_an_unreadable_config_is_a_config_error(tmp_path, monkeypatch):
    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "is_file", denied)
    with pytest.raises(ConfigError, match="Permission denied"):
        load_config(tmp_path / "config.toml")


# -- 10, 11, 12, 13: the app and the process ------------------------------------------------

async def test_a_crash_is_a_non_zero_exit(tmp_path, session, monkeypatch):
    def boom(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(ChatApp, "action_toggle_sidebar", boom)
    app = make_app(tmp_path / "c.db", session)
    with pytest.raises(RuntimeError, match="boom"):
        async with app.run_test() as pilot:
            await pilot.press("ctrl+b")
            await pilot.pause(0.2)
    assert app.return_code == 1  # run_app returns it: a crash is never status 0


def test_ctrl_c_while_the_model_loads_stops_the_load(monkeypatch):
    """llama.cpp calls back into Python while it loads, and Ctrl+C raised inside such a
    callback was printed and lost. Here SIGINT arrives as the load starts."""
    import llama_cpp

    real = llama_cpp.llama_model_load_from_file

    def interrupted_load(*a):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        return real(*a)

    monkeypatch.setattr(llama_cpp, "llama_model_load_from_file", interrupted_load)
    with pytest.raises(KeyboardInterrupt):
        LlamaBackend(embedded_model_path(), n_ctx=256)


def test_llama_cpps_own_reason_for_a_failed_load_is_kept(tmp_path):
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(embedded_model_path().read_bytes()[:2_000_000])
    with pytest.raises(ModelLoadError, match="corrupted or incomplete"):
        LlamaBackend(bad)


async def test_quit_mid_answer_is_quick_and_keeps_the_partial_answer(tmp_path, session,
                                                                     monkeypatch):
    pace(monkeypatch, session)
    db = tmp_path / "c.db"
    app = make_app(db, session)
    long = CFG.generation.__class__(temperature=0.0, max_tokens=400)
    app.cfg = CFG.__class__(generation=long)
    async with app.run_test() as pilot:
        await send(pilot, app, "Count from 1 to 300, one number per line.")
        await wait_until(pilot, lambda: app._streaming is not None
                         and len(app._streaming.content) > 10)
        started = time.monotonic()
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: not app.is_running, timeout=5)
        assert time.monotonic() - started < 1.5
    app.stop_generation_and_wait()
    app.store.close()
    s = Store(db)
    answer = s.messages(s.conversations()[0].id)[-1]
    assert answer.role == "assistant" and answer.status == "stopped" and answer.content
    s.close()


async def test_keys_work_while_the_prompt_has_focus(tmp_path, session, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    copied = []
    app = make_app(tmp_path / "c.db", session)
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    async with app.run_test() as pilot:
        await send(pilot, app, "Write one line of Python in a code block.")
        await wait_until(pilot, lambda: not app.generating and app.last_stats is not None)
        assert app.focused is app.query_one(PromptInput)
        await pilot.press("ctrl+y")
        await pilot.press("ctrl+x")
        await pilot.pause(0.1)
        assert copied and list((tmp_path / "data" / "aded-chat" / "exports").iterdir())
        await pilot.press("ctrl+e")
        await pilot.pause(0.2)
        assert app.query_one(PromptInput).text.startswith("Write one line")
        await pilot.press("ctrl+d")
        await pilot.pause(0.1)
        assert type(app.screen).__name__ == "ConfirmScreen"


# -- 20, 21: the bench's peer and the worker's writes ---------------------------------------

def test_the_store_serialises_writes_from_two_threads(tmp_path):
    s = Store(tmp_path / "c.db")
    c = s.create_conversation()
    errors = []

    def writer(tag):
        try:
            for i in range(200):
                mid = s.add_message(c.id, "user", f"{tag}{i}")
                s.update_message(mid, f"{tag}{i}!")
        except Exception as exc:  # noqa: BLE001 - any error is the failure
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(s.messages(c.id)) == 400
    s.close()


def test_stats_sent_to_the_ui_do_not_change_behind_it():
    from aded_chat.engine.decode.stats import AnswerStats, StepStats

    live = AnswerStats()
    live.add_step(StepStats(emitted=2, drafted=3, accepted=1, decode_s=0.01, host_s=0.001))
    snap = live.snapshot()
    live.add_step(StepStats(emitted=1, drafted=0, accepted=0, decode_s=0.01, host_s=0.001))
    assert snap.tokens == 2 and len(snap.host_s_per_step) == 1


@pytest.mark.model
def test_a_failing_peer_is_reported_on_its_row_and_the_run_goes_on(tmp_path, monkeypatch):
    from aded_chat import bench
    from aded_chat.cli import main

    def broken(llm, messages, settings):
        raise ValueError("could not broadcast input array from shape (147456,)")

    monkeypatch.setattr(bench.PromptLookup, "run", staticmethod(broken))
    out = tmp_path / "b.json"
    rc = main(["bench", "--per-category", "1", "--limit", "2", "--max-tokens", "8",
               "--json", str(out)])
    assert rc == 0
    import json

    rep = json.loads(out.read_text())
    assert all("could not broadcast" in r["pld"]["error"] for r in rep["prompts"])
    assert all(r["aded"]["tokens"] > 0 for r in rep["prompts"])

