"""Request count and latency per route, method and status class, through the metrics client.

Names are the ones Grafana's HTTP dashboards (and the Prometheus instrumentators for
Starlette, FastAPI and Django) query, so an existing dashboard works unchanged:

* ``http_requests_total{route, method, status}``: a counter;
* ``http_request_duration_seconds_bucket{route, method, status, le}``, ``..._sum`` and
  ``..._count``: a cumulative histogram over Prometheus' default buckets (5 ms to 10 s), so
  ``histogram_quantile(0.99, sum by (le, route) (rate(..._bucket[5m])))`` gives latency
  percentiles and ``rate(_sum) / rate(_count)`` the mean.

``route`` is the route template (``/items/{id}``, never the raw path, so a crawler cannot
make a series per URL; ``(none)`` when no route matched), ``status`` the class (``2xx``
... ``5xx``), ``method`` one of the standard methods or ``other``. The series per route are
then bounded: 9 methods x 5 classes x 14 names at most.

The hot path adds to per-process totals under one lock (about a microsecond; a buffered
access log's flush adds its whole batch under one taking of it); a daemon
thread hands what changed to the client once a second (the client's own thread then writes
its spool file), and whatever is left is handed over at exit. A forked child starts with
empty totals, as the client itself does.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from typing import Protocol

# imported first, so its exit hook (the final spool write) runs after ours (the last push)
from signalbox.metrics import client as metrics_client

__all__ = ["BUCKETS", "RequestMetrics", "method_label", "status_class"]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds in seconds (Prometheus' defaults); ``+Inf`` is added."""
_LE = (*(f"{b:g}" for b in BUCKETS), "+Inf")
_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
)
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class Counter(Protocol):
    """The part of :class:`signalbox.metrics.client.Client` used here."""

    def incr(self, name: str, n: float = 1, **labels: object) -> None: ...


def status_class(status: int) -> str:
    return _CLASSES[status // 100 - 1] if 100 <= status < 600 else "5xx"


def method_label(method: str) -> str:
    return method if method in _METHODS else "other"


class RequestMetrics:
    """Per-process request totals, handed to ``client`` (default: the process-wide metrics
    client) every ``interval`` seconds (``background=False``: only by :meth:`push`)."""

    def __init__(
        self,
        client: Counter | None = None,
        *,
        interval: float = 1.0,
        background: bool = True,
    ) -> None:
        self._client = client
        self.interval = interval
        self.background = background
        self._lock = threading.Lock()
        # (route, method, status class) -> [count, sum, n(bucket 0), ..., n(+Inf)]
        self._pending: dict[tuple[str, str, str], list[float]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        _all.add(self)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request. Never raises, never does I/O."""
        key = (
            route or "(none)",
            method if method in _METHODS else "other",
            _CLASSES[status // 100 - 1] if 100 <= status < 600 else "5xx",
        )
        i = bisect_left(BUCKETS, seconds)
        with self._lock:
            row = self._pending.get(key)
            if row is None:
                row = self._pending[key] = [0.0] * (2 + len(_LE))
            row[0] += 1
            row[1] += seconds
            row[2 + i] += 1
        if self._thread is None and self.background:
            self._start()

    def observe_many(self, batch: Mapping[tuple[str, str, int], list[float]]) -> None:
        """Count requests given as ``(route, method, status) -> [seconds, ...]``: each
        group's count, sum and buckets are found at once (sorted, one bisection a bucket), and
        all added under one taking of the lock -- a buffered access log's flush, whose
        requests mostly share a few routes. Never raises, never does I/O."""
        add: dict[tuple[str, str, str], list[float]] = {}
        for (route, method, status), xs in batch.items():
            key = (
                route or "(none)",
                method if method in _METHODS else "other",
                _CLASSES[status // 100 - 1] if 100 <= status < 600 else "5xx",
            )
            row = add.get(key)
            if row is None:
                row = add[key] = [0.0] * (2 + len(_LE))
            row[0] += len(xs)
            row[1] += sum(xs)
            xs = sorted(xs)
            below = 0
            for i, bound in enumerate(BUCKETS):  # bucket i: BUCKETS[i-1] < seconds <= bound
                upto = bisect_right(xs, bound)
                row[2 + i] += upto - below
                below = upto
            row[-1] += len(xs) - below
        with self._lock:
            pending = self._pending
            for key, more in add.items():
                row = pending.get(key)
                if row is None:
                    pending[key] = more
                else:
                    for i, n in enumerate(more):
                        row[i] += n
        if self._thread is None and self.background:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="signalbox-request-metrics", daemon=True
            )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.push()

    def push(self) -> None:
        """Hand the totals gathered since the last push to the client."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        client = self._client if self._client is not None else metrics_client.get_client()
        for (route, method, status), row in pending.items():
            labels = {"route": route, "method": method, "status": status}
            client.incr("http_requests_total", row[0], **labels)
            client.incr("http_request_duration_seconds_count", row[0], **labels)
            client.incr("http_request_duration_seconds_sum", row[1], **labels)
            cumulative = 0.0
            for le, n in zip(_LE, row[2:], strict=True):
                cumulative += n
                client.incr("http_request_duration_seconds_bucket", cumulative, le=le, **labels)

    def close(self) -> None:
        self._stop.set()
        self.push()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pending = {}
        self._thread = None
        self._stop = threading.Event()


_all: weakref.WeakSet[RequestMetrics] = weakref.WeakSet()


def _push_all() -> None:
    for m in list(_all):
        m.push()


def _forked() -> None:
    for m in list(_all):
        m._after_fork()


atexit.register(_push_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
