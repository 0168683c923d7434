"""``signalbox send``: merge NAME=VALUE pairs into a spool file, atomically and race-free.

The file may carry a ``# stale_after: DURATION`` header (how long its values stay fresh, see
:mod:`signalbox.metrics.parse.stale_after`). Merging keeps the explicitly latest value: a
send with ``stale_after`` writes it, a send without keeps the file's. Lines of the old file
that cannot be carried over (bad lines, a bad directive) are returned, never dropped silently.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from signalbox.exceptions import UsageError
from signalbox.metrics.labelcodec import encode_labels
from signalbox.metrics.parse.keyvalue import parse_keyvalue
from signalbox.metrics.parse.lex import LineError
from signalbox.metrics.parse.stale_after import (
    find_stale_after,
    stale_after_line,
    stale_after_seconds,
)
from signalbox.metrics.samples import SeriesKey

_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


def format_value(value: float) -> str:
    """Prometheus spelling of a float (``NaN``, ``+Inf``), shortest exact digits otherwise."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _line(key: SeriesKey, value: float) -> str:
    name, labels = key
    text = encode_labels(labels)
    v = format_value(value)
    return f"{name}{{{text}}}={v}" if text else f"{name}={v}"


@dataclass(frozen=True, slots=True)
class Sent:
    """The file written, and the old file's lines that were not carried over (and why)."""

    path: Path
    dropped: tuple[LineError, ...] = ()


def send(
    spool_dir: Path, file_name: str, pairs: list[str], *, stale_after: str | None = None
) -> Sent:
    """Validate every pair and ``stale_after`` first (nothing is written if one is bad),
    then merge and publish."""
    if not _FILE_NAME.match(file_name) or file_name.endswith(".tmp"):
        raise UsageError(
            f"--file {file_name!r}: expected a plain file name like 'backup' (letters, digits, _ . -)"
        )
    if stale_after is not None:
        seconds = stale_after_seconds(stale_after)
        if isinstance(seconds, str):
            raise UsageError(f"--stale-after {stale_after!r}: {seconds}")
    parsed = parse_keyvalue("\n".join(pairs), "arguments")
    if parsed.errors:
        e = parsed.errors[0]
        raise UsageError(f"argument {e.line} ({pairs[e.line - 1]!r}): {e.reason}")
    spool_dir.mkdir(parents=True, exist_ok=True)
    path = spool_dir / f"{file_name}.metrics"
    with open(spool_dir / f".{file_name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        values: dict[SeriesKey, float] = {}
        dropped: list[LineError] = []
        duration = stale_after
        if path.exists():
            old = path.read_text(encoding="utf-8", errors="replace")
            kept = parse_keyvalue(old, str(path))
            own = find_stale_after(old, str(path))
            dropped += kept.errors
            if duration is None:  # an explicit --stale-after replaces the file's
                duration = own.duration if own.seconds is not None else None
                dropped += own.errors
            for s in kept.samples:
                values[s.key] = s.value
        for s in parsed.samples:
            values[s.key] = s.value
        header = "" if duration is None else stale_after_line(duration) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{file_name}.", suffix=".tmp", dir=spool_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(header + "".join(_line(k, v) + "\n" for k, v in values.items()))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    return Sent(path, tuple(sorted(dropped, key=lambda e: e.line)))
