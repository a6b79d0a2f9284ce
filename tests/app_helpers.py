"""What the app tests share: a config, an app on a store, typing a message, waiting."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aded_chat.app import ChatApp
from aded_chat.config import Config
from aded_chat.store import Store
from aded_chat.widgets.prompt_input import PromptInput

# Each test module starts from the corpus prior, not from what another module taught the
# drafter (tests/test_memory.py turns learn_across_runs on for itself).
CFG = Config(generation=Config().generation.__class__(temperature=0.0, max_tokens=48),
             learn_across_runs=False)


def make_app(db: Path, session, **kw) -> ChatApp:
    return ChatApp(CFG, store=Store(db), session=session, **kw)


def pace(monkeypatch, session, seconds: float = 0.05) -> None:
    """Each step of the session's answers paced as on a slow laptop, so an answer is still
    streaming when a test stops it, however fast drafting makes it here (an answer an
    earlier test asked for is copied from the drafter's archive)."""
    generate = session.generate

    def paced(*args, **kw):
        for chunk in generate(*args, **kw):
            yield chunk
            time.sleep(seconds)

    monkeypatch.setattr(session, "generate", paced)


async def wait_until(pilot, cond, timeout=300.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("timed out waiting")
        await pilot.pause(0.05)


async def send(pilot, app, text):
    prompt = app.query_one(PromptInput)
    prompt.text = text
    prompt.focus()
    await pilot.press("enter")


