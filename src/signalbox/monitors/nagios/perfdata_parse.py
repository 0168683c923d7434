"""Nagios plugin output: status text, long output and performance data (pure parser).

The grammar is the one in the Monitoring Plugins Development Guidelines::

    STATUS TEXT | perfdata perfdata ...
    long output line 1
    long output line 2 | more perfdata
    more perfdata on following lines

A perfdata item is ``'label'=value[UOM];[warn];[crit];[min];[max]``: quoted labels may
hold spaces, and ``''`` inside quotes is one quote; ``U`` as the value means "no sample
this time" (not an error); trailing empty fields may be left out. ``warn``/``crit`` use
the plugin *range* syntax (``10``, ``10:``, ``~:10``, ``10:20``, ``@10:20``).

The parser never raises: a malformed item becomes a :class:`~signalbox.exceptions.ParseError`
(naming the item and its output line) in :attr:`PluginOutput.errors`, and every other item
still counts. A datum whose value is good but whose threshold/min/max is not is kept
without the bad field, and the bad field is reported.

Turning the parsed perfdata into metrics is :mod:`signalbox.monitors.nagios.perfdata_metrics`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from signalbox.exceptions import ParseError

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_UOM = re.compile(r"[A-Za-z%/°µ]{1,16}\Z")


@dataclass(frozen=True, slots=True)
class Range:
    """A plugin range: alert when the value is outside ``[start, end]`` (inside if ``inside``).

    ``start_given`` says the text spelled a lower bound (``10:20``), as opposed to the
    implied ``0`` of plain ``20``; only a spelled bound becomes a ``_low`` series.
    """

    start: float
    end: float
    inside: bool = False
    start_given: bool = False

    def alerts(self, value: float) -> bool:
        """Would a plugin using this range alert on ``value``?"""
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def __str__(self) -> str:
        return format_range(self)


@dataclass(frozen=True, slots=True)
class PerfDatum:
    """One perfdata item, in the plugin's own unit (``value`` None means ``U``)."""

    label: str
    value: float | None
    uom: str = ""
    warn: Range | None = None
    crit: Range | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class PluginOutput:
    """What a plugin printed, split the Nagios way; ``errors`` lists every item not understood."""

    status_text: str
    long_output: str = ""
    perfdata: tuple[PerfDatum, ...] = ()
    errors: tuple[ParseError, ...] = ()


def parse_plugin_output(text: str, source: str = "plugin output") -> PluginOutput:
    """Split plugin stdout into status text, long output and perfdata; never raises.

    ``source`` names the plugin in error messages (``check_disk:3: perfdata item ...``).
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    status, bar, first_perf = lines[0].partition("|")
    segments: list[tuple[int, str]] = [(1, first_perf)] if bar else []
    long_lines: list[str] = []
    in_perf = False
    for number, line in enumerate(lines[1:], start=2):
        if in_perf:
            segments.append((number, line))
            continue
        before, bar, after = line.partition("|")
        if bar:
            if before.strip():
                long_lines.append(before.rstrip())
            segments.append((number, after))
            in_perf = True
        else:
            long_lines.append(line.rstrip())
    while long_lines and not long_lines[-1]:
        long_lines.pop()
    while long_lines and not long_lines[0]:
        long_lines.pop(0)
    perfdata: list[PerfDatum] = []
    errors: list[ParseError] = []
    for number, segment in segments:
        for datum, problems in _parse_segment(segment):
            if datum is not None:
                perfdata.append(datum)
            errors.extend(ParseError(source, number, reason, raw) for reason, raw in problems)
    return PluginOutput(status.strip(), "\n".join(long_lines), tuple(perfdata), tuple(errors))


def parse_perfdata(text: str, source: str = "perfdata") -> tuple[list[PerfDatum], list[ParseError]]:
    """Parse perfdata alone (one or more lines, no status text); never raises."""
    data: list[PerfDatum] = []
    errors: list[ParseError] = []
    for number, segment in enumerate(text.replace("\r", "\n").split("\n"), start=1):
        for datum, problems in _parse_segment(segment):
            if datum is not None:
                data.append(datum)
            errors.extend(ParseError(source, number, reason, raw) for reason, raw in problems)
    return data, errors


_Problem = tuple[str, str]  # (reason, raw item)


def _parse_segment(s: str) -> Iterator[tuple[PerfDatum | None, list[_Problem]]]:
    """Scan one line of perfdata into items; each yields a datum (or None) and its problems."""
    i, n = 0, len(s)
    while i < n:
        if s[i].isspace():
            i += 1
            continue
        start = i
        if s[i] == "'":
            parts: list[str] = []
            j = i + 1
            closed = False
            while j <= n:
                k = s.find("'", j)
                if k == -1:
                    break
                if k + 1 < n and s[k + 1] == "'":
                    parts.append(s[j : k + 1])
                    j = k + 2
                    continue
                parts.append(s[j:k])
                j = k + 1
                closed = True
                break
            if not closed:
                raw = s[start:].rstrip()
                yield None, [(f"perfdata item {raw!r}: unterminated quoted label", raw)]
                return
            label = "".join(parts)
            if j >= n or s[j] != "=":
                k = _next_space(s, j)
                raw = s[start:k]
                yield None, [(f"perfdata item {raw!r}: expected '=' after the quoted label", raw)]
                i = k
                continue
        else:
            j = i
            while j < n and s[j] != "=" and not s[j].isspace():
                j += 1
            if j >= n or s[j] != "=":
                raw = s[start:j]
                yield None, [(f"perfdata item {raw!r}: expected label=value", raw)]
                i = j
                continue
            label = s[i:j]
        k = _next_space(s, j + 1)
        raw = s[start:k]
        i = k
        yield _parse_item(label, s[j + 1 : k], raw)


def _next_space(s: str, i: int) -> int:
    while i < len(s) and not s[i].isspace():
        i += 1
    return i


def _parse_item(label: str, data: str, raw: str) -> tuple[PerfDatum | None, list[_Problem]]:
    def problem(what: str) -> _Problem:
        return (f"perfdata item {raw!r}: {what}", raw)

    if not label:
        return None, [problem("empty label")]
    fields = data.split(";")
    value_text = fields[0]
    value: float | None
    uom = ""
    if value_text == "U":
        value = None
    else:
        m = _NUMBER.match(value_text)
        if m is None:
            what = (
                "missing value" if not value_text else f"value {value_text!r} is not a number or U"
            )
            return None, [problem(what)]
        value = float(m.group())
        uom = value_text[m.end() :]
        if not math.isfinite(value):
            return None, [problem(f"value {m.group()!r} is not finite")]
        if uom and not _UOM.match(uom):
            if uom[:1] == "," and uom[1:2].isdigit():
                return None, [problem(f"value {value_text!r} uses a decimal comma; expected a dot")]
            return None, [problem(f"unit {uom!r} is not a unit of measurement")]
    problems: list[_Problem] = []
    if len(fields) > 5:
        problems.append(
            problem(
                f"{len(fields)} fields, at most 5 expected (value;warn;crit;min;max); extra ignored"
            )
        )
    warn = crit = None
    bounds: list[float | None] = [None, None]
    for index, name in ((1, "warn"), (2, "crit")):
        if len(fields) > index and fields[index]:
            try:
                parsed = parse_range(fields[index])
            except ValueError as e:
                problems.append(problem(f"{name} {e}"))
                continue
            if index == 1:
                warn = parsed
            else:
                crit = parsed
    for index, name in ((3, "min"), (4, "max")):
        if len(fields) > index and fields[index]:
            text = fields[index]
            m = _NUMBER.fullmatch(text)
            number = float(text) if m else math.nan
            if not math.isfinite(number):
                problems.append(problem(f"{name} {text!r} is not a finite number"))
            else:
                bounds[index - 3] = number
    return PerfDatum(label, value, uom, warn, crit, bounds[0], bounds[1]), problems


def parse_range(text: str) -> Range:
    """Parse a plugin range (``10``, ``10:``, ``~:10``, ``10:20``, ``@10:20``); ValueError if bad."""
    inside = text.startswith("@")
    body = text[1:] if inside else text
    low_text, colon, high_text = body.rpartition(":") if ":" in body else ("", "", body)
    start, start_given = 0.0, False
    if colon:
        if low_text == "~":
            start = -math.inf
        else:
            start = _range_number(low_text, text)
            start_given = True
    end = math.inf if colon and not high_text else _range_number(high_text, text)
    if start > end:
        raise ValueError(f"range {text!r} has start greater than end")
    return Range(start, end, inside, start_given)


def _range_number(part: str, whole: str) -> float:
    if not _NUMBER.fullmatch(part):
        raise ValueError(f"range {whole!r} is not [@][start:][end] with numbers (start may be ~)")
    number = float(part)
    if not math.isfinite(number):
        raise ValueError(f"range {whole!r} has a number that is not finite")
    return number


def format_range(t: Range) -> str:
    """The plugin spelling of a range, inverse of :func:`parse_range`."""
    prefix = "@" if t.inside else ""
    end = "" if t.end == math.inf else _num(t.end)
    if t.start == -math.inf:
        return f"{prefix}~:{end}"
    if t.start_given or t.start != 0 or t.end == math.inf:
        return f"{prefix}{_num(t.start)}:{end}"
    return f"{prefix}{end}"


def format_perfdatum(d: PerfDatum) -> str:
    """One perfdata item as a plugin would print it (quotes the label when needed)."""
    label = d.label
    if any(c.isspace() or c in "'=" for c in label):
        label = "'" + label.replace("'", "''") + "'"
    fields = [
        "U" if d.value is None else _num(d.value) + d.uom,
        "" if d.warn is None else format_range(d.warn),
        "" if d.crit is None else format_range(d.crit),
        "" if d.min is None else _num(d.min),
        "" if d.max is None else _num(d.max),
    ]
    while len(fields) > 1 and not fields[-1]:
        fields.pop()
    return f"{label}={';'.join(fields)}"


def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() or abs(x) >= 1e16 else str(int(x))
