"""End to end through a real Alertmanager: a pass fires, repeats and resolves an alert."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from signalbox.clock import SystemClock
from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify import AlertmanagerNotifier
from tests.monitors.notify.test_notify_alertmanager import _listed, alertmanager
from tests.monitors.test_run import MIN, Rig

__all__ = ["alertmanager"]  # the fixture that starts the real Alertmanager

MONITOR = """
- name: resize_slow_e2e
  description: Resizes slower than users tolerate.
  owner: photos
  runbook: https://wiki.example/resize
  query: latency
  critical: "> 8"
  repeat: 10m
  labels: {team: photos}
  notify: [am]
"""


@pytest.mark.peer("alertmanager")
def test_firing_repeat_and_resolved_reach_alertmanager_through_passes(
    alertmanager: str, tmp_path: Path
) -> None:
    am = AlertmanagerNotifier("am", alertmanager, clock=SystemClock())
    r = Rig(tmp_path, MONITOR, notifiers={"am": am})
    base = (int(time.time() * 1000) // MIN - 12) * MIN  # injected pass times, a little in the past

    r.at(base, latency=9)
    (alert,) = _listed(alertmanager, "resize_slow_e2e")
    assert alert["status"]["state"] == "active"
    assert alert["labels"] == {
        "alertname": "resize_slow_e2e",
        "severity": "critical",
        "team": "photos",
    }
    assert alert["annotations"]["summary"] == "latency = 9 > 8"
    assert alert["annotations"]["runbook_url"] == "https://wiki.example/resize"

    r.at(base + 10 * MIN, latency=9.5)
    (again,) = _listed(alertmanager, "resize_slow_e2e")  # the repeat refreshed the same alert
    assert again["fingerprint"] == alert["fingerprint"] and again["annotations"]["value"] == "9.5"
    assert again["endsAt"] >= alert["endsAt"]

    r.at(base + 11 * MIN, latency=1)
    assert _listed(alertmanager, "resize_slow_e2e") == []  # resolved: ended, no longer listed
    assert [(e.kind, e.status) for e in r.runner.outbox.entries()] == [
        ("firing", "sent"),
        ("repeat", "sent"),
        ("resolved", "sent"),
    ]
    assert r.record("resize_slow_e2e").state.state is State.OK
    r.db.close()
