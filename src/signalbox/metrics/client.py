"""Metrics from application code: ``gauge``, ``incr``, ``timer``, published through the spool.

The process keeps its current values in memory and a daemon thread publishes them, at most
once per ``flush_interval``, to this process's own spool file ``<spool>/<prog>-<pid>.metrics``
(written as ``.<prog>-<pid>.metrics.tmp`` and renamed, so a reader never sees half a file).
One file per process means no locking between processes and nothing lost or torn between
them.

What the file holds (the ``key=value`` spool format, labels escaped as in Prometheus):

* ``incr(name)`` → the cumulative count, under ``name`` as given. Name counters
  ``..._total`` so ``rate()`` reads naturally; a restart is a counter reset.
* ``gauge(name, v)`` → the last value set.
* ``timer(name)`` → ``name_seconds_count`` and ``name_seconds_sum`` (cumulative, so
  ``rate(sum)/rate(count)`` is the mean) and ``name_seconds_last`` (the latest duration).
  ``_seconds`` is not doubled when the name already ends with it.
* ``signalbox_client_errors_total``: calls refused (bad name, label or value).

Every line carries a ``pid="<pid>"`` label (``pid_label``; ``None`` turns it off). Two
processes counting the same series therefore publish two series, each monotonic on its own:
``sum without (pid) (rate(jobs_total[5m]))`` adds them up, a process that dies simply ends
its series, and the spool reader never sees the same series in two files (it would keep
only one of them). Turn it off only when one process at a time records these metrics.
Labels with an empty value are left out (the same series, as in Prometheus).

The promises to the application: these calls never raise and never do I/O in the calling
thread. Bad input is counted and logged once per distinct problem (by the writer thread,
through ``logging.getLogger("signalbox")``); a failing write (missing directory, full or
read-only disk) is logged at most once a minute and retried at the next interval. A live
client rewrites its file at least every ``heartbeat`` seconds, so the file's age tells the
collector whether the process is still alive; on exit the last values are written and the
file is left in place.

After ``os.fork()`` the child starts empty and writes its own ``<prog>-<child pid>`` file:
inheriting the parent's counts would count them twice when the files are added up.

The spool directory is ``$SIGNALBOX_SPOOL`` if set, else the configured ``spool_dir``, else
``.signalbox/spool``; the directory is never created here (``signalbox init`` does that).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import math
import os
import re
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from signalbox.metrics.samples import (
    LABEL_NAME,
    METRIC_NAME,
    Labels,
    SeriesKey,
    format_series,
    labels_of,
    sanitize_name,
)

__all__ = [
    "Client",
    "Timer",
    "configure",
    "flush",
    "gauge",
    "get_client",
    "incr",
    "reset",
    "timer",
]

log = logging.getLogger("signalbox")

DEFAULT_SPOOL = ".signalbox/spool"
ERRORS_METRIC = "signalbox_client_errors_total"
_P = ParamSpec("_P")
_R = TypeVar("_R")
_FAIL_LOG_EVERY = 60.0  # seconds between two log lines about failing writes
_MAX_PENDING_LOGS = 100
_MAX_REMEMBERED_PROBLEMS = 1000
# \t is fine and \n is escaped in the file; other control characters would make the
# spool reader refuse the line, so such label values are refused here, where they are made
_BAD_LABEL_CHAR = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")
_REFUSED: SeriesKey = ("", ())  # cached verdict: this spelling of a series is invalid


def _default_prog() -> str:
    """A file-name-safe name for this program, from ``sys.argv[0]``."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    path = Path(argv0)
    stem = path.parent.name if path.stem == "__main__" else path.stem
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in stem).lstrip("-_")
    return safe or "python"


def _format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


class Timer:
    """Times a block (``with``) or every call of a function (decorator), in seconds.

    Durations are recorded whether the block returns or raises: the time was spent either
    way. One ``Timer`` may be entered from several threads and nested; each ``with`` keeps
    its own start time.
    """

    __slots__ = ("_client", "_local", "_series")

    def __init__(self, client: Client, series: SeriesKey | None) -> None:
        self._client, self._series = client, series
        self._local = threading.local()

    def __enter__(self) -> Timer:
        starts: list[float] | None = getattr(self._local, "starts", None)
        if starts is None:
            starts = self._local.starts = []
        starts.append(self._client._clock())
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        end = self._client._clock()
        starts: list[float] | None = getattr(self._local, "starts", None)
        if starts:
            self._client._observe(self._series, end - starts.pop())

    def __call__(self, fn: Callable[_P, _R]) -> Callable[_P, _R]:
        client, series = self._client, self._series
        if asyncio.iscoroutinefunction(fn):
            afn = cast(Callable[_P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def timed_async(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                start = client._clock()
                try:
                    return await afn(*args, **kwargs)
                finally:
                    client._observe(series, client._clock() - start)

            return cast(Callable[_P, _R], timed_async)

        @functools.wraps(fn)
        def timed(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            start = client._clock()
            try:
                return fn(*args, **kwargs)
            finally:
                client._observe(series, client._clock() - start)

        return timed


class Client:
    """An independent set of metric values with its own spool file and writer thread.

    Libraries and tests make their own; applications use the module-level functions, which
    share one default instance. ``environ`` and ``clock`` (monotonic seconds, used for
    timers and write pacing) are injectable for tests. ``max_series`` bounds memory: new
    series beyond it are refused and counted as errors. ``background=False`` starts no
    writer thread: values are published by :meth:`flush`, :meth:`close` and at exit only
    (for tests, and for programs that publish at moments of their choosing).
    """

    def __init__(
        self,
        spool_dir: str | os.PathLike[str] | None = None,
        *,
        prog: str | None = None,
        flush_interval: float = 1.0,
        heartbeat: float = 30.0,
        max_series: int = 10_000,
        pid_label: str | None = "pid",
        background: bool = True,
        fsync: bool = False,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._spool_dir = os.fspath(spool_dir) if spool_dir is not None else None
        self._prog = prog or _default_prog()
        self.pid_label = _checked_pid_label(pid_label, None)
        self.flush_interval = flush_interval
        self.heartbeat = heartbeat
        self.max_series = max_series
        self.background = background
        self.fsync = fsync
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._reset_state()
        _clients.add(self)

    def _reset_state(self) -> None:
        """Fresh, empty state; also the child's state after a fork."""
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        # per kind: how the caller spelled a series -> its canonical key (or _REFUSED)
        self._canon_counter: dict[object, SeriesKey] = {}
        self._canon_gauge: dict[object, SeriesKey] = {}
        self._canon_timer: dict[object, SeriesKey] = {}
        self._kind: dict[SeriesKey, str] = {}
        self._counters: dict[SeriesKey, float] = {}
        self._gauges: dict[SeriesKey, float] = {}
        self._timers: dict[SeriesKey, list[float]] = {}  # [count, sum, last]
        self._errors = 0
        self._problems: set[str] = set()
        self._pending_logs: deque[str] = deque(maxlen=_MAX_PENDING_LOGS)
        self._dirty = False
        self._last_write: float | None = None
        self._last_fail_log: float | None = None
        self._failed_writes = 0
        self._mp_registered = False

    # -- configuration ---------------------------------------------------------------

    def configure(
        self,
        *,
        spool_dir: str | os.PathLike[str] | None = None,
        prog: str | None = None,
        flush_interval: float | None = None,
        pid_label: str | EllipsisType | None = ...,
    ) -> None:
        """Change where and how often values are published (``SIGNALBOX_SPOOL`` still wins)."""
        with self._lock:
            if not isinstance(pid_label, EllipsisType):
                self.pid_label = _checked_pid_label(pid_label, self.pid_label)
            if spool_dir is not None:
                self._spool_dir = os.fspath(spool_dir)
            if prog is not None:
                self._prog = prog
            if flush_interval is not None:
                self.flush_interval = flush_interval

    @property
    def spool_dir(self) -> Path:
        return Path(self._environ.get("SIGNALBOX_SPOOL") or self._spool_dir or DEFAULT_SPOOL)

    @property
    def path(self) -> Path:
        """This process's spool file (the pid is read now, so it is right after a fork)."""
        return self.spool_dir / f"{self._prog}-{os.getpid()}.metrics"

    @property
    def errors(self) -> int:
        """Calls refused so far (bad name, label or value, too many series)."""
        return self._errors

    # -- the hot path ----------------------------------------------------------------

    def incr(self, name: str, n: float = 1, **labels: object) -> None:
        """Add ``n`` (>= 0) to the counter ``name{labels}``. Never raises."""
        try:
            if n.__class__ is not int:
                checked = _as_number(n)
                if checked is None:
                    return self._problem(f"incr({name!r}): value {n!r} is not a finite number")
                n = checked
            if n < 0:
                return self._problem(f"incr({name!r}): negative increment {n!r}")
            raw = (name, tuple(labels.items())) if labels else name
            with self._lock:
                series = self._canon_counter.get(raw)
                if series is None:
                    series = self._register_locked(
                        self._canon_counter, raw, name, labels, "counter"
                    )
                elif series is _REFUSED:
                    self._errors += 1  # logged the first time, counted every time
                    self._dirty = True
                if series is _REFUSED:
                    return None
                self._counters[series] += n
                self._dirty = True
            if self._thread is None and self.background:
                self._start()
        except Exception as exc:  # the application must never see our failures
            self._problem(f"incr({name!r}): {exc!r}")
        return None

    def gauge(self, name: str, value: float, **labels: object) -> None:
        """Set the gauge ``name{labels}`` to ``value``. Never raises."""
        try:
            if value.__class__ is not int:
                checked = _as_number(value)
                if checked is None:
                    return self._problem(f"gauge({name!r}): value {value!r} is not a finite number")
                value = checked
            raw = (name, tuple(labels.items())) if labels else name
            with self._lock:
                series = self._canon_gauge.get(raw)
                if series is None:
                    series = self._register_locked(self._canon_gauge, raw, name, labels, "gauge")
                elif series is _REFUSED:
                    self._errors += 1
                    self._dirty = True
                if series is _REFUSED:
                    return None
                self._gauges[series] = value
                self._dirty = True
            if self._thread is None and self.background:
                self._start()
        except Exception as exc:
            self._problem(f"gauge({name!r}): {exc!r}")
        return None

    def timer(self, name: str, **labels: object) -> Timer:
        """A :class:`Timer` recording into ``name_seconds_{count,sum,last}``. Never raises.

        A refused name or label is counted here, once per ``timer()`` call (so once per
        decorated function), and the returned timer records nothing.
        """
        series: SeriesKey | None = None
        try:
            raw = (name, tuple(labels.items())) if labels else name
            with self._lock:
                series = self._canon_timer.get(raw)
                if series is None:
                    series = self._register_locked(self._canon_timer, raw, name, labels, "timer")
                elif series is _REFUSED:
                    self._errors += 1
                    self._dirty = True
        except Exception as exc:
            self._problem(f"timer({name!r}): {exc!r}")
        return Timer(self, None if series is _REFUSED else series)

    def _observe(self, series: SeriesKey | None, seconds: float) -> None:
        if series is None:
            return  # refused at timer(); already counted
        try:
            with self._lock:
                t = self._timers.get(series)
                if t is None:  # first use in a forked child, whose state starts empty
                    if not self._claim_locked(series, "timer", series[0]):
                        return
                    t = self._timers[series]
                t[0] += 1
                t[1] += seconds
                t[2] = seconds
                self._dirty = True
            if self._thread is None and self.background:
                self._start()
        except Exception as exc:
            self._problem(f"timer: {exc!r}")

    def _register_locked(
        self,
        canon: dict[object, SeriesKey],
        raw: object,
        name: str,
        labels: Mapping[str, object],
        kind: str,
    ) -> SeriesKey:
        """Validate a series spelled this way for the first time; remember the verdict."""
        series = self._validate(name, labels, kind)
        if series is not _REFUSED and not self._claim_locked(series, kind, name):
            if series not in self._kind:
                return _REFUSED  # over the limit: not cached, it may fit later (in a child)
            series = _REFUSED
        if len(canon) > 4 * self.max_series:
            canon.clear()  # too many spellings of the same series; relearn them
        canon[raw] = series
        return series

    def _claim_locked(self, series: SeriesKey, kind: str, name: str) -> bool:
        """Make ``series`` a ``kind`` (with a zero value) unless it is another kind or too many."""
        known = self._kind.get(series)
        if known == kind:
            return True
        if known is not None:
            self._problem_locked(f"{kind} {name!r}: already used as a {known}")
            return False
        if len(self._kind) >= self.max_series:
            self._problem_locked(f"{kind} {name!r}: too many series (limit {self.max_series})")
            return False
        self._kind[series] = kind
        if kind == "counter":
            self._counters[series] = 0
        elif kind == "timer":
            self._timers[series] = [0, 0.0, 0.0]
        return True

    def _validate(self, name: str, labels: Mapping[str, object], kind: str) -> SeriesKey:
        if not isinstance(name, str):
            self._problem_locked(f"{kind}: metric name {name!r} is not a string")
            return _REFUSED
        clean = sanitize_name(name)
        if kind == "timer" and not clean.endswith("_seconds"):
            clean += "_seconds"
        if not METRIC_NAME.match(clean):
            self._problem_locked(f"{kind}: invalid metric name {name!r}")
            return _REFUSED
        pairs: dict[str, str] = {}
        for label, value in labels.items():
            if not LABEL_NAME.match(label) or label.startswith("__"):
                self._problem_locked(f"{kind} {name!r}: invalid label name {label!r}")
                return _REFUSED
            text = value if isinstance(value, str) else str(value)
            if _BAD_LABEL_CHAR.search(text):
                self._problem_locked(
                    f"{kind} {name!r}: label {label}={text!r} holds a control character"
                )
                return _REFUSED
            if text:  # an empty value is the same series as no label (as in Prometheus)
                pairs[label] = text
        return (clean, labels_of(pairs))

    # -- errors ----------------------------------------------------------------------

    def _problem(self, message: str) -> None:
        try:
            with self._lock:
                self._problem_locked(message)
        except Exception:  # pragma: no cover - nothing sensible left to do
            pass

    def _problem_locked(self, message: str) -> None:
        """Count a refused call; queue its message for the writer thread to log, once."""
        self._errors += 1
        self._dirty = True
        if message not in self._problems and len(self._problems) < _MAX_REMEMBERED_PROBLEMS:
            self._problems.add(message)
            self._pending_logs.append(message)

    # -- publishing ------------------------------------------------------------------

    def render(self) -> str:
        """The spool file's text for the current values (what :meth:`flush` writes)."""
        with self._lock:
            return self._render_locked()

    def _render_locked(self) -> str:
        lines = [f"# signalbox client: prog={self._prog} pid={os.getpid()}"]
        rows: list[tuple[str, Labels, float]] = []
        rows.extend((n, labels, v) for (n, labels), v in self._counters.items())
        rows.extend((n, labels, v) for (n, labels), v in self._gauges.items())
        for (n, labels), (count, total, last) in self._timers.items():
            rows.append((n + "_count", labels, count))
            rows.append((n + "_sum", labels, total))
            rows.append((n + "_last", labels, last))
        rows.append((ERRORS_METRIC, (), self._errors))
        rows.sort(key=lambda r: (r[0], r[1]))
        pid_label = self.pid_label
        if pid_label is not None:
            pid = (pid_label, str(os.getpid()))
            rows = [
                (
                    n,
                    labels if any(k == pid_label for k, _ in labels) else labels_of((*labels, pid)),
                    v,
                )
                for n, labels, v in rows
            ]
        lines.extend(f"{format_series(n, labels)}={_format_value(v)}" for n, labels, v in rows)
        return "\n".join(lines) + "\n"

    def flush(self) -> bool:
        """Write the file now, in the calling thread; True when it was written."""
        try:
            return self._write()
        except Exception as exc:  # pragma: no cover - _write already guards its I/O
            self._problem(f"flush: {exc!r}")
            return False

    def _write(self) -> bool:
        with self._write_lock:
            with self._lock:
                text = self._render_locked()
                self._dirty = False
                pending = list(self._pending_logs)
                self._pending_logs.clear()
                path = self.path
            for message in pending:
                log.warning("signalbox metrics: %s (counted in %s)", message, ERRORS_METRIC)
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text)
                    if self.fsync:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, path)
            except OSError as exc:
                with self._lock:
                    self._dirty = True  # retry at the next interval
                self._write_failed(path, exc)
                return False
            self._last_write = self._clock()
            if self._failed_writes:
                log.warning("signalbox metrics: writing %s works again", path)
                self._failed_writes = 0
            return True

    def _write_failed(self, path: Path, exc: OSError) -> None:
        self._failed_writes += 1
        now = self._clock()
        if self._last_fail_log is not None and now - self._last_fail_log < _FAIL_LOG_EVERY:
            return
        self._last_fail_log = now
        hint = ""
        if not path.parent.is_dir():
            hint = " (create it with `signalbox init` or point SIGNALBOX_SPOOL elsewhere)"
        log.warning(
            "signalbox metrics: cannot write %s: %s%s; %d failed write(s) so far, retrying every %gs",
            path,
            exc.strerror or exc,
            hint,
            self._failed_writes,
            self.flush_interval,
        )

    def _due(self) -> bool:
        if self._dirty or self._last_write is None:
            return True
        return self._clock() - self._last_write >= self.heartbeat

    def _start(self) -> None:
        """Start the writer thread (lazily: only processes that record anything get one)."""
        with self._lock:
            if self._thread is not None or self._closed or not self.background:
                return
            thread = threading.Thread(target=self._run, name="signalbox-metrics", daemon=True)
            self._thread = thread
        with contextlib.suppress(RuntimeError):  # interpreter shutting down: atexit writes
            thread.start()

    def _run(self) -> None:
        wake = self._wake
        while not wake.is_set():
            if self._due():
                self._write()
            wake.wait(self.flush_interval)

    def close(self) -> None:
        """Stop the writer thread and write the final values (if anything was recorded)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._closed = True
        self._wake.set()
        if thread is not None and thread.is_alive():
            thread.join(max(5.0, 2 * self.flush_interval))
        if self._dirty or self._pending_logs:
            self.flush()
        _clients.discard(self)

    # -- fork safety -----------------------------------------------------------------

    def _before_fork(self) -> None:
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None and not self._mp_registered:
            # multiprocessing's fork children leave through os._exit, skipping atexit:
            # have them write their last values through its own exit hooks instead.
            self._mp_registered = True
            mp_util.register_after_fork(self, _register_mp_finalizer)
        self._lock.acquire()

    def _after_fork_parent(self) -> None:
        self._lock.release()

    def _after_fork_child(self) -> None:
        self._reset_state()
        self._mp_registered = True  # the parent's registration is inherited


def _as_number(value: object) -> float | None:
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


def _register_mp_finalizer(client: Client) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(client, client.close, exitpriority=10)


# -- process-wide machinery -----------------------------------------------------------

_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def _flush_all_at_exit() -> None:
    for client in list(_clients):
        if client._dirty:
            client.flush()


def _before_fork() -> None:
    for client in list(_clients):
        client._before_fork()


def _after_fork_parent() -> None:
    for client in list(_clients):
        client._after_fork_parent()


def _after_fork_child() -> None:
    for client in list(_clients):
        client._after_fork_child()


atexit.register(_flush_all_at_exit)
os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child
)

_default: Client | None = None
_default_lock = threading.Lock()


def _checked_pid_label(label: str | None, old: str | None) -> str | None:
    if label is None or (isinstance(label, str) and LABEL_NAME.match(label)):
        return label
    log.warning("signalbox metrics: pid_label %r is not a valid label name; ignored", label)
    return old


def get_client() -> Client:
    """The process-wide client behind the module-level functions."""
    global _default
    client = _default
    if client is None:
        with _default_lock:
            if _default is None:
                _default = Client()
            client = _default
    return client


def reset() -> None:
    """Close the default client (writing its last values) and forget it; for tests."""
    global _default
    with _default_lock:
        client, _default = _default, None
    if client is not None:
        client.close()


def configure(
    *,
    spool_dir: str | os.PathLike[str] | None = None,
    prog: str | None = None,
    flush_interval: float | None = None,
    pid_label: str | EllipsisType | None = ...,
) -> None:
    """Configure the default client (``SIGNALBOX_SPOOL``, when set, still decides the directory).

    ``pid_label=None`` drops the ``pid`` label: only right when a single process at a
    time records these metrics on this host.
    """
    get_client().configure(
        spool_dir=spool_dir, prog=prog, flush_interval=flush_interval, pid_label=pid_label
    )


def incr(name: str, n: float = 1, **labels: object) -> None:
    """Add ``n`` to a counter of this process. Never raises, never blocks on I/O."""
    get_client().incr(name, n, **labels)


def gauge(name: str, value: float, **labels: object) -> None:
    """Set a gauge of this process. Never raises, never blocks on I/O."""
    get_client().gauge(name, value, **labels)


def timer(name: str, **labels: object) -> Timer:
    """Time a ``with`` block or, as a decorator, every call of a function."""
    return get_client().timer(name, **labels)


def flush() -> bool:
    """Write the default client's file now; True when written."""
    return get_client().flush()
