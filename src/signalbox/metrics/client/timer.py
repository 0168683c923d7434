"""Timing a block or a function for a metrics client: the ``Timer`` that ``timer()`` returns."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from signalbox.metrics.samples import SeriesKey

__all__ = ["Recorder", "Timer"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Recorder(Protocol):
    """What a timer needs from its client: the clock it times with, and where durations go."""

    _clock: Callable[[], float]

    def _observe(self, series: SeriesKey | None, seconds: float) -> None: ...


class Timer:
    """Times a block (``with``) or every call of a function (decorator), in seconds.

    Durations are recorded whether the block returns or raises: the time was spent either
    way. One ``Timer`` may be entered from several threads and nested; each ``with`` keeps
    its own start time.
    """

    __slots__ = ("_client", "_local", "_series")

    def __init__(self, client: Recorder, series: SeriesKey | None) -> None:
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
        if inspect.iscoroutinefunction(fn):
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
