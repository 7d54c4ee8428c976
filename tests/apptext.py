"""What an AppTest element's Markdown shows: the app escapes user text (``ui.plain``), tests read it back."""
import re

_ESCAPE = re.compile(r"\\(.)")


def shown(element) -> str:
    """The element's text with Markdown backslash escapes removed (``\\[X\\]`` → ``[X]``)."""
    return _ESCAPE.sub(r"\1", element.value)
