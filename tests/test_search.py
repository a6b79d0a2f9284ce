"""Full-text search over every conversation: the store's FTS5 index (a migration that
also indexes old rows, triggers that keep it in step) and `aded-chat history`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from aded_chat.store import HIT_END, HIT_START, MIGRATIONS, Store

CLI = [sys.executable, "-m", "aded_chat"]


def old_database(path) -> None:
    """A database as the first aded-chat wrote it (schema 1), with messages in it."""
    db = sqlite3.connect(path)
    db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version=1; COMMIT;")
    db.execute("INSERT INTO conversations(title, created, updated) VALUES ('Old', 1, 1)")
    db.execute("INSERT INTO messages(conversation_id, role, content, created) "
               "VALUES (1, 'user', 'How do tokenizers split words?', 1)")
    db.commit()
    db.close()


def test_the_migration_indexes_messages_written_before_it(tmp_path):
    old_database(tmp_path / "c.db")
    store = Store(tmp_path / "c.db")
    hits = store.search("tokenizer")
    assert [(h.title, h.role) for h in hits] == [("Old", "user")]
    assert f"{HIT_START}tokenizers{HIT_END}" in hits[0].snippet
    assert store.messages(1)[0].provenance is None  # the new column, empty for old rows


def test_the_index_follows_inserts_updates_and_deletes(tmp_path):
    store = Store(tmp_path / "c.db")
    c = store.create_conversation("Paris")
    mid = store.add_message(c.id, "assistant", "streaming…", status="streaming")
    assert store.search("capital") == []
    store.update_message(mid, "The capital of France is Paris.", status="done")
    assert [h.message_id for h in store.search("capital france")] == [mid]
    assert store.search("streaming") == []  # the old text left the index
    other = store.create_conversation("Other")
    keep = store.add_message(other.id, "user", "capital letters")
    store.delete_message(mid)
    assert [h.message_id for h in store.search("capital")] == [keep]
    store.delete_conversation(other.id)  # a cascade delete fires the trigger too
    assert store.search("capital") == []


def test_what_a_person_types_is_taken_literally(tmp_path):
    store = Store(tmp_path / "c.db")
    c = store.create_conversation("q")
    store.add_message(c.id, "user", 'Use "quotes" - AND NOT (parens) * naïve café')
    for query in ('"quotes', "AND", "NOT (", "-", "*", "naïve", "CAFÉ", "par"):
        hits = store.search(query)
        assert len(hits) == (0 if query in ("-", "*") else 1), query
    assert store.search("   ") == [] and store.search("nothinglikethis") == []


def history(tmp_path, *args):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "TZ": "UTC"}
    return subprocess.run([*CLI, "history", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_history_lists_searches_and_shows_conversations(tmp_path):
    r = history(tmp_path)
    assert r.returncode == 0 and "no conversations yet" in r.stderr
    store = Store(tmp_path / "data" / "aded-chat" / "conversations.db")
    a = store.create_conversation("Rust lifetimes")
    store.add_message(a.id, "user", "Explain borrow checking")
    store.add_message(a.id, "assistant", "The borrow checker proves references valid.",
                      stats={"tokens": 9, "speculative": False},
                      provenance={"model": {"file": "m.gguf", "bytes": 5, "header_sha256": "ab"},
                                  "settings": {"temperature": 0.0, "seed": 7}})
    b = store.create_conversation("Soup")
    store.add_message(b.id, "user", "A recipe for onion soup")
    store.close()

    r = history(tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "Soup" in lines[0] and "Rust lifetimes" in lines[1] and "(2 messages)" in lines[1]

    r = history(tmp_path, "borrow", "--json")
    hits = json.loads(r.stdout)
    assert sorted((h["conversation_id"], h["role"]) for h in hits) == [
        (a.id, "assistant"), (a.id, "user")]
    assert all("borrow" in h["snippet"].lower() and "\x02" not in h["snippet"] for h in hits)

    r = history(tmp_path, "onion")
    assert r.returncode == 0 and "Soup" in r.stdout and "**onion**" in r.stdout

    r = history(tmp_path, "zebra")
    assert r.returncode == 1 and "nothing matches" in r.stderr

    r = history(tmp_path, "--show", str(a.id))
    assert "# Rust lifetimes" in r.stdout and "m.gguf" in r.stdout and "seed 7" in r.stdout
    shown = json.loads(history(tmp_path, "--show", str(a.id), "--json").stdout)
    assert shown["messages"][1]["provenance"]["settings"]["seed"] == 7

    r = history(tmp_path, "--show", "999")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no conversation 999" in r.stderr


def test_without_fts5_search_falls_back_and_the_index_comes_later(tmp_path, monkeypatch):
    """A Python whose SQLite lacks FTS5 must not lose (or move aside) the conversations:
    search uses LIKE; a later open with FTS5 indexes everything written meanwhile."""
    from aded_chat import store as store_mod

    monkeypatch.setattr(store_mod, "SEARCH_INDEX",
                        store_mod.SEARCH_INDEX.replace("USING fts5(", "USING fts5_missing("))
    old_database(tmp_path / "c.db")
    s = Store(tmp_path / "c.db")
    assert s.recovered_from is None
    c = s.create_conversation("new")
    s.add_message(c.id, "assistant", "snake_case names, 100% of them")
    hits = s.search("tokenizer")
    assert [h.title for h in hits] == ["Old"] and f"{HIT_START}tokenizer" in hits[0].snippet
    s.add_message(s.create_conversation("other").id, "user", "snakeXcase")
    # '_' is a letter here, not LIKE's any-character wildcard
    assert [h.title for h in s.search("snake_case 100")] == ["new"]
    s.close()
    monkeypatch.undo()
    s = Store(tmp_path / "c.db")
    assert [h.title for h in s.search("snake_case")] == ["new"]
    assert [h.title for h in s.search("tokenizers")] == ["Old"]
