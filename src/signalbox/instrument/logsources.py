"""Which files ``signalbox logs`` and ``/api/v1/logs`` read: ``[logs]`` of ``signalbox.toml``.

::

    [logs]
    # application and worker logs, besides the access log of [instrument]; globs allowed
    # (default: every *.log in DATA_DIR/logs/, where the demo writes its app's log)
    files = ["/var/log/photos/app.log", "/var/log/photos/worker-*.log"]

The access log is ``[instrument] access_log`` (``access.log`` in the data dir by default).
Each file is read with its rotated siblings, oldest first: ``app.log.3.gz``, ``app.log.2.gz``,
``app.log.1``, ``app.log`` (logrotate's names, compressed or not). The server reads only what
this resolves to: no path ever comes from a request.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from signalbox.instrument.logset import LogFiles
from signalbox.section import Source, table

if TYPE_CHECKING:
    from signalbox.config import Settings

__all__ = [
    "TABLES",
    "ConfiguredLogs",
    "LogFiles",
    "LogsSettings",
    "log_files",
    "logs_settings",
    "with_rotated",
]

TABLES = ("logs",)

_ROTATED = re.compile(r"\.(\d{1,6})(\.gz)?\Z")


class LogsTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    files: list[str] | None = None


@dataclass(frozen=True)
class LogsSettings:
    """``[logs]`` resolved: absolute paths or glob patterns of application and worker logs;
    None: not set, ``*.log`` in ``DATA_DIR/logs`` (:meth:`ConfiguredLogs.from_settings`)."""

    files: tuple[Path, ...] | None = None


def logs_settings(src: Source, raw: Mapping[str, Any]) -> LogsSettings:
    """``[logs]`` of the file's top-level table ``raw``, checked."""
    t = table(src, "logs", raw.get("logs"), LogsTable)
    if t.files is None:
        return LogsSettings()
    for i, f in enumerate(t.files):
        if not f.strip() or "\x00" in f:
            raise src.error(f"logs.files[{i}]", f, "a file path or glob like logs/app-*.log")
    return LogsSettings(files=tuple(src.path(f) for f in t.files))


def with_rotated(path: Path) -> list[Path]:
    """``path``'s rotated siblings that exist (``.N`` and ``.N.gz``, highest N first: the
    oldest), then ``path`` itself if it exists."""
    rotated: list[tuple[int, Path]] = []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        siblings = []
    prefix = path.name
    for p in siblings:
        name = p.name
        if name.startswith(prefix) and len(name) > len(prefix):
            m = _ROTATED.match(name, len(prefix))
            if m and m.start() == len(prefix) and p.is_file():
                rotated.append((int(m.group(1)), p))
    out = [p for _, p in sorted(rotated, key=lambda t: (-t[0], t[1].name))]
    if path.is_file():
        out.append(path)
    return out


@dataclass(frozen=True)
class ConfiguredLogs:
    """The logs a config names, expanded again at each read (a glob gains files, logrotate
    renames them); what the server's log routes read, never a path from a request.

    ``secret_notes``: the notes logged as fingerprints, which ``api_key_fp`` searches.
    """

    access_log: Path | None = None
    other: tuple[Path, ...] = ()
    secret_notes: tuple[str, ...] = ("api_key",)
    optional: tuple[Path, ...] = ()  # read when there, not said when not (the default)

    @classmethod
    def from_settings(cls, settings: Settings) -> ConfiguredLogs:
        path = settings.instrument.access_log_path(settings.data_dir)
        files = settings.logs.files
        return cls(
            access_log=path if isinstance(path, Path) else None,
            other=() if files is None else files,
            optional=(settings.data_dir / "logs" / "*.log",) if files is None else (),
            secret_notes=settings.instrument.secret_notes,
        )

    def files(self) -> LogFiles:
        """The files as they are now."""
        access: list[Path] = []
        missing: list[str] = []
        if self.access_log is not None:
            found = with_rotated(self.access_log)
            access += found
            if not found:
                missing.append(str(self.access_log))
        other: list[Path] = []
        for pattern in (*self.other, *self.optional):
            text = str(pattern)
            if glob.has_magic(text):
                bases = sorted({_base(Path(p)) for p in glob.glob(text)})
            else:
                bases = [pattern]
            found = [p for b in bases for p in with_rotated(b)]
            if not found and pattern not in self.optional:
                missing.append(text)
            other += [p for p in found if p not in other and p not in access]
        return LogFiles(tuple(access), tuple(other), tuple(missing))


def log_files(settings: Settings) -> LogFiles:
    """The files ``settings`` name, expanded now (globs, rotated siblings)."""
    return ConfiguredLogs.from_settings(settings).files()


def _base(p: Path) -> Path:
    """``app.log.2.gz`` -> ``app.log`` (a glob may match rotated files; each log once)."""
    m = _ROTATED.search(p.name)
    return p.with_name(p.name[: m.start()]) if m else p
