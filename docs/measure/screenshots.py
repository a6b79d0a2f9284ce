"""The README's screenshots: the app mid-answer (live stats bar) and after it, on the
embedded model, greedy: a pasted-code edit, then a story caught mid-stream.

usage (from the repository root): .venv/bin/python docs/measure/screenshots.py
"""

import asyncio
import tempfile
from pathlib import Path

from aded_chat.engine import default_threads

from aded_chat.app import ChatApp
from aded_chat.config import Config
from aded_chat.runtime import open_model
from aded_chat.store import Store
from aded_chat.widgets.prompt_input import PromptInput

CFG = Config(threads=default_threads(reserve_core=True),
             generation=Config().generation.__class__(temperature=0.0, max_tokens=400))
CODE = """def area(width, height):
    return width * height


def perimeter(width, height):
    return 2 * (width + height)


def describe(width, height):
    return f"{width} by {height}: area {area(width, height)}"


def scale(width, height, factor):
    return width * factor, height * factor
"""
PROMPTS = ["Rename `width` to `w` in this code and show all of it:\n\n" + CODE,
           "Write a short story about a lighthouse keeper."]
OUT = Path("docs")


async def main() -> None:
    session = open_model(CFG)
    with tempfile.TemporaryDirectory() as tmp:
        app = ChatApp(CFG, store=Store(Path(tmp) / "c.db"), session=session)
        async with app.run_test(size=(130, 40)) as pilot:
            for i, text in enumerate(PROMPTS):
                prompt = app.query_one(PromptInput)
                prompt.text = text
                prompt.focus()
                await pilot.press("enter")
                if i == len(PROMPTS) - 1:  # mid-answer: some text shown, more to come
                    while app.generating and not (
                            app._streaming and len(app._streaming.content) > 60):
                        await asyncio.sleep(0.01)
                    app.save_screenshot(str(OUT / "app-streaming.svg"))
                while app.generating:
                    await asyncio.sleep(0.05)
                await pilot.pause(0.3)
            app.save_screenshot(str(OUT / "app-answered.svg"))
    session.close()


asyncio.run(main())
