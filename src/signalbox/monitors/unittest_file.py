"""The monitor unit-test file format: YAML -> :class:`UnitTestFile`, every error with file:line.

The format and its meaning are described in :mod:`signalbox.monitors.unittest`, which runs
what this module reads. Files are *composed* (PyYAML nodes keep their line marks), so each
problem points at the line and key where it sits; reading never stops at the first one,
and a broken test leaves the other tests of the file intact.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from signalbox.durations import parse_duration
from signalbox.metrics.samples import LABEL_NAME, Labels, format_series, labels_of
from signalbox.monitors.load import is_monitor_test_file
from signalbox.monitors.model import State
from signalbox.monitors.series_notation import NotationError, Value, parse_series, parse_values

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


@dataclass(frozen=True, slots=True)
class FileError:
    """One problem in a test file (or a monitor file it uses): where and what."""

    file: str
    line: int
    test: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" {self.test}:" if self.test else ""
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{who}{key} {self.message}"


@dataclass(frozen=True, slots=True)
class InputSeries:
    name: str
    labels: Labels
    values: tuple[Value, ...]
    line: int


@dataclass(frozen=True, slots=True)
class StateExpectation:
    """``state`` at ``at_ms`` for one series (``labels``) or the monitor as a whole."""

    at_ms: int
    monitor: str
    state: State
    pending: bool | None
    labels: Labels | None
    line: int


@dataclass(frozen=True, slots=True)
class NotificationExpectation:
    """Counts of notifications from the start to the end of the test (None: not checked)."""

    monitor: str
    labels: Labels | None
    firing: int | None
    repeat: int | None
    resolved: int | None
    line: int


@dataclass(frozen=True, slots=True)
class UnitTest:
    name: str
    line: int
    interval_ms: int
    evaluation_ms: int
    series: tuple[InputSeries, ...]
    expect: tuple[StateExpectation, ...]
    notifications: tuple[NotificationExpectation, ...]

    @property
    def end_ms(self) -> int:
        """The last sample or the last ``at``, whichever is later."""
        last = max((len(s.values) - 1 for s in self.series), default=0) * self.interval_ms
        return max([last, *(e.at_ms for e in self.expect)])


@dataclass(frozen=True, slots=True)
class UnitTestFile:
    path: Path
    monitor_files: tuple[Path, ...]
    tests: tuple[UnitTest, ...]
    errors: tuple[FileError, ...]
    broken: tuple[tuple[str, int], ...] = ()
    """``(name, line)`` of each test that has errors and so cannot run."""


# -- reading a test file --------------------------------------------------------------------


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _show(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "nothing" if node.tag.endswith(":null") else repr(node.value)


class _Reader:
    """Reads nodes of one test file, collecting every error with its line."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[FileError] = []
        self.test: str | None = None
        self.bad = False

    def err(self, node: Node | int, key: str | None, message: str) -> None:
        line = node if isinstance(node, int) else _line(node)
        self.errors.append(FileError(self.file, line, self.test, key, message))
        self.bad = True

    def mapping(self, node: Node, known: Sequence[str], what: str) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            self.err(
                node,
                None,
                f"expected {what} (a mapping with keys {', '.join(known)}), got {_show(node)}",
            )
            return {}
        try:
            SafeConstructor().flatten_mapping(node)  # YAML merge keys (<<)
        except yaml.YAMLError as e:
            self.err(node, None, f"cannot merge: {e}")
            return {}
        out: dict[str, tuple[Node, Node]] = {}
        for k, v in node.value:
            key = str(k.value) if isinstance(k, ScalarNode) else None
            if key is None:
                self.err(k, None, f"expected a key name, got {_show(k)}")
            elif key in out:
                self.err(k, key, f"'{key}' is given twice (first on line {_line(out[key][0])})")
            elif key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.err(
                    k,
                    key,
                    f"unknown key '{key}' in {what}{hint}: expected one of {', '.join(known)}",
                )
            else:
                out[key] = (k, v)
        return out

    def items(self, node: Node, key: str) -> list[Node]:
        if isinstance(node, SequenceNode):
            return list(node.value)
        self.err(node, key, f"expected a list, got {_show(node)}")
        return []

    def value(self, node: Node, key: str) -> Any:
        if not isinstance(node, ScalarNode):
            self.err(node, key, f"expected a single value, got {_show(node)}")
            return None
        try:
            return SafeConstructor().construct_object(node)
        except yaml.YAMLError as e:
            self.err(node, key, f"cannot read value: {e}")
            return None

    def text(self, node: Node, key: str, expected: str) -> str | None:
        v = self.value(node, key) if isinstance(node, ScalarNode) else None
        if isinstance(v, str) and v.strip():
            return v.strip()
        self.err(node, key, f"expected {expected}, got {_show(node)}")
        return None

    def duration_ms(self, node: Node, key: str, *, zero_ok: bool) -> int | None:
        v = self.value(node, key) if isinstance(node, ScalarNode) else None
        if v == 0 and zero_ok and not isinstance(v, bool):
            return 0
        try:
            seconds = parse_duration(v) if isinstance(v, str) else None
        except ValueError as e:
            self.err(node, key, str(e))
            return None
        if seconds is None or (seconds <= 0 and not zero_ok):
            self.err(
                node,
                key,
                f"expected a duration like 30s, 5m or 1h30m{'' if zero_ok else ' above zero'}, got {_show(node)}",
            )
            return None
        return round(seconds * 1000)

    def count(self, node: Node, key: str) -> int | None:
        v = self.value(node, key) if isinstance(node, ScalarNode) else None
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
        self.err(node, key, f"expected a count (0 or more), got {_show(node)}")
        return None

    def labels(self, node: Node, key: str) -> Labels | None:
        if not isinstance(node, MappingNode):
            self.err(node, key, f"expected a mapping of label names to values, got {_show(node)}")
            return None
        pairs: dict[str, str] = {}
        ok = True
        for k, v in node.value:
            name = str(k.value) if isinstance(k, ScalarNode) else ""
            if not LABEL_NAME.match(name) or name.startswith("__"):
                self.err(
                    k, key, f"bad label name {name or _show(k)!r}: expected letters, digits and '_'"
                )
                ok = False
            elif name in pairs:
                self.err(k, f"{key}.{name}", f"label '{name}' is given twice")
                ok = False
            elif isinstance(v, ScalarNode) and not v.tag.endswith((":null", ":bool")):
                pairs[name] = str(v.value)
            else:
                self.err(v, f"{key}.{name}", f"expected a label value, got {_show(v)}")
                ok = False
        return labels_of(pairs) if ok else None


def _parse_series(r: _Reader, node: Node) -> InputSeries | None:
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
        r.err(vnode, "values", f"expected values like '1 2 3x5 _ stale', got {_show(vnode)}")
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
    return InputSeries(name, labels, tuple(values), _line(node))


def _parse_expect(r: _Reader, node: Node) -> StateExpectation | None:
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
                f"expected one of {', '.join(_STATES)}, got {_show(m['state'][1])}",
            )
    pending = None
    if "pending" in m:
        pending = r.value(m["pending"][1], "pending")
        if not isinstance(pending, bool):
            r.err(
                m["pending"][1], "pending", f"expected true or false, got {_show(m['pending'][1])}"
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
    return StateExpectation(at, monitor, state, pending, labels, _line(node))


def _parse_notify(r: _Reader, node: Node) -> NotificationExpectation | None:
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
        _line(node),
    )


def _parse_test(
    r: _Reader, node: Node, interval_ms: int, evaluation_ms: int | None
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
        _line(node),
        interval_ms,
        evaluation_ms or interval_ms,
        tuple(s for s in series if s is not None),
        tuple(e for e in expect if e is not None),
        tuple(n for n in notify if n is not None),
    )


def _monitor_files(r: _Reader, path: Path, m: dict[str, tuple[Node, Node]]) -> list[Path]:
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
    r = _Reader(str(path))
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
            broken.append((r.test or f"(test on line {_line(node)})", _line(node)))
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
