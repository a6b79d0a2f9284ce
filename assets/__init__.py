"""Data files that ship with the app: the tri-gram corpus prior and the benchmark prompts."""
