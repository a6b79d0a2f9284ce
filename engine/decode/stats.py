"""Statistics as plain data; formatting belongs to whoever shows them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

OWN_PLAIN_MIN = 8  # one-token steps of an answer that make its own plain rate


@dataclass
class StepStats:
    """One verification step: the tree it drafted and what the model kept."""

    emitted: int  # tokens this step added to the answer (accepted + the model's own)
    drafted: int  # draft nodes in the tree (the root excluded)
    accepted: int  # draft tokens the model agreed with
    decode_s: float  # time inside llama_decode
    host_s: float  # everything else in the step: drafting, learning, sampling, KV edits
    host_cpu_s: float = 0.0  # the same, in this thread's CPU time: blind to preemption
    redecoded: int = 0  # kept tokens evaluated again to keep the cache in position order
    carried: int = 0  # ... and those evaluated at the head of this step's batch instead
    near_tie: bool = False  # stopped at a near-tie: the next step decodes one token alone


@dataclass
class AnswerStats:
    """One answer, from the prompt to the last token; stored with the message."""

    speculative: bool = False
    fallback: str | None = None  # why speculation was off for this answer, if it was
    prompt_tokens: int = 0
    prompt_evaluated: int = 0  # the part not reused from the KV cache
    prompt_s: float = 0.0
    tokens: int = 0
    decode_s: float = 0.0  # wall time of the decode phase (first token to last)
    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    carried: int = 0  # kept tokens evaluated again at the head of the next step's batch
    near_ties: int = 0  # steps the greedy near-tie guard stopped (engine.decode.exact)
    llama_decode_s: float = 0.0
    host_s: float = 0.0
    host_s_per_step: list[float] = field(default_factory=list, repr=False)
    host_cpu_s_per_step: list[float] = field(default_factory=list, repr=False)
    # each step's verification batches: the tree (root included, with any kept tokens
    # carried from the step before) and a re-evaluation of kept tokens in a decode of
    # its own (0: none), to replay the answer's steps on another machine's cost curve
    batches_per_step: list[tuple[int, int]] = field(default_factory=list, repr=False)
    finish_reason: str = ""
    dropped_turns: int = 0
    n_ctx: int = 0  # the context's size: the answer's prompt and tokens fill part of it
    seed: int | None = None
    trigram_mb: float = 0.0
    plain_tokens_per_s: float | None = None  # the session's recent plain rate (fallback)
    tree_nodes_last: int = 0
    # llama_decode seconds of this answer's own one-token steps (ADED choosing not to
    # draft): a plain rate at this answer's thread count and context length
    plain_step_s: list[float] = field(default_factory=list, repr=False)

    def snapshot(self) -> AnswerStats:
        """A copy that later steps do not change (for another thread to read)."""
        return replace(self, host_s_per_step=list(self.host_s_per_step),
                       host_cpu_s_per_step=list(self.host_cpu_s_per_step),
                       batches_per_step=list(self.batches_per_step),
                       plain_step_s=list(self.plain_step_s))

    def add_step(self, step: StepStats) -> None:
        self.steps += 1
        self.tokens += step.emitted
        self.drafted += step.drafted
        self.accepted += step.accepted
        self.carried += step.carried
        self.near_ties += step.near_tie
        self.llama_decode_s += step.decode_s
        self.host_s += step.host_s
        self.host_s_per_step.append(step.host_s)
        self.host_cpu_s_per_step.append(step.host_cpu_s)
        self.batches_per_step.append((step.drafted + 1 + step.carried, step.redecoded))
        self.tree_nodes_last = step.drafted
        if step.drafted == 0 and not step.carried:
            self.plain_step_s.append(step.decode_s)

    @property
    def tokens_per_s(self) -> float:
        # The first token comes from the prompt's logits; the decode phase makes the rest.
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else 0.0

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_evaluated / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def prompt_reused(self) -> int:
        """Prompt tokens found in the KV cache from the turn before: not evaluated again."""
        return self.prompt_tokens - self.prompt_evaluated

    @property
    def context_used(self) -> int:
        """Tokens the context holds after this answer: its prompt and its tokens."""
        return self.prompt_tokens + self.tokens

    @property
    def tokens_per_step(self) -> float:
        return (self.tokens - 1) / self.steps if self.steps else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def median_host_ms(self) -> float:
        """Median wall time per step outside llama_decode."""
        return _median_ms(self.host_s_per_step)

    @property
    def median_host_cpu_ms(self) -> float:
        """The same in CPU time: what the host work costs when the machine is not shared."""
        return _median_ms(self.host_cpu_s_per_step)

    @property
    def plain_rate(self) -> float | None:
        """What plain decoding makes here, like for like: from this answer's own
        one-token steps when it has OWN_PLAIN_MIN of them, else the session's recent
        plain steps (same model and threads), else unknown."""
        if len(self.plain_step_s) >= OWN_PLAIN_MIN:
            return 1.0 / _median(self.plain_step_s)
        return self.plain_tokens_per_s

    @property
    def speedup(self) -> float | None:
        """This answer's rate over plain decoding's; None without a sound plain rate.
        An answer that drafted nothing was plain decoding plus the search that chose not
        to draft: it reads about 1.00x, a little under by what that search cost."""
        plain = self.plain_rate
        if not self.speculative or not plain or not self.tokens_per_s or not self.steps:
            return None
        return self.tokens_per_s / plain

    def as_dict(self) -> dict:
        # the per-step lists (repr=False) stay out: they are for the bench, not storage
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        d.update(
            tokens_per_s=self.tokens_per_s,
            prompt_tokens_per_s=self.prompt_tokens_per_s,
            tokens_per_step=self.tokens_per_step,
            acceptance_rate=self.acceptance_rate,
            median_host_ms=self.median_host_ms,
            median_host_cpu_ms=self.median_host_cpu_ms,
            speedup=self.speedup,
            prompt_reused=self.prompt_reused,
            context_used=self.context_used,
        )
        return d


def projected_speedup(stats: AnswerStats, curve) -> float | None:
    """The speedup this answer's steps would make on a machine whose verification curve
    (a CostModel) costs c(n) seconds for n tokens: tokens per step x c(1) / (mean
    c(batches) + host seconds per step), each batch charged the curve's switch (the
    one-token step after it). A projection from another machine's curve, never a
    measurement; host time is this thread's CPU time, blind to this machine's load."""
    if not stats.steps or not stats.batches_per_step:
        return None
    cost, switch = curve.cost, curve.switch
    verify = sum(float(cost[t]) + (float(cost[r]) if r else 0.0)
                 + (switch if t > 1 or r else 0.0)
                 for t, r in stats.batches_per_step) / len(stats.batches_per_step)
    host = sum(stats.host_cpu_s_per_step) / len(stats.host_cpu_s_per_step)
    return stats.tokens_per_step * float(cost[1]) / (verify + host)


def _median(seconds: list[float]) -> float:
    xs = sorted(seconds)
    return xs[len(xs) // 2] if xs else 0.0


def _median_ms(seconds: list[float]) -> float:
    return 1000.0 * _median(seconds)
