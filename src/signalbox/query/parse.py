"""PromQL text -> :mod:`signalbox.query.ast`, refusing everything outside our subset.

A precedence-climbing parser over :func:`~signalbox.query.lexer.tokenize`. It type-checks
as it builds (a range vector where a number belongs is an error here, not at evaluation)
and names each construct it refuses — unsupported functions and aggregations —
with its position, because a monitor that silently means something else than its author
wrote is worse than one that does not load. Errors for ``@``, subqueries and
``group_left``/``group_right`` follow Prometheus' parser, word for word where it helps.

As in Prometheus 3, a plain number is a duration in seconds where a duration belongs
(``x[90]``, ``x[30:10]``, ``offset 1.5``), and a duration is its number of seconds where a
number belongs (``predict_linear(x[10m], 1h)``).
"""

from __future__ import annotations

import dataclasses
import math
import re

from signalbox.exceptions import QueryError
from signalbox.metrics.labelregex import LabelRegexError
from signalbox.metrics.samples import LABEL_NAME, Matcher, MatchOp
from signalbox.query.ast import (
    COMPARISONS,
    PRECEDENCE,
    RIGHT_ASSOCIATIVE,
    SET_OPERATORS,
    UNARY_PRECEDENCE,
    Aggregation,
    At,
    BinaryExpr,
    Call,
    Cardinality,
    Expr,
    Matching,
    MatrixSelector,
    NumberLiteral,
    StringLiteral,
    Subquery,
    UnaryExpr,
    VectorSelector,
)
from signalbox.query.functions import (
    AGGREGATORS,
    FUNCTIONS,
    UNSUPPORTED_AGGREGATORS,
    UNSUPPORTED_FUNCTIONS,
)
from signalbox.query.lexer import MAX_DURATION_MS, Token, duration_ms, tokenize
from signalbox.query.typecheck import (
    check_aggregation,
    check_binary,
    check_call,
    check_subquery,
    check_unary,
)

_MAX_AT_SECONDS = 9_223_372_036_854_775.807  # an int64 of milliseconds, as Prometheus
MAX_DEPTH = 100
"""How deep an expression may nest (parentheses, calls, unary and binary operators): far past
any real query, and well inside the recursion every later stage (checks, evaluation, printing)
needs, so deep input is a 400 naming this limit instead of a crash."""

_MATCH_OPS: frozenset[str] = frozenset({"=", "!=", "=~", "!~"})


def parse_expr(text: str) -> Expr:
    """Parse one PromQL expression of the supported subset.

    Raises:
        QueryError: with ``position`` (0-based offset into ``text``) and ``construct``
            (e.g. ``"subquery"``, ``"function"``, ``"syntax"``) when the text is not valid
            PromQL or uses PromQL we do not support.
    """
    if not text.strip():
        raise QueryError("empty expression", 0, "syntax")
    parser = _Parser(text)
    expr = parser.expr(0)
    tok = parser.peek()
    if tok.kind != "EOF":
        hint = "an operator or end of input"
        raise QueryError(f"unexpected {tok.describe()}: expected {hint}", tok.pos, "syntax")
    return expr


def _too_deep(pos: int) -> QueryError:
    return QueryError(f"expression nests deeper than {MAX_DEPTH} levels", pos, "depth")


def depth_of(expr: Expr) -> int:
    """How many levels ``expr`` nests, counted without recursion (it may be deep)."""
    deepest, stack = 0, [(expr, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        for f in dataclasses.fields(node):  # type: ignore[arg-type]  # every Expr is a dataclass
            value = getattr(node, f.name)
            items = value if isinstance(value, (tuple, list)) else (value,)
            stack.extend((v, d + 1) for v in items if isinstance(v, Expr))
    return deepest


# Words that modify a binary operator: as bare metric names they would print back
# ambiguously (`a + +bool`), and Prometheus' lexer refuses them there too.
RESERVED_WORDS = frozenset({"bool", "on", "ignoring", "group_left", "group_right"})


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.explicit_offset: list[Expr] = []  # selectors and subqueries given an offset
        self.explicit_at: list[Expr] = []  # ... and an @ modifier
        self.depth = 0  # nesting of expr() calls, bounded by MAX_DEPTH

    # --- token helpers ---

    def peek(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "EOF":
            self.i += 1
        return tok

    def peek_ident(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "IDENT" and tok.text.lower() in words

    def expect(self, kind: str, what: str) -> Token:
        tok = self.peek()
        if tok.kind != kind:
            raise QueryError(f"expected {what}, got {tok.describe()}", tok.pos, "syntax")
        return self.advance()

    # --- expressions ---

    def expr(self, min_prec: int) -> Expr:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _too_deep(self.peek().pos)
            return self._expr(min_prec)
        finally:
            self.depth -= 1

    def _expr(self, min_prec: int) -> Expr:
        lhs = self.unary()
        while True:
            tok = self.peek()
            op = self.binary_op(tok)
            if op is None or PRECEDENCE[op] < min_prec:
                return lhs
            self.advance()
            return_bool = False
            if self.peek_ident("bool"):
                bool_tok = self.advance()
                if op not in COMPARISONS:
                    raise QueryError(
                        "bool modifier can only be used on comparison operators",
                        bool_tok.pos,
                        "syntax",
                    )
                return_bool = True
            matching = None
            if self.peek_ident("on", "ignoring"):
                matching = self.matching(op)
            elif self.peek_ident("group_left", "group_right"):
                g = self.peek()
                raise QueryError(
                    f"{g.text.lower()} needs on(...) or ignoring(...) before it, "
                    f"like a * on(job) {g.text.lower()} b",
                    g.pos,
                    "syntax",
                )
            prec = PRECEDENCE[op]
            rhs = self.expr(prec if op in RIGHT_ASSOCIATIVE else prec + 1)
            if max(depth_of(lhs), depth_of(rhs)) >= MAX_DEPTH:  # a long chain: a + b + c ...
                raise _too_deep(tok.pos)
            lhs = self.binary(op, tok, lhs, rhs, return_bool, matching)

    def matching(self, op: str) -> Matching:
        """``on(...)``/``ignoring(...)``, then optionally ``group_left``/``group_right`` with
        the labels to copy from the "one" side (the parentheses may be left out)."""
        kw = self.advance()
        on = kw.text.lower() == "on"
        labels = self.label_list("'on'" if on else "'ignoring'")
        if not self.peek_ident("group_left", "group_right"):
            return Matching(on, labels)
        g = self.advance()
        which = g.text.lower()
        if op in SET_OPERATORS:
            raise QueryError(f'no grouping allowed for "{op}" operation', g.pos, "vector matching")
        include = self.label_list(f"'{which}'") if self.peek().kind == "(" else ()
        if on:
            for name in include:
                if name in labels:
                    raise QueryError(
                        f'label "{name}" must not occur in ON and GROUP clause at once',
                        g.pos,
                        "vector matching",
                    )
        card: Cardinality = "many-to-one" if which == "group_left" else "one-to-many"
        return Matching(on, labels, card, include)

    def binary_op(self, tok: Token) -> str | None:
        if tok.kind == "OP":
            if tok.text in PRECEDENCE:
                return tok.text
            if tok.text == "=":
                raise QueryError("unexpected '=': use '==' to compare", tok.pos, "syntax")
            return None
        if tok.kind == "IDENT" and tok.text.lower() in PRECEDENCE:  # and, or, unless, atan2
            return tok.text.lower()
        return None

    def binary(
        self,
        op: str,
        tok: Token,
        lhs: Expr,
        rhs: Expr,
        return_bool: bool,
        matching: Matching | None,
    ) -> BinaryExpr:
        check_binary(op, lhs, rhs, return_bool, matching, tok.pos)
        return BinaryExpr(op, lhs, rhs, return_bool, matching, pos=tok.pos)

    def unary(self) -> Expr:
        tok = self.peek()
        if tok.kind == "OP" and tok.text in ("+", "-"):
            self.advance()
            literal = self.peek().kind in ("NUMBER", "DURATION")
            operand = self.expr(UNARY_PRECEDENCE + 1)
            check_unary(tok.text, operand, tok.pos)
            if tok.text == "+":
                return operand
            if literal and isinstance(operand, NumberLiteral):
                return NumberLiteral(-operand.value, pos=tok.pos)
            return UnaryExpr("-", operand, pos=tok.pos)
        return self.postfix(self.primary())

    def primary(self) -> Expr:
        tok = self.advance()
        if tok.kind == "NUMBER":
            # octal and decimal readings differ once two digits follow the leading zeros
            if re.fullmatch(r"0[0-7]+", tok.text) and len(tok.text.lstrip("0")) > 1:
                raise QueryError(_ambiguous_octal(tok.text), tok.pos, "syntax")
            return NumberLiteral(_number(tok), pos=tok.pos)
        if tok.kind == "(":
            inner = self.expr(0)
            self.expect(")", "')'")
            return inner
        if tok.kind == "{":
            return self.selector(None, tok.pos, brace_open=True)
        if tok.kind == "IDENT":
            return self.identifier(tok)
        if tok.kind == "STRING":  # where a string may stand is typecheck's business
            return StringLiteral(tok.text, pos=tok.pos)
        if tok.kind == "DURATION":  # Prometheus 3: a duration is a number of seconds
            return NumberLiteral(duration_ms(tok.text) / 1000, pos=tok.pos)
        if tok.kind == "@":
            raise QueryError(
                "@ modifier must be preceded by an instant vector selector or range vector "
                "selector or a subquery",
                tok.pos,
                "@ modifier",
            )
        if tok.kind == "EOF":
            raise QueryError("unexpected end of input: expected an expression", tok.pos, "syntax")
        raise QueryError(f"unexpected {tok.describe()}: expected an expression", tok.pos, "syntax")

    def identifier(self, tok: Token) -> Expr:
        name = tok.text
        keyword = name.lower()  # keywords are case-insensitive in PromQL, function names are not
        calls = self.peek().kind == "("
        clause = self.peek_ident("by", "without")
        if calls or clause:
            if keyword in AGGREGATORS:
                return self.aggregation(tok)
            if keyword in UNSUPPORTED_AGGREGATORS:
                raise QueryError(
                    f"aggregation '{keyword}' is not supported", tok.pos, "aggregation"
                )
        if calls:
            if name in FUNCTIONS:
                return self.call(tok)
            if name in UNSUPPORTED_FUNCTIONS:
                raise QueryError(f"function '{name}' is not supported", tok.pos, "function")
            raise QueryError(f"unknown function '{name}'", tok.pos, "function")
        if keyword in AGGREGATORS:
            raise QueryError(
                f"aggregation '{keyword}' needs its argument in parentheses: {keyword}(...)",
                tok.pos,
                "syntax",
            )
        if keyword in RESERVED_WORDS:
            raise QueryError(
                f"'{name}' is a keyword, not a metric name here; "
                f'select a metric called {name} with {{__name__="{name}"}}',
                tok.pos,
                "syntax",
            )
        return self.selector(name, tok.pos, brace_open=False)

    def postfix(self, expr: Expr) -> Expr:
        while True:
            tok = self.peek()
            if tok.kind == "[":
                expr = self.range_suffix(expr)
            elif tok.kind == "IDENT" and tok.text.lower() == "offset":
                expr = self.offset_suffix(expr)
            elif tok.kind == "@":
                expr = self.at_suffix(expr)
            else:
                return expr

    def range_suffix(self, expr: Expr) -> Expr:
        open_tok = self.advance()
        tok = self.peek()
        if tok.kind == ":":
            raise QueryError(
                "a subquery needs a range before ':', like x[1h:5m]", tok.pos, "subquery"
            )
        range_ms = self.duration("a duration like 5m or a number of seconds inside [..]")
        if range_ms <= 0:
            raise QueryError("range must be greater than zero", tok.pos, "syntax")
        if self.peek().kind == ":":
            self.advance()
            step_ms = 0
            if self.peek().kind in ("DURATION", "NUMBER"):
                step_ms = self.duration("a subquery step")
            self.expect("]", "']' after the subquery step")
            check_subquery(expr, open_tok.pos)
            return Subquery(expr, range_ms, step_ms, pos=expr.pos)
        self.expect("]", "']'")
        if isinstance(expr, MatrixSelector):
            raise QueryError("a range selector cannot take a second range", open_tok.pos, "syntax")
        if not isinstance(expr, VectorSelector):
            what = "a range vector" if expr.type == "matrix" else "this expression"
            raise QueryError(
                f"ranges are only allowed on vector selectors, like x[5m]; for {what} "
                "use a subquery with a step, like (...)[5m:1m]",
                open_tok.pos,
                "subquery",
            )
        if any(s is expr for s in self.explicit_offset):
            raise QueryError(
                "offset must come after the range: x[5m] offset 1h", open_tok.pos, "syntax"
            )
        if any(s is expr for s in self.explicit_at):
            raise QueryError("no @ modifiers allowed before range", open_tok.pos, "@ modifier")
        return MatrixSelector(expr, range_ms, pos=expr.pos)

    def at_suffix(self, expr: Expr) -> Expr:
        """``@ <seconds>``, ``@ start()`` or ``@ end()`` on a selector or a subquery."""
        at_tok = self.advance()
        at = self.at_value()
        target: Expr = expr.selector if isinstance(expr, MatrixSelector) else expr
        if not isinstance(target, VectorSelector | Subquery):
            raise QueryError(
                "@ modifier must be preceded by an instant vector selector or range vector "
                "selector or a subquery",
                at_tok.pos,
                "@ modifier",
            )
        if target.at is not None:
            raise QueryError(
                "@ <timestamp> may not be set multiple times", at_tok.pos, "@ modifier"
            )
        new = dataclasses.replace(target, at=at)
        self._carry(target, new)
        self.explicit_at.append(new)
        if isinstance(expr, MatrixSelector):
            assert isinstance(new, VectorSelector)
            return dataclasses.replace(expr, selector=new)
        return new

    def _carry(self, old: Expr, new: Expr) -> None:
        """``new`` replaces ``old``: it keeps what was explicitly set on ``old``."""
        if any(s is old for s in self.explicit_offset):
            self.explicit_offset.append(new)
        if any(s is old for s in self.explicit_at):
            self.explicit_at.append(new)

    def at_value(self) -> At:
        tok = self.peek()
        if self.peek_ident("start", "end") and self.tokens[self.i + 1].kind == "(":
            self.advance()
            self.advance()
            self.expect(")", f"')' after @ {tok.text}(")
            return At(edge="start" if tok.text.lower() == "start" else "end")
        negative = False
        if tok.kind == "OP" and tok.text in ("+", "-"):
            negative = tok.text == "-"
            self.advance()
            tok = self.peek()
        if tok.kind == "DURATION":
            self.advance()
            seconds = duration_ms(tok.text) / 1000
        elif tok.kind == "NUMBER":
            self.advance()
            seconds = _number(tok)
        else:
            raise QueryError(
                f"expected a timestamp (Unix seconds), start() or end() after @, got "
                f"{tok.describe()}",
                tok.pos,
                "@ modifier",
            )
        if negative:
            seconds = -seconds
        if not -_MAX_AT_SECONDS < seconds < _MAX_AT_SECONDS:  # also NaN and Inf
            raise QueryError(
                f"timestamp out of bounds for @ modifier: {seconds:f}", tok.pos, "@ modifier"
            )
        return At(ms=_go_round(seconds * 1000))

    def duration(self, what: str) -> int:
        """Milliseconds of a duration (``1h30m``) or, as Prometheus 3 reads them, of a plain
        number of seconds (``90``, ``1.5``, ``0x10``), truncated to the millisecond as
        there (Go's ``time.Duration(seconds * 1000) * time.Millisecond``)."""
        tok = self.peek()
        if tok.kind == "DURATION":
            self.advance()
            return duration_ms(tok.text)
        if tok.kind != "NUMBER":
            raise QueryError(f"expected {what}, got {tok.describe()}", tok.pos, "syntax")
        self.advance()
        seconds = _number(tok)
        if not abs(seconds) * 1000 <= MAX_DURATION_MS:  # also NaN and Inf
            raise QueryError(
                f"duration {tok.text[:40]!r} seconds is out of range (at most 292y)",
                tok.pos,
                "syntax",
            )
        return int(seconds * 1000)

    def offset_suffix(self, expr: Expr) -> Expr:
        kw = self.advance()
        negative = False
        if self.peek().kind == "OP" and self.peek().text == "-":
            self.advance()
            negative = True
        ms = self.duration("a duration after offset, like offset 1h or offset 3600")
        ms = -ms if negative else ms
        target: Expr = expr.selector if isinstance(expr, MatrixSelector) else expr
        if not isinstance(target, VectorSelector | Subquery):
            raise QueryError(
                "offset must follow a selector or a subquery, like x offset 1h, "
                "x[5m] offset 1h or x[1h:5m] offset 1h",
                kw.pos,
                "offset",
            )
        if any(s is target for s in self.explicit_offset):
            raise QueryError("offset may not be set multiple times", kw.pos, "offset")
        new = dataclasses.replace(target, offset_ms=ms)
        self._carry(target, new)
        self.explicit_offset.append(new)
        if isinstance(expr, MatrixSelector):
            assert isinstance(new, VectorSelector)
            return dataclasses.replace(expr, selector=new)
        return new

    # --- selectors ---

    def selector(self, name: str | None, pos: int, *, brace_open: bool) -> VectorSelector:
        matchers: list[Matcher] = []
        if not brace_open and self.peek().kind == "{":
            self.advance()
            brace_open = True
        if brace_open:
            while self.peek().kind != "}":
                matchers.append(self.matcher())
                if self.peek().kind == ",":
                    self.advance()
                elif self.peek().kind != "}":
                    tok = self.peek()
                    raise QueryError(
                        f"expected ',' or '}}' in label matchers, got {tok.describe()}",
                        tok.pos,
                        "syntax",
                    )
            self.advance()
        if name is not None:
            for m in matchers:
                if m.label == "__name__":
                    raise QueryError(
                        f"metric name must not be set twice: '{name}' and a __name__ matcher",
                        pos,
                        "selector",
                    )
        elif not any(not m.matches("") for m in matchers):
            raise QueryError(
                'vector selector must contain at least one matcher that does not match the empty string, like {job="api"}',
                pos,
                "selector",
            )
        return VectorSelector(name, tuple(matchers), 0, pos=pos)

    def matcher(self) -> Matcher:
        tok = self.advance()
        if tok.kind == "STRING":
            raise QueryError(
                "quoted metric or label names (Prometheus 3 UTF-8 syntax) are not supported",
                tok.pos,
                "syntax",
            )
        if tok.kind != "IDENT":
            raise QueryError(f"expected a label name, got {tok.describe()}", tok.pos, "syntax")
        if not LABEL_NAME.match(tok.text):
            raise QueryError(f"invalid label name '{tok.text}'", tok.pos, "syntax")
        op_tok = self.advance()
        if op_tok.kind != "OP" or op_tok.text not in _MATCH_OPS:
            raise QueryError(
                f"expected a matcher operator (=, !=, =~, !~) after '{tok.text}', got {op_tok.describe()}",
                op_tok.pos,
                "syntax",
            )
        val = self.advance()
        if val.kind != "STRING":
            raise QueryError(
                f"expected a quoted string value for label '{tok.text}', got {val.describe()}",
                val.pos,
                "syntax",
            )
        op: MatchOp = op_tok.text  # type: ignore[assignment]
        try:
            return Matcher(tok.text, op, val.text)
        except LabelRegexError as exc:  # RE2 syntax, as Prometheus: (?=...) or \1 are refused
            raise QueryError(
                f"invalid regular expression {val.text!r} for label '{tok.text}' "
                f"(RE2 syntax): {exc.message}",
                val.pos,
                "regex",
            ) from None

    def label_list(self, what: str) -> tuple[str, ...]:
        self.expect("(", f"'(' after {what}")
        labels: list[str] = []
        while self.peek().kind != ")":
            tok = self.advance()
            if tok.kind != "IDENT" or not LABEL_NAME.match(tok.text):
                raise QueryError(
                    f"expected a label name in {what} (...), got {tok.describe()}",
                    tok.pos,
                    "syntax",
                )
            labels.append(tok.text)
            if self.peek().kind == ",":
                self.advance()
            elif self.peek().kind != ")":
                nxt = self.peek()
                raise QueryError(
                    f"expected ',' or ')' in {what} (...), got {nxt.describe()}", nxt.pos, "syntax"
                )
        self.advance()
        return tuple(labels)

    # --- calls and aggregations ---

    def args(self, what: str) -> list[Expr]:
        """The parenthesized arguments, any expression each (a string literal too, even in
        parentheses, as Prometheus): their types are checked by the caller."""
        self.expect("(", f"'(' after {what}")
        args: list[Expr] = []
        if self.peek().kind != ")":
            while True:
                args.append(self.expr(0))
                if self.peek().kind != ",":
                    break
                self.advance()
        self.expect(")", f"',' or ')' in {what}")
        return args

    def call(self, tok: Token) -> Call:
        args = self.args(f"function '{tok.text}'")
        check_call(tok.text, args, tok.pos)
        return Call(tok.text, tuple(args), pos=tok.pos)

    def aggregation(self, tok: Token) -> Aggregation:
        op = tok.text.lower()
        grouping: tuple[str, ...] = ()
        without = False
        prefix = self.peek_ident("by", "without")
        if prefix:
            without, grouping = self.grouping()
        args = self.args(f"aggregation '{op}'")
        if not prefix and self.peek_ident("by", "without"):
            without, grouping = self.grouping()
        param, expr = check_aggregation(op, args, tok.pos)
        return Aggregation(op, expr, param, grouping, without, pos=tok.pos)

    def grouping(self) -> tuple[bool, tuple[str, ...]]:
        without = self.advance().text.lower() == "without"
        return without, self.label_list("'without'" if without else "'by'")


def _ambiguous_octal(text: str) -> str:
    if len(text) > 20:  # no 5,000-digit numbers in a message (nor past int()'s digit limit)
        return (
            f"ambiguous number '{text[:20]}...': Prometheus reads a leading zero as octal; "
            "drop the leading zero"
        )
    octal, decimal = int(text, 8), int(text)
    return (
        f"ambiguous number '{text}': Prometheus reads a leading zero as octal "
        f"({octal}); write {octal} or {decimal}"
    )


def _go_round(x: float) -> int:
    """Go's ``math.Round``: halves away from zero (Python's ``round`` goes to even)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _number(tok: Token) -> float:
    text = tok.text
    if text[:2] in ("0x", "0X"):
        try:
            return float(int(text, 16))
        except OverflowError:  # past a float's range; Prometheus refuses it too
            raise QueryError(
                f"number '{text[:20]}...' is out of range", tok.pos, "syntax"
            ) from None
    return float(text)
