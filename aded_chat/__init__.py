"""aded-chat: a terminal chat app for local GGUF models with ADED speculative decoding."""

__version__ = "0.1.0"
