"""The instrumentation's settings: ``[instrument]`` of ``signalbox.toml``.

::

    [instrument]
    access_log = ".signalbox/access.log"  # "-": standard output; "": no access log
    format = "combined"                    # or "json" (see signalbox.instrument.accesslog)
    secret_notes = ["api_key"]             # notes logged as a keyed fingerprint, never in clear
    key_env = "SIGNALBOX_LOG_KEY"          # the fingerprint key; else the file below
    key_file = ".signalbox/log.key"        # made (32 random bytes, mode 0600) when missing
    request_id_header = "X-Request-ID"     # read (when sane) and echoed on every response
    trust_request_id = true                # false: always make a fresh id
    metrics = true                         # http_requests_total, http_request_duration_seconds
    max_note_chars = 1000                  # a longer note value is cut (the line stays bounded)
    buffer_lines = 256                     # lines kept back at most (1: each written at once)
    flush_interval = "200ms"               # ... and for at most this long

``access_log`` and ``key_file`` default to ``access.log`` and ``log.key`` in ``data_dir``.

Buffering: a request's line is made as its response ends (only the line and its count's
fields are kept back, nothing of the request itself) and written, with its request
counted, by the request that finds ``buffer_lines`` waiting or the oldest of them
``flush_interval`` old (when traffic stops, a background thread writes them within about
three intervals); each flush is one write of whole lines and one update of the metrics.
The middleware's cost a request is then about a tenth less than with a write and a count
per request (the bench: ``bench/middleware_overhead.py``, ``signalbox`` against
``signalbox unbuffered``). The price: a process killed with ``SIGKILL`` loses at most
``flush_interval`` of lines (a normal exit writes them). ``buffer_lines = 1`` writes every
line as its response ends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from signalbox.section import Source, table

__all__ = ["TABLES", "InstrumentSettings", "instrument_settings"]

TABLES = ("instrument",)

_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}\Z")
_NOTE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class InstrumentTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    access_log: str | None = None
    format: str = "combined"
    secret_notes: list[str] = msgspec.field(default_factory=lambda: ["api_key"])
    key_env: str = "SIGNALBOX_LOG_KEY"
    key_file: str = ""
    request_id_header: str = "X-Request-ID"
    trust_request_id: bool = True
    metrics: bool = True
    max_note_chars: int = 1000
    buffer_lines: int = 256
    flush_interval: str = "200ms"


@dataclass(frozen=True)
class InstrumentSettings:
    """``[instrument]`` resolved. ``access_log``: a path, ``"-"`` (standard output), None
    (none), or ``...`` unset: ``access.log`` in the data dir; ``key_file`` None: ``log.key``
    in the data dir."""

    access_log: Path | str | None = "default"
    format: str = "combined"
    secret_notes: tuple[str, ...] = ("api_key",)
    key_env: str = "SIGNALBOX_LOG_KEY"
    key_file: Path | None = None
    request_id_header: str = "X-Request-ID"
    trust_request_id: bool = True
    metrics: bool = True
    max_note_chars: int = 1000
    buffer_lines: int = 256
    flush_interval_s: float = 0.2

    def access_log_path(self, data_dir: Path) -> Path | str | None:
        """Where lines go: a path, ``"-"`` for standard output, None for nowhere."""
        return data_dir / "access.log" if self.access_log == "default" else self.access_log

    def key_path(self, data_dir: Path) -> Path:
        return self.key_file if self.key_file is not None else data_dir / "log.key"


def instrument_settings(src: Source, raw: Mapping[str, Any]) -> InstrumentSettings:
    """``[instrument]`` of the file's top-level table ``raw``, checked."""
    t = table(src, "instrument", raw.get("instrument"), InstrumentTable)
    if t.format not in ("combined", "json"):
        raise src.error("instrument.format", t.format, '"combined" or "json"')
    for i, n in enumerate(t.secret_notes):
        if not _NOTE.match(n):
            raise src.error(f"instrument.secret_notes[{i}]", n, "a note name like api_key")
    if not _ENV.match(t.key_env):
        raise src.error("instrument.key_env", t.key_env, "an environment variable name")
    if not _HEADER.match(t.request_id_header):
        raise src.error(
            "instrument.request_id_header", t.request_id_header, "a header name like X-Request-ID"
        )
    if t.max_note_chars < 16:
        raise src.error("instrument.max_note_chars", t.max_note_chars, "an integer of at least 16")
    if t.buffer_lines < 1:
        raise src.error("instrument.buffer_lines", t.buffer_lines, "an integer of at least 1")
    flush_s = src.duration("instrument.flush_interval", t.flush_interval)
    if not 0 < flush_s <= 60:
        raise src.error("instrument.flush_interval", t.flush_interval, "a duration from 1ms to 60s")
    access_log: Path | str | None
    if t.access_log is None:
        access_log = "default"
    elif t.access_log == "":
        access_log = None
    elif t.access_log == "-":
        access_log = "-"
    else:
        access_log = src.path(t.access_log)
    return InstrumentSettings(
        access_log=access_log,
        format=t.format,
        secret_notes=tuple(t.secret_notes),
        key_env=t.key_env,
        key_file=src.path(t.key_file) if t.key_file else None,
        request_id_header=t.request_id_header,
        trust_request_id=t.trust_request_id,
        metrics=t.metrics,
        max_note_chars=t.max_note_chars,
        buffer_lines=t.buffer_lines,
        flush_interval_s=flush_s,
    )
