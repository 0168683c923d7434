"""Label-value regexes as Prometheus runs them: RE2 syntax, fully anchored, linear time.

Prometheus compiles a matcher's pattern as ``^(?s:pattern)$`` with Go's RE2-family
engine, so no pattern can backtrack. Python's ``re`` can (``(a+)+b`` over 30 characters
takes minutes), and a matcher is the one piece of a query anyone can send, so every label
regex here runs on RE2 (the ``google-re2`` package) instead.

A call into RE2 costs a few times a Python ``re`` match (the binding, not the engine), and
a selection may test every series of the catalog, so most patterns never reach RE2: the
shapes people and our own query planner write — ``.*``, ``.+``, a literal, ``a|b|c`` of
literals, ``foo.*``, ``.*foo``, ``.*foo.*`` — are recognised once, at compile time, and
answered with plain string operations. Anything else goes to RE2 through a small memo,
since label values repeat a lot across series (``job``, ``env``, ``code``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2._re2 as _re2  # type: ignore[import-untyped]  # the raw binding: 7x cheaper per call

MEMO_SIZE = 8192
"""Label values remembered per regex: enough for the values of a label across a big
catalog; cleared when full, so memory stays bounded whatever the catalog holds."""

_ANCHOR_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH
# Characters with a meaning in RE2 syntax outside a class; anything else stands for itself.
_META = frozenset("\\.+*?()|[]{}^$")
# `\` before an ASCII character that is not a letter, digit or `_` means the character
# itself in RE2 (what re.escape writes); RE2 refuses `\_`, so compilation catches that first.
_ESCAPABLE = frozenset(chr(c) for c in range(128) if not (chr(c).isalnum() or chr(c) == "_"))


class LabelRegexError(ValueError):
    """A matcher's pattern RE2 refuses; ``message`` is RE2's own words."""

    def __init__(self, pattern: str, message: str) -> None:
        super().__init__(message)
        self.pattern = pattern
        self.message = message


def _options() -> Any:
    options = _re2.RE2.Options()
    options.log_errors = False  # RE2 would print refusals to stderr; we raise them instead
    options.never_capture = True  # we only ask "does it match": no groups to track
    return options


_OPTIONS = _options()


class LabelRegex:
    """One compiled matcher pattern; :meth:`matches` answers for a whole label value."""

    __slots__ = ("_re2", "kind", "matches", "pattern")

    def __init__(self, pattern: str) -> None:
        """Compile ``pattern`` with RE2, or raise :class:`LabelRegexError` saying why not.

        The ``(?s)`` prefix is Prometheus' ``(?s:...)``: ``.`` matches a newline too. A
        prefix rather than a wrapping group, so an unbalanced ``a)|(b`` stays an error
        instead of quietly meaning something else.
        """
        self.pattern = pattern
        try:
            encoded = ("(?s)" + pattern).encode("utf-8")
        except UnicodeEncodeError:
            raise LabelRegexError(pattern, "invalid UTF-8 in pattern") from None
        compiled = _re2.RE2(encoded, _OPTIONS)
        if not compiled.ok():
            said = compiled.error().decode("utf-8", "replace")
            raise LabelRegexError(pattern, said.replace("(?s)" + pattern, pattern))
        self._re2 = compiled
        self.kind: str
        self.matches: Callable[[str], bool]
        self.kind, self.matches = _fast_path(pattern) or (
            "re2",
            _memoized(compiled, _required_prefix(pattern)),
        )

    def __repr__(self) -> str:
        return f"LabelRegex({self.pattern!r}, kind={self.kind!r})"

    def matches_by_re2(self, value: str) -> bool:
        """The answer of RE2 itself, bypassing fast paths and memo (what they must agree with)."""
        return _re2_matches(self._re2, value)


def _re2_matches(compiled: Any, value: str) -> bool:
    # surrogatepass: a lone surrogate (possible in a str, never in UTF-8) must not raise
    data = value.encode("utf-8", "surrogatepass")
    return bool(compiled.Match(_ANCHOR_BOTH, data, 0, len(data))[0][0] >= 0)


def _memoized(compiled: Any, prefix: str) -> Callable[[str], bool]:
    """RE2 behind a bounded value -> answer memo (a closure: no cycle through the regex).

    A value without the pattern's required literal ``prefix`` cannot match: most values a
    selection meets are answered that way, with neither RE2 nor the memo.
    """
    memo: dict[str, bool] = {}
    match = compiled.Match

    def matches(value: str) -> bool:
        if prefix and not value.startswith(prefix):
            return False
        hit = memo.get(value)
        if hit is None:
            data = value.encode("utf-8", "surrogatepass")
            hit = match(_ANCHOR_BOTH, data, 0, len(data))[0][0] >= 0
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[value] = hit
        return hit

    return matches


def _fast_path(pattern: str) -> tuple[str, Callable[[str], bool]] | None:
    """A plain-Python matcher for the pattern when its meaning is certain, else None."""
    if pattern in (".*", "^.*$"):
        return "all", _everything
    if pattern in (".+", "^.+$"):
        return "non-empty", _non_empty
    alternatives = _split_alternatives(pattern)
    if alternatives is None:
        return None
    if len(alternatives) > 1:
        literals = [_literal(_strip_anchors(a)) for a in alternatives]
        if any(lit is None for lit in literals):
            return None
        return "set", frozenset(literals).__contains__
    body = _strip_anchors(pattern)
    lit = _literal(body)
    if lit is not None:
        return "literal", _equal_to(lit)
    leading, trailing = body.startswith(".*"), _ends_with_dot_star(body)
    core = body[2 if leading else 0 : len(body) - 2 if trailing else len(body)]
    lit = _literal(core) if (leading or trailing) else None
    if lit is None or not lit:
        return None
    if leading and trailing:
        return "contains", _contains(lit)
    if trailing:
        return "prefix", _starts_with(lit)
    return "suffix", _ends_with(lit)


def _everything(value: str) -> bool:
    return True


def _non_empty(value: str) -> bool:
    return value != ""


# Closures with a default argument: faster than operator.methodcaller on CPython 3.11.
def _equal_to(text: str) -> Callable[[str], bool]:
    def match(value: str, text: str = text) -> bool:
        return value == text

    return match


def _contains(part: str) -> Callable[[str], bool]:
    def match(value: str, part: str = part) -> bool:
        return part in value

    return match


def _starts_with(prefix: str) -> Callable[[str], bool]:
    def match(value: str, prefix: str = prefix) -> bool:
        return value.startswith(prefix)

    return match


def _ends_with(suffix: str) -> Callable[[str], bool]:
    def match(value: str, suffix: str = suffix) -> bool:
        return value.endswith(suffix)

    return match


def _split_alternatives(pattern: str) -> list[str] | None:
    """``pattern`` split at its top-level ``|``; None when it has groups or classes."""
    parts, start, i, n = [], 0, 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "([":
            return None
        if ch == "|":
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def _strip_anchors(piece: str) -> str:
    """``^foo$`` means ``foo`` in an already anchored match (RE2 without ``(?m)``)."""
    if piece.startswith("^"):
        piece = piece[1:]
    if piece.endswith("$") and _literal_end(piece[:-1]):
        piece = piece[:-1]
    return piece


def _ends_with_dot_star(piece: str) -> bool:
    return piece.endswith(".*") and _literal_end(piece[:-2])


def _literal_end(head: str) -> bool:
    """Does ``head`` end outside an escape (an even run of trailing backslashes)?"""
    return (len(head) - len(head.rstrip("\\"))) % 2 == 0


def _required_prefix(pattern: str) -> str:
    """Literal text every match starts with ("" when unsure: groups, flags, a top-level ``|``)."""
    if pattern.startswith("^"):
        pattern = pattern[1:]
    if _has_bar(pattern):
        return ""
    out, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n and pattern[i + 1] in _ESCAPABLE:
            ch, step = pattern[i + 1], 2
        elif ch in _META:
            break
        else:
            step = 1
        if i + step < n and pattern[i + step] in "*?{":  # optional: not required
            break
        out.append(ch)
        i += step
    return "".join(out)


def _has_bar(pattern: str) -> bool:
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "|":
            return True
        i += 1
    return False


def _literal(piece: str) -> str | None:
    """The text ``piece`` matches when it is a plain literal (escapes of punctuation allowed)."""
    if "\\" not in piece:
        return None if any(ch in _META for ch in piece) else piece
    out, i, n = [], 0, len(piece)
    while i < n:
        ch = piece[i]
        if ch == "\\":
            if i + 1 >= n or piece[i + 1] not in _ESCAPABLE:
                return None  # \d, \n, \x41, \Q...: leave their meaning to RE2
            out.append(piece[i + 1])
            i += 2
            continue
        if ch in _META:
            return None
        out.append(ch)
        i += 1
    return "".join(out)


def compile_label_regex(pattern: str) -> LabelRegex:
    """A fully anchored RE2 regex for a label matcher, as Prometheus matches label values.

    Raises:
        LabelRegexError: the pattern is not valid RE2 syntax (lookaheads, backreferences
            and the like are Python-only), with RE2's message.
    """
    return LabelRegex(pattern)
