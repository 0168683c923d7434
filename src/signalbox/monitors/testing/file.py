"""The monitor unit-test file format: YAML -> :class:`UnitTestFile`, every error with file:line.

The format and its meaning are described in :mod:`signalbox.monitors.testing.runner`, which runs
what this module reads. Files are *composed* (PyYAML nodes keep their line marks), so each
problem points at the line and key where it sits; reading never stops at the first one,
and a broken test leaves the other tests of the file intact.

The records read are :mod:`signalbox.monitors.testing.model` (importable from here too)
and the node-level checks :mod:`signalbox.monitors.testing.reader`; this module knows
the keys of the format and what each one means.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from signalbox.metrics.samples import Labels, format_series
from signalbox.monitors.definitions.load import is_monitor_test_file
from signalbox.monitors.definitions.model import State
from signalbox.monitors.definitions.yamlnodes import line_of, show
from signalbox.monitors.testing.model import (
    FileError,
    InputSeries,
    NotificationExpectation,
    StateExpectation,
    UnitTest,
    UnitTestFile,
)
from signalbox.monitors.testing.notation import NotationError, parse_series, parse_values
from signalbox.monitors.testing.reader import Reader

__all__ = [
    "FileError",
    "InputSeries",
    "NotificationExpectation",
    "StateExpectation",
    "UnitTest",
    "UnitTestFile",
    "find_test_files",
    "load_test_file",
]

_STATES = ("ok", "warning", "critical", "unknown")
_FILE_KEYS = ("monitor_files", "interval", "evaluation_interval", "tests")
_TEST_KEYS = (
    "name",
    "interval",
    "evaluation_interval",
    "input_series",
    "expect",
    "expect_notifications",
)
_SERIES_KEYS = ("series", "values")
_EXPECT_KEYS = ("at", "monitor", "state", "pending", "labels")
_NOTIFY_KEYS = ("monitor", "labels", "firing", "repeat", "resolved")


def _parse_series(r: Reader, node: Node) -> InputSeries | None:
    m = r.mapping(node, _SERIES_KEYS, "an input series")
    for key in _SERIES_KEYS:
        if key not in m and isinstance(node, MappingNode):
            r.err(
                node,
                key,
                f"missing '{key}' in input series, like series: 'x{{host=\"web1\"}}', values: '1 2 3'",
            )
    if "series" not in m or "values" not in m:
        return None
    snode, vnode = m["series"][1], m["values"][1]
    text = r.text(snode, "series", "a series like 'image_processing_time{host=\"web1\"}'")
    raw = vnode.value if isinstance(vnode, ScalarNode) and not vnode.tag.endswith(":null") else None
    if raw is None:
        r.err(vnode, "values", f"expected values like '1 2 3x5 _ stale', got {show(vnode)}")
    try:
        name, labels = parse_series(text) if text is not None else (None, ())
    except NotationError as e:
        r.err(snode, "series", str(e))
        name = None
    try:
        values = parse_values(str(raw)) if raw is not None else None
    except NotationError as e:
        r.err(vnode, "values", f"bad value {e}")
        values = None
    if name is None or values is None:
        return None
    return InputSeries(name, labels, tuple(values), line_of(node))


def _parse_expect(r: Reader, node: Node) -> StateExpectation | None:
    m = r.mapping(node, _EXPECT_KEYS, "an expectation")
    for key in ("at", "monitor", "state"):
        if key not in m and isinstance(node, MappingNode):
            r.err(
                node,
                key,
                f"missing '{key}' in expectation, like {{at: 5m, monitor: NAME, state: critical}}",
            )
    at = r.duration_ms(m["at"][1], "at", zero_ok=True) if "at" in m else None
    monitor = r.text(m["monitor"][1], "monitor", "a monitor name") if "monitor" in m else None
    state = None
    if "state" in m:
        v = r.value(m["state"][1], "state")
        if isinstance(v, str) and v.lower() in _STATES:
            state = State(v.upper())
        else:
            r.err(
                m["state"][1],
                "state",
                f"expected one of {', '.join(_STATES)}, got {show(m['state'][1])}",
            )
    pending = None
    if "pending" in m:
        pending = r.value(m["pending"][1], "pending")
        if not isinstance(pending, bool):
            r.err(
                m["pending"][1], "pending", f"expected true or false, got {show(m['pending'][1])}"
            )
            return None
        if pending and state in (State.OK, State.UNKNOWN):
            r.err(
                m["pending"][1],
                "pending",
                "only warning or critical can be pending (waiting out 'for')",
            )
            return None
    labels = r.labels(m["labels"][1], "labels") if "labels" in m else None
    if at is None or monitor is None or state is None or ("labels" in m and labels is None):
        return None
    return StateExpectation(at, monitor, state, pending, labels, line_of(node))


def _parse_notify(r: Reader, node: Node) -> NotificationExpectation | None:
    m = r.mapping(node, _NOTIFY_KEYS, "a notification expectation")
    if "monitor" not in m and isinstance(node, MappingNode):
        r.err(node, "monitor", "missing 'monitor' in notification expectation")
    counts = {k: r.count(m[k][1], k) for k in ("firing", "repeat", "resolved") if k in m}
    if isinstance(node, MappingNode) and not counts:
        r.err(
            node, None, "expected at least one of firing, repeat, resolved (how many notifications)"
        )
    monitor = r.text(m["monitor"][1], "monitor", "a monitor name") if "monitor" in m else None
    labels = r.labels(m["labels"][1], "labels") if "labels" in m else None
    if (
        monitor is None
        or not counts
        or None in counts.values()
        or ("labels" in m and labels is None)
    ):
        return None
    return NotificationExpectation(
        monitor,
        labels,
        counts.get("firing"),
        counts.get("repeat"),
        counts.get("resolved"),
        line_of(node),
    )


def _parse_test(
    r: Reader, node: Node, interval_ms: int, evaluation_ms: int | None
) -> UnitTest | None:
    r.test, r.bad = None, False
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == "name" and isinstance(v, ScalarNode):
                r.test = str(v.value)
    m = r.mapping(node, _TEST_KEYS, "a test")
    name = r.text(m["name"][1], "name", "a test name") if "name" in m else None
    if "name" not in m and isinstance(node, MappingNode):
        r.err(
            node,
            "name",
            "missing 'name': say what the test shows, like 'pages after 3m of slow resizes'",
        )
    if "interval" in m:
        interval_ms = r.duration_ms(m["interval"][1], "interval", zero_ok=False) or interval_ms
    if "evaluation_interval" in m:
        evaluation_ms = r.duration_ms(
            m["evaluation_interval"][1], "evaluation_interval", zero_ok=False
        )
    series = (
        [_parse_series(r, n) for n in r.items(m["input_series"][1], "input_series")]
        if "input_series" in m
        else []
    )
    seen: dict[tuple[str, Labels], int] = {}
    for s in series:
        if s is not None and (s.name, s.labels) in seen:
            r.err(
                s.line,
                "input_series",
                f"series {format_series(s.name, s.labels)} is given twice (first on line {seen[(s.name, s.labels)]})",
            )
        elif s is not None:
            seen[(s.name, s.labels)] = s.line
    expect = (
        [_parse_expect(r, n) for n in r.items(m["expect"][1], "expect")] if "expect" in m else []
    )
    notify = (
        [_parse_notify(r, n) for n in r.items(m["expect_notifications"][1], "expect_notifications")]
        if "expect_notifications" in m
        else []
    )
    if isinstance(node, MappingNode) and not expect and not notify and not r.bad:
        r.err(node, "expect", "the test checks nothing: add 'expect' or 'expect_notifications'")
    if r.bad or name is None:
        return None
    return UnitTest(
        name,
        line_of(node),
        interval_ms,
        evaluation_ms or interval_ms,
        tuple(s for s in series if s is not None),
        tuple(e for e in expect if e is not None),
        tuple(n for n in notify if n is not None),
    )


def _monitor_files(r: Reader, path: Path, m: dict[str, tuple[Node, Node]]) -> list[Path]:
    base = path.parent
    if "monitor_files" not in m:
        found = sorted(
            p
            for p in base.iterdir()
            if p.suffix in (".yaml", ".yml")
            and p.is_file()
            and not p.name.startswith(".")
            and not is_monitor_test_file(p)
        )
        if not found:
            r.err(
                1,
                "monitor_files",
                f"no monitor files beside the test in {base}: name them with monitor_files: [FILE, ...]",
            )
        return found
    node = m["monitor_files"][1]
    out: list[Path] = []
    for item in node.value if isinstance(node, SequenceNode) else [node]:
        text = r.text(item, "monitor_files", "a file name or glob")
        if text is None:
            continue
        matches = sorted(base.glob(text)) if any(c in text for c in "*?[") else [base / text]
        matches = [p for p in matches if p.is_file()]
        if not matches:
            r.err(item, "monitor_files", f"no such file: {base / text}")
        out.extend(matches)
    return out


def load_test_file(path: Path) -> UnitTestFile:
    """Parse one test file; never raises for bad input (errors are in the result)."""
    r = Reader(str(path))
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError) as e:
        r.err(0, None, f"cannot read file: {e}")
        return UnitTestFile(path, (), (), tuple(r.errors))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        detail = "; ".join(str(x) for x in (e.context, e.problem) if x)
        r.err(mark.line + 1 if mark else 0, None, f"YAML syntax error: {detail}")
        return UnitTestFile(path, (), (), tuple(r.errors))
    if root is None:
        r.err(0, None, "empty test file: expected monitor_files, interval and tests")
        return UnitTestFile(path, (), (), tuple(r.errors))
    m = r.mapping(root, _FILE_KEYS, "a monitor test file")
    interval_ms = (
        r.duration_ms(m["interval"][1], "interval", zero_ok=False) if "interval" in m else None
    )
    evaluation_ms = (
        r.duration_ms(m["evaluation_interval"][1], "evaluation_interval", zero_ok=False)
        if "evaluation_interval" in m
        else None
    )
    files = _monitor_files(r, path, m) if isinstance(root, MappingNode) else []
    tests: list[UnitTest] = []
    if "tests" not in m and isinstance(root, MappingNode):
        r.err(
            root,
            "tests",
            "missing 'tests': a list of tests, each with name, input_series and expect",
        )
    names: dict[str, int] = {}
    broken: list[tuple[str, int]] = []
    for node in r.items(m["tests"][1], "tests") if "tests" in m else []:
        t = _parse_test(r, node, interval_ms or 60_000, evaluation_ms)
        if t is None:
            broken.append((r.test or f"(test on line {line_of(node)})", line_of(node)))
        elif t.name in names:
            r.err(
                t.line,
                "name",
                f"test name '{t.name}' is used twice (first on line {names[t.name]})",
            )
            broken.append((t.name, t.line))
        else:
            names[t.name] = t.line
            tests.append(t)
    return UnitTestFile(path, tuple(files), tuple(tests), tuple(r.errors), tuple(broken))


def find_test_files(paths: Collection[Path]) -> tuple[list[Path], list[FileError]]:
    """Test files named or under the given directories (hidden ones skipped)."""
    files: list[Path] = []
    errors: list[FileError] = []
    for p in paths:
        if p.is_dir():
            files.extend(
                f
                for f in sorted(p.rglob("*"))
                if f.suffix in (".yaml", ".yml")
                and f.is_file()
                and is_monitor_test_file(f)
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.is_file():
            files.append(p)
        else:
            errors.append(FileError(str(p), 0, None, None, "no such file or directory"))
    return files, errors
