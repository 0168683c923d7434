"""StatsD packets to measurements: pure parsing, no I/O, no state.

The line format is ``name:value|type[|@rate][|#tags]``, types ``c`` (counter), ``g``
(gauge), ``ms`` (timer), ``h`` and ``d`` (histogram, distribution) and ``s`` (set); what
each becomes is decided by :mod:`signalbox.metrics.statsd.aggregate`.

DogStatsD extensions: tags ``|#k:v,k2`` become labels (tag names go through
:func:`sanitize_name`; a tag without a value becomes the label value ``"true"``; an invalid
or duplicate tag name, or an empty value, makes the line an error rather than a guess),
multi-value lines ``name:1:2:3|h`` (not for sets, whose member is the whole value), and the
container-id field ``|c:...`` (accepted and ignored: it describes the sender, not the metric).
Client-side timestamps ``|T...`` are refused.

Names go through :func:`sanitize_name` (``api.hits`` → ``api_hits``) and must then be
valid Prometheus names of at most :data:`MAX_NAME_CHARS` characters, with tags of at most
:data:`MAX_TAGS_CHARS` in all (DogStatsD's own limits are 200 per name and per tag): the
aggregator bounds the number of series, and these bound what each one's key costs. A line that is not UTF-8 or holds a control character is refused,
as in spool files. Blank lines are ignored. Negative counter increments and timer
durations are refused (a counter only goes up; send a gauge delta instead).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from signalbox.metrics.parse.lex import LineError, control_char_reason, excerpt
from signalbox.metrics.samples import LABEL_NAME, METRIC_NAME, Labels, labels_of, sanitize_name

__all__ = ["MAX_NAME_CHARS", "MAX_TAGS_CHARS", "StatsdKind", "StatsdLine", "parse_packet"]

MAX_NAME_CHARS = 200
MAX_TAGS_CHARS = 1000

StatsdKind = Literal["counter", "gauge", "timer", "histogram", "set"]
_KINDS: dict[str, StatsdKind] = {
    "c": "counter",
    "g": "gauge",
    "ms": "timer",
    "h": "histogram",
    "d": "histogram",
    "s": "set",
}
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")


@dataclass(frozen=True, slots=True)
class StatsdLine:
    """One parsed measurement. ``line`` is its 1-based line number within the packet.

    ``value`` is unused for sets (``member`` holds the member); ``delta`` marks a signed
    gauge value. ``name`` is already sanitized and valid.
    """

    name: str
    kind: StatsdKind
    value: float
    labels: Labels = ()
    sample_rate: float = 1.0
    delta: bool = False
    member: str = ""
    line: int = 0


class _Bad(Exception):
    """Internal: why the line being parsed is refused."""


def parse_packet(data: bytes, source: str) -> tuple[list[StatsdLine], list[LineError]]:
    """Parse every newline-separated line of one datagram.

    Blank lines are ignored; every other line yields one or more :class:`StatsdLine`
    (several for multi-value lines) or exactly one :class:`LineError`. Never raises.
    """
    parsed: list[StatsdLine] = []
    errors: list[LineError] = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.strip()
        if not raw:
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            shown = excerpt(raw.decode("utf-8", "replace"))
            errors.append(LineError(source, lineno, "line is not valid UTF-8", shown))
            continue
        bad_char = control_char_reason(text)
        if bad_char is not None:
            errors.append(LineError(source, lineno, bad_char, excerpt(text)))
            continue
        try:
            parsed.extend(_parse_line(text, lineno))
        except _Bad as bad:
            errors.append(LineError(source, lineno, str(bad), excerpt(text)))
    return parsed, errors


def _parse_line(text: str, lineno: int) -> list[StatsdLine]:
    raw_name, colon, rest = text.partition(":")
    if not colon:
        raise _Bad("expected 'name:value|type', found no ':'")
    if not raw_name:
        raise _Bad("empty metric name")
    if len(raw_name) > MAX_NAME_CHARS:
        raise _Bad(f"metric name of {len(raw_name)} characters (at most {MAX_NAME_CHARS})")
    name = sanitize_name(raw_name)
    if not METRIC_NAME.match(name):
        raise _Bad(f"invalid metric name {raw_name!r}")
    fields = rest.split("|")
    if len(fields) < 2:
        raise _Bad("expected 'name:value|type', found no '|type'")
    kind = _KINDS.get(fields[1])
    if kind is None:
        raise _Bad(f"unknown metric type {fields[1]!r} (expected c, g, ms, h, d or s)")
    rate: float | None = None
    labels: Labels | None = None
    for extra in fields[2:]:
        if extra.startswith("@"):
            if rate is not None:
                raise _Bad("sample rate given twice")
            rate = _number(extra[1:], "sample rate")
            if not 0.0 < rate <= 1.0:
                raise _Bad(f"sample rate {extra[1:]!r} is not in (0, 1]")
        elif extra.startswith("#"):
            if labels is not None:
                raise _Bad("tags given twice")
            if len(extra) - 1 > MAX_TAGS_CHARS:
                raise _Bad(f"tags of {len(extra) - 1} characters (at most {MAX_TAGS_CHARS})")
            labels = _parse_tags(extra[1:], kind)
        elif extra.startswith("c:"):
            continue  # DogStatsD container id: about the sender, not the metric
        elif extra.startswith("T"):
            raise _Bad("client-side timestamps ('|T') are not supported")
        else:
            raise _Bad(f"unknown field {extra!r} (expected '@rate' or '#tags')")
    tags, sample_rate = labels or (), rate or 1.0
    value_text = fields[0]
    if kind == "set":
        if not value_text:
            raise _Bad("empty set member")
        return [StatsdLine(name, kind, 0.0, tags, sample_rate, member=value_text, line=lineno)]
    out = []
    for part in value_text.split(":"):
        value = _number(part, "value")
        if kind == "counter" and value < 0:
            raise _Bad(f"negative counter increment {part!r} (counters only go up; use a gauge)")
        if kind == "timer" and value < 0:
            raise _Bad(f"negative timer duration {part!r}")
        delta = kind == "gauge" and part.startswith(("+", "-"))
        out.append(StatsdLine(name, kind, value, tags, sample_rate, delta=delta, line=lineno))
    return out


def _number(text: str, what: str) -> float:
    if not _NUMBER.match(text):
        raise _Bad(f"{what} {text!r} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise _Bad(f"{what} {text!r} is out of range")
    return value


def _parse_tags(text: str, kind: StatsdKind) -> Labels:
    pairs: dict[str, str] = {}
    for item in text.split(","):
        if not item:
            continue
        raw, colon, value = item.partition(":")
        name = sanitize_name(raw)
        if not LABEL_NAME.match(name) or name.startswith("__"):
            raise _Bad(f"invalid tag name {raw!r}")
        if name in pairs:
            raise _Bad(f"tag {name!r} given twice")
        if kind in ("timer", "histogram") and name == "quantile":
            raise _Bad("tag 'quantile' is reserved for timer quantiles")
        if colon and not value:
            raise _Bad(f"tag {raw!r} has an empty value")
        pairs[name] = value if colon else "true"
    return labels_of(pairs)
