"""Which table cells may break inside a word (pathways/templatetags/text_wrap.py)."""

from django.template import Context, Template

from pathways.templatetags.text_wrap import LONG_WORD, break_long_words


def test_only_a_word_over_the_limit_lets_a_cell_break_inside_words() -> None:
    assert break_long_words("Margaret Ellis", "RV-1001") == ""
    assert break_long_words("x" * LONG_WORD, None, "") == ""
    assert break_long_words("Dana", "x" * (LONG_WORD + 1)) == "break-long-words"
    assert break_long_words("Wolfeschlegelsteinhausenbergerdorff Smith") == "break-long-words"


def test_the_tag_in_a_template() -> None:
    template = Template('{% load text_wrap %}<td class="{% break_long_words name mrn %}">')
    rendered = template.render(Context({"name": "Ann Lee", "mrn": "M" * 40}))
    assert rendered == '<td class="break-long-words">'
