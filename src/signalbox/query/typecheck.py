"""PromQL's static typing: which value types may stand where.

Checked while parsing, so ``rate(x)`` or ``x[5m] * 2`` is refused with a position before
anything is evaluated, as Prometheus does; the engine can then trust node types.
"""

from __future__ import annotations

from signalbox.exceptions import QueryError
from signalbox.metrics.samples import LABEL_NAME
from signalbox.query.ast import COMPARISONS, SET_OPERATORS, Expr, Matching, StringLiteral, quote
from signalbox.query.functions import FUNCTIONS, PARAM_AGGREGATORS, TYPE_NAMES
from signalbox.query.labelfuncs import check_label_function


def _article(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _plural(n: int | str) -> str:
    return "" if str(n) == "1" else "s"


def check_binary(
    op: str, lhs: Expr, rhs: Expr, return_bool: bool, matching: Matching | None, pos: int
) -> None:
    for side in (lhs, rhs):
        if side.type == "matrix":
            raise QueryError(
                f"operator '{op}' needs scalar or instant vector operands, got a range vector "
                "(wrap it in a function like rate() or avg_over_time())",
                side.pos,
                "type",
            )
        if side.type == "string":
            raise QueryError(
                f"operator '{op}' needs scalar or instant vector operands, got a string",
                side.pos,
                "type",
            )
    if op in COMPARISONS and lhs.type == rhs.type == "scalar" and not return_bool:
        raise QueryError("comparisons between scalars must use the bool modifier", pos, "type")
    if op in SET_OPERATORS and "scalar" in (lhs.type, rhs.type):
        raise QueryError(
            f'set operator "{op}" not allowed in binary scalar expression', pos, "type"
        )
    if matching is not None and "scalar" in (lhs.type, rhs.type):
        raise QueryError(
            "vector matching (on/ignoring) is only allowed between instant vectors", pos, "type"
        )


def check_subquery(expr: Expr, pos: int) -> None:
    """Only an instant vector can be evaluated at a subquery's steps (Prometheus' rule)."""
    if expr.type != "vector":
        raise QueryError(
            f"subquery is only allowed on instant vector, got {TYPE_NAMES[expr.type]} instead",
            pos,
            "subquery",
        )


def check_unary(op: str, operand: Expr, pos: int) -> None:
    if operand.type in ("matrix", "string"):
        raise QueryError(
            f"unary '{op}' needs a scalar or instant vector, got {_article(TYPE_NAMES[operand.type])}",
            pos,
            "type",
        )


def check_call(name: str, args: list[Expr], pos: int) -> None:
    sig = FUNCTIONS[name]
    most, least = len(sig.args), len(sig.args) - sig.optional
    if sig.variadic:
        least = most - 1
        if len(args) < least:
            raise QueryError(
                f"function '{name}' takes at least {least} argument{_plural(least)}, "
                f"got {len(args)}",
                pos,
                "function",
            )
    elif not least <= len(args) <= most:
        want = str(most) if least == most else f"{least} or {most}"
        raise QueryError(
            f"function '{name}' takes {want} argument{_plural(want)}, got {len(args)}",
            pos,
            "function",
        )
    for i, arg in enumerate(args, start=1):
        want_type = sig.args[min(i, len(sig.args)) - 1]
        if arg.type != want_type:
            hint = " (add a range, like x[5m])" if want_type == "matrix" else ""
            raise QueryError(
                f"function '{name}' expects {_article(TYPE_NAMES[want_type])} as argument {i}, "
                f"got {TYPE_NAMES[arg.type]}{hint}",
                arg.pos,
                "type",
            )
    if name in ("label_replace", "label_join"):
        check_label_function(name, args)


def check_aggregation(op: str, args: list[Expr], pos: int) -> tuple[Expr | None, Expr]:
    """Validate the arguments; return ``(parameter or None, vector expression)``."""
    want = 2 if op in PARAM_AGGREGATORS else 1
    if len(args) != want:
        raise QueryError(
            f"aggregation '{op}' takes {want} argument{_plural(want)}, got {len(args)}",
            pos,
            "aggregation",
        )
    expr = args[-1]
    if expr.type != "vector":
        raise QueryError(
            f"aggregation '{op}' expects an instant vector, got {TYPE_NAMES[expr.type]}",
            expr.pos,
            "type",
        )
    param = args[0] if want == 2 else None
    param_type = "string" if op == "count_values" else "scalar"
    if param is not None and param.type != param_type:
        raise QueryError(
            f"aggregation '{op}' expects {_article(TYPE_NAMES[param_type])} parameter, "
            f"got {TYPE_NAMES[param.type]}",
            param.pos,
            "type",
        )
    if isinstance(param, StringLiteral) and not LABEL_NAME.fullmatch(param.value):
        raise QueryError(
            f"aggregation '{op}' needs a valid label name, got {quote(param.value)}",
            param.pos,
            "aggregation",
        )
    return param, expr
