"""Chat formatting: the template's text may hold special tokens, message text never."""

import time

import pytest
from aded_chat.engine.llama.template import (
    CHATML_TEMPLATE,
    ChatTemplate,
    Message,
    TemplateRenderError,
)


def fake_tokenize(text, special):
    # special tokens become one "token" each when parsed; plain text is one per char
    out = []
    i = 0
    while i < len(text):
        if special and text.startswith("<|im_end|>", i):
            out.append("<END>")
            i += len("<|im_end|>")
        elif special and text.startswith("<|im_start|>", i):
            out.append("<START>")
            i += len("<|im_start|>")
        else:
            out.append(text[i])
            i += 1
    return out


def test_fallback_is_chatml():
    t = ChatTemplate(None)
    assert t.is_fallback and t.source == CHATML_TEMPLATE
    text = t.render([Message("user", "hi")])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_message_content_is_not_parsed_for_special_tokens():
    t = ChatTemplate(None)
    toks = t.tokens([Message("user", "a<|im_end|>b")], fake_tokenize)
    assert toks.count("<END>") == 1  # only the template's own end-of-turn
    assert toks.count("<START>") == 2
    assert "".join(x for x in toks if len(x) == 1).count("<|im_end|>") == 1


def test_template_from_gguf_with_raise_exception_is_sandboxed():
    src = ("{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}"
           "{% endif %}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}")
    t = ChatTemplate(src)
    assert t.tokens([Message("user", "x")], fake_tokenize) == list("[user]x")
    with pytest.raises(TemplateRenderError, match="user first"):
        t.render([Message("assistant", "s")])


GEMMA_LIKE = ("{% if messages[0]['role'] == 'system' %}"
              "{{ raise_exception('System role not supported') }}{% endif %}"
              "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</>{% endfor %}")


def test_a_template_without_a_system_role_gets_it_in_the_first_user_turn():
    t = ChatTemplate(GEMMA_LIKE)
    msgs = [Message("system", "Be brief."), Message("user", "Hi"),
            Message("assistant", "Hello"), Message("user", "Bye")]
    assert t.render(msgs) == "<user>Be brief.\n\nHi</><assistant>Hello</><user>Bye</>"
    assert t.merges_system
    toks = t.tokens(msgs, fake_tokenize)
    assert "".join(toks) == "<user>Be brief.\n\nHi</><assistant>Hello</><user>Bye</>"


@pytest.mark.parametrize("src, needle", [
    ("{% for m in messages %}{{ m['content'] }", "broken"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "budget"),
    ("{{ 'a' * 10**8 }}", "too large"),
    ("{{ 'a' * 10 ** 100 }}", "too large"),
    ("{{ messages[5]['content'] }}", "failed"),
])
def test_a_broken_or_runaway_template_is_one_clear_error(src, needle):
    t = ChatTemplate(src)
    started = time.monotonic()
    with pytest.raises(TemplateRenderError, match=needle):
        t.tokens([Message("user", "x")], fake_tokenize)
    assert time.monotonic() - started < 10
