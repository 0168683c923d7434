"""Every error signalbox raises on purpose, in one tree.

    SignalboxError
     ├── ConfigError          signalbox.toml is wrong: file, key, value, expected
     ├── ParseError           one bad input line: source, line number, reason
     ├── QueryError           a PromQL expression we refuse: position, construct
     ├── StoreError           the store cannot do what was asked
     └── UsageError           a CLI or API argument is wrong
          └── NotFoundError   it names something that does not exist: kind, name

Errors carry the data a user needs to fix the input, not just a message, so the CLI,
the HTTP API and the log can each present them in their own way.
"""

from __future__ import annotations


class SignalboxError(Exception):
    """Base class: catch this to catch anything signalbox raises deliberately."""


class ConfigError(SignalboxError):
    """A configuration value is missing, of the wrong type or out of range."""

    def __init__(self, file: str, key: str, value: object, expected: str) -> None:
        self.file, self.key, self.value, self.expected = file, key, value, expected
        super().__init__(f"{file}: {key}: expected {expected}, got {value!r}")


class ParseError(SignalboxError):
    """One line of some input could not be understood."""

    def __init__(self, source: str, line: int, reason: str, text: str = "") -> None:
        self.source, self.line, self.reason, self.text = source, line, reason, text
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {reason}")


class QueryError(SignalboxError):
    """A query does not parse, or uses PromQL outside the supported subset."""

    def __init__(
        self, message: str, position: int | None = None, construct: str | None = None
    ) -> None:
        self.position, self.construct = position, construct
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{message}{where}")


class StoreError(SignalboxError):
    """The store refused an operation (bad URL, schema too new, ...)."""


class UsageError(SignalboxError):
    """A command-line or API argument is not acceptable."""


class NotFoundError(UsageError):
    """An argument names something (a monitor, a flag, a task) that does not exist."""

    def __init__(self, kind: str, name: str, hint: str = "") -> None:
        self.kind, self.name, self.hint = kind, name, hint
        super().__init__(f"no {kind} named {name!r}" + (f" ({hint})" if hint else ""))
