"""Typed values out of composed YAML nodes, each problem reported at its line.

Monitor files are *composed* (PyYAML nodes keep their line marks) rather than loaded, so a
value can be checked where it sits and an error can name the exact line. :class:`NodeReader`
holds the readers every key uses (a string, a number, a duration, a threshold, a list of
names, a nested mapping); what a monitor's keys mean is :mod:`signalbox.monitors.definitions.lint`.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from signalbox.durations import parse_duration
from signalbox.monitors.definitions.threshold import Threshold, ThresholdError, parse_threshold


def suggest(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for a close choice, else ""."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def line_of(node: Node | int) -> int:
    """The 1-based line a node starts on (a line number is passed through)."""
    return node if isinstance(node, int) else int(node.start_mark.line) + 1


def show(node: Node, value: object = None) -> str:
    """A node (or its constructed ``value``) as an error message quotes what it got."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if value is None and node.tag.endswith(":null"):
        return "nothing"
    return repr(value) if value is not None else repr(node.value)


def construct(node: Node) -> Any:
    """The Python value of a node, by YAML's safe rules."""
    return SafeConstructor().construct_document(node)


class NodeReader:
    """Reads values out of nodes; every reader reports a problem through :meth:`err` and
    returns None, so one bad value never hides the next."""

    def err(self, where: Node | int, key: str | None, message: str) -> None:
        """Record a problem at ``where`` (a node, or a 1-based line)."""
        raise NotImplementedError

    def scalar(self, key: str, node: Node) -> Any:
        if not isinstance(node, ScalarNode):
            self.err(node, key, f"expected a single value, got {show(node)}")
            return None
        try:
            return construct(node)
        except yaml.YAMLError as e:
            self.err(node, key, f"cannot read value: {e}")
            return None

    def string(self, key: str, node: Node, expected: str = "a string") -> str | None:
        value = self.scalar(key, node) if isinstance(node, ScalarNode) else None
        if isinstance(value, str) and value.strip():
            return value
        self.err(node, key, f"expected {expected}, got {show(node, value)}")
        return None

    def number(self, key: str, node: Node) -> float | None:
        value = self.scalar(key, node) if isinstance(node, ScalarNode) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self.err(node, key, f"expected a number, got {show(node, value)}")
        return None

    def duration(self, key: str, node: Node, *, zero_ok: bool = False) -> float | None:
        value = self.scalar(key, node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, str):
            self.err(
                node, key, f"expected a duration like 30s, 5m or 1h30m, got {show(node, value)}"
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
                out.append((name, line_of(item)))
        return out

    def mapping(self, key: str, node: Node, known: Sequence[str]) -> dict[str, tuple[Node, Node]]:
        """Keys of a nested mapping (``stale``, ``queue``, ...), reporting unknown and repeated ones."""
        if not isinstance(node, MappingNode):
            self.err(
                node, key, f"expected a mapping with keys {', '.join(known)}, got {show(node)}"
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
                self.err(k, prefix.rstrip(".") or None, f"expected a key name, got {show(k)}")
                continue
            key = str(k.value)
            if key in out and id(out[key][0]) not in explicit:
                out[key] = (k, v)  # an explicit key overrides a merged one: YAML's rule
            elif key in out:
                first = line_of(out[key][0])
                self.err(
                    k, prefix + key, f"'{key}' is given twice (first on line {first}); say it once"
                )
            elif key not in known:
                where = f" in {prefix.rstrip('.')}" if prefix else ""
                self.err(
                    k, prefix + key,
                    f"unknown key '{key}'{where}{suggest(key, known)}: expected one of {', '.join(known)}",
                )  # fmt: skip
            else:
                out[key] = (k, v)
        return out


class YamlFileError(Exception):
    """A YAML file that is not a list of items, at ``line`` (0: the whole file)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def compose_list(data: bytes, what: str, hint: Callable[[str], str] | None = None) -> list[Node]:
    """The item nodes of a YAML file whose root must be a list of ``what`` (``[]`` for an empty
    file), composed so every item keeps its line; :class:`YamlFileError` names the line and
    the problem. ``hint(line_text)`` may add advice to a syntax error at that line.

    Monitor and flag files are read the same way: one reader, one set of error messages."""
    try:
        # what Path.read_text does: UTF-8, universal newlines
        text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()
    except UnicodeDecodeError as e:
        raise YamlFileError(0, f"not UTF-8 text: {e.reason} at byte {e.start}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        detail = "; ".join(str(x) for x in (e.context, e.problem) if x)
        lines = text.splitlines()
        if hint and mark and mark.line < len(lines):
            detail += hint(lines[mark.line])
        raise YamlFileError(mark.line + 1 if mark else 0, f"YAML syntax error: {detail}") from None
    except yaml.YAMLError as e:
        raise YamlFileError(0, f"YAML error: {e}") from None
    if root is None:
        return []  # an empty file declares nothing
    if not isinstance(root, SequenceNode):
        raise YamlFileError(
            line_of(root),
            f"expected a list of {what} (each starting with '- name: ...'), got {show(root)}",
        )
    return list(root.value)
