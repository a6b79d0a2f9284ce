"""Attached files: read as text or refused in one sentence, fenced and named in the user
turn, found again for display; `ask -f` on the real model."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aded_chat.attachments import (
    AttachError,
    Attachment,
    compose_turn,
    read_attachment,
    split_turn,
)

CLI = [sys.executable, "-m", "aded_chat"]


def test_text_files_are_read_and_others_refused_in_one_sentence(tmp_path):
    ok = tmp_path / "notes.md"
    ok.write_text("\ufeffhello\n", encoding="utf-8")
    assert read_attachment(ok, 10_000) == Attachment("notes.md", 9, "hello\n")
    (tmp_path / "nul.bin").write_bytes(b"abc\0def")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "big.txt").write_text("x" * 5000)
    (tmp_path / "sub").mkdir()
    cases = {"nul.bin": "binary file", "latin1.txt": "not UTF-8", "big.txt": "more than the "
             "context", "sub": "is a folder", "missing.txt": "No such file"}
    for name, needle in cases.items():
        with pytest.raises(AttachError) as exc:
            read_attachment(tmp_path / name, 1000)
        assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_a_turn_round_trips_with_fences_longer_than_the_files_own():
    tricky = "Some markdown\n```python\nprint(1)\n```\nend"
    files = [Attachment("a.md", 40, tricky), Attachment("b.py", 3, "x=1")]
    turn = compose_turn("What do these do?", files)
    assert "````md\n" in turn and "```py\nx=1\n```" in turn
    assert split_turn(turn) == [(tricky + "\n", "a.md", "40 B"), ("x=1\n", "b.py", "3 B"),
                                ("What do these do?", None, None)]
    assert split_turn("just text") == [("just text", None, None)]
    assert compose_turn("", files[1:]).endswith("```")  # a file alone is a turn


def run(*args, cwd=None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=os.environ)


@pytest.mark.model
def test_ask_with_files_answers_about_them(tmp_path):
    src = tmp_path / "greet.py"
    src.write_text("def greet(name):\n    return 'Hello, ' + name\n")
    r = run("ask", "--json", "--max-tokens", "40", "-f", str(src),
            "Add a docstring to this function.")
    assert r.returncode == 0, r.stderr
    import json

    out = json.loads(r.stdout)
    assert out["text"].strip()
    # the file reached the model: its prompt is longer than the question alone
    bare = json.loads(run("ask", "--json", "--max-tokens", "1",
                          "Add a docstring to this function.").stdout)
    assert out["stats"]["prompt_tokens"] > bare["stats"]["prompt_tokens"] + 15
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    r = run("ask", "-f", str(tmp_path / "img.png"), "what is this")
    assert r.returncode == 2 and "binary file" in r.stderr and "Traceback" not in r.stderr
    huge = tmp_path / "huge.txt"
    huge.write_text("word " * 20000)
    r = run("ask", "--n-ctx", "512", "-f", str(huge), "summarize")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
