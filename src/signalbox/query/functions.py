"""The functions and aggregations of our PromQL subset: signatures for the parser and
per-value math for the engine.

Signatures live here (not in the parser) so the parser, ``Expr.type`` and the engine agree
on one table, and so the list of what we support is in one readable place. Everything
else Prometheus knows is listed too, so an unsupported-but-real function is refused as
"not supported" rather than "unknown" — the user learns it is a deliberate limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

ValueType = Literal["scalar", "vector", "matrix", "string"]

TYPE_NAMES: dict[str, str] = {
    "scalar": "scalar",
    "vector": "instant vector",
    "matrix": "range vector",
    "string": "string",
}


@dataclass(frozen=True, slots=True)
class Signature:
    """Argument and return types of one function; the last ``optional`` args may be omitted."""

    name: str
    args: tuple[ValueType, ...]
    returns: ValueType
    optional: int = 0
    # a window narrower than one rollup bucket is widened to this many buckets (2 where one
    # bucket of a single sample would give no answer: rates, slopes, last two samples)
    rollup_buckets: int = 1
    variadic: bool = False  # the last arg may repeat, or be left out (label_join's sources)


def _sig(
    name: str, args: tuple[ValueType, ...], returns: ValueType, optional: int = 0, buckets: int = 1
) -> Signature:
    return Signature(name, args, returns, optional, buckets)


OVER_TIME = (
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
)
RATE_LIKE = ("rate", "increase", "delta", "irate", "idelta", "deriv")
# The per-bucket statistics (SeriesPoints attributes) each function reads from rollup
# buckets beyond their last values, so a read fetches those columns and no others.
# ``firsts`` marks buckets that have statistics (old buckets have none: see rangefuncs).
_COUNTER = frozenset({"firsts", "counts", "drops"})
_LINES = frozenset({"firsts", "counts", "sums", "mins", "maxs", "sx", "sxx", "sxy"})
_SPREAD = frozenset({"firsts", "counts", "sums", "mins", "maxs", "m2"})
STATISTICS_READ: dict[str, frozenset[str]] = {
    "avg_over_time": frozenset({"sums", "counts"}),
    "sum_over_time": frozenset({"sums"}),
    "count_over_time": frozenset({"counts"}),
    "present_over_time": frozenset({"counts"}),
    "min_over_time": frozenset({"mins"}),
    "max_over_time": frozenset({"maxs"}),
    "rate": _COUNTER,
    "increase": _COUNTER,
    "delta": frozenset({"firsts", "counts"}),
    "irate": frozenset({"firsts", "counts", "prev_ts", "prevs"}),
    "idelta": frozenset({"firsts", "counts", "prev_ts", "prevs"}),
    "deriv": _LINES,
    "predict_linear": _LINES,
    "changes": frozenset({"firsts", "changes"}),
    "resets": frozenset({"firsts", "resets"}),
    "stddev_over_time": _SPREAD,
    "stdvar_over_time": _SPREAD,
}
BUCKET_STATISTICS = frozenset(STATISTICS_READ)
"""Functions that read more than each bucket's last value (see :data:`STATISTICS_READ`)."""
TRIG = (
    "sin", "cos", "tan", "asin", "acos", "atan",
    "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
    "deg", "rad",
)  # fmt: skip
ELEMENTWISE = ("abs", "ceil", "floor", "sqrt", "exp", "ln", "log2", "log10", "sgn", *TRIG)
# Calendar fields of a Unix time in seconds, UTC; without an argument, of the step time.
DATE_FUNCTIONS = (
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "hour",
    "minute",
    "month",
    "year",
)

FUNCTIONS: dict[str, Signature] = {
    **{n: _sig(n, ("matrix",), "vector") for n in OVER_TIME},
    "quantile_over_time": _sig("quantile_over_time", ("scalar", "matrix"), "vector"),
    "mad_over_time": _sig("mad_over_time", ("matrix",), "vector"),
    "stddev_over_time": _sig("stddev_over_time", ("matrix",), "vector"),
    "stdvar_over_time": _sig("stdvar_over_time", ("matrix",), "vector"),
    "changes": _sig("changes", ("matrix",), "vector"),
    "resets": _sig("resets", ("matrix",), "vector"),
    "absent_over_time": _sig("absent_over_time", ("matrix",), "vector"),
    **{n: _sig(n, ("matrix",), "vector", buckets=2) for n in RATE_LIKE},
    "predict_linear": _sig("predict_linear", ("matrix", "scalar"), "vector", buckets=2),
    "histogram_quantile": _sig("histogram_quantile", ("scalar", "vector"), "vector"),
    **{n: _sig(n, ("vector",), "vector") for n in ELEMENTWISE},
    "round": _sig("round", ("vector", "scalar"), "vector", optional=1),
    "clamp": _sig("clamp", ("vector", "scalar", "scalar"), "vector"),
    "clamp_min": _sig("clamp_min", ("vector", "scalar"), "vector"),
    "clamp_max": _sig("clamp_max", ("vector", "scalar"), "vector"),
    "time": _sig("time", (), "scalar"),
    "vector": _sig("vector", ("scalar",), "vector"),
    "scalar": _sig("scalar", ("vector",), "scalar"),
    "absent": _sig("absent", ("vector",), "vector"),
    **{n: _sig(n, ("vector",), "vector", optional=1) for n in DATE_FUNCTIONS},
    "sort": _sig("sort", ("vector",), "vector"),
    "sort_desc": _sig("sort_desc", ("vector",), "vector"),
    "timestamp": _sig("timestamp", ("vector",), "vector"),
    "pi": _sig("pi", (), "scalar"),
    "present_over_time": _sig("present_over_time", ("matrix",), "vector"),
    "label_replace": _sig(
        "label_replace", ("vector", "string", "string", "string", "string"), "vector"
    ),
    "label_join": Signature(
        "label_join", ("vector", "string", "string", "string"), "vector", variadic=True
    ),
}

AGGREGATORS = frozenset(
    {"sum", "avg", "min", "max", "count", "topk", "bottomk"}
    | {"quantile", "stddev", "stdvar", "group", "count_values"}
)
PARAM_AGGREGATORS = frozenset({"topk", "bottomk", "quantile", "count_values"})

# Real PromQL we deliberately do not implement; named so the refusal says so.
UNSUPPORTED_AGGREGATORS = frozenset({"limitk", "limit_ratio"})
UNSUPPORTED_FUNCTIONS = frozenset(
    {
        "double_exponential_smoothing",
        "first_over_time",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantiles",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "info",
        "sort_by_label",
        "sort_by_label_desc",
        "ts_of_first_over_time",
        "ts_of_last_over_time",
        "ts_of_max_over_time",
        "ts_of_min_over_time",
    }
)

# Functions whose result keeps the metric name (Prometheus: only last_over_time).
KEEPS_NAME = frozenset({"last_over_time"})


# --- float math with Go/Prometheus semantics (Python raises where Go returns Inf/NaN) ---

NAN = math.nan
INF = math.inf


def div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0 or a != a:
            return NAN
        return math.copysign(INF, a) * math.copysign(1.0, b)


def mod(a: float, b: float) -> float:
    try:
        return math.fmod(a, b)
    except ValueError:  # fmod(x, 0), fmod(inf, y)
        return NAN


def _odd_integer(y: float) -> bool:
    return math.isfinite(y) and y == math.floor(y) and math.fmod(y, 2.0) != 0


def power(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        return -INF if a < 0 and _odd_integer(b) else INF
    except ValueError:
        if a == 0:  # 0 ** negative
            return math.copysign(INF, a) if _odd_integer(b) else INF
        return NAN  # negative ** non-integer


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": div,
    "%": mod,
    "^": power,
    "atan2": math.atan2,  # C99 special cases, the same as Go's math.Atan2
}

COMPARISON: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


def _finite_or_self(fn: Callable[[float], float]) -> Callable[[float], float]:
    def apply(x: float) -> float:
        return fn(x) if math.isfinite(x) else x

    return apply


def _sqrt(x: float) -> float:
    return math.sqrt(x) if x >= 0 else NAN  # negative and NaN alike


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return INF


def _log(fn: Callable[[float], float]) -> Callable[[float], float]:
    def apply(x: float) -> float:
        if x > 0:
            return fn(x)
        if x == 0:
            return -INF
        return NAN  # negative or NaN

    return apply


def _sgn(x: float) -> float:
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    return x  # 0, -0 and NaN map to themselves


def _domain(fn: Callable[[float], float]) -> Callable[[float], float]:
    """Go's math returns NaN outside a function's domain (asin(2), acosh(0), sin(Inf));
    Python raises ValueError there."""

    def apply(x: float) -> float:
        try:
            return fn(x)
        except ValueError:
            return NAN

    return apply


def _overflowing(fn: Callable[[float], float]) -> Callable[[float], float]:
    """``cosh``/``sinh`` of a large argument: Go gives ±Inf with the sign of the true
    result, Python raises OverflowError."""

    def apply(x: float) -> float:
        try:
            return fn(x)
        except OverflowError:
            return math.copysign(INF, fn(math.copysign(1.0, x)))

    return apply


def _atanh(x: float) -> float:
    if x == 1.0 or x == -1.0:
        return math.copysign(INF, x)  # Go: atanh(±1) = ±Inf; Python raises
    return _domain(math.atanh)(x)


TRIG_MATH: dict[str, Callable[[float], float]] = {
    "sin": _domain(math.sin),
    "cos": _domain(math.cos),
    "tan": _domain(math.tan),
    "asin": _domain(math.asin),
    "acos": _domain(math.acos),
    "atan": math.atan,
    "sinh": _overflowing(math.sinh),
    "cosh": _overflowing(math.cosh),
    "tanh": math.tanh,
    "asinh": math.asinh,
    "acosh": _domain(math.acosh),
    "atanh": _atanh,
    "deg": lambda x: x * 180 / math.pi,
    "rad": lambda x: x * math.pi / 180,
}

UNARY_MATH: dict[str, Callable[[float], float]] = {
    "abs": abs,
    "ceil": _finite_or_self(lambda x: float(math.ceil(x))),
    "floor": _finite_or_self(lambda x: float(math.floor(x))),
    "sqrt": _sqrt,
    "exp": _exp,
    "ln": _log(math.log),
    "log2": _log(math.log2),
    "log10": _log(math.log10),
    "sgn": _sgn,
    **TRIG_MATH,
}


def round_to(x: float, to_nearest: float) -> float:
    """Prometheus ``round``: ties round up, to a multiple of ``to_nearest``."""
    inverse = div(1.0, to_nearest)
    y = x * inverse + 0.5
    if not math.isfinite(y):
        return div(y, inverse) if y == y else NAN
    return div(float(math.floor(y)), inverse)


def go_max(a: float, b: float) -> float:
    """``math.Max``: NaN wins, unlike Python's order-dependent ``max``."""
    if a != a or b != b:
        return NAN
    return a if a > b else b


def go_min(a: float, b: float) -> float:
    if a != a or b != b:
        return NAN
    return a if a < b else b


def nan_ignoring_min(values: list[float]) -> float:
    """Prometheus ``min``/``min_over_time``: NaN only if every value is NaN.

    ``min`` itself skips every NaN after the first value (a comparison with NaN is false,
    so a NaN never replaces the pick; ties keep the first, as over the NaN-free list): its
    pick is the answer unless the first value is NaN. Only then is the list filtered (this
    runs per step and group of every ``min by``)."""
    if not values:
        return NAN
    got = min(values)
    if got == got:
        return got
    real = [v for v in values if v == v]
    return min(real) if real else NAN


def nan_ignoring_max(values: list[float]) -> float:
    """Prometheus ``max``/``max_over_time``: as :func:`nan_ignoring_min`."""
    if not values:
        return NAN
    got = max(values)
    if got == got:
        return got
    real = [v for v in values if v == v]
    return max(real) if real else NAN


def quantile(q: float, values: list[float]) -> float:
    """Prometheus' ``quantile``: linear interpolation between closest ranks, NaN sorts first."""
    if not values or q != q:
        return NAN
    if q < 0:
        return -INF
    if q > 1:
        return INF
    ordered = sorted(values, key=lambda v: (v == v, v if v == v else 0.0))
    n = len(ordered)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight
