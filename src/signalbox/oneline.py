"""One line of text a person wrote (a reason, a name, who did it), checked before it is kept.

Reasons and names end up in ``monitors status`` and ``history`` output, in logs and in the
audit trail, one per line. A newline or an escape sequence in one would let its writer
forge a line there (or repaint a terminal), and a bidirectional override would make it
read differently than it is stored, so they are refused where the text comes in, with the
field named; everything printable (markup included: outputs escape it) is kept as given.
"""

from __future__ import annotations

import unicodedata

from signalbox.exceptions import UsageError

__all__ = ["check_line"]

# Control characters, and the line and paragraph separators (str.splitlines() and
# JavaScript end a line at them).
_REFUSED = frozenset({"Cc", "Zl", "Zp"})
# Unicode's bidirectional embeddings, overrides and isolates ("Trojan Source").
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_line(text: str, field: str, *, max_chars: int, required: bool = True) -> str:
    """``text`` stripped, or a :class:`UsageError` naming ``field`` and what is wrong.

    Args:
        text: what was given.
        field: how the input names it (``--reason``, ``reason``), for the message.
        max_chars: the longest text kept.
        required: an empty (or all-blank) text is refused.
    """
    out = text.strip()
    if required and not out:
        raise UsageError(f"{field}: must not be empty")
    if len(out) > max_chars:
        raise UsageError(f"{field}: at most {max_chars} characters, got {len(out)}")
    for i, ch in enumerate(out):
        if ch in _BIDI or unicodedata.category(ch) in _REFUSED:
            raise UsageError(
                f"{field}: character U+{ord(ch):04X} at position {i} is a control character "
                "or a line break: one line of printable text expected"
            )
    return out
