"""Alertmanager notifier: the alert objects (pure) and a round trip through a real Alertmanager."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signalbox.clock import FrozenClock, SystemClock
from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify import (
    AlertmanagerNotifier,
    NotifyError,
    alertmanager_alerts,
    build_notifier,
)
from signalbox.monitors.notify.alertmanager import DRILL_TTL_S, ENDS_AT_REPEATS
from signalbox.monitors.notify.notification import rfc3339
from tests.monitors.notify.notify_helpers import T0, MakeNotification, Receiver, free_port

NOW = T0 + 180


def test_a_firing_alert_has_labels_annotations_and_an_end_beyond_the_next_repeat(
    notification: MakeNotification,
) -> None:
    (alert,) = alertmanager_alerts(
        notification(), NOW, repeat_s=3600, generator_url="http://sb:8910/m"
    )
    assert alert == {
        "labels": {"alertname": "image_processing_slow", "severity": "critical", "shard": "7"},
        "annotations": {
            "summary": "resize p95 is 9.2s (> 8)",
            "description": "Resizes slower than users tolerate.",
            "runbook_url": "https://wiki.example/runbooks/resize",
            "owner": "photos",
            "value": "9.2",
        },
        "startsAt": rfc3339(T0),
        "endsAt": rfc3339(NOW + ENDS_AT_REPEATS * 3600),
        "generatorURL": "http://sb:8910/m",
    }


def test_the_notifications_own_repeat_interval_and_link_win(notification: MakeNotification) -> None:
    n = notification(repeat_s=600.0, generator_url="http://sb/x")
    (alert,) = alertmanager_alerts(n, NOW, repeat_s=3600, generator_url="http://other/")
    assert (alert["endsAt"], alert["generatorURL"]) == (
        rfc3339(NOW + ENDS_AT_REPEATS * 600),
        "http://sb/x",
    )


def test_resolving_ends_the_alert_of_the_severity_that_fired(
    notification: MakeNotification,
) -> None:
    n = notification(kind="resolved", state=State.OK, previous_state=State.WARNING, ends_at=NOW - 5)
    (alert,) = alertmanager_alerts(n, NOW)
    assert (alert["labels"]["severity"], alert["endsAt"]) == ("warning", rfc3339(NOW - 5))


def test_resolving_without_a_known_severity_ends_every_severity(
    notification: MakeNotification,
) -> None:
    n = notification(kind="resolved", state=State.OK, previous_state=State.OK)
    assert sorted(a["labels"]["severity"] for a in alertmanager_alerts(n, NOW)) == [
        "critical",
        "unknown",
        "warning",
    ]
    assert {a["endsAt"] for a in alertmanager_alerts(n, NOW)} == {rfc3339(NOW)}


def test_escalation_resolves_the_previous_severity_in_the_same_post(
    notification: MakeNotification,
) -> None:
    alerts = alertmanager_alerts(notification(previous_state=State.WARNING), NOW, repeat_s=60)
    assert [(a["labels"]["severity"], a["endsAt"]) for a in alerts] == [
        ("critical", rfc3339(NOW + 300)),  # at least five minutes, however short the repeat
        ("warning", rfc3339(NOW)),
    ]


def test_series_labels_clashing_with_ours_are_kept_as_exported_and_empty_ones_dropped(
    notification: MakeNotification,
) -> None:
    n = notification(labels=(("alertname", "theirs"), ("severity", "page"), ("empty", "")))
    (alert,) = alertmanager_alerts(n, NOW)
    assert alert["labels"] == {
        "alertname": "image_processing_slow",
        "severity": "critical",
        "exported_alertname": "theirs",
        "exported_severity": "page",
    }


def test_a_drill_is_its_own_short_lived_alert_marked_test(notification: MakeNotification) -> None:
    (alert,) = alertmanager_alerts(notification(kind="drill"), NOW)
    assert alert["labels"]["drill"] == "true"
    assert alert["annotations"]["summary"].startswith("[TEST] ")
    assert alert["endsAt"] == rfc3339(NOW + DRILL_TTL_S)


def test_posts_to_the_v2_api_under_the_configured_prefix(
    receiver: Receiver, notification: MakeNotification
) -> None:
    am = build_notifier(
        "am", {"type": "alertmanager", "url": receiver.url + "/am/"}, clock=FrozenClock(NOW)
    )
    am.send(notification())
    (req,) = receiver.requests
    assert req.path == "/am/api/v2/alerts"
    assert json.loads(req.body) == alertmanager_alerts(notification(), NOW)


def test_a_rejected_alert_is_not_retryable(
    receiver: Receiver, notification: MakeNotification
) -> None:
    receiver.status, receiver.reply = 400, b'{"message":"start time must be before end time"}'
    with pytest.raises(NotifyError, match="start time must be before end time") as info:
        AlertmanagerNotifier("am", receiver.url).send(notification())
    assert info.value.retryable is False


# --- a real Alertmanager -------------------------------------------------------------


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.skip(
            "prometheus-alertmanager not installed"
        )  # the peer mark turns this into a failure in CI
    work: Path = tmp_path_factory.mktemp("alertmanager")
    (work / "alertmanager.yml").write_text(
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"
    )
    port = free_port()
    log = (work / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'alertmanager.yml'}",
            f"--storage.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # wait for the service to come up (a readiness probe, not a timing assumption)
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    f"alertmanager did not start: {(work / 'alertmanager.log').read_text()[-2000:]}"
                )
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _listed(url: str, monitor: str) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = _get(url + "/api/v2/alerts")
    return [a for a in alerts if a["labels"]["alertname"] == monitor]


@pytest.mark.peer("alertmanager")
def test_alertmanager_shows_a_firing_alert_and_drops_it_once_resolved(
    alertmanager: str, notification: MakeNotification
) -> None:
    clock = SystemClock()
    am = AlertmanagerNotifier("am", alertmanager, clock=clock)
    start = clock.now() - 60
    am.send(notification(monitor="am_roundtrip", started_at=start, created_at=clock.now()))
    (alert,) = _listed(alertmanager, "am_roundtrip")
    assert alert["status"]["state"] == "active"
    assert alert["labels"] == {"alertname": "am_roundtrip", "severity": "critical", "shard": "7"}
    assert alert["annotations"]["runbook_url"] == "https://wiki.example/runbooks/resize"

    ended = clock.now() - 1
    resolved = notification(
        monitor="am_roundtrip",
        kind="resolved",
        state=State.OK,
        previous_state=State.CRITICAL,
        started_at=start,
        created_at=clock.now(),
        ends_at=ended,
    )
    am.send(resolved)
    assert (
        _listed(alertmanager, "am_roundtrip") == []
    )  # Alertmanager lists only alerts that have not ended


@pytest.mark.peer("alertmanager")
def test_alertmanager_keeps_one_alert_when_a_monitor_escalates(
    alertmanager: str, notification: MakeNotification
) -> None:
    clock = SystemClock()
    am = AlertmanagerNotifier("am", alertmanager, clock=clock)
    start = clock.now() - 60
    am.send(
        notification(
            monitor="am_escalate", state=State.WARNING, started_at=start, created_at=clock.now()
        )
    )
    am.send(
        notification(
            monitor="am_escalate",
            previous_state=State.WARNING,
            started_at=start,
            created_at=clock.now(),
        )
    )
    assert [a["labels"]["severity"] for a in _listed(alertmanager, "am_escalate")] == ["critical"]


@pytest.mark.peer("alertmanager")
def test_alertmanager_receives_a_drill_as_a_separate_test_alert(
    alertmanager: str, notification: MakeNotification
) -> None:
    clock = SystemClock()
    am = AlertmanagerNotifier("am", alertmanager, clock=clock)
    am.send(
        notification(
            monitor="am_drill", kind="drill", started_at=clock.now(), created_at=clock.now()
        )
    )
    (alert,) = _listed(alertmanager, "am_drill")
    assert alert["labels"]["drill"] == "true" and alert["annotations"]["summary"].startswith(
        "[TEST]"
    )


@pytest.mark.peer("alertmanager")
def test_alertmanager_refusal_is_reported_precisely(
    alertmanager: str, notification: MakeNotification
) -> None:
    am = AlertmanagerNotifier("am", alertmanager, generator_url="not a url")
    with pytest.raises(NotifyError, match=r"HTTP 4\d\d .*generatorURL") as info:
        am.send(notification(monitor="am_bad"))
    assert info.value.retryable is False
