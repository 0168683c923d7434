"""The request's id and notes on every log record made while it runs.

:class:`RequestFilter` is a :class:`logging.Filter` that sets ``record.request_id`` (``-``
outside a request) and ``record.notes`` (the notes as ``key=value`` text, ``""`` when none):
attach it to a handler and use them in its format,
``"%(asctime)s %(levelname)s [%(request_id)s] %(message)s %(notes)s"``. Records made in a
task worker while it runs a job a request enqueued carry that request's id.

:func:`structlog_processor` does the same for structlog: it adds ``request_id`` and the
notes (under ``notes``) to the event dict.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from signalbox.instrument.context import _current

__all__ = ["RequestFilter", "structlog_processor"]


def _notes_text(notes: dict[str, Any]) -> str:
    return " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in notes.items())


class RequestFilter(logging.Filter):
    """Adds ``request_id`` and ``notes`` to each record; never drops one.

    Secret notes (``api_key``) are left out of ``notes`` here: log handlers do not
    fingerprint them.
    """

    def __init__(self, name: str = "", secret_notes: tuple[str, ...] = ("api_key",)) -> None:
        super().__init__(name)
        self.secret_notes = frozenset(secret_notes)

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _current.get()
        if ctx is None:
            record.request_id = "-"
            record.notes = ""
        else:
            record.request_id = ctx.request_id
            notes = ctx.notes
            if notes:
                secret = self.secret_notes
                record.notes = _notes_text(
                    {k: v for k, v in notes.items() if k not in secret} if secret else notes
                )
            else:
                record.notes = ""
        return True


def structlog_processor(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor adding ``request_id`` and ``notes`` (secret ones left out)."""
    ctx = _current.get()
    if ctx is not None:
        event_dict.setdefault("request_id", ctx.request_id)
        if ctx.notes:
            event_dict.setdefault("notes", {k: v for k, v in ctx.notes.items() if k != "api_key"})
    return event_dict
