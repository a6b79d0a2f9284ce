"""Inference library for aded-chat: llama.cpp backend, plain and ADED speculative decoding.

No UI imports live under this package; the app in aded_chat/ is built on top of it.
"""
