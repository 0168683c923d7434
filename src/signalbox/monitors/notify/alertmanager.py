"""Alertmanager: post alerts to ``{url}/api/v2/alerts`` as Prometheus does.

Config (``[notifiers.NAME]``)::

    type = "alertmanager"
    url = "http://127.0.0.1:9093"      # required; the base URL (a --web.route-prefix path is fine)
    timeout = "10s"                    # optional
    generator_url = "http://signalbox:8910/monitors"   # optional; the notification's own wins
    headers = {...}, headers_from_env = {...}          # optional, as for webhook

Each alert: labels ``alertname=<monitor>``, ``severity=warning|critical|unknown`` and the
series labels (one clashing with ours is kept as ``exported_<name>``, as Prometheus does);
annotations ``summary``, ``description``, ``runbook_url``, ``owner``, ``value``;
``startsAt`` when the problem began. Alertmanager resolves an alert on its own once
``endsAt`` passes, so while firing ``endsAt`` is now + ``ENDS_AT_REPEATS`` x the repeat
interval (the next repeat refreshes it long before); a resolve sets ``endsAt`` to when it
ended. Severity is a label, so the alert of a monitor that moves WARNING -> CRITICAL is a
new alert: the old severity's alert is resolved in the same post.

A drill is a separate alert (label ``drill="true"``, summary starting ``[TEST]``) that
expires by itself after ``DRILL_TTL_S``; it never touches the real alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from signalbox.clock import Clock, SystemClock
from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify._config import redact_url
from signalbox.monitors.notify._http import post_json
from signalbox.monitors.notify.notification import Notification, rfc3339, show_value

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_REPEAT_S = 4 * 3600.0
ENDS_AT_REPEATS = 3
MIN_TTL_S = 300.0
DRILL_TTL_S = 600.0
SEVERITY: Mapping[State, str] = {
    State.WARNING: "warning",
    State.CRITICAL: "critical",
    State.UNKNOWN: "unknown",
}


def alertmanager_alerts(
    n: Notification, now: float, *, repeat_s: float = DEFAULT_REPEAT_S, generator_url: str = ""
) -> list[dict[str, Any]]:
    """The Alertmanager v2 alert objects for ``n`` at time ``now`` (pure)."""
    repeat = n.repeat_s if n.repeat_s and n.repeat_s > 0 else repeat_s
    firing_until = max(now + ENDS_AT_REPEATS * repeat, now + MIN_TTL_S)
    link = n.generator_url or generator_url
    if n.drill:
        state = n.state if n.state in SEVERITY else State.CRITICAL
        return [_alert(n, state, max(now, n.started_at) + DRILL_TTL_S, link)]
    if n.kind == "resolved":
        ended = max(n.ends_at if n.ends_at is not None else now, n.started_at)
        # Resolve the severity that fired; if we do not know it, resolve every severity.
        states = [n.previous_state] if n.previous_state in SEVERITY else list(SEVERITY)
        return [_alert(n, s, ended, link) for s in states]
    if n.state not in SEVERITY:  # firing/repeat for OK: nothing fires; resolve what was
        states = [n.previous_state] if n.previous_state in SEVERITY else list(SEVERITY)
        return [_alert(n, s, max(now, n.started_at), link) for s in states]
    alerts = [_alert(n, n.state, firing_until, link)]
    if n.previous_state in SEVERITY and n.previous_state != n.state:
        alerts.append(_alert(n, n.previous_state, max(now, n.started_at), link))
    return alerts


def _alert(n: Notification, state: State, ends_at: float, link: str) -> dict[str, Any]:
    ours = {"alertname": n.monitor, "severity": SEVERITY[state]}
    if n.drill:
        ours["drill"] = "true"
    labels: dict[str, str] = {}
    for k, v in n.labels:
        if v:  # an empty label is an absent label, to Alertmanager as to Prometheus
            labels[f"exported_{k}" if k in ours else k] = v
    labels.update(ours)
    summary = n.summary or n.monitor
    annotations = {
        "summary": f"[TEST] {summary}" if n.drill else summary,
        "description": n.description,
        "runbook_url": n.runbook,
        "owner": n.owner,
        "value": show_value(n.value),
        "suppressed_by": n.suppressed_by,
    }
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {k: v for k, v in annotations.items() if v},
        "startsAt": rfc3339(n.started_at),
        "endsAt": rfc3339(ends_at),
    }
    if link:
        alert["generatorURL"] = link
    return alert


class AlertmanagerNotifier:
    """Posts to Alertmanager's v2 API; ``clock`` sets "now" for ``endsAt``."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        repeat_s: float = DEFAULT_REPEAT_S,
        generator_url: str = "",
        clock: Clock | None = None,
    ) -> None:
        self.name, self.url, self.timeout_s = name, url.rstrip("/"), timeout_s
        self.repeat_s, self.generator_url = repeat_s, generator_url
        self.clock = clock or SystemClock()
        self._headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"AlertmanagerNotifier({self.name!r}, {redact_url(self.url)!r})"

    def send(self, n: Notification) -> None:
        alerts = alertmanager_alerts(
            n, self.clock.now(), repeat_s=self.repeat_s, generator_url=self.generator_url
        )
        post_json(
            self.name,
            f"{self.url}/api/v2/alerts",
            alerts,
            headers=self._headers,
            timeout_s=self.timeout_s,
        )
