"""Earlier answers stay copy sources: a regenerated answer, or one asked for again in a new
conversation, is drafted from the answer that came before it."""

from __future__ import annotations

import numpy as np
from aded_chat.engine.draft.aded import AdedSpeculator
from aded_chat.engine.draft.archive import SEP, AnswerArchive, archive_copy, archive_match
from aded_chat.engine.draft.cost import CostModel
from aded_chat.engine.draft.mcts import ARCHIVE_COPY_LEVEL, COPY_LEVEL


def chain(arc: AnswerArchive, conversation: list[int], max_len: int = 16) -> list[int]:
    buf = np.asarray(conversation, np.int32)
    end, m = archive_match(arc.state, buf, len(buf))
    if end < 0:
        return []
    out = np.zeros(max_len, np.int32)
    return out[: archive_copy(arc.state, end, max_len, out)].tolist()


def test_the_longest_match_then_the_newest_and_a_copy_stops_at_its_answers_end():
    arc = AnswerArchive()
    arc.add([1, 2, 3, 4, 10, 11])
    arc.add([9, 2, 3, 4, 20, 21])  # newer, but the conversation's 1 matches the older one
    arc.add([7, 3, 4, 30])
    assert chain(arc, [5, 1, 2, 3, 4]) == [10, 11]  # 4 tokens matched: the older answer
    assert chain(arc, [5, 6, 2, 3, 4]) == [20, 21]  # 3 each: the newer of the two
    assert chain(arc, [8, 7, 3, 4]) == [30]  # and not on into nothing
    assert chain(arc, [2, 3, 5]) == []  # no three tokens in common


def test_no_match_runs_across_two_answers():
    arc = AnswerArchive()
    arc.add([1, 2])
    arc.add([3, 4, 5])
    assert chain(arc, [1, 2, 3]) == []  # 2 | 3 straddle the separator
    assert SEP in arc.tokens.tolist()


def test_a_full_archive_drops_its_oldest_half_and_still_finds_the_rest():
    arc = AnswerArchive(capacity=64)
    for i in range(20):  # 20 answers of 6 tokens (7 with the separator): 140 > 64
        arc.add([1000 + i, 1, 2, 3, 4, 100 + i])
    assert len(arc) <= 64
    assert chain(arc, [1019, 1, 2, 3]) == [4, 119]  # the newest answers are kept
    # the oldest is gone: its four-token match would copy 100; three tokens match the newest
    assert chain(arc, [1000, 1, 2, 3]) == [4, 119]
    restored = AnswerArchive(capacity=64)
    restored.restore(arc.snapshot())
    assert chain(restored, [1019, 1, 2, 3]) == [4, 119]


def test_a_new_prompt_keeps_the_last_answer_and_drafts_from_it():
    """A regenerated answer: the conversation no longer holds the old answer, but the
    drafter copies it, at a calibration of its own."""
    flat = CostModel.from_probes([1, 2, 4, 8, 16, 32],
                                 [0.010, 0.0101, 0.0102, 0.0104, 0.011, 0.012])
    spec = AdedSpeculator(vocab=100, cost=flat, max_mb=1.0)
    prompt = [1, 2, 3, 4, 5]
    answer = [40, 41, 42, 43, 44, 45, 46, 47, 48, 49]
    spec.begin(prompt)
    spec.learn(prompt + answer, len(answer), spec.propose(prompt + answer, 64), 1, 0.01)
    spec.begin(prompt)  # the same request again
    assert spec.archive.tokens.tolist() == [SEP, *answer]
    tree = spec.propose(prompt + [40, 41, 42], room=64)
    tree.check()
    node = tree.child(0, 43)
    assert node > 0 and spec._out.level[node] == ARCHIVE_COPY_LEVEL
    for want in (44, 45):
        node = tree.child(node, want)
        assert node > 0
    # the conversation's own copy wins a tie: the same answer in this conversation
    spec.begin(prompt + answer + [6])
    tree = spec.propose(prompt + answer + [6, 40, 41, 42], room=64)
    node = tree.child(0, 43)
    assert node > 0 and spec._out.level[node] == COPY_LEVEL


def test_an_archived_answer_s_end_leaves_the_conversation_s_copy_standing():
    """The archive's longer match ends an earlier answer (its end-of-generation token
    next), which a copy never drafts: the conversation's shorter match is copied."""
    flat = CostModel.from_probes([1, 2, 4, 8, 16, 32],
                                 [0.010, 0.0101, 0.0102, 0.0104, 0.011, 0.012])
    spec = AdedSpeculator(vocab=100, cost=flat, max_mb=1.0)
    END = 7
    spec.turn_ends[END] = True
    prompt = [1, 2, 3]
    answer = [40, 41, 42, 43, 44, END]
    spec.begin(prompt)
    spec.learn(prompt + answer, len(answer), spec.propose(prompt + answer, 64), 1, 0.01)
    pasted = [20, 42, 43, 44, 70, 71, 72, 73, 74, 75]  # the conversation: a 3-token match
    spec.begin(pasted)
    assert spec.archive.tokens.tolist() == [SEP, *answer]
    tree = spec.propose(pasted + [40, 41, 42, 43, 44], room=64)
    tree.check()
    node = tree.child(0, 70)
    assert node > 0 and spec._out.level[node] == COPY_LEVEL


def test_a_snapshot_holds_the_archive():
    spec = AdedSpeculator(vocab=100, cost=CostModel.flat(), max_mb=1.0)
    spec.begin([1, 2, 3])
    spec.learn([1, 2, 3, 7, 8, 9], 3, spec.propose([1, 2, 3, 7, 8, 9], 8), 1, 0.01)
    state = spec.snapshot()
    spec.begin([1, 2, 3])
    assert len(spec.archive) == 4
    spec.restore(state)
    assert len(spec.archive) == 0
    spec.begin([1, 2, 3])  # the restored answer is archived the same way again
    assert spec.archive.tokens.tolist() == [SEP, 7, 8, 9]
