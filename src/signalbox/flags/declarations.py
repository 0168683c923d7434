"""Flag declarations: ``flags/*.yaml`` files and :func:`declare` in code -> :class:`FlagDecl`,
with every problem reported at its file and line, as monitor files are linted.

A file is a list of flags::

    - name: photo_uploads
      description: Accept new photo uploads; turn off to shed write load.
      owner: photos
      default: true          # true/false, on/off, or a rollout like "30%"

    - name: checkout_theme     # a flag may select a value (OpenFeature string/number)
      description: The new checkout colours.
      default: "10%"
      values: {on: teal, off: grey}

Loading never stops at the first problem: every file is read, every error reported, and
every flag without an error is returned (one typo must not turn the other flags off).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode

from signalbox.flags.model import NAME_RE, FlagDecl, FlagState, parse_share
from signalbox.monitors.definitions.yamlnodes import (
    NodeReader,
    YamlFileError,
    compose_list,
    line_of,
    show,
)

__all__ = [
    "DeclError",
    "Declarations",
    "declare",
    "declared_in_code",
    "flag_files",
    "load_declarations",
    "reset_code_declarations",
]

KNOWN_KEYS = ("name", "description", "owner", "default", "values")


@dataclass(frozen=True, slots=True)
class DeclError:
    """One problem in a flags file: where (``line`` 1-based, 0 = the whole file) and what."""

    file: str
    line: int
    flag: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" {self.flag}:" if self.flag else ""
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{who}{key} {self.message}"


@dataclass(frozen=True, slots=True)
class Declarations:
    """The valid declarations by name, and every error found."""

    flags: dict[str, FlagDecl]
    errors: tuple[DeclError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def default_state(value: object) -> FlagState | None:
    """A declared ``default`` as a state: true/false, on/off, or a rollout percentage."""
    if isinstance(value, bool):
        return FlagState("on" if value else "off")
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("on", "true"):
            return FlagState("on")
        if v in ("off", "false"):
            return FlagState("off")
        if v.endswith("%"):
            try:
                return FlagState("rollout", actors_share=parse_share(v, "default"))
            except ValueError:
                return None
    return None


class _FlagLinter(NodeReader):
    def __init__(self, file: str, errors: list[DeclError]) -> None:
        self.file, self.errors = file, errors
        self.name: str | None = None
        self.bad = False

    def err(self, where: Node | int, key: str | None, message: str) -> None:
        self.errors.append(DeclError(self.file, line_of(where), self.name, key, message))
        self.bad = True

    def lint(self, node: MappingNode) -> FlagDecl | None:
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == "name" and isinstance(v, ScalarNode):
                self.name = str(v.value)
                break
        e = self.entries(node, KNOWN_KEYS)
        name = description = None
        owner = ""
        state = None
        if "name" not in e:
            self.err(
                node, "name", "missing 'name': every flag needs a unique name like photo_uploads"
            )
        else:
            name = self.string("name", e["name"][1], "a name")
            if name is not None and not NAME_RE.match(name):
                self.err(
                    e["name"][1],
                    "name",
                    f"bad name {name!r}: expected lowercase letters, digits, '_', '.' or '-' "
                    "(up to 100), like photo_uploads",
                )
        if "description" not in e:
            self.err(node, "description", "missing 'description': say what turning it off does")
        else:
            description = self.string("description", e["description"][1])
        if "owner" in e:
            owner = self.string("owner", e["owner"][1], "a team or person") or ""
        if "default" not in e:
            self.err(node, "default", "missing 'default': true, false, or a rollout like '30%'")
        else:
            v = e["default"][1]
            value = self.scalar("default", v) if isinstance(v, ScalarNode) else None
            state = default_state(value)
            if state is None:
                self.err(
                    v,
                    "default",
                    "expected true, false, on, off or a percentage like '30%' (0% to 100%, "
                    f"at most 3 decimals), got {show(v, value)}",
                )
        values = self._values(e["values"][1]) if "values" in e else None
        if self.bad or name is None or description is None or state is None:
            return None
        return FlagDecl(name, description, owner, state, self.file, line_of(node), values)

    def _values(self, node: Node) -> tuple[str | int | float, str | int | float] | None:
        """``values: {on: X, off: Y}``: both strings, or both numbers."""
        e = self.mapping("values", node, ("on", "off"))
        got: dict[str, object] = {}
        for key in ("on", "off"):
            if key not in e:
                if isinstance(node, MappingNode):
                    self.err(node, "values", f"missing '{key}': give the value when {key}")
                continue
            v = self.scalar(f"values.{key}", e[key][1])
            if not isinstance(e[key][1], ScalarNode):
                continue  # reported by scalar()
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                self.err(
                    e[key][1],
                    f"values.{key}",
                    f"expected a string or a number, got {show(e[key][1], v)}",
                )
                continue
            got[key] = v
        if len(got) != 2:
            return None
        on, off = got["on"], got["off"]
        if isinstance(on, str) != isinstance(off, str):
            self.err(
                node,
                "values",
                f"on and off must both be strings or both numbers, got {on!r} and {off!r}",
            )
            return None
        assert isinstance(on, str | int | float) and isinstance(off, str | int | float)
        return on, off


def flag_files(paths: Sequence[Path]) -> tuple[list[Path], list[DeclError]]:
    """Directories -> their ``*.yaml``/``*.yml`` files (sorted, recursive, hidden ones
    skipped); a file named explicitly is always read; a missing path is an error."""
    files: list[Path] = []
    errors: list[DeclError] = []
    for p in paths:
        if p.is_dir():
            files.extend(
                f
                for f in sorted(p.rglob("*"))
                if f.suffix in (".yaml", ".yml")
                and f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.is_file():
            files.append(p)
        else:
            errors.append(DeclError(str(p), 0, None, None, "no such file or directory"))
    return files, errors


def _parse(file: str, data: bytes, errors: list[DeclError]) -> list[FlagDecl]:
    try:
        nodes = compose_list(data, "flags")
    except YamlFileError as e:
        errors.append(DeclError(file, e.line, None, None, e.message))
        return []
    out = []
    for node in nodes:
        if not isinstance(node, MappingNode):
            errors.append(
                DeclError(
                    file,
                    line_of(node),
                    None,
                    None,
                    f"expected a flag (a mapping with name, description, default), got {show(node)}",
                )
            )
            continue
        decl = _FlagLinter(file, errors).lint(node)
        if decl is not None:
            out.append(decl)
    return out


_code_lock = threading.Lock()
_code: dict[str, FlagDecl] = {}


def declare(
    name: str, *, default: bool | str = False, description: str, owner: str = ""
) -> FlagDecl:
    """Declare a flag in code (beside, or instead of, a ``flags/*.yaml`` entry).

    A file's declaration of the same name wins: files are what reviewers read.

    Raises:
        ValueError: a bad name, an empty description or a bad default.
    """
    if not NAME_RE.match(name):
        raise ValueError(f"flag name {name!r}: expected lowercase letters, digits, '_', '.' or '-'")
    if not description.strip():
        raise ValueError(f"flag {name}: description: say what turning it off does")
    state = default_state(default)
    if state is None:
        raise ValueError(
            f"flag {name}: default: expected True, False, 'on', 'off' or a percentage like '30%', "
            f"got {default!r}"
        )
    decl = FlagDecl(name, description.strip(), owner, state)
    with _code_lock:
        _code[name] = decl
    return decl


def declared_in_code() -> dict[str, FlagDecl]:
    with _code_lock:
        return dict(_code)


def reset_code_declarations() -> None:
    """Forget every :func:`declare` (tests)."""
    with _code_lock:
        _code.clear()


def load_declarations(
    paths: Sequence[Path], *, code: Iterable[FlagDecl] | None = None
) -> Declarations:
    """Every flag declared in ``paths`` and in code (``code``; default: :func:`declare`'s),
    and every error, sorted by file and line. Never raises for bad input."""
    files, errors = flag_files(paths)
    decls: dict[str, FlagDecl] = {}
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as e:
            errors.append(DeclError(str(f), 0, None, None, f"cannot read file: {e.strerror or e}"))
            continue
        for d in _parse(str(f), data, errors):
            if d.name in decls:
                first = decls[d.name]
                errors.append(
                    DeclError(
                        d.file,
                        d.line,
                        d.name,
                        "name",
                        f"duplicate flag name '{d.name}': also declared at {first.where}",
                    )
                )
                continue
            decls[d.name] = d
    for d in declared_in_code().values() if code is None else code:
        decls.setdefault(d.name, d)
    order = {str(f): i for i, f in enumerate(files)}
    errors.sort(key=lambda e: (order.get(e.file, -1), e.line))
    return Declarations(decls, tuple(errors))
