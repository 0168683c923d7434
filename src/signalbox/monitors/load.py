"""Monitor YAML files -> validated :class:`Monitor` models, plus every lint error found.

Reviewers read monitors like code, so lint must point at the exact line and say what was
expected. Files are *composed* (PyYAML nodes keep their line marks) rather than loaded, and
each value is checked where it sits. Loading never stops at the first problem: every file
is read, every error reported, and every monitor without an error is returned, so one typo
cannot switch off the rest of the monitoring.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from signalbox.durations import parse_duration
from signalbox.exceptions import QueryError
from signalbox.metrics.samples import LABEL_NAME
from signalbox.monitors.model import (
    NAME_RE,
    NO_DATA_CHOICES,
    Check,
    FlagAction,
    Flapping,
    Monitor,
    NagiosCheck,
    QueueCheck,
    StaleCheck,
    State,
    ThresholdCheck,
)
from signalbox.monitors.threshold import (
    Threshold,
    ThresholdError,
    contradictions,
    parse_threshold,
)
from signalbox.query import parse_expr
from signalbox.query.ast import Expr, VectorSelector

KINDS = ("query", "stale", "command", "queue")
KNOWN_KEYS = (
    "name", "description", "owner", "runbook", "notify", "depends_on", "on_critical",
    "on_warning", "labels", "repeat", "for", "no_data", "flapping",
    *KINDS, "warning", "critical", "recover", "timeout",
)  # fmt: skip
_TYPE_WORDS = {"matrix": "range vector", "string": "string"}
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%\Z")


@dataclass(frozen=True, slots=True)
class LintError:
    """One problem in a monitor file: where (``line`` is 1-based, 0 = whole file) and what."""

    file: str
    line: int
    monitor: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" {self.monitor}:" if self.monitor else ""
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{who}{key} {self.message}"


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The valid monitors (file order) and every error; ``ok`` when there are none."""

    monitors: tuple[Monitor, ...]
    errors: tuple[LintError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def is_monitor_test_file(path: Path) -> bool:
    """``*_test.yaml`` / ``*.test.yaml`` hold monitor unit tests, not monitors."""
    stem = path.name.rsplit(".", 1)[0]
    return stem.endswith(("_test", ".test"))


def monitor_files(paths: Sequence[Path]) -> tuple[list[Path], list[LintError]]:
    """Expand directories to their ``*.yaml``/``*.yml`` files (sorted, recursive).

    Monitor unit-test files and hidden files or directories (editor droppings, ``.git``)
    are skipped inside directories; a file named explicitly is always read.
    """
    files: list[Path] = []
    errors: list[LintError] = []
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p).parts
                if (
                    f.suffix in (".yaml", ".yml")
                    and f.is_file()
                    and not any(part.startswith(".") for part in rel)
                    and not is_monitor_test_file(f)
                ):
                    files.append(f)
        elif p.is_file():
            files.append(p)
        else:
            errors.append(LintError(str(p), 0, None, None, "no such file or directory"))
    seen: set[Path] = set()
    unique = []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique, errors


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _line(node: Node | int) -> int:
    return node if isinstance(node, int) else int(node.start_mark.line) + 1


def _show(node: Node, value: object = None) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if value is None and node.tag.endswith(":null"):
        return "nothing"
    return repr(value) if value is not None else repr(node.value)


def _construct(node: Node) -> Any:
    return SafeConstructor().construct_document(node)


@dataclass
class _Item:
    """One list item of a file, with what the cross-file checks need."""

    file: str
    line: int
    name: str | None
    name_line: int
    depends: list[tuple[str, int]] = field(default_factory=list)
    monitor: Monitor | None = None
    bad: bool = False


class _ItemParser:
    """Validates one monitor mapping, recording every error it finds."""

    def __init__(
        self,
        file: str,
        node: MappingNode,
        notifiers: Collection[str] | None,
        errors: list[LintError],
    ) -> None:
        self.file, self.node, self.notifiers, self.errors = file, node, notifiers, errors
        self.bad = False
        self.name: str | None = None

    def err(self, where: Node | int, key: str | None, message: str) -> None:
        self.errors.append(LintError(self.file, _line(where), self.name, key, message))
        self.bad = True

    # -- value readers: each returns None after reporting an error ------------------------

    def scalar(self, key: str, node: Node) -> Any:
        if not isinstance(node, ScalarNode):
            self.err(node, key, f"expected a single value, got {_show(node)}")
            return None
        try:
            return _construct(node)
        except yaml.YAMLError as e:
            self.err(node, key, f"cannot read value: {e}")
            return None

    def string(self, key: str, node: Node, expected: str = "a string") -> str | None:
        value = self.scalar(key, node) if isinstance(node, ScalarNode) else None
        if isinstance(value, str) and value.strip():
            return value
        self.err(node, key, f"expected {expected}, got {_show(node, value)}")
        return None

    def number(self, key: str, node: Node) -> float | None:
        value = self.scalar(key, node) if isinstance(node, ScalarNode) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self.err(node, key, f"expected a number, got {_show(node, value)}")
        return None

    def duration(self, key: str, node: Node, *, zero_ok: bool = False) -> float | None:
        value = self.scalar(key, node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, str):
            self.err(
                node, key, f"expected a duration like 30s, 5m or 1h30m, got {_show(node, value)}"
            )
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            self.err(node, key, str(e))
            return None
        if seconds <= 0 and not zero_ok:
            self.err(node, key, f"expected a duration above zero, got {value!r}")
            return None
        return seconds

    def threshold(self, key: str, node: Node) -> Threshold | None:
        value = self.scalar(key, node) if isinstance(node, ScalarNode) else None
        try:
            return parse_threshold(value)
        except ThresholdError as e:
            self.err(node, key, str(e))
            return None

    def names(self, key: str, node: Node) -> list[tuple[str, int]]:
        """A list of names (or one name) with the line of each."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        out = []
        for item in items:
            name = self.string(key, item, "a name")
            if name is not None:
                out.append((name, _line(item)))
        return out

    def mapping(self, key: str, node: Node, known: Sequence[str]) -> dict[str, tuple[Node, Node]]:
        """Keys of a nested mapping (``stale``, ``queue``, ...), reporting unknown and repeated ones."""
        if not isinstance(node, MappingNode):
            self.err(
                node, key, f"expected a mapping with keys {', '.join(known)}, got {_show(node)}"
            )
            return {}
        return self.entries(node, known, prefix=f"{key}.")

    def entries(
        self, node: MappingNode, known: Sequence[str], prefix: str = ""
    ) -> dict[str, tuple[Node, Node]]:
        explicit = {id(k) for k, _ in node.value}
        try:
            SafeConstructor().flatten_mapping(node)  # YAML merge keys (<<): merged pairs come first
        except yaml.YAMLError as e:
            self.err(node, prefix.rstrip(".") or None, f"cannot merge: {e}")
            return {}
        out: dict[str, tuple[Node, Node]] = {}
        for k, v in node.value:
            if not isinstance(k, ScalarNode):
                self.err(k, prefix.rstrip(".") or None, f"expected a key name, got {_show(k)}")
                continue
            key = str(k.value)
            if key in out and id(out[key][0]) not in explicit:
                out[key] = (k, v)  # an explicit key overrides a merged one: YAML's rule
            elif key in out:
                first = _line(out[key][0])
                self.err(
                    k, prefix + key, f"'{key}' is given twice (first on line {first}); say it once"
                )
            elif key not in known:
                where = f" in {prefix.rstrip('.')}" if prefix else ""
                self.err(
                    k, prefix + key,
                    f"unknown key '{key}'{where}{_suggest(key, known)}: expected one of {', '.join(known)}",
                )  # fmt: skip
            else:
                out[key] = (k, v)
        return out

    # -- the monitor ----------------------------------------------------------------------

    def parse(self) -> _Item:
        for k, v in self.node.value:  # the name first, so every message can carry it
            if isinstance(k, ScalarNode) and k.value == "name" and isinstance(v, ScalarNode):
                self.name = str(v.value)
                break
        e = self.entries(self.node, KNOWN_KEYS)
        item = _Item(self.file, _line(self.node), None, _line(self.node))
        if "name" not in e:
            self.err(
                self.node,
                "name",
                "missing 'name': every monitor needs a unique name like image_processing_slow",
            )
        else:
            name = self.string("name", e["name"][1], "a name")
            if name is not None and not NAME_RE.match(name):
                self.err(
                    e["name"][1],
                    "name",
                    f"bad name {name!r}: expected lowercase letters, digits, '_', '.' or '-', like image_processing_slow",
                )
            item.name, item.name_line = self.name, _line(e["name"][0])
        if "description" not in e:
            self.err(
                self.node,
                "description",
                "missing 'description': say why this monitor exists (what breaks, for whom)",
            )
        description = (
            self.string(
                "description", e["description"][1], "a sentence saying why this monitor exists"
            )
            if "description" in e
            else None
        )

        check = self.check(e)
        common = self.common(e, item)
        if not self.bad and check is not None and description is not None and item.name is not None:
            item.monitor = Monitor(
                name=item.name, description=description.strip(), check=check,
                file=self.file, line=item.line, **common,
            )  # fmt: skip
        item.bad = self.bad
        return item

    def check(self, e: dict[str, tuple[Node, Node]]) -> Check | None:
        kinds = [k for k in KINDS if k in e]
        if not kinds:
            self.err(
                self.node,
                "query",
                "missing what to check: expected one of 'query', 'stale', 'command' or 'queue'",
            )
            return None
        for extra in kinds[1:]:
            self.err(
                e[extra][0],
                extra,
                f"'{extra}' cannot be combined with '{kinds[0]}': a monitor checks exactly one of query, stale, command or queue",
            )
        kind = kinds[0]
        for key in ("warning", "critical", "recover"):
            if key in e and kind != "query":
                self.err(
                    e[key][0],
                    key,
                    f"'{key}' applies only to monitors with a 'query' (this one has '{kind}')",
                )
        if "timeout" in e and kind != "command":
            self.err(
                e["timeout"][0],
                "timeout",
                f"'timeout' applies only to monitors with a 'command' (this one has '{kind}')",
            )
        node = e[kind][1]
        if kind == "query":
            return self.threshold_check(e, node)
        if kind == "stale":
            return self.stale_check(node)
        if kind == "command":
            timeout = self.duration("timeout", e["timeout"][1]) if "timeout" in e else 10.0
            command = self.command(node)
            return NagiosCheck(command, timeout) if command and timeout else None
        return self.queue_check(node)

    def promql(self, key: str, node: Node, text: str) -> Expr | None:
        """Parse ``text``; a refusal points at the line of the offending position."""
        try:
            return parse_expr(text)
        except QueryError as err:
            line = _line(node)
            if (
                isinstance(node, ScalarNode)
                and node.style in ("|", ">")
                and err.position is not None
            ):
                line += 1 + text[: err.position].count("\n")  # block scalars start below the key
            self.err(line, key, f"query does not parse: {err}")
            return None

    def threshold_check(self, e: dict[str, tuple[Node, Node]], node: Node) -> ThresholdCheck | None:
        query = self.string("query", node, "a PromQL query")
        expr = self.promql("query", node, query) if query is not None else None
        if expr is not None and expr.type not in ("vector", "scalar"):
            self.err(
                node,
                "query",
                f"query returns a {_TYPE_WORDS.get(expr.type, expr.type)}, not one value per series: wrap it in a function like avg_over_time(...)",
            )
        t = {k: self.threshold(k, e[k][1]) for k in ("warning", "critical", "recover") if k in e}
        if "warning" not in e and "critical" not in e:
            self.err(
                e["query"][0],
                "query",
                "a query monitor needs 'warning' or 'critical' (or both), like critical: \"> 8\"",
            )
        if None in t.values() or query is None:
            return None
        w, c, r = t.get("warning"), t.get("critical"), t.get("recover")
        for key, message in contradictions(w, c, r):
            self.err(e[key][0], key, message)
        return ThresholdCheck(query, w, c, r)

    def severity(self, key: str, m: dict[str, tuple[Node, Node]]) -> State | None:
        if "severity" not in m:
            return State.CRITICAL
        value = self.string(key, m["severity"][1], "warning or critical")
        if value is None:
            return None
        if value.lower() not in ("warning", "critical"):
            self.err(m["severity"][1], key, f"expected warning or critical, got {value!r}")
            return None
        return State(value.upper())

    def stale_check(self, node: Node) -> StaleCheck | None:
        m = self.mapping("stale", node, ("metric", "spool_file", "after", "severity"))
        if not isinstance(node, MappingNode):
            return None
        what = [k for k in ("metric", "spool_file") if k in m]
        metric = spool = None
        if not what:
            self.err(
                node,
                "stale",
                "expected 'metric' or 'spool_file' in stale, like stale: {spool_file: \"photos*.metrics\", after: 10m}",
            )
        for extra in what[1:]:
            self.err(
                m[extra][0], f"stale.{extra}", "give either 'metric' or 'spool_file', not both"
            )
        if "metric" in m:
            metric = self.string("stale.metric", m["metric"][1], "a metric name or selector")
            expr = self.promql("stale.metric", m["metric"][1], metric) if metric else None
            if expr is not None and not isinstance(expr, VectorSelector):
                self.err(
                    m["metric"][1],
                    "stale.metric",
                    f'expected a metric name or selector like image_processed{{shard="7"}}, got {metric!r}',
                )
        if "spool_file" in m:
            spool = self.string(
                "stale.spool_file", m["spool_file"][1], "a file name or glob like photos*.metrics"
            )
        after = None
        if "after" not in m:
            self.err(node, "stale.after", "missing 'after': how old is too old, like after: 10m")
        else:
            after = self.duration("stale.after", m["after"][1])
        severity = self.severity("stale.severity", m)
        if self.bad or after is None or severity is None:
            return None
        return StaleCheck(after, metric.strip() if metric else None, spool, severity)

    def queue_check(self, node: Node) -> QueueCheck | None:
        m = self.mapping("queue", node, ("name", "high", "low", "severity"))
        if not isinstance(node, MappingNode):
            return None
        values: dict[str, Any] = {}
        for key in ("name", "high", "low"):
            if key not in m:
                self.err(
                    node,
                    f"queue.{key}",
                    f"missing '{key}' in queue, like queue: {{name: photos, high: 1000, low: 10}}",
                )
            elif key == "name":
                values[key] = self.string("queue.name", m[key][1], "a queue name")
            else:
                n = self.number(f"queue.{key}", m[key][1])
                if n is not None and n < 0:
                    self.err(m[key][1], f"queue.{key}", f"expected a depth of 0 or more, got {n:g}")
                    n = None
                values[key] = n
        high, low = values.get("high"), values.get("low")
        if high is not None and low is not None and low >= high:
            self.err(
                m["low"][1],
                "queue.low",
                f"low water mark {low:g} must be below high water mark {high:g}",
            )
        severity = self.severity("queue.severity", m)
        if self.bad or None in values.values() or len(values) < 3 or severity is None:
            return None
        return QueueCheck(values["name"], high, low, severity)  # type: ignore[arg-type]

    def command(self, node: Node) -> tuple[str, ...] | None:
        if isinstance(node, SequenceNode):
            argv = []
            for item in node.value:
                if isinstance(item, ScalarNode) and item.value != "":
                    argv.append(str(item.value))  # the text as written: argv is text
                else:
                    self.err(
                        item, "command", f"expected a command-line argument, got {_show(item)}"
                    )
            if not node.value:
                self.err(
                    node,
                    "command",
                    "expected a command like [check_disk, -w, 10%], got an empty list",
                )
            return tuple(argv) if len(argv) == len(node.value) and argv else None
        text = self.string("command", node, "a command line or a list of arguments")
        if text is None:
            return None
        try:
            return tuple(shlex.split(text))
        except ValueError as err:
            self.err(node, "command", f"cannot split command line {text!r}: {err}")
            return None

    def flag_action(self, key: str, node: Node) -> FlagAction | None:
        m = self.mapping(key, node, ("flag", "set"))
        if not isinstance(node, MappingNode):
            return None
        flag = setting = None
        for part in ("flag", "set"):
            if part not in m:
                self.err(
                    node,
                    f"{key}.{part}",
                    f"missing '{part}' in {key}, like {key}: {{flag: photo_uploads, set: \"off\"}}",
                )
        if "flag" in m:
            flag = self.string(f"{key}.flag", m["flag"][1], "a flag name")
        if "set" in m:
            raw = self.scalar(f"{key}.set", m["set"][1])
            if isinstance(raw, bool):  # YAML 1.1 reads unquoted on/off as booleans
                raw = "on" if raw else "off"
            pct = _PERCENT.match(raw) if isinstance(raw, str) else None
            if isinstance(raw, str) and (
                raw in ("on", "off") or (pct and float(pct.group(1)) <= 100)
            ):
                setting = raw
            else:
                self.err(
                    m["set"][1],
                    f"{key}.set",
                    f'bad set value {_show(m["set"][1], raw)}: expected "on", "off" or a percentage from 0% to 100% like "25%"',
                )
        return FlagAction(flag, setting) if flag and setting else None

    def common(self, e: dict[str, tuple[Node, Node]], item: _Item) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "owner" in e:
            out["owner"] = self.string("owner", e["owner"][1], "a team or person")
        if "runbook" in e:
            url = self.string("runbook", e["runbook"][1], "a URL")
            if url is not None and not url.startswith(("http://", "https://")):
                self.err(
                    e["runbook"][1],
                    "runbook",
                    f"expected a URL starting with http:// or https://, got {url!r}",
                )
            out["runbook"] = url
        if "notify" in e:
            notify = self.names("notify", e["notify"][1])
            if self.notifiers is not None:
                known = sorted(self.notifiers)
                for n, line in notify:
                    if n not in self.notifiers:
                        choices = (
                            f"expected one of {', '.join(known)}"
                            if known
                            else "no notifiers are configured"
                        )
                        self.err(
                            line,
                            "notify",
                            f"unknown notifier '{n}'{_suggest(n, known)}: {choices} (in signalbox.toml)",
                        )
            out["notify"] = tuple(n for n, _ in notify)
        if "depends_on" in e:
            item.depends = self.names("depends_on", e["depends_on"][1])
            out["depends_on"] = tuple(n for n, _ in item.depends)
        for key in ("on_critical", "on_warning"):
            if key in e:
                out[key] = self.flag_action(key, e[key][1])
        if "labels" in e:
            out["labels"] = self.labels(e["labels"][1])
        if "repeat" in e:
            out["repeat_seconds"] = self.duration("repeat", e["repeat"][1])
        if "for" in e:
            out["for_seconds"] = self.duration("for", e["for"][1], zero_ok=True)
        if "no_data" in e:
            value = self.scalar("no_data", e["no_data"][1])
            if isinstance(value, str) and value.lower() in NO_DATA_CHOICES:
                out["no_data"] = State(value.upper())
            else:
                self.err(
                    e["no_data"][1],
                    "no_data",
                    f"expected one of {', '.join(NO_DATA_CHOICES)}, got {_show(e['no_data'][1], value)}",
                )
        if "flapping" in e:
            out["flapping"] = self.flapping(e["flapping"][1])
        return out

    def labels(self, node: Node) -> tuple[tuple[str, str], ...]:
        m = node.value if isinstance(node, MappingNode) else None
        if m is None:
            self.err(
                node, "labels", f"expected a mapping of label names to values, got {_show(node)}"
            )
            return ()
        pairs = {}
        for k, v in self.entries(
            node, [str(k.value) for k, _ in m if isinstance(k, ScalarNode)], "labels."
        ).items():
            if not LABEL_NAME.match(k) or k.startswith("__"):
                self.err(
                    v[0],
                    f"labels.{k}",
                    f"bad label name {k!r}: expected letters, digits and '_', not starting with a digit or '__'",
                )
                continue
            value = self.scalar(f"labels.{k}", v[1]) if isinstance(v[1], ScalarNode) else None
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                pairs[k] = str(v[1].value)
            else:
                self.err(v[1], f"labels.{k}", f"expected a text value, got {_show(v[1], value)}")
        return tuple(sorted(pairs.items()))

    def flapping(self, node: Node) -> Flapping | None:
        if isinstance(node, ScalarNode):
            value = self.scalar("flapping", node)
            if isinstance(value, bool):
                return Flapping(enabled=value)
            self.err(
                node,
                "flapping",
                f"expected false or a mapping like {{low: 20, high: 30}}, got {_show(node, value)}",
            )
            return None
        m = self.mapping("flapping", node, ("low", "high"))
        got = {k: self.number(f"flapping.{k}", m[k][1]) for k in m}
        low, high = got.get("low", 20.0), got.get("high", 30.0)
        for k, v in (("low", low), ("high", high)):
            if v is not None and not 0 <= v <= 100:
                self.err(m[k][1], f"flapping.{k}", f"expected a percent from 0 to 100, got {v:g}")
                return None
        if low is None or high is None:
            return None
        if low >= high:
            where = m["low"][1] if "low" in m else node
            self.err(where, "flapping.low", f"low ({low:g}%) must be below high ({high:g}%)")
            return None
        return Flapping(low, high)


def _load_file(
    path: Path, notifiers: Collection[str] | None, errors: list[LintError]
) -> list[_Item]:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        errors.append(LintError(file, 0, None, None, f"cannot read file: {e.strerror or e}"))
        return []
    except UnicodeDecodeError as e:
        errors.append(
            LintError(file, 0, None, None, f"not UTF-8 text: {e.reason} at byte {e.start}")
        )
        return []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        detail = "; ".join(str(x) for x in (e.context, e.problem) if x)
        lines = text.splitlines()
        if mark and mark.line < len(lines) and re.search(r":\s*>", lines[mark.line]):
            detail += ' (a threshold starting with ">" must be quoted, like warning: "> 4")'
        errors.append(
            LintError(
                file, mark.line + 1 if mark else 0, None, None, f"YAML syntax error: {detail}"
            )
        )
        return []
    except yaml.YAMLError as e:
        errors.append(LintError(file, 0, None, None, f"YAML error: {e}"))
        return []
    if root is None:
        return []  # an empty file defines no monitors
    if not isinstance(root, SequenceNode):
        errors.append(
            LintError(
                file,
                _line(root),
                None,
                None,
                f"expected a list of monitors (each starting with '- name: ...'), got {_show(root)}",
            )
        )
        return []
    items = []
    for node in root.value:
        if not isinstance(node, MappingNode):
            errors.append(
                LintError(
                    file,
                    _line(node),
                    None,
                    None,
                    f"expected a monitor (a mapping with name, description, query, ...), got {_show(node)}",
                )
            )
            continue
        items.append(_ItemParser(file, node, notifiers, errors).parse())
    return items


def _path_back(graph: dict[str, list[str]], start: str, goal: str) -> list[str] | None:
    """Shortest dependency path from ``start`` to ``goal`` (breadth first), or None."""
    came: dict[str, str | None] = {start: None}
    todo = deque([start])
    while todo:
        at = todo.popleft()
        if at == goal:
            path = [at]
            while (prev := came[path[-1]]) is not None:
                path.append(prev)
            return path[::-1]
        for nxt in graph.get(at, []):
            if nxt not in came:
                came[nxt] = at
                todo.append(nxt)
    return None


def _cross_checks(items: list[_Item], errors: list[LintError]) -> None:
    def err(item: _Item, line: int, key: str, message: str) -> None:
        errors.append(LintError(item.file, line, item.name, key, message))
        item.bad = True

    first: dict[str, _Item] = {}
    for item in items:
        if item.name is None:
            continue
        if item.name in first:
            other = first[item.name]
            err(
                item,
                item.name_line,
                "name",
                f"duplicate monitor name '{item.name}': also defined at {other.file}:{other.name_line}",
            )
        else:
            first[item.name] = item
    known = sorted(first)
    graph: dict[str, list[str]] = {}
    for item in items:
        for dep, line in item.depends:
            if dep not in first:
                err(
                    item,
                    line,
                    "depends_on",
                    f"unknown monitor '{dep}'{_suggest(dep, known)}",
                )
            elif item.name is not None and first[item.name] is item:
                graph.setdefault(item.name, []).append(dep)
    for item in first.values():
        assert item.name is not None
        for dep, line in item.depends:
            if dep not in first:
                continue
            back = _path_back(graph, dep, item.name)
            if back is not None:
                cycle = " -> ".join([item.name, *back])
                err(item, line, "depends_on", f"'{dep}' forms a dependency cycle: {cycle}")


def load_monitors(paths: Sequence[Path], *, notifiers: Collection[str] | None = None) -> LoadResult:
    """Load and lint monitor files; directories mean every ``*.yaml``/``*.yml`` under them.

    ``notifiers``, when given, are the notifier names configured in ``signalbox.toml``;
    a ``notify`` entry naming another is an error. Returns every valid monitor and every
    error (sorted by file and line); never raises for bad input.
    """
    files, errors = monitor_files(paths)
    items: list[_Item] = []
    for f in files:
        items.extend(_load_file(f, notifiers, errors))
    _cross_checks(items, errors)
    order = {str(f): i for i, f in enumerate(files)}
    errors.sort(key=lambda e: (order.get(e.file, -1), e.line))
    monitors = tuple(i.monitor for i in items if i.monitor is not None and not i.bad)
    return LoadResult(monitors, tuple(errors))
