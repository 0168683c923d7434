"""Shapes out of the composed YAML nodes of a monitor test file, each problem at its line.

:class:`Reader` checks that a node is what a key needs (a mapping with known keys, a
list, a single value, a name, a duration, a count, a label set) and records a
:class:`~signalbox.monitors.testing.model.FileError` with the file, line, test and key
when it is not, then answers None (or nothing) so reading goes on to the next value. What
each key of the format means is :mod:`signalbox.monitors.testing.file`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from signalbox.durations import parse_duration
from signalbox.metrics.samples import LABEL_NAME, Labels, labels_of
from signalbox.monitors.definitions.yamlnodes import line_of, show
from signalbox.monitors.testing.model import FileError


class Reader:
    """Reads nodes of one test file, collecting every error with its line."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[FileError] = []
        self.test: str | None = None
        self.bad = False

    def err(self, node: Node | int, key: str | None, message: str) -> None:
        line = node if isinstance(node, int) else line_of(node)
        self.errors.append(FileError(self.file, line, self.test, key, message))
        self.bad = True

    def mapping(self, node: Node, known: Sequence[str], what: str) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            self.err(
                node,
                None,
                f"expected {what} (a mapping with keys {', '.join(known)}), got {show(node)}",
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
                self.err(k, None, f"expected a key name, got {show(k)}")
            elif key in out:
                self.err(k, key, f"'{key}' is given twice (first on line {line_of(out[key][0])})")
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
        self.err(node, key, f"expected a list, got {show(node)}")
        return []

    def value(self, node: Node, key: str) -> Any:
        if not isinstance(node, ScalarNode):
            self.err(node, key, f"expected a single value, got {show(node)}")
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
        self.err(node, key, f"expected {expected}, got {show(node)}")
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
                f"expected a duration like 30s, 5m or 1h30m{'' if zero_ok else ' above zero'}, got {show(node)}",
            )
            return None
        return round(seconds * 1000)

    def count(self, node: Node, key: str) -> int | None:
        v = self.value(node, key) if isinstance(node, ScalarNode) else None
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
        self.err(node, key, f"expected a count (0 or more), got {show(node)}")
        return None

    def labels(self, node: Node, key: str) -> Labels | None:
        if not isinstance(node, MappingNode):
            self.err(node, key, f"expected a mapping of label names to values, got {show(node)}")
            return None
        pairs: dict[str, str] = {}
        ok = True
        for k, v in node.value:
            name = str(k.value) if isinstance(k, ScalarNode) else ""
            if not LABEL_NAME.match(name) or name.startswith("__"):
                self.err(
                    k, key, f"bad label name {name or show(k)!r}: expected letters, digits and '_'"
                )
                ok = False
            elif name in pairs:
                self.err(k, f"{key}.{name}", f"label '{name}' is given twice")
                ok = False
            elif isinstance(v, ScalarNode) and not v.tag.endswith((":null", ":bool")):
                pairs[name] = str(v.value)
            else:
                self.err(v, f"{key}.{name}", f"expected a label value, got {show(v)}")
                ok = False
        return labels_of(pairs) if ok else None
