"""Application and worker log lines: the format ``serve`` and ``worker`` write theirs in.
How ``signalbox logs trace`` finds a request's lines in them and reads their time is
:mod:`signalbox.instrument.logtext`'s (its names are re-exported here)."""

from __future__ import annotations

import logging
import time

from signalbox.instrument.logging import RequestFilter
from signalbox.instrument.logtext import line_time, mentions, printable

__all__ = [
    "LOG_FORMAT",
    "RequestFormatter",
    "line_time",
    "mentions",
    "printable",
    "use_request_format",
]

LOG_FORMAT = "%(asctime)s [%(request_id)s] %(levelname)s %(name)s: %(message)s"
"""``serve``'s and ``worker``'s log lines: UTC time, and the request id a record was made
for (``-`` outside a request)."""


class RequestFormatter(logging.Formatter):
    """:data:`LOG_FORMAT` with times in UTC to the microsecond (``2024-05-01T12:00:00.123456Z``),
    so lines of many hosts and processes sort together with the access log's."""

    def __init__(self, fmt: str = LOG_FORMAT) -> None:
        super().__init__(fmt)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = record.created
        return (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
            + f".{min(int(t % 1 * 1e6), 999_999):06d}Z"
        )


def use_request_format(
    logger: logging.Logger | None = None, secret_notes: tuple[str, ...] = ("api_key",)
) -> None:
    """Give every handler of ``logger`` (the root's by default) the request filter and
    :class:`RequestFormatter`: ``serve`` and ``worker`` call it so their lines carry the id of
    the request they were made for (``signalbox logs trace`` finds them)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RequestFilter) for f in handler.filters):
            handler.addFilter(RequestFilter(secret_notes=secret_notes))
        handler.setFormatter(RequestFormatter())
