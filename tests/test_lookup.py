"""The copy lookup: the longest earlier match of the newest tokens, and its chain in the
draft tree."""

import numpy as np
from aded_chat.engine.draft.aded import AdedSpeculator
from aded_chat.engine.draft.cost import CostModel
from aded_chat.engine.draft.lookup import (
    MAX_MATCH,
    MIN_MATCH,
    TokenStream,
    copy_chain,
    match_bucket,
)
from aded_chat.engine.draft.mcts import COPY_LEVEL, OWN_COPY_LEVEL, RENAMED_COPY_LEVEL


def chain(tokens, max_len=8, renaming=False):
    buf = np.asarray(tokens, np.int32)
    out = np.zeros(max_len, np.int32)
    k, m, _, renames = copy_chain(buf, len(buf), max_len, out)
    assert renames == renaming
    return out[:k].tolist(), m


def test_longest_match_wins_over_a_more_recent_shorter_one():
    #        an old long match         a recent short one        the newest tokens
    toks = [9, 1, 2, 3, 4, 50, 51, 52] + [7, 3, 4, 60, 61] + [9, 1, 2, 3, 4]
    assert chain(toks) == ([50, 51, 52, 7, 3, 4, 60, 61], 5)


def test_most_recent_among_equal_matches_and_the_end_of_the_stream():
    toks = [1, 2, 3, 10, 11] + [1, 2, 3, 20] + [1, 2, 3]
    assert chain(toks) == ([20, 1, 2, 3], 3)  # the chain may run into the newest tokens


def test_a_loop_is_copied_past_the_newest_token():
    """An answer caught in a loop repeats its last few tokens: once the newest period
    repeats the one before it, the copy goes on round the loop, not only up to the
    newest token (llama.cpp's ngram-mod drafts such loops 64 tokens deep)."""
    loop = [5] + [1, 2, 3] * 3
    assert chain(loop) == ([1, 2, 3, 1, 2, 3, 1, 2], 6)
    # a period not yet repeated whole is no loop: the copy stops at the newest token
    assert chain([7, 8, 1, 2, 3, 9, 1, 2, 3]) == ([9, 1, 2, 3], 3)


def test_no_chain_below_the_minimum_match():
    assert chain([5, 6, 7, 8, 1, 2, 40, 9, 2]) == ([], 0)  # only "2" repeats
    assert chain([1, 2]) == ([], 0)
    assert MIN_MATCH == 3


USERS, PEOPLE = 50, 60


def test_a_renamed_token_keeps_the_copy_going_with_the_renaming():
    """Pasted code with `users` renamed to `people`: two tokens past the renamed one, no
    plain match is long enough, but the text before it says which copy the answer is
    in, and what follows is that copy with the same renaming."""
    pasted = [10, 11, 12, USERS, 13, 14, USERS, 15, 16, 17, 18, USERS, 19]
    answer = [10, 11, 12, PEOPLE, 13, 14]
    got, m = chain(pasted + [99] + answer, renaming=True)
    assert got == [PEOPLE, 15, 16, 17, 18, PEOPLE, 19, 99] and m == 6


PRINT, LOGGING, INFO = 70, 71, 72


def test_a_piece_renamed_to_more_tokens_keeps_the_copy_going():
    """`print(` written as `logging.info(` all through pasted code: one token of the
    text is two of the answer, and the copy ahead carries both."""
    pasted = [10, 11, PRINT, 12, 13, 14, 15, PRINT, 16, 17]
    answer = [10, 11, LOGGING, INFO, 12, 13]
    got, m = chain(pasted + [99] + answer, renaming=True)
    assert got == [14, 15, LOGGING, INFO, 16, 17, 99, 10] and m == 6
    # ... and the other way round: two tokens of the text written as one
    got, _ = chain([10, 11, LOGGING, INFO, 12, 13, 14, 15, LOGGING, INFO, 16, 17]
                   + [99, 10, 11, PRINT, 12, 13], renaming=True)
    assert got[:5] == [14, 15, PRINT, 16, 17]


def test_an_insertion_after_a_token_is_no_renaming():
    """`add(a, b)` written as `add(a: int, ...`: the hint follows `a` here, and the next
    `a` in the text gets none (nor does `b` get this one)."""
    A, COLON, INT = 80, 81, 82
    pasted = [10, 11, A, 12, 13, 14, A, 15]
    assert chain(pasted + [99] + [10, 11, A, COLON, INT, 12, 13]) == ([], 0)


def test_a_renaming_must_be_one_pair_backed_by_the_text_before_it():
    #        two different replacements: no renaming, and no plain match of 3 either
    assert chain([1, 2, 3, 40, 4, 41, 5, 77] + [1, 2, 3, 42, 4, 43, 5]) == ([], 0)
    #        one token of support before the renamed one is not enough
    assert chain([8, 3, 40, 4, 5, 6, 77] + [9, 3, 42, 4, 5]) == ([], 0)


def test_a_renaming_is_only_taken_where_the_copy_holds_the_renamed_token_again():
    """The next record of a list differs in its values, and they do not come back: the
    records' shared structure is no renaming to copy."""
    first = [1, 2, 3, 40, 4, 5, 6, 7, 8]
    assert chain(first + [9] + [1, 2, 3, 41, 4, 5]) == ([], 0)
    again = [1, 2, 3, 40, 4, 5, 6, 40, 8]
    assert chain(again + [9] + [1, 2, 3, 41, 4, 5], renaming=True)[0][:3] == [6, 41, 8]


def test_a_plain_match_as_long_as_a_renaming_one_wins():
    """"1 cup of flour," then "1 cup of milk," later in a recipe: the answer writing
    "1 cup of flour," is copying the first, not renaming the second."""
    flour = [1, 2, 3, 40, 7, 20, 21]
    milk = [1, 2, 3, 41, 7, 30, 31]
    got, m = chain([5] + flour + [6] + milk + [9] + [1, 2, 3, 40, 7])
    assert got[:2] == [20, 21] and m == 5


def test_matches_are_capped_and_bucketed_monotonically():
    toks = list(range(100)) * 2
    got, m = chain(toks[:-50], max_len=4)  # the newest 50 tokens matched 100 back
    assert m == MAX_MATCH and got == toks[50:54]
    for agrees, lo, hi in ((False, 0, 4), (True, 5, 9)):
        buckets = [match_bucket(m, agrees) for m in range(MIN_MATCH, 60)]
        assert buckets[0] == lo and buckets[-1] == hi
        assert all(b2 >= b1 for b1, b2 in zip(buckets, buckets[1:], strict=False))


def test_token_stream_grows_syncs_and_compares():
    s = TokenStream(capacity=2)
    s.set(np.array([1, 2, 3], np.int32))
    s.extend([4, 5])
    s.sync([1, 2, 3, 4, 5, 6])
    assert s.tokens.tolist() == [1, 2, 3, 4, 5, 6]
    assert s.common_prefix(np.array([1, 2, 9], np.int32)) == 2
    assert s.common_prefix(np.array([1, 2], np.int32)) == 2


def flat_cost() -> CostModel:
    """A GPU-like curve, on which any likely draft pays (a fresh table per test: the
    drafter refines it)."""
    return CostModel.from_probes([1, 2, 4, 8, 16, 32],
                                 [0.010, 0.0101, 0.0102, 0.0104, 0.011, 0.012])


def test_the_copy_chain_enters_the_tree_where_the_trigram_is_unsure():
    """After (2, 3) the tri-gram has seen 10, 20, 30 and 40 equally often; only the
    longer context says this is the copy that continued with 30, 31, 32."""
    spec = AdedSpeculator(vocab=100, cost=flat_cost(), max_mb=1.0)
    text = []
    for lead, nxt in ((70, 10), (71, 20), (72, 30), (73, 40)):
        text += [lead, 2, 3, nxt, nxt + 1, nxt + 2, 99]
    spec.begin(text * 3)
    tree = spec.propose(text * 3 + [72, 2, 3], room=64)
    tree.check()
    copy = tree.child(0, 30)
    assert copy > 0 and spec._out.level[copy] == COPY_LEVEL
    for other in (10, 20, 40):  # the copy outranks the tri-gram's equal alternatives
        alt = tree.child(0, other)
        assert alt < 0 or tree.probs[alt] < tree.probs[copy]
    node = copy
    for want in (31, 32):  # and the chain goes on as a branch
        node = tree.child(node, want)
        assert node > 0


def test_a_copy_from_the_answer_itself_is_calibrated_apart():
    """Pasted text is copied more faithfully than an answer repeats its own phrases, so
    a chain whose match lies in the answer being written has its own calibration."""
    spec = AdedSpeculator(vocab=100, cost=flat_cost(), max_mb=1.0)
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    spec.begin(prompt)
    answer = [50, 51, 52, 53, 54, 60, 50, 51, 52]
    tree = spec.propose(prompt + answer, room=64)
    own = tree.child(0, 53)
    assert own > 0 and spec._out.level[own] == OWN_COPY_LEVEL
    spec.begin(prompt + answer)  # the next turn: that answer is now part of the prompt
    tree = spec.propose(prompt + answer + [99, 50, 51, 52], room=64)
    copied = tree.child(0, 99)  # what followed the latest "50 51 52": the new turn's 99
    assert copied > 0 and spec._out.level[copied] == COPY_LEVEL


def test_a_renamed_copy_enters_the_tree_with_a_calibration_of_its_own():
    """A renaming is not always carried through (an answer renames in one function and
    not in the next), so renamed copies learn their own acceptance."""
    spec = AdedSpeculator(vocab=100, cost=flat_cost(), max_mb=1.0)
    pasted = [10, 11, 12, USERS, 13, 14, USERS, 15, 16, 17, 18, USERS, 19]
    spec.begin(pasted + [99])
    tree = spec.propose(pasted + [99] + [10, 11, 12, PEOPLE, 13, 14], room=64)
    tree.check()
    renamed = tree.child(0, PEOPLE)
    assert renamed > 0 and spec._out.level[renamed] == RENAMED_COPY_LEVEL
    assert tree.child(renamed, 15) > 0  # and the copy goes on below it
