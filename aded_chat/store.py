"""Conversations in SQLite under the user data dir (WAL mode, numbered migrations).

A message is committed when it completes; a streaming answer is saved every few seconds
by the app, so a killed process loses at most the last seconds of one answer.

Opening tells apart what a user can meet: a database another process holds (wait, then
say so: never touch it), one written by a newer aded-chat (refuse, touch nothing), a
read-only file (open it read-only), and a damaged one (an integrity check or a schema
that is not ours: moved aside, never deleted, and a fresh one started).

One connection, shared by the UI and the generation worker, behind one lock. A
conversation is written by one process at a time: each process claims the conversations
it writes with an advisory file lock, and another process shows them read-only.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per data dir is assumed
    fcntl = None

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
    # 2: what produced each answer: model identity, settings, seed
    """
    ALTER TABLE messages ADD COLUMN provenance TEXT;
    """,
]
# Full-text search over every message (SQLite FTS5), kept in step by triggers; created
# (and the existing rows indexed) on the first writable open where SQLite has FTS5. A
# Python whose SQLite lacks it searches with LIKE instead: slower, never locked out.
SEARCH_INDEX = """
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content='messages', content_rowid='id', tokenize='unicode61');
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END;
    INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
"""
# The columns the code reads, by table: a database at our version without them is not ours.
SCHEMA = {
    "conversations": {"id", "title", "system_prompt", "settings", "created", "updated"},
    "messages": {"id", "conversation_id", "role", "content", "model", "stats", "status",
                 "created", "provenance"},
}
BUSY_TIMEOUT_S = 5.0  # how long to wait for another process's write lock
UNTITLED = "New chat"  # a conversation's title until its first message names it
TITLE_MAX = 60  # characters: about what the sidebar shows, and a sane file name


def clean_title(text: str) -> str:
    """A title from any text: one line, single spaces, at most TITLE_MAX characters."""
    return " ".join(text.split())[:TITLE_MAX]


class StoreError(Exception):
    """The conversation database cannot be used; the message says why and what to do."""


class StoreWriteError(StoreError):
    """A write failed (disk full, read-only, locked); nothing already saved was lost."""


class _Damaged(Exception):
    """The file is not a usable aded-chat database: moved aside and started afresh."""


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
    provenance: dict | None = None  # model identity, sampling settings, seed (answers)
    created: float = 0.0


@dataclass
class SearchHit:
    """A message that matches a search, with where it lives and a highlighted snippet."""

    message_id: int
    conversation_id: int
    title: str
    role: str
    created: float
    snippet: str  # the match between HIT_START and HIT_END markers


HIT_START, HIT_END = "\x02", "\x03"  # around each match in a snippet: never in typed text


class Store:
    def __init__(self, path: Path):
        self.path = path
        self.recovered_from: Path | None = None
        self.read_only = False
        self._lock = threading.RLock()
        self._claims: dict[int, int] = {}  # conversation id -> open lock file descriptor
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data folder {path.parent}: "
                             f"{exc.strerror}") from None
        self.read_only = path.exists() and not (os.access(path, os.W_OK)
                                                and os.access(path.parent, os.W_OK))
        try:
            self.db = self._open(path, self.read_only)
        except _Damaged as exc:
            self._move_aside(path, str(exc))
            self.db = self._open(path, False)
        # the index is made only when the database is opened: asked once, not per search
        self.indexed = _has_search_index(self.db)

    def _move_aside(self, path: Path, why: str) -> None:
        aside = path.with_name(f"{path.name}.broken-{int(time.time())}")
        try:
            path.rename(aside)
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.rename(aside.with_name(aside.name + suffix))
        except OSError as exc:
            raise StoreError(f"conversation database {path} is damaged ({why}) and could "
                             f"not be moved aside: {exc.strerror}") from None
        self.recovered_from = aside

    @staticmethod
    def _open(path: Path, read_only: bool) -> sqlite3.Connection:
        if read_only:
            db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                 check_same_thread=False, isolation_level=None)
        else:
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False,
                                 isolation_level=None)
        try:
            if not read_only:
                db.execute("PRAGMA journal_mode=WAL")
                # readers pass a WAL writer's lock: take the write lock once, so a database
                # another program holds is reported now, not at the first message
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
            db.execute("PRAGMA foreign_keys=ON")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"conversation database {path} was written by a newer aded-chat "
                    f"(schema {version}, this one knows {len(MIGRATIONS)}); upgrade "
                    f"aded-chat. The file was not touched.")
            check = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise _Damaged(f"integrity check: {check[0]}")
            if read_only:
                if version < len(MIGRATIONS):
                    raise StoreError(f"conversation database {path} is read-only and needs "
                                     f"an upgrade; make it writable")
            else:
                for n, sql in enumerate(MIGRATIONS[version:], start=version + 1):
                    db.executescript(f"BEGIN; {sql}; PRAGMA user_version={n}; COMMIT;")
                _add_search_index(db)
            for table, cols in SCHEMA.items():
                have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                if not cols <= have:
                    raise _Damaged(f"table {table} is not aded-chat's")
        except BaseException as exc:
            db.close()
            if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                raise StoreError(f"conversation database {path} is in use by another "
                                 f"program (waited {BUSY_TIMEOUT_S:.0f} s); close it and "
                                 f"try again") from None
            if isinstance(exc, sqlite3.DatabaseError):
                raise _Damaged(str(exc)) from None
            raise
        return db

    def close(self) -> None:
        with self._lock:
            for fd in self._claims.values():
                os.close(fd)
            self._claims.clear()
            self.db.close()

    def _write(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        if self.read_only:
            raise StoreWriteError("the conversation database is read-only: nothing is saved")
        try:
            with self._lock:
                return self.db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreWriteError(f"could not save: {_describe(exc)}") from None

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            with self._lock:
                return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"could not read the conversation database: "
                             f"{_describe(exc)}") from None

    # -- who writes a conversation ----------------------------------------------------

    def claim(self, cid: int) -> bool:
        """Claim conversation cid for this process's writes (keeping earlier claims).
        False when another process has it: show it, do not append to it."""
        if cid in self._claims or fcntl is None or self.read_only:
            return not self.read_only
        folder = self.path.parent / "locks"
        try:
            folder.mkdir(exist_ok=True)
            fd = os.open(folder / f"{self.path.stem}-{cid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return True  # no lock folder (a read-only place): nothing to coordinate with
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._claims[cid] = fd
        return True

    # -- conversations ----------------------------------------------------------------

    def create_conversation(self, title: str = UNTITLED, system_prompt: str = "",
                            settings: dict | None = None) -> Conversation:
        now = time.time()
        cur = self._write(
            "INSERT INTO conversations(title, system_prompt, settings, created, updated) "
            "VALUES (?, ?, ?, ?, ?)", (title, system_prompt, json.dumps(settings or {}), now, now))
        self.claim(cur.lastrowid)
        return self.conversation(cur.lastrowid)

    def conversation(self, cid: int) -> Conversation:
        rows = self._read("SELECT id, title, system_prompt, settings, updated FROM "
                          "conversations WHERE id = ?", (cid,))
        if not rows:
            raise StoreError(f"no conversation {cid}")
        return _conversation(rows[0])

    def conversations(self) -> list[Conversation]:
        return [_conversation(r) for r in self._read(
            "SELECT id, title, system_prompt, settings, updated FROM "
            "conversations ORDER BY updated DESC, id DESC")]

    def update_conversation(self, cid: int, *, title: str | None = None,
                            system_prompt: str | None = None,
                            settings: dict | None = None) -> None:
        conv = self.conversation(cid)
        self._write(
            "UPDATE conversations SET title = ?, system_prompt = ?, settings = ?, updated = ? "
            "WHERE id = ?",
            (title if title is not None else conv.title,
             system_prompt if system_prompt is not None else conv.system_prompt,
             json.dumps(settings if settings is not None else conv.settings), time.time(), cid))

    def name_after(self, cid: int, text: str) -> bool:
        """Title an untitled conversation after its first message; True when it did."""
        title = clean_title(text)
        if not title:
            return False
        cur = self._write("UPDATE conversations SET title = ? WHERE id = ? AND title = ?",
                          (title, cid, UNTITLED))
        return cur.rowcount > 0

    def delete_conversation(self, cid: int) -> None:
        self._write("DELETE FROM conversations WHERE id = ?", (cid,))

    # -- messages ---------------------------------------------------------------------

    def add_message(self, cid: int, role: str, content: str, *, model: str | None = None,
                    stats: dict | None = None, status: str = "done",
                    provenance: dict | None = None) -> int:
        now = time.time()
        with self._lock:
            cur = self._write(
                "INSERT INTO messages(conversation_id, role, content, model, stats, status, "
                "created, provenance) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (cid, role, content, model, json.dumps(stats) if stats else None, status, now,
                 json.dumps(provenance) if provenance else None))
            self._write("UPDATE conversations SET updated = ? WHERE id = ?", (now, cid))
        return cur.lastrowid

    def update_message(self, mid: int, content: str, *, stats: dict | None = None,
                       status: str | None = None, provenance: dict | None = None) -> None:
        """Save a message's newer text. Text is never replaced by less of it: a save
        that would shorten what is stored keeps the stored text (and takes the rest)."""
        self._write(
            "UPDATE messages SET content = CASE WHEN length(content) > length(?1) THEN "
            "content ELSE ?1 END, stats = COALESCE(?2, stats), status = COALESCE(?3, status), "
            "provenance = COALESCE(?4, provenance) WHERE id = ?5",
            (content, json.dumps(stats) if stats else None, status,
             json.dumps(provenance) if provenance else None, mid))

    def message(self, mid: int) -> StoredMessage | None:
        rows = self._read("SELECT conversation_id FROM messages WHERE id = ?", (mid,))
        if not rows:
            return None
        return next((m for m in self.messages(rows[0][0]) if m.id == mid), None)

    def delete_message(self, mid: int) -> None:
        self._write("DELETE FROM messages WHERE id = ?", (mid,))

    def messages(self, cid: int) -> list[StoredMessage]:
        rows = self._read(
            "SELECT id, role, content, model, stats, status, provenance, created FROM messages "
            "WHERE conversation_id = ? ORDER BY id", (cid,))
        return [StoredMessage(r[0], r[1], r[2], r[3], _json(r[4]), r[5], _json(r[6]), r[7])
                for r in rows]

    # -- search -----------------------------------------------------------------------

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages matching every word of `query` (prefixes too: `tok` finds `tokens`),
        best match first. Words are taken literally: FTS5's query syntax is never
        exposed, so quotes, `-` or `AND` in what a person types cannot make it fail."""
        words = _WORD.findall(query)
        if not words:
            return []
        if not self.indexed:
            where, args = _like_words(words)
            rows = self._read(
                "SELECT m.id, m.conversation_id, c.title, m.role, m.created, m.content "
                "FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                f"WHERE {where} ORDER BY m.id DESC LIMIT ?", (*args, limit))
            return [SearchHit(*r[:5], _snippet(r[5], words)) for r in rows]
        match = " ".join('"' + w.replace('"', '""') + '"*' for w in words)
        rows = self._read(
            "SELECT m.id, m.conversation_id, c.title, m.role, m.created, "
            f"snippet(messages_fts, 0, '{HIT_START}', '{HIT_END}', '…', 12) "
            "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
            "JOIN conversations c ON c.id = m.conversation_id "
            "WHERE messages_fts MATCH ? ORDER BY bm25(messages_fts), m.id DESC LIMIT ?",
            (match, limit))
        return [SearchHit(*r) for r in rows]


_WORD = re.compile(r"\w+", re.UNICODE)


def _json(text: str | None) -> dict | None:
    return json.loads(text) if text else None


def _conversation(r: tuple) -> Conversation:
    return Conversation(r[0], r[1], r[2], json.loads(r[3]), r[4])


def _has_search_index(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'"
                      ).fetchone() is not None


def _add_search_index(db: sqlite3.Connection) -> None:
    """Create the FTS5 index once, where this SQLite has FTS5 (else search uses LIKE)."""
    if _has_search_index(db):
        return
    try:
        db.executescript(f"BEGIN; {SEARCH_INDEX}; COMMIT;")
    except sqlite3.OperationalError as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if "fts5" not in str(exc).lower():
            raise


def _like_words(words: list[str]) -> tuple[str, list[str]]:
    """A WHERE clause matching every word anywhere in a message (LIKE, escaped)."""
    esc = [w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
           for w in words]
    return (" AND ".join("m.content LIKE ? ESCAPE '\\'" for _ in esc),
            [f"%{w}%" for w in esc])


def _snippet(text: str, words: list[str], width: int = 80) -> str:
    """About `width` characters around the first match, every match marked (the LIKE
    search's stand-in for FTS5's snippet())."""
    low = text.lower()
    hits = [i for i in (low.find(w.lower()) for w in words) if i >= 0]
    start = max(0, min(hits, default=0) - width // 3)
    piece = text[start:start + width]
    marked = re.sub("|".join(re.escape(w) for w in words),
                    lambda m: f"{HIT_START}{m.group(0)}{HIT_END}", piece, flags=re.I)
    return ("…" if start else "") + marked + ("…" if start + width < len(text) else "")


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _describe(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "full" in text.lower():
        return "the disk is full"
    if "readonly" in text.lower() or "read-only" in text.lower():
        return "the database is read-only"
    if _is_busy(exc):
        return "another program holds the database"
    return text
