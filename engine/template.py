"""Chat formatting with the model's own Jinja template, rendered in a sandbox.

Message contents never pass through the special-token parser: the template is rendered
with placeholders, its own text is tokenized with special tokens, and each message's
text is tokenized as plain text and spliced in. A user who pastes "<|im_end|>" gets
those characters, not an end-of-turn token.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def _raise(message: str) -> None:
    raise TemplateError(message)


class ChatTemplate:
    """Renders a conversation into prompt tokens with the GGUF's template."""

    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = ""):
        self.source = source or CHATML_TEMPLATE
        self.is_fallback = source is None
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        self._template = env.from_string(self.source)
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> str:
        return self._template.render(
            messages=[m.as_dict() for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=self._bos,
            eos_token=self._eos,
        )

    def tokens(
        self,
        messages: Sequence[Message],
        tokenize: Callable[[str, bool], list[int]],
        *,
        add_generation_prompt: bool = True,
    ) -> list[int]:
        """Prompt tokens: template text parsed for special tokens, contents not."""
        marks = [f"\x00{uuid.uuid4().hex}\x00" for _ in messages]
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
