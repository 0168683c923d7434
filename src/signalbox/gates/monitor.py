"""``monitor``: closed while a signalbox monitor is not OK.

Ties load feedback to the monitors people already review: ``monitor("photo_db_replication")``
holds the reprocessing jobs whenever that monitor is WARNING, CRITICAL or UNKNOWN, in any of
its series. Reads the monitor state the runner (``signalbox serve``) persists
(:mod:`signalbox.monitors.state`), so any worker on any host sees the same answer.

Fails closed: a monitor with no recorded state (a typo, or never evaluated) closes the gate,
and so does state older than ``max_age`` -- a runner that stopped leaves the last answer in
the store, and "OK an hour ago" is not "OK".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from signalbox.durations import format_duration
from signalbox.gates.base import Decision, Gate
from signalbox.metrics.samples import format_series

if TYPE_CHECKING:
    from signalbox.config import Settings
    from signalbox.monitors.state.store import MonitorStore
    from signalbox.storage import Database

__all__ = ["DEFAULT_MAX_AGE_S", "MonitorGate", "monitor"]

DEFAULT_MAX_AGE_S = 600.0
"""State older than this is not trusted (20 passes at the default 30 s interval)."""


class MonitorGate(Gate):
    """See :func:`monitor`."""

    def __init__(
        self,
        monitor_name: str,
        *,
        max_age: float | None = DEFAULT_MAX_AGE_S,
        db: Database | None = None,
        settings: Settings | None = None,
        now: Callable[[], float] = time.time,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not monitor_name:
            raise ValueError("monitor() needs the monitor's name")
        if max_age is not None and max_age <= 0:
            raise ValueError(f"max_age must be positive (or None), got {max_age!r}")
        super().__init__(name or f"monitor:{monitor_name}", **kwargs)
        self.monitor_name = monitor_name
        self.max_age = max_age
        self._db = db
        self._settings = settings
        self._now = now
        self._store: MonitorStore | None = None

    def _get_store(self) -> MonitorStore:
        if self._store is None:
            from signalbox.monitors.state.store import MonitorStore

            if self._db is None:  # first probe: the store of the signalbox.toml in use
                from signalbox.config import load_settings
                from signalbox.storage import open_database

                self._db = open_database((self._settings or load_settings()).store_url)
            self._store = MonitorStore(self._db)
        return self._store

    def probe(self) -> Decision:
        m = self.monitor_name
        series = self._get_store().series(m).get(m, {})
        if not series:
            return self.closed(
                f"monitor {m} has no recorded state (unknown name, or not evaluated yet)",
                {"monitor": m, "series": {}},
            )
        now_ms = int(self._now() * 1000)
        states = {
            (format_series("", labels) or "{}"): rec.state.state.value
            for labels, rec in series.items()
        }
        newest = max(rec.updated_ms for rec in series.values())
        age_s = max(0.0, (now_ms - newest) / 1000)
        reading: dict[str, Any] = {"monitor": m, "series": states, "age_s": round(age_s, 3)}
        if self.max_age is not None and age_s > self.max_age:
            return self.closed(
                f"monitor {m}'s state is {format_duration(round(age_s))} old (max "
                f"{format_duration(self.max_age)}): is the monitor runner (signalbox serve) running?",
                reading,
            )
        bad = [
            (labels, rec)
            for labels, rec in sorted(series.items(), key=lambda kv: -kv[1].state.state.severity)
            if rec.state.state.value != "OK"
        ]
        if not bad:
            return self.opened(f"monitor {m} is OK", reading)
        labels, rec = bad[0]
        where = format_series("", labels)
        why = f": {rec.state.reason}" if rec.state.reason else ""
        more = f" (and {len(bad) - 1} more series)" if len(bad) > 1 else ""
        return self.closed(f"monitor {m}{where} is {rec.state.state.value}{why}{more}", reading)


def monitor(
    monitor_name: str,
    *,
    max_age: float | None = DEFAULT_MAX_AGE_S,
    db: Database | None = None,
    settings: Settings | None = None,
    now: Callable[[], float] = time.time,
    name: str | None = None,
    interval: float | None = None,
    delay: float | None = None,
) -> MonitorGate:
    """A gate closed while monitor ``monitor_name`` is not OK (any series WARNING, CRITICAL or
    UNKNOWN), when it has no state, or when its state is older than ``max_age`` seconds
    (None: never too old).

    Args:
        name: the gate's name (default ``monitor:NAME``).
        db: the store holding monitor state; default: the store of the ``signalbox.toml`` in
            use (``settings``, else found as the CLI finds it), opened at the first probe.
    """
    kwargs: dict[str, Any] = {}
    if interval is not None:
        kwargs["interval"] = interval
    if delay is not None:
        kwargs["delay"] = delay
    return MonitorGate(
        monitor_name, max_age=max_age, db=db, settings=settings, now=now, name=name, **kwargs
    )
