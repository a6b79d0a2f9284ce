"""Files attached to a message: read as text, fenced and named inside the user turn (so
the model sees them, and the drafter can copy from them), and found again for display.

A file that is not text, cannot be read, or cannot fit the context is one sentence."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SNIFF_BYTES = 8192  # a NUL byte in the head of a file means binary, as git decides it
BYTES_PER_TOKEN_MAX = 16  # no tokenizer packs more bytes into a token: a cheap first bound


class AttachError(Exception):
    """The file cannot be attached; the message is one sentence that says why."""


@dataclass(frozen=True)
class Attachment:
    name: str
    size: int  # bytes on disk
    text: str


def human_size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    for unit in ("kB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} GB"


def read_attachment(path: str | Path, max_bytes: int) -> Attachment:
    """The file as text; AttachError for a missing, unreadable, binary or too large one
    (max_bytes: what the context could hold at the most)."""
    p = Path(path).expanduser()
    try:
        if p.is_dir():
            raise AttachError(f"{p} is a folder; attach the files in it one by one")
        size = p.stat().st_size
        if size > max_bytes:
            raise AttachError(f"{p.name} is {human_size(size)}, more than the context can "
                              f"hold; attach a part of it, or raise --n-ctx")
        data = p.read_bytes()
    except OSError as exc:
        raise AttachError(f"cannot read {p}: {exc.strerror or exc}") from None
    if b"\0" in data[:SNIFF_BYTES]:
        raise AttachError(f"{p.name} is a binary file; only text files can be attached")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AttachError(f"{p.name} is not UTF-8 text; only text files can be "
                          f"attached") from None
    return Attachment(p.name, len(data), text.removeprefix("\ufeff"))


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _language(name: str) -> str:
    suffix = Path(name).suffix.lstrip(".").lower()
    return suffix if re.fullmatch(r"[a-z0-9+#-]{1,10}", suffix) else ""


def compose_turn(text: str, files: list[Attachment]) -> str:
    """The user turn: each file fenced under a line naming it, then what was typed."""
    parts = []
    for f in files:
        fence = _fence(f.text)
        body = f.text if f.text.endswith("\n") or not f.text else f.text + "\n"
        parts.append(f"File `{f.name}` ({human_size(f.size)}):\n"
                     f"{fence}{_language(f.name)}\n{body}{fence}")
    if text.strip():
        parts.append(text)
    return "\n\n".join(parts)


_ATTACHED = re.compile(
    r"^File `(?P<name>[^`\n]+)` \((?P<size>[^)\n]+)\):\n(?P<fence>`{3,})[^\n`]*\n"
    r"(?P<body>.*?)^(?P=fence)$", re.S | re.M)


def split_turn(content: str) -> list[tuple[str, str | None, str | None]]:
    """A stored user turn as (text, file name, file size) pieces, in order: attached
    files have their name and size, typed text has None for both."""
    pieces: list[tuple[str, str | None, str | None]] = []
    at = 0
    for m in _ATTACHED.finditer(content):
        if content[at:m.start()].strip():
            pieces.append((content[at:m.start()].strip("\n"), None, None))
        pieces.append((m.group("body"), m.group("name"), m.group("size")))
        at = m.end()
    if content[at:].strip():
        pieces.append((content[at:].strip("\n"), None, None))
    return pieces
