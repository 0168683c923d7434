"""promtool's notation for test input: series descriptions and expanding sample values.

Monitor unit tests (:mod:`signalbox.monitors.testing.runner`) take their input the way
``promtool test rules`` does, so a test written for Prometheus reads the same here and
people who know one know the other::

    series: 'image_processing_time{host="web1"}'
    values: '2 2 9x6 2.5+0.5x4 _ 1 stale'

Values are separated by blanks. ``a+bxn`` is ``a`` followed by ``n`` more samples, each
``b`` more than the one before; ``a-bxn`` counts down; ``axn`` is ``a`` ``n + 1`` times;
``_`` is a missing sample and ``_xn`` ``n`` missing samples; ``stale`` marks the series
stale. The quirks of promtool 2.x are kept on purpose (checked against the real binary in
``tests/monitors/test_series_notation.py``): increments accumulate by repeated addition
(``0.1+0.2x3`` ends at ``0.7``, not ``0.7000000000000001``), a number written with a
leading zero and only octal digits is octal (``010`` is 8), and ``Inf``/``NaN`` may start
``Inf+1x2`` but cannot be repeated as ``Infx2``. Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from signalbox.exceptions import QueryError, SignalboxError
from signalbox.metrics.samples import Labels, labels_of

Value = float | None | Literal["stale"]
"""One expanded slot: a number, ``None`` for a missing sample, or ``"stale"``."""

STALE: Literal["stale"] = "stale"
MAX_SAMPLES = 1_000_000
"""More samples than this in one ``values`` string is refused (promtool would hang)."""

_NUM = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_SPECIAL = r"(?:[iI][nN][fF]|[nN][aA][nN])"
_VALUE = rf"[+-]?(?:{_NUM}|{_SPECIAL})"
_TOKEN = re.compile(
    rf"""(?:
      (?P<blank>_)(?:x(?P<blank_n>\d+))?
    | (?P<stale>stale)
    | (?P<rep>[+-]?{_NUM})x(?P<rep_n>\d+)
    | (?P<start>{_VALUE})(?P<step>[+-]{_NUM})x(?P<step_n>\d+)
    | (?P<value>{_VALUE})
    )\Z""",
    re.VERBOSE,
)
_OCTAL = re.compile(r"0[0-7]+\Z")
_FORMS = "a number, _, stale, or an expansion like 1+2x3, 5-1x4, 7x10 or _x3"


class NotationError(SignalboxError, ValueError):
    """A ``values`` or ``series`` string that does not parse.

    ``token`` is the offending piece as written and ``position`` its 0-based offset in the
    string, so a caller can point at it inside a YAML file.
    """

    def __init__(self, reason: str, token: str = "", position: int = 0) -> None:
        self.reason, self.token, self.position = reason, token, position
        where = f"{token!r} (position {position + 1}): " if token else ""
        super().__init__(f"{where}{reason}")


def _number(text: str, token: str, position: int) -> float:
    """Go's reading of one number: octal when written 0[0-7]+, else decimal; Inf/NaN any case."""
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body.lower() == "inf":
        return sign * math.inf
    if body.lower() == "nan":
        return math.nan
    if _OCTAL.match(body):
        return sign * float(int(body, 8))
    value = float(body)
    if math.isinf(value):
        raise NotationError(f"number {text!r} is out of range for a 64-bit float", token, position)
    return sign * value


def _count(text: str, token: str, position: int, total: int) -> int:
    n = int(text)  # decimal, leading zeros allowed, like promtool
    if total + n > MAX_SAMPLES:
        raise NotationError(
            f"expands to more than {MAX_SAMPLES:,} samples: use a coarser interval", token, position
        )
    return n


def _explain(token: str, position: int) -> NotationError:
    """The most helpful message for a token that matches no form."""
    lowered = token.lower()
    if "," in token or ";" in token:
        reason = "values are separated by spaces, not commas or semicolons"
    elif special := re.fullmatch(rf"([+-]?{_SPECIAL})x(\d+)", token):
        a, n = special.groups()
        reason = f"Inf and NaN cannot be repeated with 'xN' directly: write {a}+0x{n}"
    elif "X" in token:
        reason = "write the repeat with a lowercase x, like 1+2x3"
    elif lowered == "stale":
        reason = "write stale in lowercase, as promtool does"
    elif lowered.startswith("stale"):
        reason = "'stale' stands alone: it cannot be repeated or combined"
    elif re.fullmatch(rf"{_VALUE}(?:[+-]{_NUM})?[xX]", token):
        reason = "expected a repeat count after 'x', like 1+2x3"
    elif re.fullmatch(rf"{_VALUE}(?:[+-]{_NUM})?x[^\d].*", token) or re.search(r"x\d*\.", token):
        reason = "the repeat count after 'x' must be a whole number, like 1+2x3"
    elif re.fullmatch(rf"{_VALUE}[+-]{_NUM}", token):
        reason = (
            f"an increment needs a repeat count: write {token}x1 (or separate values with spaces)"
        )
    elif re.fullmatch(rf"{_VALUE}[+-]{_SPECIAL}(?:x\d+)?", token):
        reason = "the increment must be a finite number"
    elif token.startswith("_"):
        reason = "'_' (missing sample) can only be repeated as _xN; it cannot count up or down"
    elif token in ("+", "-"):
        reason = "a sign must be written next to its number, like -3"
    else:
        reason = f"expected {_FORMS}"
    return NotationError(reason, token, position)


def parse_values(text: str) -> list[Value]:
    """Expand a ``values`` string into one slot per interval, first sample first."""
    out: list[Value] = []
    for m in re.finditer(r"\S+", text):
        token, pos = m.group(), m.start()
        t = _TOKEN.match(token)
        if t is None:
            raise _explain(token, pos)
        if t.group("blank"):
            n = _count(t.group("blank_n"), token, pos, len(out)) if t.group("blank_n") else 1
            out.extend([None] * n)
        elif t.group("stale"):
            out.append(STALE)
        elif t.group("rep") is not None:
            value = _number(t.group("rep"), token, pos)
            n = _count(t.group("rep_n"), token, pos, len(out) + 1)
            out.extend([value] * (n + 1))
        elif t.group("start") is not None:
            value = _number(t.group("start"), token, pos)
            step = _number(t.group("step"), token, pos)
            n = _count(t.group("step_n"), token, pos, len(out) + 1)
            out.append(value)
            for _ in range(n):
                value += step  # repeated addition, as promtool does
                out.append(value)
        else:
            out.append(_number(t.group("value"), token, pos))
        if len(out) > MAX_SAMPLES:
            raise NotationError(f"more than {MAX_SAMPLES:,} samples", token, pos)
    return out


def parse_series(text: str) -> tuple[str, Labels]:
    """``name{label="value", ...}`` -> ``(name, labels)``; only a name and ``=`` matchers."""
    from signalbox.query import parse_expr
    from signalbox.query.ast import VectorSelector

    try:
        expr = parse_expr(text)
    except QueryError as e:
        raise NotationError(f"bad series {text!r}: {e}") from None
    if not isinstance(expr, VectorSelector) or expr.offset_ms or expr.at is not None:
        raise NotationError(
            f"bad series {text!r}: expected a metric name with labels, like "
            'image_processing_time{host="web1"}'
        )
    name = expr.metric_name
    if name is None:
        raise NotationError(f"bad series {text!r}: a series needs a metric name")
    pairs: dict[str, str] = {}
    for m in expr.matchers:
        if m.label == "__name__":
            continue
        if m.op != "=":
            raise NotationError(
                f"bad series {text!r}: label {m.label} uses {m.op!r}; an input series "
                'gives each label its value with "=", like host="web1"'
            )
        if m.label in pairs:
            raise NotationError(f"bad series {text!r}: label {m.label} is given twice")
        if m.value != "":  # an empty value means "no such label", as in Prometheus
            pairs[m.label] = m.value
    return name, labels_of(pairs)
