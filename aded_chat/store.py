"""Conversations in SQLite under the user data dir (WAL mode, numbered migrations).

A message is committed when it completes; a streaming answer is saved every few seconds
by the app, so a killed process loses at most the last seconds of one answer. A database
that cannot be opened is moved aside (never deleted) and a fresh one is started.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

MIGRATIONS = [
    # 1: conversations and their messages, with what it takes to reproduce an answer
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        system_prompt TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        model TEXT,
        stats TEXT,
        status TEXT NOT NULL DEFAULT 'done',
        created REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    """,
]


class StoreError(Exception):
    pass


@dataclass
class Conversation:
    id: int
    title: str
    system_prompt: str
    settings: dict
    updated: float


@dataclass
class StoredMessage:
    id: int
    role: str
    content: str
    model: str | None
    stats: dict | None
    status: str  # done | streaming | stopped


class Store:
    def __init__(self, path: Path):
        self.path = path
        self.recovered_from: Path | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = self._open(path)
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{path.name}.broken-{int(time.time())}")
            try:
                path.rename(aside)
                for suffix in ("-wal", "-shm"):
                    side = path.with_name(path.name + suffix)
                    if side.exists():
                        side.rename(aside.with_name(aside.name + suffix))
            except OSError as move_exc:
                raise StoreError(f"conversation database {path} is unusable ({exc}) and "
                                 f"could not be moved aside: {move_exc}") from None
            self.recovered_from = aside
            self.db = self._open(path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA quick_check").fetchone()
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for n, sql in enumerate(MIGRATIONS[version:], start=version + 1):
                db.executescript(f"BEGIN; {sql}; PRAGMA user_version={n}; COMMIT;")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        self.db.close()

    # -- conversations ----------------------------------------------------------------

    def create_conversation(self, title: str = "New chat", system_prompt: str = "",
                            settings: dict | None = None) -> Conversation:
        now = time.time()
        cur = self.db.execute(
            "INSERT INTO conversations(title, system_prompt, settings, created, updated) "
            "VALUES (?, ?, ?, ?, ?)", (title, system_prompt, json.dumps(settings or {}), now, now))
        return self.conversation(cur.lastrowid)

    def conversation(self, cid: int) -> Conversation:
        row = self.db.execute("SELECT id, title, system_prompt, settings, updated FROM "
                              "conversations WHERE id = ?", (cid,)).fetchone()
        if row is None:
            raise StoreError(f"no conversation {cid}")
        return Conversation(row[0], row[1], row[2], json.loads(row[3]), row[4])

    def conversations(self) -> list[Conversation]:
        rows = self.db.execute("SELECT id, title, system_prompt, settings, updated FROM "
                               "conversations ORDER BY updated DESC, id DESC").fetchall()
        return [Conversation(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def update_conversation(self, cid: int, *, title: str | None = None,
                            system_prompt: str | None = None,
                            settings: dict | None = None) -> None:
        conv = self.conversation(cid)
        self.db.execute(
            "UPDATE conversations SET title = ?, system_prompt = ?, settings = ?, updated = ? "
            "WHERE id = ?",
            (title if title is not None else conv.title,
             system_prompt if system_prompt is not None else conv.system_prompt,
             json.dumps(settings if settings is not None else conv.settings), time.time(), cid))

    def delete_conversation(self, cid: int) -> None:
        self.db.execute("DELETE FROM conversations WHERE id = ?", (cid,))

    # -- messages ---------------------------------------------------------------------

    def add_message(self, cid: int, role: str, content: str, *, model: str | None = None,
                    stats: dict | None = None, status: str = "done") -> int:
        now = time.time()
        cur = self.db.execute(
            "INSERT INTO messages(conversation_id, role, content, model, stats, status, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (cid, role, content, model, json.dumps(stats) if stats else None, status, now))
        self.db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, cid))
        return cur.lastrowid

    def update_message(self, mid: int, content: str, *, stats: dict | None = None,
                       status: str | None = None) -> None:
        self.db.execute(
            "UPDATE messages SET content = ?, stats = COALESCE(?, stats), "
            "status = COALESCE(?, status) WHERE id = ?",
            (content, json.dumps(stats) if stats else None, status, mid))

    def delete_message(self, mid: int) -> None:
        self.db.execute("DELETE FROM messages WHERE id = ?", (mid,))

    def messages(self, cid: int) -> list[StoredMessage]:
        rows = self.db.execute(
            "SELECT id, role, content, model, stats, status FROM messages "
            "WHERE conversation_id = ? ORDER BY id", (cid,)).fetchall()
        return [StoredMessage(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else None, r[5])
                for r in rows]
