"""Alertmanager notifier: the alert objects (pure) and a round trip through a real Alertmanager."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signalbox.clock import FrozenClock, SystemClock
from signalbox.exceptions import ConfigError
from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify import (
    AlertmanagerNotifier,
    Notifier,
    NotifyError,
    alertmanager_alerts,
    build_notifier,
    parse_notifier,
)
from signalbox.monitors.notify.alertmanager import (
    DRILL_TTL_S,
    ENDS_AT_REPEATS,
    RESOLVE_ALL_S,
    ends_an_alert,
)
from signalbox.monitors.notify.notification import rfc3339
from tests.cli.helpers import run
from tests.monitors.delivery_helpers import hook
from tests.monitors.notify.notify_helpers import T0, MakeNotification, Receiver, free_port
from tests.serving import wait_for

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


# --- several Alertmanagers (urls) ----------------------------------------------------


def _urls_notifier(*urls: str, timeout: str = "5s") -> Notifier:
    cfg = {"type": "alertmanager", "urls": list(urls), "timeout": timeout}
    return build_notifier("am", cfg, clock=FrozenClock(NOW))


def test_urls_post_the_same_alerts_to_every_alertmanager(notification: MakeNotification) -> None:
    with hook(path="/one") as one, hook(path="/two") as two:
        _urls_notifier(one.url, two.url + "/").send(notification())
        expected = alertmanager_alerts(notification(), NOW)
        assert one.bodies() == [expected] and two.bodies() == [expected]


def test_url_alone_still_posts_to_that_one(
    receiver: Receiver, notification: MakeNotification
) -> None:
    am = build_notifier("am", {"type": "alertmanager", "url": receiver.url})
    assert isinstance(am, AlertmanagerNotifier) and am.urls == (receiver.url,)
    am.send(notification())
    assert [r.path for r in receiver.requests] == ["/api/v2/alerts"]


def test_one_alertmanager_down_the_send_is_delivered_and_the_miss_logged(
    closed_port: int, notification: MakeNotification, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"http://127.0.0.1:{closed_port}"
    with hook() as up, caplog.at_level(logging.WARNING):
        _urls_notifier(down, up.url).send(notification(id="n-down"))
        assert len(up.bodies()) == 1
    (record,) = [r for r in caplog.records if r.name.endswith("alertmanager")]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert f"Alertmanager 127.0.0.1:{closed_port}" in message.replace("http://", "")
    assert "n-down" in message and "1 of 2 accepted" in message
    assert "connection refused" in message


def test_a_hung_alertmanager_does_not_hold_back_the_others_post(
    notification: MakeNotification,
) -> None:
    """The hung one is listed first: its post is still unanswered when the second one's has
    arrived, so they ran side by side (no clock involved)."""
    with hook(status=None) as hung, hook() as up:
        am = _urls_notifier(hung.url, up.url, timeout="60s")
        errors: list[BaseException] = []

        def send() -> None:
            try:
                am.send(notification())
            except BaseException as e:
                errors.append(e)

        sender = threading.Thread(target=send)
        sender.start()
        wait_for(lambda: up.bodies() and hung.bodies(), timeout=30)
        assert sender.is_alive()  # still waiting for the hung one
        hung.closing.set()  # it closes without an answer: that post fails
        sender.join(30)
        assert not sender.is_alive() and errors == []


def test_every_alertmanager_failing_fails_the_send_naming_each(
    closed_port: int, notification: MakeNotification
) -> None:
    with hook(status=400) as rejecting, pytest.raises(NotifyError) as info:
        _urls_notifier(rejecting.url, f"http://127.0.0.1:{closed_port}").send(notification())
    reason = info.value.reason
    assert reason.startswith("no Alertmanager of 2 accepted the alerts: "), reason
    assert "HTTP 400" in reason and "connection refused" in reason
    assert info.value.retryable is True  # the one that was down may be up at the retry


def test_every_alertmanager_rejecting_is_not_retryable(notification: MakeNotification) -> None:
    with hook(status=400) as one, hook(status=422) as two, pytest.raises(NotifyError) as info:
        _urls_notifier(one.url, two.url).send(notification())
    assert info.value.retryable is False
    assert "HTTP 400" in info.value.reason and "HTTP 422" in info.value.reason


# --- a send that ends an alert must reach every Alertmanager -----------------------------


def _resolve(notification: MakeNotification, **overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "kind": "resolved",
        "state": State.OK,
        "previous_state": State.CRITICAL,
        "ends_at": NOW - 5,
        "id": "n-resolve",
    }
    return notification(**(fields | overrides))


@pytest.mark.parametrize(
    ("fields", "ends"),
    [
        ({"kind": "resolved", "state": State.OK, "previous_state": State.WARNING}, True),
        ({"kind": "firing", "state": State.OK, "previous_state": State.WARNING}, True),
        ({"kind": "firing", "state": State.CRITICAL, "previous_state": State.WARNING}, True),
        ({"kind": "firing", "state": State.CRITICAL, "previous_state": State.OK}, False),
        ({"kind": "repeat", "state": State.CRITICAL, "previous_state": State.CRITICAL}, False),
        ({"kind": "drill", "state": State.CRITICAL, "previous_state": State.OK}, False),
    ],
)
def test_ends_an_alert_exactly_when_a_posted_alert_ends(
    notification: MakeNotification, fields: dict[str, Any], ends: bool
) -> None:
    n = notification(**fields)
    assert ends_an_alert(n) is ends
    # an ending alert is one whose endsAt is not in the future
    assert any(a["endsAt"] <= rfc3339(NOW) for a in alertmanager_alerts(n, NOW)) is ends


def test_a_resolve_every_alertmanager_accepted_is_delivered(
    notification: MakeNotification,
) -> None:
    with hook() as one, hook() as two:
        _urls_notifier(one.url, two.url).send(_resolve(notification))
        expected = alertmanager_alerts(_resolve(notification), NOW)
        assert one.bodies() == [expected] and two.bodies() == [expected]


def test_a_resolve_one_alertmanager_missed_is_a_retryable_failure(
    closed_port: int, notification: MakeNotification
) -> None:
    """The member that missed it would hold the alert as firing and could page it again:
    the outbox retries the row (to both; the one that has it merges it again)."""
    down = f"http://127.0.0.1:{closed_port}"
    with hook() as up, pytest.raises(NotifyError) as info:
        try:
            _urls_notifier(up.url, down).send(_resolve(notification))
        finally:
            assert len(up.bodies()) == 1  # the live one has the resolve already
    assert info.value.retryable is True
    reason = info.value.reason
    assert "resolved notification ends an alert, which every Alertmanager must accept" in reason
    assert "(1 of 2 accepted)" in reason
    assert f"POST http://127.0.0.1:{closed_port}/...: connection refused" in reason


def test_an_escalation_one_alertmanager_missed_is_retried_too(
    closed_port: int, notification: MakeNotification
) -> None:
    """WARNING -> CRITICAL resolves the warning alert in the same post."""
    escalation = notification(previous_state=State.WARNING)
    with hook() as up, pytest.raises(NotifyError) as info:
        _urls_notifier(up.url, f"http://127.0.0.1:{closed_port}").send(escalation)
    assert info.value.retryable is True and "firing notification ends an alert" in str(info.value)


def test_a_resolve_one_alertmanager_refuses_is_not_retryable_and_names_it(
    notification: MakeNotification,
) -> None:
    """A 4xx will come back at every retry: the row is reported failed at once, saying
    which member refused and that the other accepted."""
    with hook() as up, hook(status=400, path="/refusing") as refusing:
        with pytest.raises(NotifyError) as info:
            _urls_notifier(up.url, refusing.url).send(_resolve(notification))
        assert len(up.bodies()) == 1 and len(refusing.bodies()) == 1
    assert info.value.retryable is False
    reason = info.value.reason
    assert "(1 of 2 accepted)" in reason
    assert f"POST {refusing.url[: -len('refusing')]}... answered HTTP 400" in reason
    assert up.url.rsplit(":", 1)[1] not in reason  # only the failing member is named
    assert "not retryable" in str(info.value)


def test_a_drill_one_alertmanager_missed_is_delivered(
    closed_port: int, notification: MakeNotification, caplog: pytest.LogCaptureFixture
) -> None:
    """A drill only fires (and expires by itself): one member paging it is the drill."""
    with hook() as up, caplog.at_level(logging.WARNING):
        _urls_notifier(up.url, f"http://127.0.0.1:{closed_port}").send(
            notification(kind="drill", id="n-drill")
        )
        assert len(up.bodies()) == 1
    assert any("n-drill" in r.getMessage() for r in caplog.records)


def test_a_resolve_still_missed_after_the_window_is_delivered_and_logged(
    closed_port: int, notification: MakeNotification, caplog: pytest.LogCaptureFixture
) -> None:
    """Past RESOLVE_ALL_S the row stops holding a re-fire of the alert back (the outbox
    keeps an alert's rows in order); the member that never got it is logged."""
    late = _resolve(notification, created_at=NOW - RESOLVE_ALL_S)
    with hook() as up, caplog.at_level(logging.WARNING):
        _urls_notifier(up.url, f"http://127.0.0.1:{closed_port}").send(late)
        assert len(up.bodies()) == 1
    (record,) = [r for r in caplog.records if r.name.endswith("alertmanager")]
    message = record.getMessage()
    assert record.levelno == logging.WARNING and "n-resolve" in message
    assert "1 of 2 accepted" in message and "holds the alert as firing until its endsAt" in message


def test_the_spec_and_notifier_show_every_url_without_secrets() -> None:
    spec = parse_notifier(
        "am", {"type": "alertmanager", "urls": ["http://u:hunter2@am1:9093/x", "http://am2"]}
    )
    assert spec.describe() == "alertmanager http://am1:9093/..., http://am2"
    am = build_notifier(spec)
    assert isinstance(am, AlertmanagerNotifier)
    assert am.urls == ("http://u:hunter2@am1:9093/x", "http://am2")
    assert "hunter2" not in repr(spec) + repr(am)


URL_ERRORS = {
    "empty list": ({"urls": []}, "notifiers.ops.urls", "a non-empty list of URLs"),
    "a string, not a list": (
        {"urls": "http://am:9093"},
        "notifiers.ops.urls",
        "a non-empty list of URLs",
    ),
    "a table": ({"urls": {"a": "http://am:9093"}}, "notifiers.ops.urls", "a non-empty list"),
    "a number in the list": (
        {"urls": ["http://am1:9093", 9093]},
        "notifiers.ops.urls[1]",
        "an http:// or https:// URL (a non-empty string)",
    ),
    "an empty string": ({"urls": [""]}, "notifiers.ops.urls[0]", "a non-empty string"),
    "not http": (
        {"urls": ["http://am1:9093", "ftp://am2/"]},
        "notifiers.ops.urls[1]",
        "an http:// or https:// URL with a host",
    ),
    "no host": ({"urls": ["http:///alerts"]}, "notifiers.ops.urls[0]", "with a host"),
    "a bad port": ({"urls": ["http://am1:99999"]}, "notifiers.ops.urls[0]", "out of range"),
    "listed twice": (
        {"urls": ["http://am1:9093", "http://am2:9093", "http://am1:9093/"]},
        "notifiers.ops.urls[2]",
        "a URL not listed already (it is urls[0])",
    ),
    "url and urls": (
        {"url": "http://am1:9093", "urls": ["http://am2:9093"]},
        "notifiers.ops.url",
        "url or urls, not both",
    ),
    "neither": ({}, "notifiers.ops.url", "an Alertmanager URL"),
    "url with a bad port": ({"url": "http://am:0x10"}, "notifiers.ops.url", "with a host"),
}


@pytest.mark.parametrize("case", list(URL_ERRORS))
def test_a_bad_url_list_is_a_config_error_naming_the_item(case: str) -> None:
    cfg, key, expected = URL_ERRORS[case]
    with pytest.raises(ConfigError) as info:
        build_notifier("ops", {"type": "alertmanager", **cfg})
    assert (info.value.key, info.value.file) == (key, "signalbox.toml")
    assert expected in info.value.expected, info.value.expected


@pytest.mark.parametrize(
    "urls",
    [
        ["http://u:hunter2@am1:9093", "http://u:hunter2@am1:9093"],
        ["http://am1:9093", "gopher://u:hunter2@am2"],
        {"a": "http://u:hunter2@am1:9093"},
        ["http://am1:9093", ["http://u:hunter2@am2"]],
    ],
)
def test_a_url_list_error_never_shows_a_secret(urls: object) -> None:
    with pytest.raises(ConfigError) as info:
        build_notifier("ops", {"type": "alertmanager", "urls": urls})
    assert "hunter2" not in str(info.value)


def test_the_cli_refuses_a_bad_url_list_and_delivers_to_every_url(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Through the ``signalbox`` executable: a bad item stops ``monitors lint`` (exit 2,
    naming the item); a good list gets a firing alert from ``monitors run`` to each one."""
    (tmp_path / "monitors").mkdir()
    (tmp_path / "monitors" / "m.yaml").write_text(
        "- name: am_cli\n  description: Resizes are slow.\n  query: latency\n"
        "  critical: '> 8'\n  notify: [am]\n"
    )
    cfg = tmp_path / "signalbox.toml"
    cfg.write_text(f'[notifiers.am]\ntype = "alertmanager"\nurls = ["{receiver.url}", 5]\n')
    lint = run("monitors", "lint", cwd=tmp_path)
    assert lint.returncode == 2, lint.stdout + lint.stderr
    assert lint.stderr.startswith(f"signalbox: {cfg}: notifiers.am.urls[1]: expected "), lint.stderr

    with hook() as other:
        cfg.write_text(
            f'[notifiers.am]\ntype = "alertmanager"\nurls = ["{receiver.url}", "{other.url}"]\n'
        )
        for args in (["send", "latency=9"], ["collect", "--once"], ["monitors", "run", "--once"]):
            done = run(*args, cwd=tmp_path)
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        (mine,) = [json.loads(r.body) for r in receiver.requests]
        assert other.bodies() == [mine]
        assert [a["labels"]["alertname"] for a in mine] == ["am_cli"]


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
