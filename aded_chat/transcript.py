"""A conversation as Markdown, for export and `aded-chat history --show`: the messages,
each answer's figures and what produced it (model, settings, seed)."""

from __future__ import annotations

from aded_chat.stats_text import provenance_text, summary_text
from aded_chat.store import Conversation, StoredMessage


def markdown(conv: Conversation, messages: list[StoredMessage]) -> str:
    lines = [f"# {conv.title}", ""]
    if conv.system_prompt:
        lines += [f"_System: {conv.system_prompt}_", ""]
    for m in messages:
        who = "You" if m.role == "user" else "Assistant"
        lines += [f"## {who}", "", m.content, ""]
        if m.role == "assistant" and m.stats:
            lines += [f"<sub>{summary_text(m.stats)}</sub>", ""]
        if m.role == "assistant" and m.provenance:
            lines += [f"<sub>{provenance_text(m.provenance)}</sub>", ""]
    return "\n".join(lines)
