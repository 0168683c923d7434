"""The log files one read covers: its own module so ``signalbox logs grep FILE`` need not
import the config's machinery (:mod:`signalbox.instrument.logsources`) to name them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["LogFiles"]


@dataclass(frozen=True)
class LogFiles:
    """The files to read, oldest first within each log: access-log files (parsed as
    records) and other logs (application, worker: matched by request id)."""

    access: tuple[Path, ...]
    other: tuple[Path, ...]
    missing: tuple[str, ...]  # configured logs with no file yet (said, not fatal)
