"""llama.cpp's KV cache and its mirror: the one owner of both.

Invariant: between steps every sequence (the backend's `n_every`) holds exactly
`tokens`, at positions 0..n-1; `behind` follows them, kept but not yet in the cache
(the next verification batch evaluates it first). A new turn evaluates only the tokens
after the longest common prefix; a verification step (engine.decode.verify) gives each
of the tree's branches a sequence, which already holds the conversation, and hands
back every sequence holding the kept branch. (Copying the conversation into each
branch's sequence at each step cost context x branches: 12 ms a step for a 3000-token
chat and a 30-leaf tree, more than a GPU's verification.)
"""

from __future__ import annotations

from collections.abc import Callable

from ..draft.lookup import common_prefix
from ..draft.tree import DraftTree
from ..errors import PrefillCancelled
from ..llama.backend import LlamaBackend
from ..llama.sampling import Sampler
from .verify import Verified, verify_tree


class KvCache:
    def __init__(self, backend: LlamaBackend):
        self._backend = backend
        self.tokens: list[int] = []
        self.behind: list[int] = []

    def __len__(self) -> int:
        return len(self.tokens) + len(self.behind)

    @property
    def room(self) -> int:
        """Positions left in the context."""
        return self._backend.n_ctx - len(self)

    def bring_to(self, prompt: list[int],
                 progress: Callable[[int, int], None] | None = None) -> int:
        """Hold `prompt`, evaluating only what is new; returns that count. The logits of
        the prompt's last token are the backend's last output. progress(done, total) is
        called between chunks of a long evaluation and may raise PrefillCancelled: the
        chunks already evaluated stay (a retry reuses them). A failed or interrupted
        evaluation leaves the cache empty rather than unknown."""
        self.behind = []  # never evaluated: the prompt's evaluation covers it
        reuse = common_prefix(self.tokens, prompt)
        if reuse == len(prompt):
            reuse -= 1  # the last token must be evaluated to get its logits
        todo = len(prompt) - reuse
        done = 0

        def after_chunk(n: int) -> None:
            nonlocal done
            done = n
            if progress is not None:
                progress(n, todo)
        try:
            self._backend.kv_remove(-1, reuse, -1)
            self.tokens = self.tokens[:reuse]
            self._backend.prefill(prompt[reuse:], reuse, after_chunk)
        except PrefillCancelled:
            self.tokens = list(prompt[: reuse + done])
            raise
        except BaseException:
            self.clear()
            raise
        self.tokens = list(prompt)
        return todo

    def verify(self, tree: DraftTree, sampler: Sampler, max_emit: int,
               logit_gaps: list[float] | None, tie_gap: float,
               row_s: float | None = None, steady_rows: int = 0) -> Verified:
        """Verify a tree rooted at the newest chosen token (not yet in the cache) and keep
        the root and the accepted branch (row_s, steady_rows:
        engine.decode.verify.verify_tree). A failed decode leaves the cache empty."""
        try:
            v = verify_tree(self._backend, tree, len(self.tokens), sampler, max_emit,
                            logit_gaps, tie_gap, self.behind, row_s, steady_rows)
        except BaseException:
            self.clear()
            raise
        self.tokens += self.behind
        kept = [int(tree.tokens[0]), *v.emitted[: v.kept - 1]] if v.kept else []
        self.tokens += kept[: len(kept) - len(v.behind)]
        self.behind = v.behind
        return v

    def clear(self) -> None:
        self._backend.kv_clear()
        self.tokens = []
        self.behind = []
