"""The parsed form of a PromQL expression: frozen nodes that print back as PromQL.

``str(expr)`` yields text that parses to an equal tree (positions are not compared), so
an expression can be stored, logged and shown to a reviewer in canonical form. The printer
adds only the parentheses precedence requires; the parser does not keep parentheses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from signalbox.metrics.samples import Matcher
from signalbox.query.functions import FUNCTIONS, ValueType

# Binary operator precedence, loosest first (Prometheus' table).
PRECEDENCE: dict[str, int] = {
    "or": 1,
    "and": 2, "unless": 2,
    "==": 3, "!=": 3, "<": 3, ">": 3, "<=": 3, ">=": 3,
    "+": 4, "-": 4,
    "*": 5, "/": 5, "%": 5, "atan2": 5,
    "^": 6,
}  # fmt: skip
RIGHT_ASSOCIATIVE = frozenset({"^"})
COMPARISONS = frozenset({"==", "!=", "<", ">", "<=", ">="})
SET_OPERATORS = frozenset({"and", "or", "unless"})
UNARY_PRECEDENCE = 5  # a unary minus binds like "*": -a^b is -(a^b), -a*b is (-a)*b

_DURATION_UNITS = (
    ("y", 31_536_000_000),
    ("w", 604_800_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
)


class Expr:
    """Base of every node. ``type`` is the PromQL value type the node evaluates to."""

    __slots__ = ()
    pos: int  # 0-based offset of the node in the source text; not part of equality

    @property
    def type(self) -> ValueType:
        raise NotImplementedError

    def children(self) -> tuple[Expr, ...]:
        return ()

    def walk(self) -> Iterator[Expr]:
        """This node and all below it, depth first, left to right."""
        yield self
        for child in self.children():
            yield from child.walk()

    def selectors(self) -> list[VectorSelector]:
        """Every vector selector in the expression (also those inside range selectors)."""
        return [n for n in self.walk() if isinstance(n, VectorSelector)]


@dataclass(frozen=True, slots=True)
class NumberLiteral(Expr):
    value: float
    pos: int = field(default=0, compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return "scalar"

    def __str__(self) -> str:
        return format_number(self.value)


@dataclass(frozen=True, slots=True)
class StringLiteral(Expr):
    """A quoted string: ``count_values``' label parameter and the "string" arguments of
    functions (``label_replace``, ``label_join``) take one, and an instant query may be one
    (its result is that string, as in Prometheus); typecheck refuses it anywhere else."""

    value: str
    pos: int = field(default=0, compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return "string"

    def __str__(self) -> str:
        return quote(self.value)


@dataclass(frozen=True, slots=True)
class At:
    """The ``@`` modifier: a fixed time (``ms``), or the query's ``start()``/``end()``.

    A selector or subquery carrying one is read at that time at every step of the query.
    """

    ms: int | None = None
    edge: Literal["start", "end"] | None = None

    def resolve(self, start_ms: int, end_ms: int) -> int:
        """The time this names in a query running from ``start_ms`` to ``end_ms``."""
        if self.edge == "start":
            return start_ms
        if self.edge == "end":
            return end_ms
        assert self.ms is not None
        return self.ms

    def __str__(self) -> str:
        if self.edge is not None:
            return f" @ {self.edge}()"
        assert self.ms is not None
        # seconds with exactly three decimals, as Prometheus prints it, computed on
        # integers so the text parses back to the same millisecond
        sign = "-" if self.ms < 0 else ""
        whole, frac = divmod(abs(self.ms), 1000)
        return f" @ {sign}{whole}.{frac:03d}"


@dataclass(frozen=True, slots=True)
class VectorSelector(Expr):
    """``name{label="value", ...} @ t offset 5m``; ``name`` None when only matchers are given."""

    name: str | None
    matchers: tuple[Matcher, ...] = ()
    offset_ms: int = 0
    at: At | None = None
    pos: int = field(default=0, compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return "vector"

    @property
    def metric_name(self) -> str | None:
        """The metric this selects, from the name or an ``__name__="..."`` matcher."""
        if self.name is not None:
            return self.name
        for m in self.matchers:
            if m.label == "__name__" and m.op == "=":
                return m.value
        return None

    def all_matchers(self) -> tuple[Matcher, ...]:
        """The matchers to hand to the store, the metric name included."""
        if self.name is None:
            return self.matchers
        return (Matcher("__name__", "=", self.name), *self.matchers)

    def selector_text(self) -> str:
        inner = ", ".join(f"{m.label}{m.op}{quote(m.value)}" for m in self.matchers)
        if self.name is None:
            return "{" + inner + "}"
        return f"{self.name}{{{inner}}}" if inner else self.name

    def __str__(self) -> str:
        return self.selector_text() + _at_text(self.at) + _offset_text(self.offset_ms)


@dataclass(frozen=True, slots=True)
class MatrixSelector(Expr):
    """``selector[range]``: the samples of ``selector`` in ``(t - range, t]``."""

    selector: VectorSelector
    range_ms: int
    pos: int = field(default=0, compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return "matrix"

    def children(self) -> tuple[Expr, ...]:
        return (self.selector,)

    def __str__(self) -> str:
        sel = self.selector
        return (
            f"{sel.selector_text()}[{format_duration_ms(self.range_ms)}]"
            f"{_at_text(sel.at)}{_offset_text(sel.offset_ms)}"
        )


@dataclass(frozen=True, slots=True)
class Subquery(Expr):
    """``expr[range:step]``: ``expr`` evaluated at every multiple of ``step`` (absolute time,
    as Prometheus aligns it) inside each window, a range vector for a range function.

    ``step_ms`` 0 is ``expr[range:]``: the default step (see :mod:`signalbox.query.subquery`).
    """

    expr: Expr
    range_ms: int
    step_ms: int = 0
    offset_ms: int = 0
    at: At | None = None
    pos: int = field(default=0, compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return "matrix"

    def children(self) -> tuple[Expr, ...]:
        return (self.expr,)

    def __str__(self) -> str:
        inner = self.expr
        text = f"({inner})" if isinstance(inner, BinaryExpr | UnaryExpr) else str(inner)
        step = format_duration_ms(self.step_ms) if self.step_ms else ""
        return (
            f"{text}[{format_duration_ms(self.range_ms)}:{step}]"
            f"{_at_text(self.at)}{_offset_text(self.offset_ms)}"
        )


@dataclass(frozen=True, slots=True)
class Call(Expr):
    func: str
    args: tuple[Expr, ...] = ()
    pos: int = field(default=0, compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return FUNCTIONS[self.func].returns

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def __str__(self) -> str:
        return f"{self.func}({', '.join(str(a) for a in self.args)})"


@dataclass(frozen=True, slots=True)
class Aggregation(Expr):
    """``op [by|without (labels)] ([param,] expr)``."""

    op: str
    expr: Expr
    param: Expr | None = None
    grouping: tuple[str, ...] = ()
    without: bool = False
    pos: int = field(default=0, compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return "vector"

    def children(self) -> tuple[Expr, ...]:
        return (self.expr,) if self.param is None else (self.param, self.expr)

    def __str__(self) -> str:
        clause = ""
        if self.without:
            clause = f" without ({', '.join(self.grouping)})"
        elif self.grouping:
            clause = f" by ({', '.join(self.grouping)})"
        args = str(self.expr) if self.param is None else f"{self.param}, {self.expr}"
        sep = " " if clause else ""
        return f"{self.op}{clause}{sep}({args})"


Cardinality = Literal["one-to-one", "many-to-one", "one-to-many"]


@dataclass(frozen=True, slots=True)
class Matching:
    """``on(labels)`` (``on`` True) or ``ignoring(labels)`` for vector/vector operators,
    with ``group_left(include)`` (many-to-one) or ``group_right(include)`` (one-to-many):
    ``include`` are the labels copied from the "one" side into the result."""

    on: bool
    labels: tuple[str, ...]
    card: Cardinality = "one-to-one"
    include: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{'on' if self.on else 'ignoring'} ({', '.join(self.labels)})"
        if self.card != "one-to-one":
            text += " group_left" if self.card == "many-to-one" else " group_right"
            if self.include:
                text += f" ({', '.join(self.include)})"
        return text


@dataclass(frozen=True, slots=True)
class BinaryExpr(Expr):
    op: str
    lhs: Expr
    rhs: Expr
    return_bool: bool = False
    matching: Matching | None = None
    pos: int = field(default=0, compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return "vector" if "vector" in (self.lhs.type, self.rhs.type) else "scalar"

    def children(self) -> tuple[Expr, ...]:
        return (self.lhs, self.rhs)

    def __str__(self) -> str:
        prec = PRECEDENCE[self.op]
        right_assoc = self.op in RIGHT_ASSOCIATIVE
        lhs = _wrap(self.lhs, prec + 1 if right_assoc else prec, left_of_pow=self.op == "^")
        rhs = _wrap(self.rhs, prec if right_assoc else prec + 1)
        mods = (" bool" if self.return_bool else "") + (
            f" {self.matching}" if self.matching else ""
        )
        return f"{lhs} {self.op}{mods} {rhs}"


@dataclass(frozen=True, slots=True)
class UnaryExpr(Expr):
    """Unary minus (unary plus is dropped by the parser: it changes nothing)."""

    op: str
    expr: Expr
    pos: int = field(default=0, compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return self.expr.type

    def children(self) -> tuple[Expr, ...]:
        return (self.expr,)

    def __str__(self) -> str:
        inner = self.expr
        # A literal right after "-" would be folded into a negative number on re-parse.
        needs = isinstance(inner, NumberLiteral) or (
            isinstance(inner, BinaryExpr) and PRECEDENCE[inner.op] <= UNARY_PRECEDENCE
        )
        return f"{self.op}({inner})" if needs else f"{self.op}{inner}"


def _wrap(e: Expr, min_prec: int, *, left_of_pow: bool = False) -> str:
    if isinstance(e, BinaryExpr) and PRECEDENCE[e.op] < min_prec:
        return f"({e})"
    # "-a ^ b" reads as "-(a ^ b)", and "-2 ^ b" likewise: parenthesize negations left of ^.
    if left_of_pow and (
        isinstance(e, UnaryExpr) or (isinstance(e, NumberLiteral) and _negative(e.value))
    ):
        return f"({e})"
    return str(e)


def _negative(x: float) -> bool:
    return math.copysign(1.0, x) < 0 and x == x


def _at_text(at: At | None) -> str:
    return "" if at is None else str(at)


def _offset_text(offset_ms: int) -> str:
    if offset_ms == 0:
        return ""
    sign = "-" if offset_ms < 0 else ""
    return f" offset {sign}{format_duration_ms(abs(offset_ms))}"


def format_duration_ms(ms: int) -> str:
    """Prometheus spelling of a duration: ``90000`` -> ``1m30s``."""
    if ms == 0:
        return "0s"
    out: list[str] = []
    for unit, size in _DURATION_UNITS:
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)


def format_number(x: float) -> str:
    """A PromQL literal that parses back to exactly ``x``."""
    if x != x:
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    if x == int(x) and abs(x) < 1e15:
        text = str(int(x))
        return "-0" if text == "0" and _negative(x) else text
    return repr(x)


def quote(value: str) -> str:
    """A double-quoted PromQL string literal for ``value``."""
    out = ['"']
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def selectors(expr: Expr) -> list[VectorSelector]:
    """Every vector selector in ``expr`` (monitor lint and staleness checks need the names)."""
    return expr.selectors()
