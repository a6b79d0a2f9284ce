"""Draft trees by Monte-Carlo tree search over the tri-gram model (ADED, section 4).

A search node is a drafted token with its two-token context. Selection follows the
pUCT rule: Q + (c1 + ln((N + c2 + 1) / c2)) * prior * sqrt(N) / (1 + n). Its prior is
the calibrated chance the model accepts that token after its parent; a simulation's
reward is the expected number of accepted tokens along the path it reached (the sum of
the path's prefix acceptance probabilities, continued by a sampled rollout). Visit
counts rank the nodes; the cost-aware budget then keeps the prefix of that ranking that
maximises expected tokens per second, which is always a tree (a parent has at least as
many visits as its child and comes first).
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

from .archive import archive_chain
from .lookup import copy_chain, match_bucket
from .trigram import find_row

# 0: a well-supported tri-gram row, 1: a tri-gram row seen about once, 2: the bigram
# back-off, 3: the unigram back-off, 4: a copy chain (engine.draft.lookup) from the prompt,
# 5: a copy chain from the answer being written (the model repeating itself), 6: a copy
# chain that carries a renaming (either source), all three bucketed by how many tokens
# of context the match covers and whether the tri-gram agrees. Calibration is kept per
# level: a context seen once says "100%" far more often than it is right, pasted text is
# copied more faithfully than a phrase recurs, and a renaming is not always carried
# through (a copy renamed in one function and not in the next).
N_LEVELS = 8
COPY_LEVEL = 4
OWN_COPY_LEVEL = 5
RENAMED_COPY_LEVEL = 6
ARCHIVE_COPY_LEVEL = 7  # a copy of an earlier answer (engine.draft.archive)
N_BUCKETS = 10  # calibration buckets over the drafter's conditional probability
MAX_CHILDREN = 8
MIN_PRIOR = 0.01
# A tree node's candidates mix its tri-gram row with the bigram back-off row, the
# tri-gram weighing mass / (mass + MIX * strong) (_candidates). Replayed on the bench's
# answers, the model's next token was in the tri-gram row's candidates 22% of chat steps
# and in the two rows' 47%; mixed, flat-curve drafts rose from 2.87 to 2.95 tokens a
# step (held-out prompts 2.36 to 2.45). Rollouts keep the plain back-off: they are most
# of the search's lookups, and their samples only estimate a value.
MIX = 1.0
# A rollout stops once its path is this unlikely to be accepted: what it could still add
# to the reward is noise, and each step is a hash lookup that usually misses the cache.
MIN_ROLLOUT_P = 0.05
# A draft must promise this much more speed than plain decoding. Its estimate is a guess
# that errs both ways, but the tree kept is the one whose guess was highest, so near
# break-even the errors that remain are the optimistic ones; where a drafted token saves
# only a third of a token's time (one llama.cpp thread on a 2-vCPU machine), drafting
# at the margin lost 3% (BENCHMARKS.md).
DRAFT_MARGIN = 0.1
# How deep a copy chain may be drafted on its own, past the tree search's depth: a long
# match in pasted text is copied for whole lines, and the tree search (a few dozen
# simulations on a CPU, search.max_depth deep) never reaches that far. llama.cpp's ngram modes
# draft up to 64; the cost curve decides how much of this is worth verifying.
LONG_COPY = 48
# ... once the newest tokens match that many earlier ones: verbatim copying (a quote, a
# file being rewritten) rather than a phrase that recurs, where a miss past the search's
# depth costs many tokens' verification for nothing. Shorter matches stop at max_depth.
LONG_COPY_MATCH = 12
# A tree whose likeliest branch reaches the search's depth is often inside a copy that the
# tree's two-token contexts cannot see past: that branch goes on with what followed the
# longest earlier match of the conversation and the branch (up to LONG_COPY tokens), in
# place of the tree's least visited nodes where that promises more speed (_pv_extension),
# until its path probability falls below EXT_MIN_P. Replayed on the bench's answers on
# the flat curve: 3.07 -> 3.25 tokens a step (editing code 3.62 -> 3.87, summarizing and
# reformatting 3.59 -> 3.99); on this CPU's curve the drafts are unchanged (1.11x
# modelled). A cut-off of 0.05, the rollouts', gave 3.20; 0.001 gave 3.23.
EXT_MIN_P = 0.01


class Unigrams(NamedTuple):
    """The unigram back-off's likeliest tokens and their probabilities (refreshed by the
    drafter once per prompt: it moves slowly)."""

    tok: np.ndarray  # int32 [UNIGRAM_TOP]
    p: np.ndarray  # float64 [UNIGRAM_TOP]


class Search(NamedTuple):
    """One step's search: where it starts, how hard it looks, what it may keep."""

    ctx_a: int  # the token before the root (-1: none)
    root: int  # the newest chosen token
    n_sims: int
    max_depth: int
    c1: float  # pUCT exploration constants (ADED's defaults: 1.5 and 8)
    c2: float
    strong: float  # a tri-gram row with this much recency-weighted mass is well supported
    max_nodes: int  # drafted nodes the batch has room for
    max_leaves: int  # the verifier gives each leaf a KV sequence
    trust: float  # the share of its predicted accepted tokens the drafter has realised
    copy_trust: float  # the same for its long copies alone
    seed: int


class Conversation(NamedTuple):
    """The tokens so far (prompt, then answer, the root last): where copies come from."""

    tokens: np.ndarray  # int32, the first n valid
    n: int
    prompt_len: int
    turn_ends: np.ndarray  # bool [vocab]: end-of-turn and control tokens


class SearchOut(NamedTuple):
    """Where the search writes its nodes, best first (node 0 the root), and its scratch."""

    tok: np.ndarray  # int32 [MAX_TREE + 1]
    parent: np.ndarray  # int32
    depth: np.ndarray  # int32
    pathp: np.ndarray  # float64: the drafter's chance the path to the node is accepted
    level: np.ndarray  # int32: the node's back-off level (calibration row)
    bucket: np.ndarray  # int32: its probability bucket (calibration column)
    chain: np.ndarray  # int32 [LONG_COPY]: scratch for the copy chain


@nb.njit(cache=True, inline="always")
def _add_row(t, r, scale, out_t, out_p, n, merge):
    """Append row r's tokens to out_t/out_p[:n] with weight x scale, adding to any of the
    first `merge` entries that already holds the token; returns the new count."""
    for j in range(t.toks.shape[1]):
        c = t.toks[r, j]
        if c < 0:
            continue
        i = 0
        while i < merge and out_t[i] != c:
            i += 1
        if i < merge:
            out_p[i] += t.wts[r, j] * scale
        else:
            out_t[n] = c
            out_p[n] = t.wts[r, j] * scale
            n += 1
    return n


@nb.njit(cache=True)
def _candidates(t, uni, strong, a, b, out_t, out_p, mix):
    """Next-token candidates of context (a, b) with back-off; returns (count, level).
    A tri-gram row is well supported when its recency-weighted mass reaches `strong`.
    With `mix`, a tri-gram row is interpolated with its bigram back-off row, the
    tri-gram weighing mass / (mass + mix * strong): a row seen a few times holds a few
    of the tokens that follow its context, and the bigram the rest (out_t and out_p
    need room for two rows)."""
    totals = t.totals
    r = find_row(t.keys, t.bits, (np.int64(a) + 1) * t.vocab + b) if a >= 0 else -1
    level = 0
    n = 0
    if r >= 0 and totals[r] > 0:
        if totals[r] < strong:
            level = 1
        lam = 1.0
        r2 = find_row(t.keys, t.bits, np.int64(b)) if mix > 0 else -1
        if r2 >= 0 and totals[r2] > 0:
            lam = totals[r] / (totals[r] + mix * strong)
        n = _add_row(t, r, lam / totals[r], out_t, out_p, 0, 0)
        if lam < 1.0:
            n = _add_row(t, r2, (1.0 - lam) / totals[r2], out_t, out_p, n, n)
    else:
        level = 2
        r = find_row(t.keys, t.bits, np.int64(b))
        if r >= 0 and totals[r] > 0:
            n = _add_row(t, r, 1.0 / totals[r], out_t, out_p, 0, 0)
        else:
            level = 3
            for j in range(uni.tok.shape[0]):
                out_t[n] = uni.tok[j]
                out_p[n] = uni.p[j]
                n += 1
    # keep the strongest MAX_CHILDREN, highest first (insertion sort: n <= 2K)
    for i in range(1, n):
        c, p = out_t[i], out_p[i]
        j = i - 1
        while j >= 0 and out_p[j] < p:
            out_t[j + 1], out_p[j + 1] = out_t[j], out_p[j]
            j -= 1
        out_t[j + 1], out_p[j + 1] = c, p
    return min(n, MAX_CHILDREN), level


@nb.njit(cache=True, inline="always")
def _bucket(p):
    return min(N_BUCKETS - 1, int(p * N_BUCKETS))


@nb.njit(cache=True)
def worth_searching(q_best, cost, limit, trust):
    """Whether any tree of up to `limit` nodes could beat plain decoding when the root's
    likeliest child is accepted with probability q_best: every node's path probability is
    at most its depth-1 ancestor's, so k nodes add at most k * q_best expected tokens."""
    for k in range(1, limit + 1):
        if (1.0 + trust * k * q_best) * cost[1] > (1.0 + DRAFT_MARGIN) * cost[k + 1]:
            return True
    return False


@nb.njit(cache=True)
def batch_layout(parent, every):
    """DraftTree.batch_layout for the tree whose parents these are, in one compiled call
    (the NumPy version's dozen calls cost more with caches cold after a decode): one KV
    sequence per leaf, leaves numbered in node order; row i lists the leaves below node
    i in ascending order, then the other leaves, then the sequences past the leaves;
    a node above every leaf (the trunk) is in all `every` sequences."""
    k = parent.shape[0]
    has_child = np.zeros(k, np.bool_)
    for i in range(1, k):
        has_child[parent[i]] = True
    n_leaves = k - np.count_nonzero(has_child)
    member = np.zeros((k, n_leaves), np.bool_)
    leaf = 0
    for i in range(k):
        if not has_child[i]:
            v = i
            while v >= 0:
                member[v, leaf] = True
                v = parent[v]
            leaf += 1
    seq_ids = np.empty((k, every), np.int32)
    n_seq = np.empty(k, np.int32)
    trunk = np.empty(k, np.bool_)
    for i in range(k):
        c = 0
        for j in range(n_leaves):
            if member[i, j]:
                seq_ids[i, c] = j
                c += 1
        trunk[i] = c == n_leaves
        n_seq[i] = every if trunk[i] else c
        for j in range(n_leaves):
            if not member[i, j]:
                seq_ids[i, c] = j
                c += 1
        for j in range(n_leaves, every):
            seq_ids[i, j] = j
    return seq_ids, n_seq, seq_ids[:, 0].copy(), trunk, n_leaves


@nb.njit(cache=True)
def _depth_first(order, k, par, n, out):
    """out[:k] = the first k nodes of `order` (a ranking in which parents come before
    their children) in depth-first order, each node's children in ranking order."""
    last_child = np.full(n, -1, np.int64)
    prev_sib = np.full(n, -1, np.int64)  # the sibling ranked just before
    for i in range(k):
        v = order[i]
        prev_sib[v] = last_child[par[v]]
        last_child[par[v]] = v
    stack = np.empty(k + 1, np.int64)
    top = 0
    v = 0
    for j in range(-1, k):
        if j >= 0:
            top -= 1
            v = stack[top]
            out[j] = v
        c = last_child[v]  # pushed worst first, so the best child comes off first
        while c >= 0:
            stack[top] = c
            top += 1
            c = prev_sib[c]


@nb.njit(cache=True)
def _copy_path(tables, uni, strong, calib, level, a, b, chain, k, match, p, min_p,
               buckets, probs, cand_t, cand_p):
    """Rate the first k tokens of a copy chain that follows context (a, b), where the
    path to it is accepted with chance p: each token's calibration bucket (its match
    length, and whether the tri-gram's likeliest token agrees) to buckets, and the path
    probability through it to probs. Stops after the first token whose path probability
    falls below min_p; returns the tokens rated."""
    for d in range(k):
        m, _ = _candidates(tables, uni, strong, a, b, cand_t, cand_p, 0.0)
        bk = match_bucket(match + d, m > 0 and cand_t[0] == chain[d])
        p *= calib[level, bk]
        buckets[d], probs[d] = bk, p
        if p < min_p:
            return d + 1
        a, b = b, chain[d]
    return k


@nb.njit(cache=True)
def _long_copy(tables, uni, calib, cost, search, chain, chain_len, chain_match, chain_level,
               limit, bucket_out, cand_t, cand_p):
    """The copy chain drafted alone: each token's calibrated chance given its match (as
    the tree search rates a copy), their running products the path probabilities.
    Returns (k, rate): the prefix that maximises expected tokens per second of
    verification, and that rate; writes each token's calibration bucket."""
    if chain_match < LONG_COPY_MATCH:
        limit = min(limit, search.max_depth)
    probs = np.empty(max(0, min(chain_len, limit)), np.float64)
    rated = _copy_path(tables, uni, search.strong, calib, chain_level, search.ctx_a,
                       search.root, chain, probs.shape[0], chain_match, 1.0, MIN_ROLLOUT_P,
                       bucket_out, probs, cand_t, cand_p)
    best_k, best_rate, expect = 0, 0.0, 1.0
    for d in range(rated):
        expect += search.copy_trust * probs[d]
        rate = expect / cost[d + 2]
        if rate > best_rate:
            best_k, best_rate = d + 1, rate
    return best_k, best_rate


@nb.njit(cache=True)
def _write_chain(chain, k, buckets, level, calib, root_tok, out):
    """out = the root and the first k tokens of the copy chain, each the child of the one
    before; returns (k + 1, k + 1, True): the whole of it is the draft, a long copy."""
    out.tok[0], out.parent[0], out.depth[0] = root_tok, -1, 0
    out.pathp[0], out.level[0], out.bucket[0] = 1.0, 0, 0
    p = 1.0
    for d in range(k):
        p *= calib[level, buckets[d]]
        out.tok[d + 1], out.parent[d + 1], out.depth[d + 1] = chain[d], d, d + 1
        out.pathp[d + 1], out.level[d + 1], out.bucket[d + 1] = p, level, buckets[d]
    return k + 1, k + 1, True


@nb.njit(cache=True)
def _principal_variation(order, k, first, nchild, expanded, n):
    """The draft's likeliest branch: from the root, the best-ranked child among the first
    k ranked nodes, down to a leaf. Returns (that leaf, the worst rank on the branch)."""
    rank = np.full(n, n, np.int64)
    for i in range(k):
        rank[order[i]] = i
    v, worst = 0, -1
    while expanded[v]:
        best = -1
        for c in range(first[v], first[v] + nchild[v]):
            if rank[c] < n and (best < 0 or rank[c] < rank[best]):
                best = c
        if best < 0:
            break
        v = best
        worst = max(worst, rank[v])
    return v, worst


@nb.njit(cache=True, inline="always")
def _within_turn(chain, k, turn_ends):
    """How much of a copy's first k tokens comes before the end of a turn or a control
    token: a copy of the prompt or of an earlier turn runs on into the chat template
    (`<|im_end|>`, `user`, the next request), which an answer never writes; the answer
    ends there, or goes on otherwise."""
    for i in range(k):
        if turn_ends[chain[i]]:
            return i
    return k


@nb.njit(cache=True, inline="always")
def _copy_level(end, prompt_len, renames):
    """The calibration level of a copy whose match ends at `end`."""
    if renames:
        return RENAMED_COPY_LEVEL
    return OWN_COPY_LEVEL if end >= prompt_len else COPY_LEVEL


@nb.njit(cache=True)
def _pv_extension(tables, uni, calib, search, conv, tok, par, dep, pathp, leaf,
                  ext, ext_p, ext_b, limit, cand_t, cand_p):
    """The copy that follows the conversation and the branch from the root to `leaf`:
    written to ext, with each token's calibration bucket (ext_b) and path probability
    (ext_p, from the leaf's). Returns (its length, its calibration level); 0 when there
    is none or no room."""
    d = dep[leaf]
    n = conv.n
    if d == 0 or n + d > conv.tokens.shape[0]:
        return 0, 0
    v = leaf
    for i in range(d, 0, -1):  # the branch's tokens after the conversation (scratch)
        conv.tokens[n + i - 1] = tok[v]
        v = par[v]
    k, match, end, renames = copy_chain(conv.tokens, n + d, min(ext.shape[0], limit), ext)
    k = _within_turn(ext, k, conv.turn_ends)
    if k == 0:
        return 0, 0
    level = _copy_level(end, conv.prompt_len, renames)
    return _copy_path(tables, uni, search.strong, calib, level, tok[par[leaf]], tok[leaf],
                      ext, k, match, pathp[leaf], EXT_MIN_P, ext_b, ext_p, cand_t,
                      cand_p), level


@nb.njit(cache=True)
def mcts_draft(tables, uni, calib, cost, search, conv, arc, out):
    """Search from the root (search.ctx_a, search.root); write the searched nodes to out
    (node 0 is the root), best first, and return (draft size, nodes written, whether the
    draft is a long copy, its expected accepted tokens): the draft is the first nodes.
    The draft has at most search.max_nodes drafted nodes and search.max_leaves leaves.
    calib[level, bucket] is the calibrated chance of acceptance
    (engine.draft.acceptance); cost[n] the seconds to verify n tokens; search.trust
    scales the expected accepted tokens. When the root's candidates cannot pay for any
    tree, the search stops after expanding the root, whose children are still written
    out for the calibration. The copy chain found in the conversation
    (engine.draft.lookup) is always a candidate on its own path, calibrated apart for
    copies of the prompt, of the answer itself, and copies that carry a renaming; where
    the archive of earlier answers (arc, engine.draft.archive) holds a longer match than
    the conversation, its copy is the chain, calibrated apart again; drafted
    alone, that chain may go
    deeper than the search (up to LONG_COPY, weighed by search.copy_trust), and is the
    draft when it promises more speed than the search's best tree. The tree's likeliest
    branch, where it reaches max_depth, may go on as a copy (_pv_extension). conv.tokens
    needs room for max_depth tokens past conv.n (the search's scratch)."""
    n_sims, max_depth, c1, c2 = search.n_sims, search.max_depth, search.c1, search.c2
    max_nodes, trust, strong = search.max_nodes, search.trust, search.strong
    root_tok, chain = search.root, out.chain
    np.random.seed(search.seed)
    chain_len, chain_match, chain_end, renames = copy_chain(conv.tokens, conv.n,
                                                           chain.shape[0], chain)
    chain_level = _copy_level(chain_end, conv.prompt_len, renames)
    a_len, a_match = archive_chain(arc, conv.tokens, conv.n, chain_match, conv.turn_ends,
                                    chain)
    if a_len > 0:
        chain_len, chain_match, chain_level = a_len, a_match, ARCHIVE_COPY_LEVEL
    chain_len = _within_turn(chain, chain_len, conv.turn_ends)
    M = 1 + n_sims * (MAX_CHILDREN + 1)  # + 1: the copy candidate
    tok = np.empty(M, np.int32)
    par = np.empty(M, np.int32)
    dep = np.empty(M, np.int32)
    prior = np.empty(M, np.float64)
    pathp = np.empty(M, np.float64)
    lev = np.empty(M, np.int32)
    bkt = np.empty(M, np.int32)
    ca = np.empty(M, np.int32)  # the token before this node (its context's first half)
    # Set per node as it is made, not filled whole: M is room for every simulation's
    # expansion, a search makes a fraction of that, and after a llama_decode every
    # cache line a search writes comes from memory.
    visits = np.empty(M, np.float64)
    value = np.empty(M, np.float64)
    first = np.empty(M, np.int32)
    nchild = np.empty(M, np.int32)
    expanded = np.empty(M, np.bool_)
    on_chain = np.empty(M, np.bool_)
    cand_t = np.empty(2 * tables.toks.shape[1] + uni.tok.shape[0], np.int32)
    cand_p = np.empty(2 * tables.toks.shape[1] + uni.tok.shape[0], np.float64)
    path = np.empty(max_depth + 2, np.int32)

    tok[0], par[0], dep[0], prior[0], pathp[0], ca[0] = root_tok, -1, 0, 1.0, 1.0, search.ctx_a
    lev[0], bkt[0] = 0, 0
    on_chain[0] = chain_len > 0
    visits[0], value[0], first[0], nchild[0], expanded[0] = 0.0, 0.0, -1, 0, False
    n = 1
    for _ in range(n_sims):
        # selection
        node = 0
        plen = 0
        path[plen] = 0
        plen += 1
        while expanded[node] and nchild[node] > 0:
            sq = np.sqrt(visits[node] + 1.0)
            explore = c1 + np.log((visits[node] + c2 + 1.0) / c2)
            best, best_s = -1, -1e30
            for c in range(first[node], first[node] + nchild[node]):
                q = value[c] / visits[c] if visits[c] > 0 else 0.0
                s = q + explore * prior[c] * sq / (1.0 + visits[c])
                if s > best_s:
                    best, best_s = c, s
            node = best
            path[plen] = node
            plen += 1
        # expansion
        if not expanded[node] and dep[node] < max_depth:
            expanded[node] = True
            m, level = _candidates(tables, uni, strong, ca[node], tok[node], cand_t, cand_p,
                                   MIX)
            first[node] = n
            d = dep[node]
            copy_tok = chain[d] if on_chain[node] and d < chain_len else -1
            for j in range(m + 1):
                if j < m:
                    if cand_p[j] < MIN_PRIOR or n >= M:
                        continue
                    t, b, lv = cand_t[j], _bucket(cand_p[j]), level
                    if t == copy_tok:
                        lv, b = chain_level, match_bucket(chain_match + d, j == 0)
                        copy_tok = -2  # placed
                elif copy_tok >= 0 and n < M:  # a copy the tri-gram did not rank
                    t, b, lv = copy_tok, match_bucket(chain_match + d, False), chain_level
                else:
                    break
                q = calib[lv, b]
                tok[n], par[n], dep[n] = t, node, d + 1
                prior[n], pathp[n], ca[n] = q, pathp[node] * q, tok[node]
                lev[n], bkt[n] = lv, b
                on_chain[n] = lv == chain_level
                visits[n], value[n], first[n], nchild[n], expanded[n] = 0.0, 0.0, -1, 0, False
                n += 1
            nchild[node] = n - first[node]
            if node == 0:
                q_best = 0.0
                for c in range(first[0], n):
                    q_best = max(q_best, prior[c])
                if not worth_searching(q_best, cost, min(max_nodes, cost.shape[0] - 2),
                                       trust):
                    break
        # evaluation: expected accepted tokens along the path, then a sampled rollout
        reward = 0.0
        for i in range(1, plen):
            reward += pathp[path[i]]
        p_run = pathp[node]
        a_r, b_r = ca[node], tok[node]
        for _d in range(dep[node], max_depth):
            if p_run < MIN_ROLLOUT_P:
                break
            m, level = _candidates(tables, uni, strong, a_r, b_r, cand_t, cand_p, 0.0)
            if m == 0:
                break
            total = 0.0
            for j in range(m):
                total += cand_p[j]
            u = np.random.random() * total
            j = 0
            while j < m - 1 and u > cand_p[j]:
                u -= cand_p[j]
                j += 1
            p_run *= calib[level, _bucket(cand_p[j])]
            reward += p_run
            a_r, b_r = b_r, cand_t[j]
        # backup
        for i in range(plen):
            visits[path[i]] += 1.0
            value[path[i]] += reward

    # rank drafted nodes by visits (parents first on ties), then cut by expected speed
    order = np.argsort(-visits[1:n] * (n + 1) + np.arange(1, n), kind="mergesort") + 1
    limit = min(max_nodes, cost.shape[0] - 2, order.shape[0])
    best_k, best_rate, expect = 0, (1.0 + DRAFT_MARGIN) / cost[1], 1.0
    # leaves of the prefix: a node replaces its parent as a leaf, or adds one when the
    # parent already had a child (the root alone is one leaf). Never fewer as the prefix
    # grows, so the first excess ends it.
    has_child = np.zeros(n, np.bool_)
    leaves = 1
    for k in range(1, limit + 1):
        v = order[k - 1]
        if visits[v] == 0:
            break
        p = par[v]
        if has_child[p]:
            leaves += 1
        has_child[p] = True
        if leaves > search.max_leaves:
            break
        expect += trust * pathp[v]
        rate = expect / cost[k + 1]
        if rate > best_rate:
            best_k, best_rate = k, rate
    # the likeliest branch, where it reached the search's depth, extended by a copy: the
    # first kb ranked nodes (the branch among them) and ext_k copied tokens below it
    kb, ext_k, ext_level, ext_at = best_k, 0, 0, 0
    room = min(max_nodes, cost.shape[0] - 2)  # drafted nodes, copied ones included
    ext = np.empty(LONG_COPY, np.int32)
    ext_p = np.empty(LONG_COPY, np.float64)
    ext_b = np.empty(LONG_COPY, np.int32)
    if best_k > 0:
        leaf, worst = _principal_variation(order, best_k, first, nchild, expanded, n)
        ext_at = dep[leaf]
        if ext_at == max_depth:
            m_ext, ext_level = _pv_extension(tables, uni, calib, search, conv, tok, par,
                                             dep, pathp, leaf, ext, ext_p, ext_b,
                                             room - 1 - worst, cand_t, cand_p)
            tree_sum = 0.0  # expected tokens of the first kb ranked nodes, less the root
            for i in range(best_k):
                tree_sum += pathp[order[i]]
            kept_k, ext_sum = best_k, 0.0
            for e in range(1, m_ext + 1):
                ext_sum += ext_p[e - 1]
                while kept_k + e > room:  # the least visited nodes make room
                    kept_k -= 1
                    tree_sum -= pathp[order[kept_k]]
                rate = (1.0 + trust * (tree_sum + ext_sum)) / cost[kept_k + e + 1]
                if rate > best_rate:
                    best_rate, kb, ext_k = rate, kept_k, e
    if chain_len > 0:
        bkt_chain = np.empty(chain_len, np.int32)
        copy_k, copy_rate = _long_copy(tables, uni, calib, cost, search, chain, chain_len,
                                       chain_match, chain_level,
                                       min(max_nodes, cost.shape[0] - 2), bkt_chain,
                                       cand_t, cand_p)
        if copy_k > 0 and copy_rate > best_rate:
            keep, at, long = _write_chain(chain, copy_k, bkt_chain, chain_level, calib,
                                          root_tok, out)
            return keep, at, long, _expected(out.pathp, keep)
    # write out the ranking, renumbered: its first best_k nodes are the draft, and the
    # rest (searched, not worth verifying) still teach the acceptance calibration. The
    # draft goes out depth first, the better child first, so its likeliest branch is the
    # batch's first entries: when the model keeps that branch (the common case), its
    # cache cells are already in position order and nothing is evaluated again
    # (engine.decode.verify._restore_cell_order; on a flat GPU curve that second decode
    # would cost as much as the tree).
    # A copy extending the likeliest branch follows it at once (that branch comes first
    # in depth-first order), so branch and copy, when kept, are still the first entries.
    n_out = min(out.tok.shape[0] - 1, cost.shape[0] - 2, order.shape[0] + ext_k) - ext_k
    out_order = np.empty(n_out, np.int64)
    _depth_first(order, kb, par, n, out_order)
    out_order[kb:] = order[kb:n_out]
    remap = np.full(n, -1, np.int32)
    remap[0] = 0
    out.tok[0], out.parent[0], out.depth[0] = root_tok, -1, 0
    out.pathp[0], out.level[0], out.bucket[0] = 1.0, 0, 0
    at = 1
    for i in range(n_out):
        v = out_order[i]
        remap[v] = at
        out.tok[at] = tok[v]
        out.parent[at] = remap[par[v]]
        out.depth[at] = dep[v]
        out.pathp[at] = pathp[v]
        out.level[at] = lev[v]
        out.bucket[at] = bkt[v]
        at += 1
        if ext_k > 0 and i == ext_at - 1:  # the branch's leaf: its copy below it
            for e in range(ext_k):
                out.tok[at], out.parent[at] = ext[e], at - 1
                out.depth[at], out.pathp[at] = ext_at + 1 + e, ext_p[e]
                out.level[at], out.bucket[at] = ext_level, ext_b[e]
                at += 1
    return kb + ext_k + 1, at, False, _expected(out.pathp, kb + ext_k + 1)


@nb.njit(cache=True, inline="always")
def _expected(pathp, keep):
    """The draft's expected accepted tokens before trust: its drafted nodes' path
    probabilities summed (here, not in NumPy after the call: with caches cold after a
    decode, one small NumPy reduction costs ~20 us)."""
    total = 0.0
    for i in range(1, keep):
        total += pathp[i]
    return total
