"""The figures people read: a speedup that compares like with like, and one wording."""

from __future__ import annotations

import pytest
from aded_chat.engine import AnswerStats, StepStats

from aded_chat.stats_text import bar_text, summary_text


def answer(steps: list[tuple[int, int, float]], *, speculative=True, host=0.0002,
           session_rate=None) -> AnswerStats:
    """An answer from (emitted, drafted, llama_decode seconds) steps."""
    st = AnswerStats(speculative=speculative, tokens=1, plain_tokens_per_s=session_rate)
    for emitted, drafted, secs in steps:
        st.add_step(StepStats(emitted=emitted, drafted=drafted, accepted=emitted - 1,
                              decode_s=secs, host_s=host))
        st.decode_s += secs + host
    return st


def test_an_answer_that_drafted_nothing_reads_about_one():
    st = answer([(1, 0, 0.010)] * 40, session_rate=140.0)  # a faster, shorter context
    assert st.speedup == pytest.approx(0.98, abs=0.01)  # its own plain steps, less search
    assert "0.98x vs plain" in bar_text(st, "CPU")


def test_drafted_steps_are_compared_with_the_answers_own_plain_steps():
    st = answer([(1, 0, 0.010)] * 10 + [(3, 4, 0.015)] * 10)
    # 40 tokens in 0.254 s against 100 tok/s of one-token steps
    assert st.speedup == pytest.approx((st.tokens - 1) / st.decode_s / 100.0)
    assert st.speedup > 1.5


def test_without_a_sound_plain_rate_the_figure_is_a_dash():
    st = answer([(3, 4, 0.015)] * 5)  # every step drafted, no session rate yet
    assert st.speedup is None
    assert "— vs plain" in bar_text(st, "CPU")
    st = answer([(3, 4, 0.015)] * 5, session_rate=100.0)  # the session's plain steps
    assert st.speedup == pytest.approx((st.tokens - 1) / st.decode_s / 100.0)


def test_plain_answers_have_no_speedup_figure():
    st = answer([(1, 0, 0.010)] * 20, speculative=False)
    assert st.speedup is None
    assert "vs plain" not in bar_text(st, "CPU")
    assert "vs plain" not in summary_text(st.as_dict())
