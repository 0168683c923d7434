"""Every error signalbox raises on purpose, in one tree.

    SignalboxError
     ├── ConfigError          signalbox.toml is wrong: file, key, value, expected
     ├── ParseError           one bad input line: source, line number, reason
     ├── QueryError           a PromQL expression we refuse: position, construct
     ├── StoreError           the store cannot do what was asked
     │    ├── DiskFullError       a write failed for want of space: path
     │    ├── ForeignDatabaseError  the file is another application's database: path
     │    └── CorruptDatabaseError  the database is damaged: path, what to do
     ├── QueryLimitError      a query went past a configured limit: limit, value
     ├── AccessError          an HTTP caller lacks the role a route needs: needed, known
     └── UsageError           a CLI or API argument is wrong
          ├── NotFoundError   it names something that does not exist: kind, name
          └── JobArgumentError  a task's argument is not JSON: task, where, value type

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


class DiskFullError(StoreError):
    """A write failed because the disk (or the database's quota) is full.

    Everything the failed transaction wrote is rolled back; the caller keeps its input for
    the next attempt.
    """

    def __init__(self, path: str, detail: str = "") -> None:
        self.path, self.detail = path, detail
        more = f" ({detail})" if detail else ""
        super().__init__(
            f"disk full: cannot write to {path}{more}; nothing was lost, free space and the next pass stores it"
        )


class ForeignDatabaseError(StoreError):
    """The store URL points at a database that belongs to another application."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(
            f"{path} is not a signalbox database ({reason}); refusing to add tables to it"
        )


class CorruptDatabaseError(StoreError):
    """The database file is damaged; ``advice`` says what to do about it."""

    def __init__(self, path: str, detail: str, advice: str) -> None:
        self.path, self.detail, self.advice = path, detail, advice
        super().__init__(f"{path} is damaged ({detail}): {advice}")


class QueryLimitError(SignalboxError):
    """A query was stopped at a configured limit (``[query]`` in signalbox.toml).

    ``kind`` is ``"timeout"`` (HTTP 503, Prometheus' errorType ``timeout``),
    ``"samples"``/``"concurrency"`` (HTTP 422 / 503) or ``"cancelled"`` (its client went
    away: 499, Prometheus' ``canceled``).
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class AccessError(SignalboxError):
    """An HTTP caller may not do what it asked: ``needed`` is the role the route wants.

    ``known`` False: the caller is unknown (no token, a garbage or revoked one; HTTP 401,
    the remedy is a token); True: its token's role is too low (HTTP 403).
    """

    def __init__(self, message: str, *, needed: str, known: bool) -> None:
        self.needed, self.known = needed, known
        super().__init__(message)


class UsageError(SignalboxError):
    """A command-line or API argument is not acceptable."""


class NotFoundError(UsageError):
    """An argument names something (a monitor, a flag, a task) that does not exist."""

    def __init__(self, kind: str, name: str, hint: str = "") -> None:
        self.kind, self.name, self.hint = kind, name, hint
        super().__init__(f"no {kind} named {name!r}" + (f" ({hint})" if hint else ""))


class JobArgumentError(UsageError):
    """A task was enqueued with an argument JSON cannot carry as it is (refused at enqueue,
    not discovered by the worker): ``where`` is its path (``args[1]["when"]``)."""

    def __init__(self, task: str, where: str, reason: str) -> None:
        self.task, self.where, self.reason = task, where, reason
        super().__init__(f"task {task}: argument {where}: {reason}")
