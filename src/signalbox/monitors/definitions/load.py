"""Monitor YAML files -> validated :class:`Monitor` models, plus every lint error found.

Loading never stops at the first problem: every file is read, every error reported, and
every monitor without an error is returned, so one typo cannot switch off the rest of the
monitoring. Each monitor is linted where it sits (:mod:`signalbox.monitors.definitions.lint`); this
module finds the files, composes their YAML, and checks what spans monitors and files
(unique names, ``depends_on`` targets and cycles). A :class:`LoadCache` lets the runner
skip files that have not changed since its last pass.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import MappingNode

from signalbox.monitors.definitions.lint import LintedItem, LintError, lint_monitor
from signalbox.monitors.definitions.model import Monitor
from signalbox.monitors.definitions.yamlnodes import (
    YamlFileError,
    compose_list,
    line_of,
    show,
    suggest,
)

__all__ = [
    "LintError",
    "LoadCache",
    "LoadResult",
    "is_monitor_test_file",
    "load_monitors",
    "monitor_files",
]


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


@dataclass(frozen=True, slots=True)
class _Parsed:
    data: bytes
    items: tuple[LintedItem, ...]
    errors: tuple[LintError, ...]


class LoadCache:
    """Files already parsed, by path and notifier names, kept while their bytes are equal.

    The runner loads its monitor files every pass, and they rarely change. Parsing them
    costs far more than evaluating them (PyYAML's pure-Python parser: libyaml is faster but
    accepts documents PyYAML rejects, so lint would depend on how PyYAML was installed). A
    file is still read every time and compared byte for byte, so an edit is seen at the
    next pass whatever its timestamps say. Items are shared between loads, never changed.
    """

    def __init__(self) -> None:
        self._files: dict[tuple[str, frozenset[str] | None], _Parsed] = {}

    def __len__(self) -> int:
        """How many parsed files are held (per notifier names)."""
        return len(self._files)

    @staticmethod
    def _key(file: str, notifiers: Collection[str] | None) -> tuple[str, frozenset[str] | None]:
        return file, None if notifiers is None else frozenset(notifiers)

    def get(
        self, file: str, data: bytes, notifiers: Collection[str] | None
    ) -> tuple[tuple[LintedItem, ...], tuple[LintError, ...]] | None:
        """The items and errors of ``file`` as last parsed, if its bytes are ``data``."""
        hit = self._files.get(self._key(file, notifiers))
        if hit is None or hit.data != data:
            return None
        return hit.items, hit.errors

    def put(
        self,
        file: str,
        data: bytes,
        notifiers: Collection[str] | None,
        items: Sequence[LintedItem],
        errors: Sequence[LintError],
    ) -> None:
        self._files[self._key(file, notifiers)] = _Parsed(data, tuple(items), tuple(errors))

    def keep_only(self, files: Collection[str], notifiers: Collection[str] | None) -> None:
        """Forget files (parsed for these notifier names) that are no longer loaded."""
        nk = self._key("", notifiers)[1]
        keep = {self._key(f, notifiers) for f in files}
        for key in [k for k in self._files if k[1] == nk and k not in keep]:
            del self._files[key]


def _load_file(
    path: Path,
    notifiers: Collection[str] | None,
    errors: list[LintError],
    cache: LoadCache | None,
) -> list[LintedItem]:
    file = str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        errors.append(LintError(file, 0, None, None, f"cannot read file: {e.strerror or e}"))
        return []
    hit = cache.get(file, data, notifiers) if cache is not None else None
    if hit is not None:
        errors.extend(hit[1])
        return list(hit[0])
    found: list[LintError] = []
    items = _parse_file(file, data, notifiers, found)
    errors.extend(found)
    if cache is not None:
        cache.put(file, data, notifiers, items, found)
    return items


def _quote_hint(line: str) -> str:
    """Advice for the commonest monitor-file syntax error: an unquoted ``> 4`` threshold."""
    if re.search(r":\s*>", line):
        return ' (a threshold starting with ">" must be quoted, like warning: "> 4")'
    return ""


def _parse_file(
    file: str, data: bytes, notifiers: Collection[str] | None, errors: list[LintError]
) -> list[LintedItem]:
    try:
        nodes = compose_list(data, "monitors", _quote_hint)
    except YamlFileError as e:
        errors.append(LintError(file, e.line, None, None, e.message))
        return []
    items = []
    for node in nodes:
        if not isinstance(node, MappingNode):
            errors.append(
                LintError(
                    file,
                    line_of(node),
                    None,
                    None,
                    f"expected a monitor (a mapping with name, description, query, ...), got {show(node)}",
                )
            )
            continue
        items.append(lint_monitor(file, node, notifiers, errors))
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


def _cross_checks(items: Sequence[LintedItem], errors: list[LintError]) -> set[int]:
    """Errors across monitors and files; returns the ``id()`` of every item found bad."""
    bad: set[int] = set()

    def err(item: LintedItem, line: int, key: str, message: str) -> None:
        errors.append(LintError(item.file, line, item.name, key, message))
        bad.add(id(item))

    first: dict[str, LintedItem] = {}
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
                    f"unknown monitor '{dep}'{suggest(dep, known)}",
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
    return bad


def load_monitors(
    paths: Sequence[Path],
    *,
    notifiers: Collection[str] | None = None,
    cache: LoadCache | None = None,
) -> LoadResult:
    """Load and lint monitor files; directories mean every ``*.yaml``/``*.yml`` under them.

    ``notifiers``, when given, are the notifier names configured in ``signalbox.toml``;
    a ``notify`` entry naming another is an error. Returns every valid monitor and every
    error (sorted by file and line); never raises for bad input. With a ``cache``, a file
    whose bytes did not change since the cache saw it is not parsed again.
    """
    files, errors = monitor_files(paths)
    items: list[LintedItem] = []
    for f in files:
        items.extend(_load_file(f, notifiers, errors, cache))
    if cache is not None:
        cache.keep_only([str(f) for f in files], notifiers)
    bad = _cross_checks(items, errors)
    order = {str(f): i for i, f in enumerate(files)}
    errors.sort(key=lambda e: (order.get(e.file, -1), e.line))
    monitors = tuple(
        i.monitor for i in items if i.monitor is not None and not i.bad and id(i) not in bad
    )
    return LoadResult(monitors, tuple(errors))
