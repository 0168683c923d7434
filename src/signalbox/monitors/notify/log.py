"""Log: one structured line per notification on ``logging.getLogger("signalbox.notify")``.

Config (``[notifiers.NAME]``)::

    type = "log"
    level = "warning"     # optional: debug|info|warning|error|critical; default by state

The message is logfmt (``key=value``, values quoted and escaped so no notification can
split or forge a log line)::

    notification kind=firing drill=false monitor=image_processing_slow state=CRITICAL ...

A drill starts ``TEST notification`` instead. The record also carries the JSON payload as
``record.signalbox_notification`` for handlers that emit JSON. Default level: ERROR for
CRITICAL, WARNING for WARNING and UNKNOWN, INFO for resolved and drills.
"""

from __future__ import annotations

import json
import logging
import re

from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify.notification import Notification, to_payload

LOGGER_NAME = "signalbox.notify"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_BARE = re.compile(r"[A-Za-z0-9_.:/@+-]+\Z")
_FIELDS = (
    "kind",
    "drill",
    "monitor",
    "state",
    "previous_state",
    "title",
    "summary",
    "value",
    "labels",
    "owner",
    "runbook",
    "started_at",
    "ends_at",
    "silenced",
    "suppressed_by",
    "fingerprint",
    "id",
)


def logfmt_value(value: object) -> str:
    """``value`` bare when safe, else double-quoted with ``\\``, ``"`` and control characters escaped."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False, sort_keys=True)
        if isinstance(value, dict)
        else str(value)
    )
    if _BARE.match(text):
        return text
    escaped = json.dumps(text, ensure_ascii=False)[1:-1]  # escapes \\ " and every control character
    escaped = (
        escaped.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")
    )
    return f'"{escaped}"'


def log_line(n: Notification) -> str:
    """The logfmt message for ``n`` (pure)."""
    payload = to_payload(n)
    head = "TEST notification" if n.drill else "notification"
    return head + " " + " ".join(f"{k}={logfmt_value(payload[k])}" for k in _FIELDS)


def default_level(n: Notification) -> int:
    if n.drill or n.kind == "resolved" or n.state is State.OK:
        return logging.INFO
    return logging.ERROR if n.state is State.CRITICAL else logging.WARNING


class LogNotifier:
    """Never fails: logging is the delivery of last resort."""

    def __init__(
        self, name: str, *, level: int | None = None, logger: logging.Logger | None = None
    ) -> None:
        self.name, self.level = name, level
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    def __repr__(self) -> str:
        return f"LogNotifier({self.name!r})"

    def send(self, n: Notification) -> None:
        level = self.level if self.level is not None else default_level(n)
        self.logger.log(
            level,
            "%s",
            log_line(n),
            extra={"signalbox_notification": to_payload(n), "signalbox_notifier": self.name},
        )
