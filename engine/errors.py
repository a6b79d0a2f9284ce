"""Errors the engine raises for conditions a user can cause and fix.

The command line and the UI turn each into one clear line; anything else is a bug.
"""


class EngineError(Exception):
    """Base class: the message is meant for the person at the keyboard."""


class ModelLoadError(EngineError):
    """The model file is missing, unreadable, or not a GGUF llama.cpp can load."""


class ContextOverflowError(EngineError):
    """The prompt cannot fit the context window even after dropping old turns."""


class PrefillCancelled(EngineError):
    """The prompt's evaluation was stopped before the answer began (what was evaluated
    stays in the cache for the next try)."""


class DecodeError(EngineError):
    """llama_decode failed (out of KV cache slots or a backend error)."""
