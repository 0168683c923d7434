"""Log notifier: one logfmt line on the signalbox.notify logger."""

from __future__ import annotations

import logging

import pytest

from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify import LogNotifier, build_notifier, to_payload
from signalbox.monitors.notify.log import log_line, logfmt_value
from tests.monitors.notify.notify_helpers import MakeNotification


def test_writes_one_structured_line_with_the_payload_attached(
    caplog: pytest.LogCaptureFixture, notification: MakeNotification
) -> None:
    n = notification()
    with caplog.at_level(logging.DEBUG, logger="signalbox.notify"):
        LogNotifier("audit").send(n)
    (record,) = caplog.records
    assert (record.name, record.levelno) == ("signalbox.notify", logging.ERROR)
    assert record.getMessage().startswith(
        "notification kind=firing drill=false monitor=image_processing_slow state=CRITICAL previous_state=OK "
        'title="[CRITICAL] image_processing_slow{shard=7}: resize p95 is 9.2s (> 8)"'
    )
    assert 'labels="{\\"shard\\": \\"7\\"}"' in record.getMessage()
    assert record.signalbox_notification == to_payload(n)  # type: ignore[attr-defined]


def test_a_drill_line_starts_with_test(notification: MakeNotification) -> None:
    assert log_line(notification(kind="drill")).startswith(
        "TEST notification kind=drill drill=true "
    )


def test_no_notification_can_split_or_forge_a_log_line(notification: MakeNotification) -> None:
    line = log_line(
        notification(summary='ok"\nnotification state=OK\u2028x', labels=(("a", "b c"),))
    )
    assert "\n" not in line and "\u2028" not in line
    assert 'summary="ok\\"\\nnotification state=OK\\u2028x"' in line


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("plain", "plain"),
        ("two words", '"two words"'),
        ("", '""'),
        (None, '""'),
        (True, "true"),
        (9.5, "9.5"),
    ],
)
def test_logfmt_values_are_bare_only_when_safe(value: object, shown: str) -> None:
    assert logfmt_value(value) == shown


@pytest.mark.parametrize(
    ("overrides", "level"),
    [
        ({}, logging.ERROR),
        ({"state": State.WARNING}, logging.WARNING),
        ({"state": State.UNKNOWN}, logging.WARNING),
        ({"kind": "resolved", "state": State.OK}, logging.INFO),
        ({"kind": "drill"}, logging.INFO),
    ],
)
def test_default_level_follows_the_state(
    caplog: pytest.LogCaptureFixture,
    notification: MakeNotification,
    overrides: dict[str, object],
    level: int,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="signalbox.notify"):
        LogNotifier("audit").send(notification(**overrides))
    assert caplog.records[0].levelno == level


def test_configured_level_wins(
    caplog: pytest.LogCaptureFixture, notification: MakeNotification
) -> None:
    with caplog.at_level(logging.DEBUG, logger="signalbox.notify"):
        build_notifier("audit", {"type": "log", "level": "Info"}).send(notification())
    assert caplog.records[0].levelno == logging.INFO
