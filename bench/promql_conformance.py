"""PromQL conformance: Prometheus' own ``promqltest`` cases run against signalbox's engine.

Prometheus keeps its PromQL semantics in ``promql/promqltest/testdata/*.test``: small
scripts that load series in promtool's notation and state what each query must answer.
This script reads those files from a directory (they are not part of this repository:
``--testdata DIR``, default ``/tmp/promqltest``), replays every ``load`` into a fresh
:class:`~signalbox.metrics.memstore.MemoryMetricStore`, runs every ``eval`` through
:class:`~signalbox.query.Engine` and sorts the cases into:

``equal``        answered, same series, labels and values (within 1e-6 relative, NaN = NaN;
                 same order for ``eval_ordered``)
``differs``      answered, but not what Prometheus answers
``refused``      signalbox said no (QueryError / UsageError / QueryLimitError): the message
                 is recorded, as the cause to fix
``error``        any other exception (a bug)
``fail-ok``      the case expects a failure (``eval_fail`` / ``expect fail``) and got one
``fail-missed``  the case expects a failure and signalbox answered
``skipped``      native histograms (``{{...}}`` values, ``load_with_nhcb``'s derived
                 series, ``histogram_*`` functions other than ``histogram_quantile``), or
                 a ``load`` whose notation signalbox cannot read

Annotations (``eval_warn``, ``expect warn|info|no_warn|no_info``) are not checked:
signalbox's warnings are about rollup exactness, not PromQL's annotations; such cases are
judged on their result only. ``stale`` in a load becomes a stale marker (the store's
``Ended``), as a scrape that drops a series writes one.

The summary prints per-file counts, totals, and the causes of refusals and differences
grouped (refusals by message with numbers and names blanked; differences by kind and the
query's outermost function or operator). ``--verbose`` prints every case that is not
equal, with the expected and actual answers::

    .venv/bin/python bench/promql_conformance.py --testdata /tmp/promqltest
    .venv/bin/python bench/promql_conformance.py --verbose --only functions
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from signalbox.exceptions import QueryError, QueryLimitError, UsageError
from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Labels, Sample
from signalbox.metrics.store import Ended
from signalbox.monitors.testing.notation import STALE, NotationError, parse_series, parse_values
from signalbox.query import Engine, parse_expr
from signalbox.query.ast import (
    Aggregation,
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    StringLiteral,
    Subquery,
    UnaryExpr,
    VectorSelector,
)

REFUSALS = (QueryError, UsageError, QueryLimitError)
EXPERIMENTAL = frozenset(
    {
        # behind Prometheus' --enable-feature=promql-experimental-functions (or newer still)
        "double_exponential_smoothing",
        "first_over_time",
        "info",
        "limit_ratio",
        "limitk",
        "mad_over_time",
        "sort_by_label",
        "sort_by_label_desc",
        "ts_of_first_over_time",
        "ts_of_last_over_time",
        "ts_of_max_over_time",
        "ts_of_min_over_time",
        "step",
        "range",
        "start",
        "end",
        "min_of",
        "max_of",
        "timeseries_gen",
        # behind the delta-temporality feature
        "direct_delta_increase",
        "direct_delta_rate",
        "extrapolated_delta_increase",
        "extrapolated_delta_rate",
    }
)
"""Functions Prometheus ships as experimental: cases using them are counted apart."""
EPSILON = 1e-6
OUTCOMES = ("equal", "differs", "refused", "error", "fail-ok", "fail-missed", "skipped")

_UNITS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000}
_UNITS |= {"m": 60_000, "s": 1000, "ms": 1}
_DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_EVAL = re.compile(r"^(eval(?:_fail|_warn|_info|_ordered)?)\s+(instant|range)\s+(.*)$")
_COMMAND = re.compile(r"^(load|load_with_nhcb|clear|eval\w*)\b")
_RANGE_VECTOR = re.compile(r"^expect range vector from (\S+) to (\S+) step (\S+)$")
_INSTANT = re.compile(r"^at\s+(\S+)\s+(.*)$")
_RANGE = re.compile(r"^from\s+(\S+)\s+to\s+(\S+)\s+step\s+(\S+)\s+(.*)$")


def duration_ms(text: str) -> int:
    """promqltest's times: a Go-style duration (``1m40s``) or a number of seconds."""
    try:
        return round(float(text) * 1000)
    except ValueError:
        pass
    pos, total = 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"bad duration {text!r}")
    return total


def split_series(line: str) -> tuple[str, str]:
    """``name{a="b c"} rest`` -> (series, rest): the first blank outside braces and quotes."""
    depth, quote, i = 0, "", 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c.isspace() and depth == 0:
            return line[:i], line[i:].strip()
        i += 1
    return line, ""


def metric_of(series: str) -> dict[str, str]:
    """Labels of an expected-result series, ``__name__`` included when written."""
    if series.startswith("{") and "__name__" not in series:
        series = "__conformance_placeholder__" + series
        name, labels = parse_series(series)
        return dict(labels)
    name, labels = parse_series(series)
    return {"__name__": name, **dict(labels)}


@dataclass
class Case:
    """One ``eval`` of a test file, with what Prometheus expects of it."""

    file: str
    line: int
    command: str
    expr: str
    at_ms: int = 0
    start_ms: int = 0
    end_ms: int = 0
    step_ms: int = 0
    is_range: bool = False
    expect_fail: bool = False
    ordered: bool = False
    range_vector: tuple[int, int, int] | None = None  # ``expect range vector from .. to .. step``
    lines: list[str] = field(default_factory=list)
    skip: str = ""

    @property
    def experimental(self) -> bool:
        called = re.findall(r"([a-z_]+)\s*\(", self.expr)
        return any(name in EXPERIMENTAL for name in called)


@dataclass
class Verdict:
    case: Case
    outcome: str
    detail: str = ""
    cause: str = ""


@dataclass
class Load:
    """A ``load`` block: samples, stale markers and the names of native histograms."""

    samples: list[Sample] = field(default_factory=list)
    stale: list[tuple[int, str, Labels]] = field(default_factory=list)
    native: set[str] = field(default_factory=set)
    native_labels: set[frozenset[tuple[str, str]]] = field(default_factory=set)
    problem: str = ""


def parse_load(header: str, body: list[str]) -> Load:
    kind, _, interval_text = header.partition(" ")
    out = Load()
    try:
        interval = duration_ms(interval_text.strip())
    except ValueError as e:
        out.problem = str(e)
        return out
    for line in body:
        series, values = split_series(line.strip())
        if "{{" in values:
            out.native.add(series.split("{", 1)[0])
            with contextlib.suppress(NotationError):
                out.native_labels.add(frozenset(parse_series(series)[1]))
            continue
        try:
            name, labels = parse_series(series)
            slots = parse_values(values)
        except NotationError as e:
            out.problem = f"load notation: {e}"
            continue
        if kind == "load_with_nhcb" and name.endswith("_bucket"):
            out.native.add(name.removesuffix("_bucket"))
        for k, v in enumerate(slots):
            if v is None:
                continue
            if v == STALE:
                out.stale.append((k * interval, name, labels))
            else:
                out.samples.append(Sample(name, labels, float(v), k * interval))
    return out


def apply_load(store: MemoryMetricStore, load: Load) -> None:
    store.write(load.samples, 0)
    for ts, name, labels in sorted(load.stale, key=lambda t: t[0]):
        store.write([], ts, ended=Ended(series=[(name, labels)]))


def _native_reason(
    case: Case, native: set[str], native_labels: set[frozenset[tuple[str, str]]]
) -> str:
    if any("{{" in line for line in case.lines):
        return "native histogram in expected result"
    # a selector without a fixed name may reach a native series: compare expected label sets
    nameless = re.search(r"__name__\s*=~|(?<![\w:)\]])\{", case.expr)
    for line in case.lines if nameless else ():
        try:
            labels = metric_of(split_series(line)[0])
        except NotationError:
            continue
        labels.pop("__name__", None)
        if labels and frozenset(labels.items()) in native_labels:
            return "native histogram series"
    for fn in re.findall(r"\b(histogram_\w+)\s*\(", case.expr):
        if fn != "histogram_quantile":
            return f"native histogram function {fn}"
    for name in native:
        if re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", case.expr):
            return "native histogram series"
    return ""


def parse_file(path: Path) -> list[tuple[str, object]]:
    """The file as a list of steps: ("clear", None), ("load", Load), ("eval", Case)."""
    raw = path.read_text().splitlines()
    steps: list[tuple[str, object]] = []
    native: set[str] = set()
    native_labels: set[frozenset[tuple[str, str]]] = set()
    load_problem = ""
    i = 0
    while i < len(raw):
        line = raw[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        body: list[str] = []
        start = i
        while i < len(raw) and raw[i].strip() and not _COMMAND.match(raw[i]):
            if not raw[i].strip().startswith("#"):
                body.append(raw[i])
            i += 1
        if line == "clear":
            steps.append(("clear", None))
            native, native_labels, load_problem = set(), set(), ""
            continue
        if line.startswith(("load ", "load_with_nhcb ")):
            load = parse_load(line, body)
            native |= load.native
            native_labels |= load.native_labels
            load_problem = load_problem or load.problem
            steps.append(("load", load))
            continue
        m = _EVAL.match(line)
        if m is None:
            steps.append(("unknown", line))
            continue
        command, mode, rest = m.groups()
        case = Case(path.stem, start, command, rest)
        if mode == "instant":
            im = _INSTANT.match(rest)
            if im is None:
                steps.append(("unknown", line))
                continue
            case.at_ms, case.expr = duration_ms(im.group(1)), im.group(2)
        else:
            rm = _RANGE.match(rest)
            if rm is None:
                steps.append(("unknown", line))
                continue
            case.is_range = True
            case.start_ms, case.end_ms = duration_ms(rm.group(1)), duration_ms(rm.group(2))
            case.step_ms, case.expr = duration_ms(rm.group(3)), rm.group(4)
        case.expect_fail = command == "eval_fail"
        case.ordered = command == "eval_ordered"
        for b in body:
            s = b.strip()
            if rv := _RANGE_VECTOR.match(s):
                case.range_vector = (
                    duration_ms(rv.group(1)),
                    duration_ms(rv.group(2)),
                    duration_ms(rv.group(3)),
                )
            elif s.startswith("expect "):
                what = s.split()[1]
                case.expect_fail |= what == "fail"
                case.ordered |= what == "ordered"
            elif s.startswith(("expected_fail_message", "expected_fail_regexp")):
                case.expect_fail = True
            else:
                case.lines.append(s)
        case.skip = _native_reason(case, native, native_labels) or (
            f"load unreadable: {load_problem}" if load_problem else ""
        )
        steps.append(("eval", case))
    return steps


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    return abs(a - b) <= EPSILON * max(abs(a), abs(b))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _fmt(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{inner}}}"


def _key(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(metric.items()))


def compare_instant(case: Case, result: object) -> tuple[bool, str, str]:
    """(equal, kind of difference, detail) for an instant query's answer."""
    from signalbox.query.values import QueryResult

    assert isinstance(result, QueryResult)
    lines = case.lines
    if len(lines) == 1 and lines[0].startswith('"'):
        want_text = json.loads(lines[0])
        if result.result_type != "string" or result.string != want_text:
            got = result.string if result.result_type == "string" else result.result_type
            return False, "string result", f"expected string {lines[0]}, got {got!r}"
        return True, "", ""
    if len(lines) == 1 and _number(lines[0]) is not None:
        want = _number(lines[0])
        assert want is not None
        if result.result_type != "scalar" or result.scalar is None:
            return False, "type", f"expected scalar {lines[0]}, got {result.result_type}"
        ok = _close(want, result.scalar)
        return ok, "value", f"expected {want}, got {result.scalar}"
    expected: list[tuple[dict[str, str], float]] = []
    for line in lines:
        series, value = split_series(line)
        v = _number(value.split()[0]) if value else None
        if v is None:
            return False, "unreadable expectation", line
        expected.append((metric_of(series), v))
    if result.result_type == "scalar":
        return False, "type", f"expected a vector of {len(expected)}, got scalar {result.scalar}"
    if result.result_type == "matrix":
        if case.range_vector is not None:
            return _compare_matrix(case.lines, range(*_inclusive(case.range_vector)), result)
        if not expected and not result.matrix:
            return True, "", ""
        return False, "type", f"expected a vector, got a matrix of {len(result.matrix)}"
    if case.range_vector is not None:
        return False, "type", f"expected a range vector, got {result.result_type}"
    got = [(s.metric, s.value) for s in result.vector]
    want_keys = {_key(m): v for m, v in expected}
    got_keys = {_key(m): v for m, v in got}
    missing = [k for k in want_keys if k not in got_keys]
    extra = [k for k in got_keys if k not in want_keys]
    if missing or extra:
        kind = "labels" if missing and extra else ("missing series" if missing else "extra series")
        detail = "; ".join(
            [f"missing {_fmt(dict(k))} {want_keys[k]}" for k in missing[:3]]
            + [f"extra {_fmt(dict(k))} {got_keys[k]}" for k in extra[:3]]
        )
        return False, kind, detail
    wrong = [k for k, v in want_keys.items() if not _close(v, got_keys[k])]
    if wrong:
        detail = "; ".join(
            f"{_fmt(dict(k))} expected {want_keys[k]} got {got_keys[k]}" for k in wrong[:3]
        )
        return False, "value", detail
    if case.ordered and [_key(m) for m, _ in expected] != [_key(m) for m, _ in got]:
        return False, "order", "order: " + ", ".join(_fmt(m) for m, _ in got)
    return True, "", ""


def _inclusive(spec: tuple[int, int, int]) -> tuple[int, int, int]:
    start, end, step = spec
    return start, end + 1, step


def compare_range(case: Case, result: object) -> tuple[bool, str, str]:
    from signalbox.query.values import QueryResult

    assert isinstance(result, QueryResult)
    steps = range(*_inclusive((case.start_ms, case.end_ms, case.step_ms)))
    return _compare_matrix(case.lines, steps, result)


def _compare_matrix(lines: list[str], steps: range, result: object) -> tuple[bool, str, str]:
    """Series with one value per step (``_`` for none) against a matrix answer."""
    from signalbox.query.values import QueryResult

    assert isinstance(result, QueryResult)
    want: dict[tuple[tuple[str, str], ...], dict[int, float]] = {}
    for line in lines:
        series, values = split_series(line)
        try:
            slots = parse_values(values)
        except NotationError:
            return False, "unreadable expectation", line
        points = {t: float(v) for t, v in zip(steps, slots, strict=False) if isinstance(v, float)}
        if points:
            want[_key(metric_of(series))] = points
    got = {_key(m.metric): dict(m.points) for m in result.matrix if m.points}
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    if missing or extra:
        kind = "labels" if missing and extra else ("missing series" if missing else "extra series")
        detail = "; ".join(
            [f"missing {_fmt(dict(k))}" for k in missing[:3]]
            + [f"extra {_fmt(dict(k))} {sorted(got[k].items())[:4]}" for k in extra[:3]]
        )
        return False, kind, detail
    for k, points in want.items():
        actual = got[k]
        if points.keys() != actual.keys():
            only_w = sorted(points.keys() - actual.keys())[:3]
            only_g = sorted(actual.keys() - points.keys())[:3]
            detail = f"{_fmt(dict(k))} steps only expected {only_w}, only got {only_g}"
            return False, "points", detail
        for t, v in points.items():
            if not _close(v, actual[t]):
                return False, "value", f"{_fmt(dict(k))} at {t} ms expected {v} got {actual[t]}"
    return True, "", ""


def outermost(expr_text: str) -> str:
    """The query's outermost function or operator, to group differences by."""
    try:
        e: Expr = parse_expr(expr_text)
    except REFUSALS:
        return "?"
    while True:
        if isinstance(e, Call):
            return f"{e.func!s}()"
        if isinstance(e, Aggregation):
            return str(e.op)
        if isinstance(e, BinaryExpr):
            kind = "binary" if e.matching is None else f"binary {e.matching.card}"
            return f"{kind} {e.op}{' bool' if e.return_bool else ''}"
        if isinstance(e, UnaryExpr):
            e = e.expr
            continue
        if isinstance(e, Subquery):
            return "subquery"
        if isinstance(e, MatrixSelector):
            return "range selector"
        if isinstance(e, VectorSelector):
            return "selector"
        if isinstance(e, NumberLiteral | StringLiteral):
            return "literal"
        return type(e).__name__


def refusal_cause(message: str) -> str:
    """A refusal's message with positions, numbers, label sets and ranges blanked (names kept)."""
    text = re.sub(r" at position \d+", "", message)
    text = re.sub(r"\{[^}]*\}", "{…}", text)
    text = re.sub(r"\[[^\]]*\]", "[…]", text)
    text = re.sub(r"(?<![\w.])\d+(\.\d+)?(e[+-]?\d+)?(?![\w.])", "N", text)
    return text[:110]


def run_case(engine: Engine, case: Case) -> Verdict:
    try:
        if case.is_range:
            result = engine.range(case.expr, case.start_ms, case.end_ms, case.step_ms)
        else:
            result = engine.instant(case.expr, case.at_ms)
    except REFUSALS as e:
        if case.expect_fail:
            return Verdict(case, "fail-ok", str(e))
        return Verdict(case, "refused", str(e), refusal_cause(str(e)))
    except Exception as e:  # every other exception is a finding (a bug), not a crash
        if case.expect_fail:
            return Verdict(case, "fail-ok", f"{type(e).__name__}: {e}")
        where = f"{type(e).__name__}: {e}"
        return Verdict(case, "error", where, refusal_cause(where))
    if case.expect_fail:
        return Verdict(case, "fail-missed", "answered", outermost(case.expr))
    compare = compare_range if case.is_range else compare_instant
    try:
        ok, kind, detail = compare(case, result)
    except NotationError as e:
        return Verdict(case, "skipped", f"expectation unreadable: {e}")
    if ok:
        return Verdict(case, "equal")
    return Verdict(case, "differs", detail, f"{kind}: {outermost(case.expr)}")


def run_file(path: Path) -> list[Verdict]:
    verdicts: list[Verdict] = []
    store = MemoryMetricStore()
    for kind, payload in parse_file(path):
        if kind == "clear":
            store = MemoryMetricStore()
        elif kind == "load":
            assert isinstance(payload, Load)
            apply_load(store, payload)
        elif kind == "eval":
            assert isinstance(payload, Case)
            if payload.skip:
                verdicts.append(Verdict(payload, "skipped", payload.skip, payload.skip))
                continue
            # coarsest_resolution_s=0: raw samples only, no widening probe for rollups
            engine = Engine(store, lookback_ms=300_000, coarsest_resolution_s=0)
            verdicts.append(run_case(engine, payload))
        else:
            print(f"{path.name}: unknown command {payload!r}", file=sys.stderr)
    return verdicts


def _skip_cause(detail: str) -> str:
    return re.sub(r"histogram_\w+", "histogram_*", detail.split(":")[0])


def report(by_file: dict[str, list[Verdict]], *, verbose: bool, top: int) -> None:
    width = max([len(f) for f in by_file] + [5])
    print(f"{'file':<{width}} " + " ".join(f"{o:>11}" for o in OUTCOMES) + f" {'cases':>6}")
    totals: Counter[str] = Counter()
    for name, verdicts in sorted(by_file.items()):
        counts = Counter(v.outcome for v in verdicts)
        totals += counts
        cells = " ".join(f"{counts[o]:>11}" for o in OUTCOMES)
        print(f"{name:<{width}} {cells} {len(verdicts):>6}")
    n = sum(totals.values())
    print(f"{'TOTAL':<{width}} " + " ".join(f"{totals[o]:>11}" for o in OUTCOMES) + f" {n:>6}")
    run = n - totals["skipped"]
    if run:
        answered_right = totals["equal"] + totals["fail-ok"]
        print(
            f"\nof {run} cases run (outside native histograms): {answered_right} agree with "
            f"Prometheus ({100 * answered_right / run:.1f}%), {totals['differs']} differ, "
            f"{totals['refused']} refused, {totals['error']} errors, "
            f"{totals['fail-missed']} answered where Prometheus fails"
        )
    everything = [v for vs in by_file.values() for v in vs]
    stable = [v for v in everything if v.outcome != "skipped" and not v.case.experimental]
    if stable:
        kinds = Counter(v.outcome for v in stable)
        agree = kinds["equal"] + kinds["fail-ok"]
        print(
            f"without Prometheus' experimental functions ({len(everything) - totals['skipped'] - len(stable)}"
            f" cases set apart): {len(stable)} run, {agree} agree ({100 * agree / len(stable):.1f}%), "
            f"{kinds['differs']} differ, {kinds['refused']} refused, {kinds['error']} errors, "
            f"{kinds['fail-missed']} answered where Prometheus fails"
        )
    for outcome, title in (
        ("refused", "refusals by cause"),
        ("differs", "differences by kind and outermost function/operator"),
        ("error", "errors by cause"),
        ("fail-missed", "answered where Prometheus fails, by outermost function/operator"),
        ("skipped", "skipped by reason"),
    ):
        causes: Counter[str] = Counter(
            _skip_cause(v.detail)
            if outcome == "skipped"
            else v.cause + (" [experimental]" if v.case.experimental else "")
            for v in everything
            if v.outcome == outcome
        )
        if not causes:
            continue
        print(f"\n{title} ({sum(causes.values())}):")
        for cause, count in causes.most_common(top):
            print(f"  {count:>4}  {cause}")
        if len(causes) > top:
            print(f"  ....  {len(causes) - top} more causes")
    if verbose:
        print("\ncases not equal:")
        grouped: dict[str, list[Verdict]] = defaultdict(list)
        for v in everything:
            if v.outcome not in ("equal", "fail-ok", "skipped"):
                grouped[v.outcome].append(v)
        for outcome, verdicts in grouped.items():
            for v in verdicts:
                c = v.case
                when = (
                    f"range {c.start_ms}..{c.end_ms} step {c.step_ms} ms"
                    if c.is_range
                    else f"at {c.at_ms} ms"
                )
                print(f"[{outcome}] {c.file}.test:{c.line} {c.command} {when}: {c.expr}")
                print(f"    {v.detail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--testdata", type=Path, default=Path("/tmp/promqltest"))
    ap.add_argument("--verbose", action="store_true", help="print every case that is not equal")
    ap.add_argument("--only", action="append", default=[], help="file stem(s) to run")
    ap.add_argument("--top", type=int, default=25, help="causes listed per outcome")
    args = ap.parse_args(argv)
    files = sorted(args.testdata.glob("*.test"))
    if args.only:
        files = [f for f in files if f.stem in args.only]
    if not files:
        print(f"no .test files in {args.testdata}", file=sys.stderr)
        return 2
    by_file = {f.stem: run_file(f) for f in files}
    report(by_file, verbose=args.verbose, top=args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
