"""The README's screenshots, on the embedded model, greedy: the app mid-answer (live
stats bar) and after it (a pasted-code edit, then a story caught mid-stream; the context
gauge on the bar's right), a file attached with /read, an answer selected with its code
blocks numbered and one copied, and the search screen.

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


async def say(app, pilot, text: str) -> None:
    prompt = app.query_one(PromptInput)
    prompt.text = text
    prompt.focus()
    await pilot.press("enter")
    while app.generating:
        await asyncio.sleep(0.05)
    await pilot.pause(0.3)


async def main() -> None:
    session = open_model(CFG)
    with tempfile.TemporaryDirectory() as tmp:
        app = ChatApp(CFG, store=Store(Path(tmp) / "c.db"), session=session)
        app.copy_to_clipboard = lambda text: None  # no terminal to send OSC 52 to
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

            await app.action_new_conversation()
            src = Path(tmp) / "geometry.py"
            src.write_text(CODE)
            await say(app, pilot, f"/read {src}")
            await say(app, pilot, "Add a docstring to each function.")
            app.save_screenshot(str(OUT / "app-attached.svg"))

            await pilot.press("shift+tab")  # select the answer, copy its first block
            await pilot.press("1")
            await pilot.pause(0.3)
            app.save_screenshot(str(OUT / "app-copy.svg"))

            await pilot.press("i", "ctrl+f", *"width")
            await pilot.pause(0.5)
            app.save_screenshot(str(OUT / "app-search.svg"))
    session.close()


asyncio.run(main())
