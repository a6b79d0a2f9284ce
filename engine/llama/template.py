"""Chat formatting with the model's own Jinja template, rendered in a sandbox.

Message contents never pass through the special-token parser: the template is rendered
with placeholders, its own text is tokenized with special tokens, and each message's
text is tokenized as plain text and spliced in. A user who pastes "<|im_end|>" gets
those characters, not an end-of-turn token.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import EngineError

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# A template is code from a model file: it renders under a time and size budget, so a
# runaway loop or a gigabyte string is one clear error rather than a hung app.
RENDER_BUDGET_S = 2.0
MAX_RENDER_CHARS = 8_000_000


class TemplateRenderError(EngineError):
    """The model's chat template cannot render this conversation (or at all)."""


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


class _RefusedRole(TemplateError):
    """raise_exception() from the template itself (e.g. 'System role not supported')."""


def _raise(message: str) -> None:
    raise _RefusedRole(message)


class _BudgetedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's sandbox, with string and number growth checked before it happens."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            seq, times = (left, right) if isinstance(right, int) else (right, left)
            if (isinstance(seq, str | list) and isinstance(times, int)
                    and len(seq) * times > MAX_RENDER_CHARS):
                raise TemplateError("the template builds a string too large to render")
        if operator == "**" and isinstance(right, int) and right > 64:
            raise TemplateError("the template computes a number too large to render")
        return super().call_binop(context, operator, left, right)


def _with_deadline(render: Callable[[], str]) -> str:
    """Run render() with a line tracer on the template's own frames that ends it past
    RENDER_BUDGET_S (Jinja compiles a template to Python, whose frames say '<template>')."""
    deadline = time.monotonic() + RENDER_BUDGET_S
    lines = 0

    def local(frame, event, arg):
        nonlocal lines
        if event == "line":
            lines += 1
            if lines % 512 == 0 and time.monotonic() > deadline:
                raise TemplateError(f"the template ran past its {RENDER_BUDGET_S:.0f} s "
                                    f"budget (a runaway loop?)")
        return local

    def call(frame, event, arg):
        return local if frame.f_code.co_filename == "<template>" else None

    previous = sys.gettrace()
    sys.settrace(call)
    try:
        return render()
    finally:
        sys.settrace(previous)


class ChatTemplate:
    """Renders a conversation into prompt tokens with the GGUF's template."""

    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = ""):
        self.source = source or CHATML_TEMPLATE
        self.is_fallback = source is None
        self.merges_system = False  # the template refused a system turn: merged from now on
        env = _BudgetedSandbox(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        try:
            self._template = env.from_string(self.source)
            self._syntax_error = None
        except TemplateError as exc:  # reported when used, so the model still loads
            self._template = None
            self._syntax_error = f"the model's chat template is broken: {exc}"
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> str:
        """The prompt text. A template that refuses a system turn (as Gemma's do) gets the
        system prompt at the head of the first user turn, as users of those models expect;
        any other failure is one TemplateRenderError."""
        msgs = list(messages)
        if self.merges_system:
            msgs = merge_system(msgs)
        try:
            return self._render(msgs, add_generation_prompt)
        except _RefusedRole as exc:
            merged = merge_system(msgs)
            if merged == msgs:
                raise TemplateRenderError(f"the model's chat template refused this "
                                          f"conversation: {exc}") from None
            text = self._render(merged, add_generation_prompt)
            self.merges_system = True
            return text

    def _render(self, messages: list[Message], add_generation_prompt: bool) -> str:
        if self._template is None:
            raise TemplateRenderError(self._syntax_error)
        try:
            text = _with_deadline(lambda: self._template.render(
                messages=[m.as_dict() for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self._bos,
                eos_token=self._eos,
            ))
        except _RefusedRole:
            raise
        except (TemplateError, RecursionError, MemoryError, TypeError, ValueError,
                ArithmeticError, LookupError, AttributeError) as exc:
            raise TemplateRenderError(f"the model's chat template failed: "
                                      f"{exc or type(exc).__name__}") from None
        if len(text) > MAX_RENDER_CHARS:
            raise TemplateRenderError("the model's chat template built a prompt too large "
                                      "to use")
        return text

    def tokens(
        self,
        messages: Sequence[Message],
        tokenize: Callable[[str, bool], list[int]],
        *,
        add_generation_prompt: bool = True,
    ) -> list[int]:
        """Prompt tokens: template text parsed for special tokens, contents not."""
        marks = [f"\x00{uuid.uuid4().hex}\x00" for _ in messages]
        # (a template without a system role merges the system mark into the user's turn:
        # the text between the two marks is then the template's own, "\n\n")
        masked = [Message(m.role, mark) for m, mark in zip(messages, marks, strict=True)]
        text = self.render(masked, add_generation_prompt=add_generation_prompt)
        out: list[int] = []
        for mark, msg in zip(marks, messages, strict=True):
            head, sep, text = text.partition(mark)
            if not sep:  # the template dropped this message (e.g. no system role)
                text = head
                continue
            if head:
                out += tokenize(head, True)
            if msg.content:
                out += tokenize(msg.content, False)
        if text:
            out += tokenize(text, True)
        return out


def merge_system(messages: list[Message]) -> list[Message]:
    """The system prompt at the head of the first user turn, for templates that have no
    system role. Unchanged when there is no system turn to merge."""
    if not messages or messages[0].role != "system":
        return messages
    system, rest = messages[0], messages[1:]
    if rest and rest[0].role == "user":
        head = Message("user", f"{system.content}\n\n{rest[0].content}")
        return [head, *rest[1:]]
    return [Message("user", system.content), *rest]
