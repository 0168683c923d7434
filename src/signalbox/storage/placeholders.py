"""Portable ``?`` placeholders to psycopg's ``%s``, leaving SQL literals alone.

psycopg scans the whole statement for ``%`` (string literals included), so a literal ``%``
(``LIKE 'a%'``) must reach it as ``%%``; a ``?`` is a placeholder only outside string
literals, quoted identifiers and comments (``SELECT '?'`` selects a question mark). A plain
``str.replace`` got both wrong. Pure text, cached: the same few statements run every pass.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["qmark_to_format"]

# Everything in which a ``?`` is text, not a placeholder. Nested block comments (a
# PostgreSQL extension) are not tracked: the innermost ``*/`` ends the comment here.
_LITERAL = (
    r"(?<![\w$])[Ee]'(?:[^'\\]|''|\\.)*'"  # E'...' with backslash escapes
    r"|'(?:[^']|'')*'"  # standard string ('' escapes a quote)
    r'|"(?:[^"]|"")*"'  # quoted identifier
    r"|(?<![\w$])\$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?\$(?P=tag)\$"  # dollar-quoted string
    r"|--[^\n]*"  # line comment
    r"|/\*.*?\*/"  # block comment
)
_TOKEN = re.compile(rf"(?P<lit>{_LITERAL})|(?P<q>\?)|%", re.DOTALL)
_SPECIAL = frozenset("'\"-/$%")


def _replace(m: re.Match[str]) -> str:
    lit = m.group("lit")
    if lit is not None:
        return lit.replace("%", "%%")
    return "%s" if m.group("q") is not None else "%%"


@lru_cache(maxsize=2048)
def qmark_to_format(sql: str) -> str:
    """``sql`` with each placeholder ``?`` as ``%s`` and every literal ``%`` as ``%%``."""
    if _SPECIAL.isdisjoint(sql):  # the common case: nothing quoted, nothing to escape
        return sql.replace("?", "%s")
    return _TOKEN.sub(_replace, sql)
