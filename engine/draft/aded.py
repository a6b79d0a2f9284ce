"""ADED: the tri-gram drafter, the MCTS tree and the cost-aware budget, wired into the
Speculator interface the decode loop uses.

The prior (corpus tri-grams tokenized with the loaded model's tokenizer) and the
measured verification costs are cached under a cache dir keyed by the model file's
identity, so a second start neither re-tokenizes the corpus nor re-measures.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba as nb
import numpy as np

from ..llama.backend import LlamaBackend
from ..llama.models import file_identity
from . import memory
from .acceptance import AcceptanceModel, observe_tree
from .archive import AnswerArchive
from .bound import BoundKernel
from .cost import MAX_TREE, STEP_TOKENS_MAX, CostModel, load_or_measure
from .lookup import TokenStream
from .mcts import (
    DRAFT_MARGIN,
    LONG_COPY,
    Conversation,
    Search,
    SearchOut,
    Unigrams,
    batch_layout,
    mcts_draft,
)
from .tree import DraftTree
from .trigram import TrigramModel, prior_rows
from .trigram import learn as learn_trigrams

PRIOR_VERSION = 2
UNIGRAM_TOP = 8
# A corpus prior row (normalised to 1) weighs as much as this many online observations.
# At 0.6 one token of an earlier, unrelated answer outvoted the corpus for its context,
# and as a chat went on its drafts got worse: replayed on the bench's answers with
# learning carried from prompt to prompt, as the bench and the app do, 2.88 tokens a step
# on the flat curve against 3.09 from the prior alone; at 4.0, 3.07 (held-out prompts
# 2.45 -> 2.52; the CPU curve 1.09x -> 1.11x modelled).
PRIOR_MASS = 4.0
STRONG_ROW = 1.5  # a tri-gram row seen about twice recently counts as well supported
# Trust: realised / predicted accepted tokens of recent drafts. A tree is chosen because
# its estimate is high, so estimates of chosen trees run optimistic, more so in some
# conversations than in others. Each step keeps TRUST_MEMORY of the sums, which start
# from (and, while nothing is drafted, drift back to) TRUST_PRIOR tokens of each.
TRUST_MEMORY = 0.9  # about the last ten drafts
TRUST_PRIOR = 2.0
TRUST_MAX = 1.0  # realised tokens may beat the estimate; the search never counts on it
# A long copy (a chain drafted alone past the search's depth, engine.draft.mcts) keeps a
# trust of its own, updated only by its own drafts: where copies run long (a summary
# quoting its source) they keep being drafted; where a match leads into a line that is
# rewritten (a table being reformatted) a few misses stop them, and the tree search,
# with the ordinary trust, drafts as before.
# Search effort (_search_effort): where verification is flat, MAX_SIMS (the paper runs
# 150, but replayed on the bench's answers 64 drafted as many tokens a step, 3.09 either
# way, and took 0.13 ms instead of 0.20 with caches cold after a decode; 300 drafted no
# more); on a CPU, where only a couple of nodes can pay, 32 find them in ~0.1 ms.
MAX_SIMS = 64
MIN_SIMS = 32
SIMS_PER_NODE = 8


def _corpus_identity(files: list[Path]) -> str:
    h = hashlib.sha256(str(PRIOR_VERSION).encode())
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def build_prior(backend: LlamaBackend, files: list[Path], k: int):
    chunks = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        for part in text.split("\n\n\n"):  # documents are separated by two blank lines
            if part.strip():
                chunks.append(np.asarray(backend.tokenize(part.strip() + "\n"), np.int32))
    tokens = np.concatenate(chunks) if chunks else np.zeros(3, np.int32)
    return prior_rows(tokens, backend.n_vocab, k), int(len(tokens))


def load_prior(backend: LlamaBackend, files: list[Path], cache: Path | None, k: int):
    """The corpus prior rows, from the cache when it matches this model and corpus."""
    path = None
    if cache is not None:
        model_id = file_identity(Path(backend.info.model_path))
        path = cache / f"prior-{model_id}-{_corpus_identity(files)}-k{k}.npz"
        try:
            with np.load(path) as z:
                return (z["keys"], z["toks"], z["wts"], z["uni"]), int(z["n_tokens"])
        except (OSError, KeyError, ValueError):
            pass
    (keys, toks, wts, uni), n_tokens = build_prior(backend, files, k)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=keys, toks=toks, wts=wts, uni=uni, n_tokens=n_tokens)
            os.replace(tmp, path)
        except OSError:
            pass
    return (keys, toks, wts, uni), n_tokens


class AdedSpeculator:
    """Drafts a token tree per step and learns from every verified token."""

    def __init__(self, vocab: int, cost: CostModel, *, max_mb: float = 64.0,
                 n_sims: int = MAX_SIMS, max_depth: int = STEP_TOKENS_MAX - 1, c1: float = 1.5,
                 c2: float = 8.0,
                 max_nodes: int = MAX_TREE - 1, max_leaves: int = MAX_TREE - 1):
        self.model = TrigramModel(vocab, max_mb=max_mb)
        self.cost = cost
        self.accept = AcceptanceModel()
        self.n_sims = n_sims
        self.max_depth = max_depth
        self.c1, self.c2 = c1, c2
        self.max_nodes = max_nodes
        self.max_leaves = max_leaves  # the KV sequences the verifier has, one per leaf
        self.learned = TokenStream()  # the tokens the model has learned from, in order
        self.archive = AnswerArchive()  # earlier answers, to copy from (engine.draft.archive)
        # tokens no copy is drafted past (the backend's turn_ends; none for a bare drafter)
        self.turn_ends = np.zeros(vocab, np.bool_)
        self._prompt_len = 0  # where this answer starts in self.learned
        self._step = 0
        self._n_sims = self._search_effort()
        cap = MAX_TREE + 1
        i32 = np.int32
        self._out = SearchOut(np.zeros(cap, i32), np.zeros(cap, i32), np.zeros(cap, i32),
                              np.zeros(cap, np.float64), np.zeros(cap, i32),
                              np.zeros(cap, i32), np.zeros(max(max_depth, LONG_COPY), i32))
        self._unigrams = Unigrams(np.zeros(UNIGRAM_TOP, i32), np.zeros(UNIGRAM_TOP))
        self._root = DraftTree.root_only(0)  # propose's answer when nothing is worth drafting
        self._searched = 0  # nodes of the last search, in self._out, awaiting its outcome
        self._expected = 0.0  # the last draft's expected accepted tokens (before trust)
        self._searched_tree: DraftTree | None = None  # ... and that draft
        self._long = False  # the last draft was a long copy
        self._predicted = self._realised = TRUST_PRIOR
        self._copy_predicted = self._copy_realised = TRUST_PRIOR
        # the step's kernels, called with this drafter's own arrays (engine.draft.bound)
        self._mcts_draft = BoundKernel(mcts_draft)
        self._batch_layout = BoundKernel(batch_layout)
        self._absorb = BoundKernel(absorb)

    @classmethod
    def for_backend(cls, backend: LlamaBackend, corpus: list[Path], cache: Path | None,
                    cost: CostModel | None = None, learned: Path | None = None,
                    **kw) -> AdedSpeculator:
        """The drafter for this model: cached or measured costs, the corpus prior (or,
        from `learned`, what an earlier run learned on top of it), and Numba's compiled
        code loaded. Uses the backend's tokenizer, never its context,
        when `cost` is given, so it can run beside a generation."""
        if cost is None:
            cost = load_or_measure(backend, cache)
        kw.setdefault("max_leaves", backend.n_seq_max)
        spec = cls(backend.n_vocab, cost, **kw)
        spec.turn_ends = backend.turn_ends
        (keys, toks, wts, uni), _ = load_prior(backend, corpus, cache, spec.model.k)
        # The corpus says what text looks like; the conversation says what this text is:
        # a prior row weighs PRIOR_MASS tokens seen now, and fades as new ones are learned.
        spec.model.load_rows(keys, toks, wts, uni, mass=PRIOR_MASS * spec.model.inc)
        spec._refresh_unigram()
        spec.warm_up()
        if learned is not None:
            spec.load_learned(learned)
        return spec

    def warm_up(self) -> None:
        """Run the drafter once at load, so Numba compiles (or loads its cache) here
        rather than in the middle of the first answer. Learns nothing."""
        real = self.model, self.accept, self.cost, self.archive
        self.model = TrigramModel(real[0].vocab, max_mb=0.01, k=real[0].k)  # same types
        self.archive = AnswerArchive(capacity=64)
        self.accept, self.cost = AcceptanceModel(), CostModel(real[2].cost.copy(),
                                                              frozen=True,
                                                              switch=real[2].switch)
        try:
            self.begin([0, 1, 2, 0, 1])
            tree = self.propose([0, 1], 8)
            self.learn([0, 1, 2], 1, tree, 1, 0.0)
            # a draft's batch layout: on a CPU's curve the warm-up drafts nothing, and
            # the first real draft loaded this kernel (5 ms of host time in that step)
            self._batch_layout(np.array([-1, 0], np.int32), self.max_leaves)
        finally:
            self.model, self.accept, self.cost, self.archive = real
            self.learned = TokenStream()
            self._prompt_len = 0
            self._searched = 0
            self._predicted = self._realised = TRUST_PRIOR
            self._copy_predicted = self._copy_realised = TRUST_PRIOR
            self._refresh_unigram()

    def archived(self) -> np.ndarray:
        """The archive's tokens with the answer being written (or the last one) in it, as
        the next request would find them: what a saved drafter keeps."""
        pending = self.learned.tokens[self._prompt_len:]
        if not len(pending):
            return self.archive.tokens.copy()
        with_pending = AnswerArchive(capacity=len(self.archive.state.tokens))
        with_pending.set(self.archive.tokens)
        with_pending.add(pending)
        return with_pending.tokens.copy()

    def save_learned(self, path: Path) -> None:
        """Keep what this drafter learned in a file (engine.draft.memory)."""
        memory.save_learned(self, path)

    def load_learned(self, path: Path) -> bool:
        """Start from what a saved drafter learned; False (nothing changed) when the file
        is missing, damaged or another model's."""
        if not memory.load_learned(self, path):
            return False
        self._refresh_unigram()
        return True

    def trust_state(self) -> tuple[float, float]:
        """(predicted, realised) accepted tokens of recent drafts, decayed."""
        return self._predicted, self._realised

    def set_trust_state(self, predicted: float, realised: float) -> None:
        self._predicted, self._realised = max(predicted, 1e-6), max(realised, 0.0)

    @property
    def trust(self) -> float:
        return min(TRUST_MAX, self._realised / self._predicted)

    @property
    def copy_trust(self) -> float:
        return min(TRUST_MAX, self._copy_realised / self._copy_predicted)

    @property
    def table_mb(self) -> float:
        return self.model.size_mb

    def _refresh_unigram(self) -> None:
        uni = self.model.tables.uni
        top = np.argpartition(-uni, UNIGRAM_TOP)[:UNIGRAM_TOP]
        top = top[np.argsort(-uni[top])]
        total = float(uni.sum()) or 1.0
        self._unigrams.tok[:] = top
        self._unigrams.p[:] = uni[top] / total

    def snapshot(self) -> tuple:
        """Everything learned so far (the benchmark replays a prompt from one state)."""
        return (self.model.snapshot(), self.accept.snapshot(), self.learned.tokens.copy(),
                self._prompt_len, self.archive.snapshot(), self._predicted, self._realised,
                self._copy_predicted, self._copy_realised)

    def restore(self, snap: tuple) -> None:
        (model, accept, learned, self._prompt_len, archive, self._predicted, self._realised,
         self._copy_predicted, self._copy_realised) = snap
        self.model.restore(model)
        self.accept.restore(accept)
        self.learned.set(learned)
        self.archive.restore(archive)
        self._refresh_unigram()

    # -- Speculator interface -----------------------------------------------------------

    def begin(self, prompt: list[int]) -> None:
        """Learn the prompt's tri-grams, skipping what earlier turns already taught, and
        keep the last answer in the archive (a regenerated answer leaves the
        conversation, a new conversation starts without it)."""
        toks = np.asarray(prompt, np.int32)
        self.archive.add(self.learned.tokens[self._prompt_len:])
        same = self.learned.common_prefix(toks)
        self.model.learn(toks, start=max(2, same))
        self.learned.set(toks)
        self._prompt_len = len(toks)
        self._refresh_unigram()
        self._n_sims = self._search_effort()

    def _search_effort(self) -> int:
        """Simulations per step, from what verification can afford: the batch sizes that
        cost less than two single tokens, SIMS_PER_NODE simulations each (a node needs a
        few visits before its rank means anything), at least MIN_SIMS. A CPU where two
        tokens cost 1.7x one gets MIN_SIMS; a flat GPU curve MAX_SIMS. The cost
        table moves slowly, so this is refreshed once per answer, not per step.
        A steady batch's tree gets one simulation a row: replayed on the embedded
        model's answers, trees of 4 to 16 rows kept as many tokens a step or more than
        with 8 a row (4 rows: 2.03 against 2.02; 8: 2.53 against 2.47), in less host
        time (BENCHMARKS.md, session 22)."""
        if self.cost.steady_rows:
            return self.cost.steady_rows
        affordable = int(np.searchsorted(self.cost.cost[1:], 2.0 * self.cost.cost[1]))
        return int(min(self.n_sims, max(MIN_SIMS, SIMS_PER_NODE * affordable)))

    def propose(self, history: list[int], room: int) -> DraftTree:
        a = history[-2] if len(history) >= 2 else -1
        m = self.model
        self._step += 1
        self.learned.sync(history)  # the root: sampled after the last learn
        # room past the conversation for the search to append a branch to it (scratch)
        self.learned.reserve(len(self.learned) + self.max_depth)
        search = Search(a, history[-1], self._n_sims, self.max_depth, self.c1, self.c2,
                        STRONG_ROW * m.inc, min(self.max_nodes, room - 1), self.max_leaves,
                        self.trust, self.copy_trust, self._step)
        conv = Conversation(self.learned.buf, len(self.learned), self._prompt_len,
                            self.turn_ends)
        keep, n, self._long, self._expected = self._mcts_draft(
            m.tables, self._unigrams, self.accept.table, self.cost.cost, search, conv,
            self.archive.state, self._out)
        self._searched = n
        if keep == 1 or not self._pays_its_switch(keep):  # no draft: most steps on a CPU
            self._root.tokens[0] = history[-1]
            return self._root
        o = self._out
        parents = o.parent[:keep].copy()
        self._searched_tree = DraftTree(o.tok[:keep].copy(), parents, o.depth[:keep].copy(),
                                        o.pathp[:keep].astype(np.float32),
                                        layout=self._batch_layout(parents, self.max_leaves))
        return self._searched_tree

    def _pays_its_switch(self, keep: int) -> bool:
        """Whether the searched draft of `keep` rows still promises more speed than plain
        decoding once its batch is charged the one-token step after it (CostModel.switch).
        The search sizes trees on the table alone: a fixed cost added to every batch size
        would make every tree it keeps bigger, and a tree's tail is where its estimates
        run optimistic (BENCHMARKS.md, session 20)."""
        cost = self.cost
        if cost.switch <= 0.0:
            return True
        trust = self.copy_trust if self._long else self.trust
        return (1.0 + trust * self._expected) * cost.cost[1] > (1.0 + DRAFT_MARGIN) * (
            cost.cost[keep] + cost.switch)

    def learn(self, history: list[int], n_new: int, tree: DraftTree, kept: int,
              decode_s: float, batch: int | None = None) -> None:
        """Learn the newly verified tokens, what they say about every searched node (drafted
        or not), and the cost of the verified batch (`batch` tokens: the tree and any
        kept tokens the verifier carried into it; default the tree)."""
        start = len(history) - n_new
        seq = np.asarray(history[max(0, start - 2):], np.int32)
        if len(self.learned) != start:  # a learn without its propose (tests, warm-up)
            self.learned.set(np.asarray(history[:start], np.int32))
        self.learned.reserve(start + n_new)
        m = self.model
        inc, refused = self._absorb(m.tables, m.inc, m.growth, seq, n_new, self.learned.buf,
                                    start, self._out, self._searched, self.accept.calib)
        self.learned.n = start + n_new
        m.settle(inc, refused, seq)
        self._searched = 0
        self.cost.observe(batch or len(tree), decode_s)
        drafted = len(tree) > 1
        if drafted:  # this step's draft, or (tests) a tree made elsewhere
            expected = (self._expected if self._searched_tree is tree
                        else float(tree.probs[1:].sum()))
        if n_new:  # (a step that stopped at a near-tie before its root says nothing)
            self._predicted = TRUST_MEMORY * self._predicted + (
                expected if drafted else (1 - TRUST_MEMORY) * TRUST_PRIOR)
            self._realised = TRUST_MEMORY * self._realised + (
                kept - 1 if drafted else (1 - TRUST_MEMORY) * TRUST_PRIOR)
            if self._long and drafted:
                self._copy_predicted = TRUST_MEMORY * self._copy_predicted + expected
                self._copy_realised = TRUST_MEMORY * self._copy_realised + kept - 1
        self._long = False
        self._searched_tree = None


@nb.njit(cache=True)
def absorb(tables, inc, growth, seq, n_new, stream, n_stream, searched, n_searched, calib):
    """One step's learning in one call (each call from Python into Numba costs more than
    the work, with caches cold after llama_decode): the tri-grams of seq that end at its
    n_new verified tokens, those tokens appended to stream[n_stream:], and what they say
    about the first n_searched nodes of the last search (a SearchOut). Returns the
    tri-gram model's (inc, refused) for TrigramModel.settle."""
    inc, refused = learn_trigrams(tables, seq, 2, inc, growth)
    new = seq[seq.shape[0] - n_new:]
    stream[n_stream:n_stream + n_new] = new
    if n_searched > 1:
        k = n_searched
        observe_tree(searched.parent[:k], searched.depth[:k], searched.tok[:k],
                     searched.level[:k], searched.bucket[:k], new, calib)
    return inc, refused
