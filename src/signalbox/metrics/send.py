"""``signalbox send``: merge NAME=VALUE pairs into a spool file, atomically and race-free."""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from pathlib import Path

from signalbox.exceptions import UsageError
from signalbox.metrics.labelcodec import encode_labels
from signalbox.metrics.parse.keyvalue import parse_keyvalue
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


def send(spool_dir: Path, file_name: str, pairs: list[str]) -> Path:
    """Validate every pair first (nothing is written if one is bad), then merge and publish."""
    if not _FILE_NAME.match(file_name) or file_name.endswith(".tmp"):
        raise UsageError(
            f"--file {file_name!r}: expected a plain file name like 'backup' (letters, digits, _ . -)"
        )
    parsed = parse_keyvalue("\n".join(pairs), "arguments")
    if parsed.errors:
        e = parsed.errors[0]
        raise UsageError(f"argument {e.line} ({pairs[e.line - 1]!r}): {e.reason}")
    spool_dir.mkdir(parents=True, exist_ok=True)
    path = spool_dir / f"{file_name}.metrics"
    with open(spool_dir / f".{file_name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        values: dict[SeriesKey, float] = {}
        if path.exists():
            for s in parse_keyvalue(
                path.read_text(encoding="utf-8", errors="replace"), str(path)
            ).samples:
                values[s.key] = s.value
        for s in parsed.samples:
            values[s.key] = s.value
        fd, tmp = tempfile.mkstemp(prefix=f".{file_name}.", suffix=".tmp", dir=spool_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("".join(_line(k, v) + "\n" for k, v in values.items()))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    return path
