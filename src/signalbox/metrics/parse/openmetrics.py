"""Streaming parser for OpenMetrics text with timestamps: the input of ``signalbox import``.

This is the format ``promtool tsdb create-blocks-from openmetrics`` reads, so history
exported for (or from) Prometheus can be loaded as is::

    # HELP http_requests Requests served.
    # TYPE http_requests counter
    http_requests_total{code="200"} 1027 1700000000
    http_requests_total{code="200"} 1043 1700000015.5
    # EOF

Rules, and why:
    * Every sample needs a timestamp, in **seconds** since the epoch (a float is fine) --
      OpenMetrics' unit, unlike the milliseconds of the Prometheus text format. A
      timestamp beyond the year 5000 is refused with a hint, because it is almost always
      milliseconds written by mistake. Timestamps are stored rounded to milliseconds.
    * Within one series timestamps must increase; a sample at or before the previous one
      of its series is an error naming the series, the line and both timestamps (the store
      would silently overwrite or reorder otherwise).
    * The input must end with ``# EOF``: without it the file was probably truncated, which
      is reported (as a :class:`LineError` with line 0, after everything else) but does
      not discard what was read. Anything but blank lines after ``# EOF`` is an error.
    * ``# HELP``/``# TYPE``/``# UNIT`` give the family's metadata. A ``MetricMeta`` is
      yielded when the family's metadata is complete (at its first sample, at the next
      family, or at the end). Metadata is keyed by stored series name: a counter family
      ``foo`` is recorded as ``foo_total``, the series its samples live in; histogram and
      summary families keep their base name, as in the Prometheus text format. Types map
      onto ours: ``unknown`` -> ``untyped``; ``gaugehistogram``, ``stateset`` and ``info``
      -> ``gauge`` (an info family is recorded as ``foo_info``). A sample outside any
      declared family yields an ``untyped`` meta for its name once.
    * Exemplars (``# {trace_id="..."} 1.0``) are accepted and ignored; ``_created``
      samples are stored as ordinary series.
    * Being an import tool rather than a validator, it tolerates what loses nothing:
      blank lines, other ``#`` comments, CRLF line ends, runs of blanks between tokens.

Lines may be passed with or without their ``\\n``; open files with ``newline="\\n"`` so a
stray ``\\r`` is reported rather than treated as a line break.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from signalbox.metrics.parse.lex import (
    NAME_RULE,
    LineError,
    blank_split,
    control_char_reason,
    excerpt,
    fast_labels,
    parse_float,
    scan_labels,
    show,
    unescape_help,
)
from signalbox.metrics.samples import (
    METRIC_NAME,
    Labels,
    MetricMeta,
    MetricType,
    Sample,
    SeriesKey,
    format_series,
)

__all__ = ["MAX_TIMESTAMP_S", "iter_openmetrics"]

MAX_TIMESTAMP_S = 1e11
"""Year ~5138: a larger "seconds" timestamp is milliseconds (or worse) written by mistake."""

_TYPES: dict[str, MetricType] = {
    "counter": "counter",
    "gauge": "gauge",
    "histogram": "histogram",
    "summary": "summary",
    "unknown": "untyped",
    "gaugehistogram": "gauge",
    "stateset": "gauge",
    "info": "gauge",
}
_MEMBERS: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
_SHAPE = "expected NAME[{LABELS}] VALUE TIMESTAMP"


def _format_seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}".rstrip("0").rstrip(".")


class _Family:
    """The family whose metadata lines were read last."""

    __slots__ = ("emitted", "help", "lines", "members", "name", "type", "unit")

    def __init__(self, name: str) -> None:
        self.name = name
        self.type = "unknown"
        self.help = ""
        self.unit = ""
        self.lines: dict[str, int] = {}  # keyword -> line it was given on
        self.members: frozenset[str] = frozenset({name})
        self.emitted = False

    def meta(self) -> MetricMeta:
        suffix = {"counter": "_total", "info": "_info"}.get(self.type, "")
        name = self.name if self.name.endswith(suffix) else self.name + suffix
        return MetricMeta(name, _TYPES[self.type], self.help, self.unit)


def iter_openmetrics(
    lines: Iterable[str], source: str
) -> Iterator[Sample | MetricMeta | LineError]:
    """Parse OpenMetrics text lazily, in input order, so the caller can write in batches.

    Yields a :class:`Sample` (``timestamp_ms`` always set) per good sample line, a
    :class:`MetricMeta` per family, and one :class:`LineError` per bad line; never raises
    on bad input. Memory grows with the number of series (for the ordering check), not
    with the number of lines.
    """
    last: dict[SeriesKey, tuple[int, int]] = {}  # series -> (timestamp ms, line)
    implicit: set[str] = set()
    family: _Family | None = None
    valid_name: dict[str, bool] = {}
    heads: dict[str, tuple[str, Labels]] = {}
    eof_line = 0
    lineno = 0
    for raw in lines:
        lineno += 1
        line = raw[:-1] if raw.endswith("\n") else raw
        if line.endswith("\r"):
            line = line[:-1]
        bad = control_char_reason(line)
        if bad is not None:
            yield LineError(source, lineno, bad, excerpt(line))
            continue
        if eof_line:
            if line.strip(" \t"):
                reason = f"content after '# EOF' (line {eof_line})"
                yield LineError(source, lineno, reason, excerpt(line))
            continue
        line = line.lstrip(" \t")
        if not line:
            continue
        if line[0] == "#":
            words = blank_split(line[1:])
            if words == ["EOF"]:
                eof_line = lineno
                continue
            keyword = words[0] if words else ""
            if keyword not in ("HELP", "TYPE", "UNIT"):
                continue  # a plain comment
            result = _metadata(line, keyword, lineno, family)
            if isinstance(result, str):
                yield LineError(source, lineno, result, excerpt(line))
                continue
            if result is not family:
                if family is not None and not family.emitted:
                    yield family.meta()
                family = result
            continue
        sample = _sample(line, valid_name, heads)
        if isinstance(sample, str):
            yield LineError(source, lineno, sample, excerpt(line))
            continue
        name, labels, value, stamp = sample
        if family is not None and name in family.members:
            if not family.emitted:
                family.emitted = True
                yield family.meta()
        else:
            if family is not None and not family.emitted:
                family.emitted = True
                yield family.meta()
            if name not in implicit:
                implicit.add(name)
                yield MetricMeta(name, "untyped", "")
        key = (name, labels)
        ms = round(stamp * 1000)
        prev = last.get(key)
        if prev is not None and ms <= prev[0]:
            reason = (
                f"out of order sample for {show(format_series(name, labels), 120)}: "
                f"timestamp {_format_seconds(ms)} is not after {_format_seconds(prev[0])} "
                f"(line {prev[1]})"
            )
            yield LineError(source, lineno, reason, excerpt(line))
            continue
        last[key] = (ms, lineno)
        yield Sample(name, labels, value, ms)
    if family is not None and not family.emitted:
        yield family.meta()
    if not eof_line:
        yield LineError(
            source, 0, f"missing '# EOF' at the end after line {lineno}: input truncated?", ""
        )


def _metadata(line: str, keyword: str, lineno: int, family: _Family | None) -> _Family | str:
    """Apply a ``# HELP/TYPE/UNIT`` line; the (maybe new) current family or an error."""
    rest = line[1:].lstrip(" \t")[len(keyword) :].lstrip(" \t")
    name, _, arg = rest.replace("\t", " ", 1).partition(" ")
    if not name:
        return f"expected '# {keyword} NAME ...': metric name missing"
    if not METRIC_NAME.match(name):
        return f"invalid metric name '{show(name)}' in # {keyword}: must match {NAME_RULE}"
    if family is None or family.name != name or family.emitted:
        family = _Family(name)
    if keyword in family.lines:
        return f"second # {keyword} for '{name}' (first on line {family.lines[keyword]})"
    arg = arg.strip(" \t") if keyword != "HELP" else arg.lstrip(" \t")
    if keyword == "TYPE":
        if arg not in _TYPES:
            return f"unknown metric type '{show(arg)}' for '{name}': expected one of " + ", ".join(
                _TYPES
            )
        family.type = arg
        members = {name + s for s in _MEMBERS[arg]}
        if (arg == "counter" and name.endswith("_total")) or (
            arg == "info" and name.endswith("_info")
        ):
            members.add(name)  # tolerate a family named after its sample
        family.members = frozenset(members)
    elif keyword == "HELP":
        text = unescape_help(arg, quote=True)
        if text is None:
            return f"invalid escape in # HELP for '{name}': only \\\\, \\\" and \\n are allowed"
        family.help = text
    else:
        family.unit = arg
    family.lines[keyword] = lineno
    return family


_HEADS_MAX = 100_000  # series whose parsed name and labels are remembered at once


def _sample(
    line: str, valid_name: dict[str, bool], heads: dict[str, tuple[str, Labels]]
) -> tuple[str, Labels, float, float] | str:
    """``(name, labels, value, timestamp seconds)`` of a sample line, or the reason it is bad.

    ``heads`` remembers the name and labels of each ``name{...}`` text already parsed: history
    comes series after series, so all but a series' first line skip the label parser."""
    brace = line.find("{")
    space = line.find(" ")
    if brace >= 0 and (space < 0 or brace < space):
        end = line.rfind("}") + 1
        head = heads.get(line[:end]) if end else None
        if head is not None:
            name, labels = head
        else:
            name = line[:brace]
            fast = fast_labels(line[brace + 1 : end]) if end else None
            if fast is None:
                r = scan_labels(line, brace + 1)
                if isinstance(r, str):
                    return r
                labels, end = r
            else:
                labels = fast
                if len(heads) >= _HEADS_MAX:
                    heads.clear()
                heads[line[:end]] = (name, labels)
        rest = line[end:]
    else:
        fields = blank_split(line)
        name = fields[0]
        labels = ()
        rest = line[len(name) :]
    ok = valid_name.get(name)
    if ok is None:
        ok = valid_name[name] = METRIC_NAME.match(name) is not None
    if not ok:
        return f"invalid metric name '{show(name)}': must match {NAME_RULE}"
    hash_at = rest.find("#")
    if hash_at >= 0:
        rest = rest[:hash_at]  # an exemplar: ignored
    fields = blank_split(rest)
    if not fields:
        return f"missing value: {_SHAPE}"
    if len(fields) == 1:
        return f"missing timestamp: history import needs every sample timed ({_SHAPE}, seconds)"
    if len(fields) > 2:
        return f"unexpected text after the timestamp: {_SHAPE}"
    value = parse_float(fields[0])
    if value is None:
        return f"value '{show(fields[0])}' is not a number"
    stamp = parse_float(fields[1])
    if stamp is None or not math.isfinite(stamp):
        return f"timestamp '{show(fields[1])}' is not a number of seconds since the epoch"
    if abs(stamp) >= MAX_TIMESTAMP_S:
        return (
            f"timestamp '{show(fields[1])}' is too large for seconds since the epoch; "
            "OpenMetrics timestamps are seconds, not milliseconds"
        )
    return name, labels, value, stamp
