"""The llama.cpp wrapper: loading a GGUF, batches, the KV cache, sampling, templates."""
