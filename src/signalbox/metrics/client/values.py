"""A metrics client's current values: validated once per spelling, rendered as spool text.

Pure: no I/O, no clock, no locking of its own. :class:`~signalbox.metrics.client.Client`
holds its lock around every ``*_locked`` call (that one lock also guards its settings), and
its writer logs the queued problems and publishes the rendered text.

What the text holds (the ``key=value`` spool format, labels escaped as in Prometheus):

* a counter → the cumulative count, under its name as given (name counters ``..._total``
  so ``rate()`` reads naturally; a restart is a counter reset).
* a gauge → the last value set.
* a timer → ``name_seconds_count`` and ``name_seconds_sum`` (cumulative, so
  ``rate(sum)/rate(count)`` is the mean) and ``name_seconds_last`` (the latest duration).
  ``_seconds`` is not doubled when the name already ends with it.
* ``signalbox_client_errors_total``: calls refused (bad name, label or value).

Every line carries a ``pid`` label unless the client's ``pid_label`` is ``None``. Labels
with an empty value are left out (the same series, as in Prometheus).
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Mapping

from signalbox.metrics.samples import (
    LABEL_NAME,
    METRIC_NAME,
    Labels,
    SeriesKey,
    format_series,
    labels_of,
    sanitize_name,
)

__all__ = ["ERRORS_METRIC", "REFUSED", "MetricValues", "as_number", "format_value"]

ERRORS_METRIC = "signalbox_client_errors_total"
REFUSED: SeriesKey = ("", ())  # cached verdict: this spelling of a series is invalid
_MAX_PENDING_LOGS = 100
_MAX_REMEMBERED_PROBLEMS = 1000
# \t is fine and \n is escaped in the file; other control characters would make the
# spool reader refuse the line, so such label values are refused here, where they are made
_BAD_LABEL_CHAR = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")


def as_number(value: object) -> float | None:
    """``value`` as a finite float, or None when it is not a finite real number."""
    if value.__class__ is float:
        return value if math.isfinite(value) else None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


class MetricValues:
    """One client's series and values, the verdicts on how callers spelled them, and its refusals.

    The hot path (``Client.incr`` and friends) reads and updates these attributes inline,
    under the client's lock, to stay one function call deep; the cold path (a spelling
    seen for the first time, a refusal) goes through the methods. ``max_series`` bounds
    memory: new series beyond it are refused and counted as errors.
    """

    __slots__ = (
        "canon_counter",
        "canon_gauge",
        "canon_timer",
        "counters",
        "dirty",
        "errors",
        "gauges",
        "kind",
        "max_series",
        "pending_logs",
        "problems",
        "timers",
    )

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        # per kind: how the caller spelled a series -> its canonical key (or REFUSED)
        self.canon_counter: dict[object, SeriesKey] = {}
        self.canon_gauge: dict[object, SeriesKey] = {}
        self.canon_timer: dict[object, SeriesKey] = {}
        self.kind: dict[SeriesKey, str] = {}
        self.counters: dict[SeriesKey, float] = {}
        self.gauges: dict[SeriesKey, float] = {}
        self.timers: dict[SeriesKey, list[float]] = {}  # [count, sum, last]
        self.errors = 0
        self.problems: set[str] = set()
        self.pending_logs: deque[str] = deque(maxlen=_MAX_PENDING_LOGS)
        self.dirty = False  # changed since the last publication

    def register_locked(
        self,
        canon: dict[object, SeriesKey],
        raw: object,
        name: str,
        labels: Mapping[str, object],
        kind: str,
    ) -> SeriesKey:
        """Validate a series spelled this way for the first time; remember the verdict."""
        series = self.validate_locked(name, labels, kind)
        if series is not REFUSED and not self.claim_locked(series, kind, name):
            if series not in self.kind:
                return REFUSED  # over the limit: not cached, it may fit later (in a child)
            series = REFUSED
        if len(canon) > 4 * self.max_series:
            canon.clear()  # too many spellings of the same series; relearn them
        canon[raw] = series
        return series

    def claim_locked(self, series: SeriesKey, kind: str, name: str) -> bool:
        """Make ``series`` a ``kind`` (with a zero value) unless it is another kind or too many."""
        known = self.kind.get(series)
        if known == kind:
            return True
        if known is not None:
            self.problem_locked(f"{kind} {name!r}: already used as a {known}")
            return False
        if len(self.kind) >= self.max_series:
            self.problem_locked(f"{kind} {name!r}: too many series (limit {self.max_series})")
            return False
        self.kind[series] = kind
        if kind == "counter":
            self.counters[series] = 0
        elif kind == "timer":
            self.timers[series] = [0, 0.0, 0.0]
        return True

    def validate_locked(self, name: str, labels: Mapping[str, object], kind: str) -> SeriesKey:
        if not isinstance(name, str):
            self.problem_locked(f"{kind}: metric name {name!r} is not a string")
            return REFUSED
        clean = sanitize_name(name)
        if kind == "timer" and not clean.endswith("_seconds"):
            clean += "_seconds"
        if not METRIC_NAME.match(clean):
            self.problem_locked(f"{kind}: invalid metric name {name!r}")
            return REFUSED
        pairs: dict[str, str] = {}
        for label, value in labels.items():
            if not LABEL_NAME.match(label) or label.startswith("__"):
                self.problem_locked(f"{kind} {name!r}: invalid label name {label!r}")
                return REFUSED
            text = value if isinstance(value, str) else str(value)
            if _BAD_LABEL_CHAR.search(text):
                self.problem_locked(
                    f"{kind} {name!r}: label {label}={text!r} holds a control character"
                )
                return REFUSED
            if text:  # an empty value is the same series as no label (as in Prometheus)
                pairs[label] = text
        return (clean, labels_of(pairs))

    def problem_locked(self, message: str) -> None:
        """Count a refused call; queue its message for the writer thread to log, once."""
        self.errors += 1
        self.dirty = True
        if message not in self.problems and len(self.problems) < _MAX_REMEMBERED_PROBLEMS:
            self.problems.add(message)
            self.pending_logs.append(message)

    def take_logs_locked(self) -> list[str]:
        """The queued problem messages, oldest first; the queue is emptied."""
        pending = list(self.pending_logs)
        self.pending_logs.clear()
        return pending

    def render_locked(self, prog: str, pid: int, pid_label: str | None) -> str:
        """The spool file's text: a comment naming the process, then one sorted line per series."""
        lines = [f"# signalbox client: prog={prog} pid={pid}"]
        rows: list[tuple[str, Labels, float]] = []
        rows.extend((n, labels, v) for (n, labels), v in self.counters.items())
        rows.extend((n, labels, v) for (n, labels), v in self.gauges.items())
        for (n, labels), (count, total, last) in self.timers.items():
            rows.append((n + "_count", labels, count))
            rows.append((n + "_sum", labels, total))
            rows.append((n + "_last", labels, last))
        rows.append((ERRORS_METRIC, (), self.errors))
        rows.sort(key=lambda r: (r[0], r[1]))
        if pid_label is not None:
            pid_pair = (pid_label, str(pid))
            rows = [
                (
                    n,
                    labels
                    if any(k == pid_label for k, _ in labels)
                    else labels_of((*labels, pid_pair)),
                    v,
                )
                for n, labels, v in rows
            ]
        lines.extend(f"{format_series(n, labels)}={format_value(v)}" for n, labels, v in rows)
        return "\n".join(lines) + "\n"
