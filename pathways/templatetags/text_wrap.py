"""Which table cells may break inside a word: only those holding a word too long for a column."""

from django import template

register = template.Library()

# A word (text between spaces: a name, an MRN, a code from a feed) longer than this may break
# anywhere; a cell of shorter words wraps normally, so the table sizes its columns to them.
LONG_WORD = 20


@register.simple_tag
def break_long_words(*values: object) -> str:
    """The class ``break-long-words`` when any value holds a word over LONG_WORD characters.

    On every cell instead, a desktop's table squeezed its columns to almost nothing (a cell
    that may break anywhere has no minimum width) and broke "Entered" and "Overdue" mid-word.
    """
    long = any(len(word) > LONG_WORD for value in values for word in str(value or "").split())
    return "break-long-words" if long else ""
