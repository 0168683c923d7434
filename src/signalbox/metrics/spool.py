"""Reading the spool dir safely: the edge between apps' files and the collector.

The spool is written by other programs, so nothing in it is trusted: a symlink may point
anywhere, a "file" may be a FIFO that blocks forever, a writer may have dumped a core file
there. Every refusal is a :class:`SpoolProblem` with the file and the reason, and a file's
good lines count even when some of its lines are bad (node_exporter drops the whole file).

Rules:

- ``*.metrics`` (``key=value`` lines) and ``*.prom`` (Prometheus text) are read; names
  starting with ``.`` or ending in ``.tmp`` are in-progress writes and skipped silently;
  other names are reported once as ignored. Sub-directories are not descended.
- Refused with a problem: files over ``max_file_bytes``; symlinks whose target leaves the
  spool dir; anything that is not a regular file; unreadable files; binary files (a NUL byte).
- A file older than its freshness limit is *stale*: its samples are not stored (so its series
  go stale everywhere instead of being exported forever), it is reported, and its age stays
  visible as ``signalbox_spool_file_age_seconds``. The limit is the file's own
  ``# stale_after: 25h`` line (a daily cron job's file; see
  :mod:`signalbox.metrics.parse.stale_after`), else ``stale_after_s``.
- Timestamps in ``.prom`` files are honoured when they are at most 1 hour old and at most
  5 minutes in the future; others make that line an error. ``key=value`` lines have no
  timestamps: they are stamped with the collection time.
- The same series from two files is reported naming both; the first file (by name) wins.
- What each file read stored is noted in :attr:`SpoolScan.files`, so the collector can end
  (with stale markers) the series of a file that went stale, was removed or lost a line.

A clean file whose shape the store already knows (see
:mod:`signalbox.metrics.sql.layouts`) is not parsed again: its values become a
:class:`~signalbox.metrics.store.Frame`. The first clean read of a shape proposes it as a
:class:`~signalbox.metrics.store.NewLayout`. A ``*.metrics`` file's shape is the text left of
each ``=`` (:func:`~signalbox.metrics.parse.keyvalue.keyvalue_shape`); a ``*.prom`` file's is
its text without the values, ``# HELP``/``# TYPE`` and other comments kept where they stand
(:func:`~signalbox.metrics.parse.promtext.prometheus_shape`). A ``*.prom`` file with a
timestamp on any line has no shape and is parsed every pass: each stamped line is checked
against the pass's time, and a frame is stored at that time.

A new shape is not checked for series another file also has: the store finds those
(:class:`~signalbox.metrics.store.DuplicateSeries`), and the collector reads the pass again
``careful``-ly, every file parsed, which reports them.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter, not_, or_

try:  # the BLAKE2 module itself: hashlib would also load OpenSSL, a cost on every cron pass
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b
from pathlib import Path

from signalbox.metrics.parse.columns import PairCache
from signalbox.metrics.parse.keyvalue import (
    Columns,
    keyvalue_columns,
    keyvalue_series,
    parse_keyvalue,
)
from signalbox.metrics.parse.lex import LineError, new_metas
from signalbox.metrics.parse.promtext import (
    PromShape,
    parse_prometheus,
    prometheus_series,
    prometheus_shape_of,
)
from signalbox.metrics.parse.stale_after import find_stale_after
from signalbox.metrics.samples import MetricMeta, Sample, SeriesKey, format_series
from signalbox.metrics.store import Frame, NewLayout

_NAME, _LABELS, _TIMESTAMP = itemgetter(0), itemgetter(1), itemgetter(3)
MAX_PAST_MS = 3600_000
MAX_FUTURE_MS = 300_000
_SHAPE_VERSION = b"keyvalue 1\n"  # change when the key=value rules change: old layouts lapse


_PROM_SHAPE_VERSION = b"prom 1\n"  # the same for *.prom shapes (and never equal to it)


def shape_digest(shape: str, version: bytes = _SHAPE_VERSION) -> bytes:
    """The layout digest of a file's shape (``version``: which format's shapes)."""
    return blake2b(version + shape.encode(), digest_size=16).digest()


def _owner_keys(samples: list[Sample]) -> list[str | SeriesKey]:
    """The samples' series for the duplicate check: a label-less one by its name (a str
    never equals a key tuple), others as ``(name, labels)``."""
    if not any(map(_LABELS, samples)):
        return list(map(_NAME, samples))
    return [(s[0], s[1]) if s[1] else s[0] for s in samples]


@dataclass(frozen=True, slots=True)
class SpoolProblem:
    """Something in the spool we refused or only partly read."""

    file: str  # name relative to the spool dir
    line: int  # 0 when the whole file is concerned
    reason: str
    kind: str = "line"  # line | refused | stale | ignored | duplicate

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class FileSeries:
    """The series a file read the long way stored, kept compact between passes: a
    fingerprint of their keys tells passes apart, and the file's text gives the keys again
    (:func:`series_keys`) only when they differ. Kept as keys, a million series of
    ``*.prom`` files would hold ~600 MB; as text, the files' size."""

    fingerprint: int | None  # hash() of the key set: within one process only
    text: str


def series_keys(name: str, text: str) -> frozenset[SeriesKey]:
    """The keys of the series of spool file ``name`` with content ``text``."""
    if name.endswith(".metrics"):
        parsed = parse_keyvalue(text, name, metas=False)
    else:
        parsed = parse_prometheus(text, name)
    return frozenset((s[0], s[1]) for s in parsed.samples)


@dataclass(slots=True)
class SpoolScan:
    samples: list[Sample] = field(default_factory=list)
    metas: list[MetricMeta] = field(default_factory=list)
    problems: list[SpoolProblem] = field(default_factory=list)
    ages: dict[str, float] = field(default_factory=dict)  # file -> age in seconds
    stale_after: dict[str, float] = field(default_factory=dict)  # file -> its limit, seconds
    files_read: int = 0
    bad_lines: dict[str, int] = field(default_factory=dict)  # file -> errors this pass
    frames: list[Frame] = field(default_factory=list)  # files of a shape the store knows
    new_layouts: list[NewLayout] = field(default_factory=list)  # clean files of a new shape
    files: dict[str, bytes | FileSeries] = field(default_factory=dict)
    """What each file read this pass stored: its layout digest when it went as a frame or
    proposed a new layout (the store knows its series), else :class:`FileSeries`. The
    collector keeps it between passes to end the series a file stopped reporting."""
    keys: dict[str, frozenset[SeriesKey]] = field(default_factory=dict)
    """The series keys of each file of :attr:`files` read the long way, for this pass only."""

    @property
    def sample_count(self) -> int:
        columns = sum(nl.size for nl in self.new_layouts if nl.columns is not None)
        return len(self.samples) + sum(len(f.values) for f in self.frames) + columns


def _read_safely(
    spool: Path, real_spool: str, name: str, max_bytes: int
) -> tuple[bytes | None, float, str]:
    """(content or None, mtime, reason when refused)."""
    path = spool / name
    try:
        lst = os.lstat(path)
    except OSError as e:
        return None, 0.0, f"cannot stat: {e.strerror}"
    target = str(path)
    if stat.S_ISLNK(lst.st_mode):
        real = os.path.realpath(path)
        if os.path.commonpath([real, real_spool]) != real_spool:
            return None, 0.0, f"refused: symlink leads out of the spool dir (to {real})"
        target = real
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, 0.0, "refused: symlink changed while reading"
        return None, 0.0, f"refused: unreadable ({e.strerror})"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, st.st_mtime, "refused: not a regular file"
        if st.st_size > max_bytes:
            return (
                None,
                st.st_mtime,
                f"refused: {st.st_size} bytes is over the {max_bytes}-byte limit (collect.max_file_bytes)",
            )
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                return (
                    None,
                    st.st_mtime,
                    f"refused: grew over the {max_bytes}-byte limit while being read",
                )
            chunks.append(chunk)
        data = b"".join(chunks)
    except OSError as e:
        return None, 0.0, f"refused: read failed ({e.strerror})"
    finally:
        os.close(fd)
    if b"\x00" in data:
        return None, st.st_mtime, "refused: binary content (NUL byte); expected text"
    return data, st.st_mtime, ""


def scan_spool(
    spool_dir: Path,
    *,
    now_ms: int,
    max_file_bytes: int,
    stale_after_s: float,
    layouts: Container[bytes] | None = None,
    careful: bool = False,
) -> SpoolScan:
    """Read every spool file once; pure apart from reading the files.

    ``layouts``: digests of the shapes the store knows; None reads every file as samples.
    ``careful``: parse every file, a known shape too, so the same series in two files is
    found here (the first file by name keeps it, the other's line is reported) instead of by
    the store; a file that keeps all its series is still sent as a frame or a new layout.
    The collector reads a pass again this way when the store found a series twice.
    """
    out = SpoolScan()
    try:
        names = sorted(os.listdir(spool_dir))
    except FileNotFoundError:
        return out
    except OSError as e:
        out.problems.append(
            SpoolProblem(str(spool_dir), 0, f"cannot list spool dir: {e.strerror}", "refused")
        )
        return out
    real_spool = os.path.realpath(spool_dir)
    owner: dict[str | SeriesKey, str] = {}
    pairs: PairCache = {}  # label pairs shared by the files' label sets
    for name in names:
        if name.startswith(".") or name.endswith(".tmp"):
            continue
        is_kv, is_prom = name.endswith(".metrics"), name.endswith(".prom")
        if not (is_kv or is_prom):
            if not (spool_dir / name).is_dir():
                out.problems.append(
                    SpoolProblem(name, 0, "ignored: not a *.metrics or *.prom file", "ignored")
                )
            continue
        data, mtime, reason = _read_safely(spool_dir, real_spool, name, max_file_bytes)
        if mtime:
            out.ages[name] = max(0.0, now_ms / 1000 - mtime)
        if data is None:
            out.problems.append(SpoolProblem(name, 0, reason, "refused"))
            out.bad_lines[name] = out.bad_lines.get(name, 0) + 1
            continue
        text = data.decode("utf-8", errors="replace")
        own = find_stale_after(text, name)
        own_limit = own.seconds
        limit = stale_after_s if own_limit is None else own_limit
        out.stale_after[name] = limit
        if own.errors:
            _line_problems(out, name, own.errors)
        age = out.ages.get(name, 0.0)
        if age > limit:
            said = (
                f"collect.stale_after is {stale_after_s:.0f}s"
                if own_limit is None
                else f"its # stale_after is {limit:.0f}s"
            )
            out.problems.append(
                SpoolProblem(
                    name,
                    0,
                    f"stale: not updated for {age:.0f}s ({said}); its values are not collected",
                    "stale",
                )
            )
            continue
        out.files_read += 1
        columns: Columns | None = None
        prom_shape: PromShape | None = None
        digest, values = b"", None
        if layouts is not None:  # the file's shape: a frame if the store knows it
            if is_kv:
                columns = keyvalue_columns(text)
                if columns is not None:
                    digest, values = shape_digest("\n".join(columns[0])), columns[1]
            else:
                prom_shape = prometheus_shape_of(text)
                if prom_shape is not None:
                    digest = shape_digest(prom_shape.text(), _PROM_SHAPE_VERSION)
                    values = prom_shape.values
            if values is not None and digest in layouts and not careful:
                out.frames.append(Frame(digest, values))
                out.files[name] = digest
                continue
            if values is not None and not careful:
                # a new shape, proposed as a layout of the file's columns: no sample made
                # per line (the store checks its series, as below)
                if columns is not None:
                    series = keyvalue_series(columns)
                else:
                    series = None if prom_shape is None else prometheus_series(prom_shape)
                if series is not None:
                    out.new_layouts.append(NewLayout(digest, 0, 0, series))
                    out.files[name] = digest
                    if is_prom:  # no comment line: every name untyped, as the parser says
                        # (not memoized: a first pass of a million names would fill the
                        # memo for nothing, their next passes are frames, with no metadata)
                        out.metas.extend(new_metas(list(dict.fromkeys(series.names)), "untyped"))
                    continue
        if is_kv:
            parsed = parse_keyvalue(text, name, metas=False, columns=columns, pairs=pairs)
        else:
            parsed = parse_prometheus(text, name, shape=prom_shape)
        del columns, prom_shape
        errors: list[LineError] = list(parsed.errors)
        samples = parsed.samples
        if is_prom:
            samples = _in_window(samples, now_ms, name, errors)
        whole = values is not None and not errors and samples and len(samples) == len(values)
        if whole and not careful:
            # a new shape, proposed as a layout: the store checks its series against every
            # other series of the write (DuplicateSeries: the collector reads the pass again
            # carefully), so it is not noted in ``owner`` -- a million new series would cost
            # ~0.5 s and ~40 MB there
            out.new_layouts.append(NewLayout(digest, len(out.samples), len(samples)))
            out.files[name] = digest
        else:
            # a label-less series by its name alone: no tuple per sample
            keys = _owner_keys(samples)
            if owner.keys() & keys:  # rare: the same series from another file; first wins
                fresh = []
                for s, key in zip(samples, keys, strict=True):
                    first = owner.get(key)
                    if first is None:
                        fresh.append(s)
                        continue
                    out.problems.append(
                        SpoolProblem(
                            name,
                            0,
                            f"duplicate series {format_series(s[0], s[1])}: also in {first}, whose value is kept",
                            "duplicate",
                        )
                    )
                    out.bad_lines[name] = out.bad_lines.get(name, 0) + 1
                samples = fresh
                keys = _owner_keys(samples)
            owner.update(dict.fromkeys(keys, name))
            if whole and len(samples) == len(values or ()):  # careful, and none was dropped
                assert layouts is not None and values is not None
                out.files[name] = digest
                if digest in layouts:
                    out.frames.append(Frame(digest, values))
                    continue
                out.new_layouts.append(NewLayout(digest, len(out.samples), len(samples)))
            else:
                key_set = out.keys[name] = frozenset((s[0], s[1]) for s in samples)
                out.files[name] = FileSeries(hash(key_set), text)
        out.samples.extend(samples)
        if is_prom:  # key=value metrics are gauges, the default: no metadata to store
            out.metas.extend(parsed.metas)
        if errors:
            _line_problems(out, name, errors)
    return out


def _in_window(
    samples: list[Sample], now_ms: int, name: str, errors: list[LineError]
) -> list[Sample]:
    """The samples of file ``name`` without those stamped outside the window around
    ``now_ms``, each of which becomes an error. Checked column-wise (``map`` in C): a
    first pass reads a million samples here, nearly always none of them stamped."""
    stamps = list(map(_TIMESTAMP, samples))
    if stamps.count(None) == len(stamps):
        return samples
    filled = [now_ms if ts is None else ts for ts in stamps]
    outside = list(
        map(
            or_,
            map((now_ms - MAX_PAST_MS).__gt__, filled),
            map((now_ms + MAX_FUTURE_MS).__lt__, filled),
        )
    )
    if True not in outside:
        return samples
    for s in compress(samples, outside):
        errors.append(
            LineError(
                name,
                0,
                f"timestamp {s.timestamp_ms} of {format_series(s.name, s.labels)} is more than 1h old or 5m ahead; sample not stored",
                "",
            )
        )
    return list(compress(samples, map(not_, outside)))


def _line_problems(out: SpoolScan, name: str, errors: Sequence[LineError]) -> None:
    """Bad lines of file ``name``: reported, and counted in its error total."""
    for err in errors:
        out.problems.append(
            SpoolProblem(name, err.line, err.reason + (f": {err.text}" if err.text else ""), "line")
        )
    out.bad_lines[name] = out.bad_lines.get(name, 0) + len(errors)
