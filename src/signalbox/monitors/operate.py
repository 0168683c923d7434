"""What an operator does to monitors: silence, unsilence, acknowledge, drill; and the checks
of what they give.

``signalbox monitors silence ...`` and ``POST /api/v1/monitors/NAME/silence`` both come
here, so a silence is checked, recorded and audited the same way whoever asks. ``by`` is who
asked (the CLI's user, or ``grafana (token #3)`` over HTTP); it goes into the silence or ack
row and into the monitor's history, the audit trail ``monitors history`` shows. Checks take
the ``field`` to name in their errors (``--reason`` on the command line, ``reason`` in a
request body).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from signalbox.durations import parse_duration
from signalbox.exceptions import UsageError
from signalbox.metrics.samples import LABEL_NAME, Labels, labels_of
from signalbox.oneline import check_line

if TYPE_CHECKING:  # annotations only: the checks stay cheap to import (`flags set` uses them)
    from signalbox.monitors.engine.runner import MonitorRunner
    from signalbox.monitors.outbox.delivery import Delivery
    from signalbox.monitors.state.records import Ack, Silence

__all__ = [
    "MAX_BY_CHARS",
    "MAX_REASON_CHARS",
    "acknowledge",
    "check_by",
    "check_known",
    "check_reason",
    "drill",
    "parse_matchers",
    "positive_duration",
    "silence",
    "unsilence",
]

MAX_REASON_CHARS = 1000
MAX_BY_CHARS = 200


def positive_duration(value: str | float, field: str) -> float:
    """``30m``, ``2h`` (or a number of seconds) as seconds above zero."""
    if isinstance(value, bool):
        raise UsageError(f"{field}: expected a duration like 30m or 2h, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            raise UsageError(f"{field}: {e}") from None
    if not 0 < seconds < float("inf"):
        raise UsageError(f"{field}: expected a positive duration, got {value!r}")
    if seconds > MAX_DURATION_S:  # an end time must fit the store's 64-bit milliseconds
        raise UsageError(f"{field}: at most 1000 years, got {value!r}")
    return seconds


MAX_DURATION_S = 1000 * 365.25 * 86400
"""The longest silence (the CLI's and the API's): 1000 years."""


def check_reason(text: str, field: str, *, required: bool = True) -> str:
    """A reason as it is kept: one line of printable text, stripped."""
    if required and not text.strip():
        raise UsageError(f"{field}: say why, so the next person on call knows")
    return check_line(text, field, max_chars=MAX_REASON_CHARS, required=required)


def check_by(text: str, field: str) -> str:
    """Who did it, as the audit trail keeps it."""
    return check_line(text, field, max_chars=MAX_BY_CHARS)


def parse_matchers(value: str | Mapping[str, str] | None, field: str) -> Labels:
    """Series matchers: ``label=value[,label=value...]`` (the CLI's ``--series``) or a
    mapping of label to value (a request body's ``series``); errors name the bad part."""
    if not value:
        return ()
    if not isinstance(value, str):
        for name, text in value.items():
            if not LABEL_NAME.match(name):
                raise UsageError(f"{field}: {name!r} is not a label name")
            check_line(text, f"{field}: {name}", max_chars=MAX_REASON_CHARS, required=False)
        return labels_of(dict(value))
    pairs: dict[str, str] = {}
    for part in value.split(","):
        name, eq, text = part.partition("=")
        name = name.strip()
        if not eq or not LABEL_NAME.match(name):
            raise UsageError(
                f"{field}: bad part {part!r}: expected label=value[,label=value...] like shard=7,host=web1"
            )
        if name in pairs:
            raise UsageError(f"{field}: label {name!r} given twice")
        pairs[name] = text.strip().strip('"')
        check_line(pairs[name], f"{field}: {name}", max_chars=MAX_REASON_CHARS, required=False)
    return labels_of(pairs)


def check_known(runner: MonitorRunner, name: str) -> None:
    """Refuse a name that is neither a loaded monitor nor one with persisted state.

    Raises:
        NotFoundError: naming the known monitors.
    """
    if name in runner.state.series(name):
        return
    runner.monitor(name)


def silence(
    runner: MonitorRunner,
    name: str,
    *,
    seconds: float,
    reason: str,
    matchers: Labels,
    by: str,
    now_ms: int,
) -> Silence:
    """Hold back ``name``'s notifications (series matching ``matchers``) for ``seconds``."""
    check_known(runner, name)
    return runner.state.add_silence(
        name,
        matchers,
        now_ms=now_ms,
        until_ms=now_ms + round(seconds * 1000),
        by=by,
        reason=reason,
    )


def unsilence(runner: MonitorRunner, name: str, *, by: str, now_ms: int) -> list[Silence]:
    """End every active silence of ``name``; those ended (none: nothing to end)."""
    check_known(runner, name)
    return runner.state.end_silences(name, now_ms=now_ms, by=by)


def acknowledge(
    runner: MonitorRunner, name: str, *, reason: str, by: str, now_ms: int
) -> list[Ack]:
    """Acknowledge every series of ``name`` that is not OK.

    Raises:
        UsageError: every series is OK: there is nothing to acknowledge.
    """
    check_known(runner, name)
    acks = runner.state.acknowledge(name, now_ms=now_ms, by=by, reason=reason)
    if not acks:
        raise UsageError(f"nothing to acknowledge: every series of {name} is OK")
    return acks


def drill(runner: MonitorRunner, name: str, *, by: str, now_ms: int) -> list[Delivery]:
    """Send a TEST notification through ``name``'s notifiers now; what became of each."""
    return runner.drill(name, now_ms, by=by)
