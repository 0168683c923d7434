"""Lint of what a monitor checks: ``query`` (with thresholds), ``stale``, ``command``, ``queue``.

Exactly one of them per monitor; each has its own keys and rules, and every problem is
reported at its line (see :mod:`signalbox.monitors.definitions.lint` for the rest of a monitor).
"""

from __future__ import annotations

import shlex
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from signalbox.exceptions import QueryError
from signalbox.monitors.definitions.model import (
    Check,
    NagiosCheck,
    QueueCheck,
    StaleCheck,
    State,
    ThresholdCheck,
)
from signalbox.monitors.definitions.threshold import contradictions
from signalbox.monitors.definitions.yamlnodes import NodeReader, line_of, show
from signalbox.query import parse_expr
from signalbox.query.ast import Expr, VectorSelector

KINDS = ("query", "stale", "command", "queue")
_TYPE_WORDS = {"matrix": "range vector", "string": "string"}


class CheckLinter(NodeReader):
    """Reads the check of the monitor mapping ``node``; errors go through :meth:`err`."""

    node: MappingNode
    bad: bool

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
            line = line_of(node)
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
                    self.err(item, "command", f"expected a command-line argument, got {show(item)}")
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
