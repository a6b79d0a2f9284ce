"""Copy text out of the terminal: the system clipboard where one is reachable, else the
OSC 52 escape, which asks the terminal itself to set its clipboard (it works over SSH
and inside tmux when the terminal allows it). The caller says which one was used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable

# Tools that set the system clipboard, and when each can reach one.
_TOOLS: list[tuple[list[str], Callable[[], bool]]] = [
    (["pbcopy"], lambda: sys.platform == "darwin"),
    (["wl-copy"], lambda: bool(os.environ.get("WAYLAND_DISPLAY"))),
    (["xclip", "-selection", "clipboard"], lambda: bool(os.environ.get("DISPLAY"))),
    (["xsel", "--clipboard", "--input"], lambda: bool(os.environ.get("DISPLAY"))),
    (["clip.exe"], lambda: sys.platform == "win32" or "microsoft" in _kernel()),
]
OSC52 = "the terminal (OSC 52)"


def _kernel() -> str:
    try:
        return os.uname().release.lower()
    except AttributeError:
        return ""


def _remote() -> bool:
    """Over SSH the system clipboard is the remote machine's: no use to the person."""
    return bool(os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"))


def system_copy(text: str) -> str | None:
    """Put text on the system clipboard; the tool's name, or None when none is reachable."""
    if _remote():
        return None
    for cmd, reachable in _TOOLS:
        if not reachable() or shutil.which(cmd[0]) is None:
            continue
        try:
            subprocess.run(cmd, input=text.encode("utf-8"), check=True, timeout=3,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            continue
        return cmd[0]
    return None


def copy(text: str, osc52: Callable[[str], None]) -> str:
    """Copy text; returns where it went ('the system clipboard (xclip)' or OSC52).
    osc52 is the app's escape writer (Textual's App.copy_to_clipboard)."""
    tool = system_copy(text)
    if tool is not None:
        return f"the system clipboard ({tool})"
    osc52(text)
    return OSC52
