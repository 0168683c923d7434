"""Split a PromQL expression into tokens, each remembering where it starts.

Positions are 0-based character offsets into the expression, the same convention as
Prometheus' own position ranges; every :class:`~signalbox.exceptions.QueryError` the
parser raises points at one of them so a user can see *where* the problem is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from signalbox.exceptions import QueryError

TokenKind = Literal[
    "NUMBER",
    "DURATION",
    "STRING",
    "IDENT",
    "OP",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "@",
    "EOF",
]

# Longest operators first so ``>=`` is not read as ``>`` then ``=``.
_OPERATORS = ("==", "!=", ">=", "<=", "=~", "!~", "+", "-", "*", "/", "%", "^", ">", "<", "=")
_PUNCT = "(){}[],:@"

_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Prometheus duration grammar: units in descending order, each at most once, integers only.
# ASCII digits only (re.ASCII), as Prometheus: "٣s" is not a duration.
_DURATION = re.compile(
    r"(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m(?!s))?(?:\d+s)?(?:\d+ms)?(?![a-zA-Z0-9_.])",
    re.ASCII,
)
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_WORDISH = re.compile(r"[a-zA-Z0-9_.]+")
_DIGITS = frozenset("0123456789")  # str.isdigit() is also true of "¹" and "٣"
MAX_DURATION_MS = (2**63 - 1) // 1_000_000
"""Prometheus durations are Go ``time.Duration`` (int64 nanoseconds): about 292 years. A
longer one is refused there, and here it would overflow the store's 64-bit timestamps."""
_UNITS_MS = {
    "y": 31_536_000_000,
    "w": 604_800_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1000,
    "ms": 1,
}
_DURATION_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)", re.ASCII)

_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", "'": "'", '"': '"',
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # the source text; for STRING the decoded value
    pos: int
    end: int

    def describe(self) -> str:
        """How to name this token in an error message."""
        if self.kind == "EOF":
            return "end of input"
        if self.kind == "STRING":
            return "string literal"
        return f"'{self.text}'"


def duration_ms(text: str) -> int:
    """Milliseconds of a Prometheus duration like ``1h30m`` (already validated by the lexer)."""
    return sum(int(n) * _UNITS_MS[u] for n, u in _DURATION_PART.findall(text))


def tokenize(source: str) -> list[Token]:
    """All tokens of ``source`` followed by an EOF token; raise QueryError on a bad character."""
    tokens: list[Token] = []
    pos, n = 0, len(source)
    in_brackets = False  # inside [..] a colon is the subquery separator, not part of a name
    while pos < n:
        ch = source[pos]
        if ch.isspace():
            pos += 1
            continue
        if ch == "#":  # comment to end of line, as in Prometheus
            nl = source.find("\n", pos)
            pos = n if nl < 0 else nl + 1
            continue
        if ch in _DIGITS or (ch == "." and pos + 1 < n and source[pos + 1] in _DIGITS):
            tokens.append(_number_or_duration(source, pos))
            pos = tokens[-1].end
            continue
        if ch in "\"'`":
            tok = _string(source, pos)
            tokens.append(tok)
            pos = tok.end
            continue
        m = None if (in_brackets and ch == ":") else _IDENT.match(source, pos)
        if m:
            word = m.group()
            kind: TokenKind = "NUMBER" if word.lower() in ("inf", "nan") else "IDENT"
            tokens.append(Token(kind, word, pos, m.end()))
            pos = m.end()
            continue
        if ch in _PUNCT:
            if ch in "[]":
                in_brackets = ch == "["
            tokens.append(Token(ch, ch, pos, pos + 1))  # type: ignore[arg-type]
            pos += 1
            continue
        for op in _OPERATORS:
            if source.startswith(op, pos):
                tokens.append(Token("OP", op, pos, pos + len(op)))
                pos += len(op)
                break
        else:
            raise QueryError(f"unexpected character {ch!r}", pos, "syntax")
    tokens.append(Token("EOF", "", n, n))
    return tokens


def _number_or_duration(source: str, pos: int) -> Token:
    m = _DURATION.match(source, pos)
    if m and m.end() > pos:
        if not _in_range(m.group()):
            raise QueryError(
                f"duration {_shorten(m.group())!r} is out of range (at most 292y)", pos, "syntax"
            )
        return Token("DURATION", m.group(), pos, m.end())
    m = _NUMBER.match(source, pos)
    assert m is not None  # the caller saw a digit or ".digit"
    end = m.end()
    tail = _WORDISH.match(source, end)
    if tail:  # "5x", "1.5m", "3m5": not a number and not a duration we accept
        bad = _shorten(source[pos : tail.end()])
        raise QueryError(
            f"bad number or duration {bad!r} (durations are whole numbers with units "
            "y, w, d, h, m, s, ms in that order, like 1h30m)",
            pos,
            "syntax",
        )
    return Token("NUMBER", m.group(), pos, end)


def _in_range(duration: str) -> bool:
    # a part of 20 digits is already out of range: never feed int() thousands of them
    parts = _DURATION_PART.findall(duration)
    return all(len(n) < 20 for n, _ in parts) and duration_ms(duration) <= MAX_DURATION_MS


def _shorten(text: str, keep: int = 40) -> str:
    """``text`` for a message: a 5,000-digit number is named by its start."""
    return text if len(text) <= keep else text[:keep] + "..."


def _string(source: str, pos: int) -> Token:
    quote = source[pos]
    i, n = pos + 1, len(source)
    if quote == "`":  # raw string: no escapes
        end = source.find("`", i)
        if end < 0:
            raise QueryError("unterminated string literal", pos, "syntax")
        return Token("STRING", source[i:end], pos, end + 1)
    out: list[str] = []
    while i < n:
        ch = source[i]
        if ch == quote:
            return Token("STRING", "".join(out), pos, i + 1)
        if ch == "\n":
            break
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            break
        esc = source[i + 1]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(esc)
        if width is not None:
            digits = source[i + 2 : i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise QueryError(f"bad escape \\{esc} in string literal", i, "syntax")
            code = int(digits, 16)
            if (esc == "x" and code > 0x7F) or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise QueryError(
                    f"bad escape \\{esc}{digits} in string literal (use \\u for non-ASCII)",
                    i,
                    "syntax",
                )
            out.append(chr(code))
            i += 2 + width
            continue
        if esc in "01234567":
            digits = source[i + 1 : i + 4]
            if (
                len(digits) != 3
                or not all(c in "01234567" for c in digits)
                or int(digits, 8) > 0x7F
            ):
                raise QueryError(f"bad octal escape \\{digits} in string literal", i, "syntax")
            out.append(chr(int(digits, 8)))
            i += 4
            continue
        raise QueryError(f"unknown escape \\{esc} in string literal", i, "syntax")
    raise QueryError("unterminated string literal", pos, "syntax")
