"""`aded-chat history`: list conversations, search every message, print one conversation.

Reads the same SQLite file the app writes (full-text search through its FTS5 index)."""

from __future__ import annotations

import json
import sys
import time

from aded_chat.config import data_dir
from aded_chat.errors import UsageError
from aded_chat.store import HIT_END, HIT_START, Store, StoreError
from aded_chat.transcript import markdown

BOLD, RESET = "\x1b[1m", "\x1b[0m"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def _plain(snippet: str) -> str:
    return snippet.replace(HIT_START, "").replace(HIT_END, "")


def _marked(snippet: str, tty: bool) -> str:
    """The snippet on one line, its matches in bold on a terminal, else in **…**."""
    start, end = (BOLD, RESET) if tty else ("**", "**")
    return " ".join(snippet.split()).replace(HIT_START, start).replace(HIT_END, end)


def run_history(args, out=None) -> int:
    out = out or sys.stdout
    path = data_dir() / "conversations.db"
    if not path.exists():
        print(f"no conversations yet ({path})", file=sys.stderr)
        return 0
    try:
        store = Store(path)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    try:
        if args.show is not None:
            return _show(store, args.show, args.json, out)
        if args.query:
            return _search(store, " ".join(args.query), args.limit, args.json, out)
        return _list(store, args.limit, args.json, out)
    finally:
        store.close()


def _show(store: Store, cid: int, as_json: bool, out) -> int:
    try:
        conv = store.conversation(cid)
    except StoreError:
        raise UsageError(f"no conversation {cid} (`aded-chat history` lists them)") from None
    messages = store.messages(cid)
    if as_json:
        out.write(json.dumps({
            "id": conv.id, "title": conv.title, "system_prompt": conv.system_prompt,
            "settings": conv.settings,
            "messages": [{"id": m.id, "role": m.role, "content": m.content, "model": m.model,
                          "status": m.status, "created": _iso(m.created), "stats": m.stats,
                          "provenance": m.provenance} for m in messages],
        }, ensure_ascii=False) + "\n")
    else:
        out.write(markdown(conv, messages) + "\n")
    return 0


def _search(store: Store, query: str, limit: int, as_json: bool, out) -> int:
    hits = store.search(query, limit)
    if as_json:
        out.write(json.dumps([{"message_id": h.message_id, "conversation_id": h.conversation_id,
                               "title": h.title, "role": h.role, "created": _iso(h.created),
                               "snippet": _plain(h.snippet)} for h in hits],
                             ensure_ascii=False) + "\n")
        return 0
    if not hits:
        print(f"nothing matches {query!r}", file=sys.stderr)
        return 1
    tty = out.isatty()
    for h in hits:
        who = "you" if h.role == "user" else h.role
        out.write(f"{_when(h.created)}  #{h.conversation_id} {h.title}  ({who})\n"
                  f"    {_marked(h.snippet, tty)}\n")
    return 0


def _list(store: Store, limit: int, as_json: bool, out) -> int:
    convs = store.conversations()[:limit]
    counts = {c.id: len(store.messages(c.id)) for c in convs}
    if as_json:
        out.write(json.dumps([{"id": c.id, "title": c.title, "updated": _iso(c.updated),
                               "messages": counts[c.id]} for c in convs],
                             ensure_ascii=False) + "\n")
        return 0
    for c in convs:
        out.write(f"{_when(c.updated)}  #{c.id:<4} {c.title}  ({counts[c.id]} messages)\n")
    return 0
