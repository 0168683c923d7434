"""Alertmanager: post alerts to ``{url}/api/v2/alerts`` as Prometheus does.

Config (``[notifiers.NAME]``)::

    type = "alertmanager"
    url = "http://127.0.0.1:9093"      # the base URL (a --web.route-prefix path is fine), or
    urls = ["http://am1:9093", "http://am2:9093"]   # every member of a cluster (not both)
    timeout = "10s"                    # optional; per Alertmanager and attempt
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

Several Alertmanagers (``urls``), as Prometheus does: every alert is posted to each member
and the Alertmanager cluster (gossip, ``--cluster.peer``) deduplicates the pages, so a
member that is down costs no page. The posts run in parallel, each bounded by ``timeout``:
one slow or dead member delays nothing but its own post, and ``send`` returns once all
have answered or timed out (waiting for all keeps each member's posts in order: a
resolve never overtakes the firing a hung member still holds).

When a send is delivered depends on what it tells (:func:`ends_an_alert`):

* **it only fires** (firing, repeat, a drill): when at least one member accepted it; each
  member that failed is logged at WARNING (naming it and why) and catches up at the next
  repeat, which refreshes the alert and its ``endsAt``. A drill is a firing alert of its
  own that expires by itself: one member paging it shows the path works.
* **it ends an alert** (a resolve, a firing for OK, an escalation's resolve of the old
  severity): only when **every** member accepted it. A member that missed a resolve holds
  the alert as firing until its ``endsAt`` (3 repeats, at least 5 minutes), and once its
  peer has logged the resolved page it may page the alert as firing again (Prometheus
  re-sends resolved alerts for 15 minutes against this). So a partial failure raises a
  retryable error and the outbox retries the row, to every member: harmless, since
  Alertmanager identifies an alert by its labels, and a member that has the alert resolved
  already just merges the same resolve again (no new page). The outbox keeps no state per
  member, so re-sending to all is the simple way; it is one small post each. This holds
  for :data:`RESOLVE_ALL_S` after the notification was made (Prometheus's 15 minutes):
  later, a member still failing is logged at WARNING and the send counts as delivered,
  since the outbox holds newer notifications of the alert (a re-fire) behind a row it
  retries. A member that refuses (HTTP 4xx: it never will accept) makes the failure not
  retryable at once, naming the member and that the others accepted.

Only when **every** member failed does any send raise in either case; the error is
retryable if any member's was, and lists each member's reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from signalbox.clock import Clock, SystemClock
from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify._config import redact_url
from signalbox.monitors.notify._http import post_json
from signalbox.monitors.notify.notification import (
    Notification,
    NotifyError,
    rfc3339,
    show_value,
)

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_REPEAT_S = 4 * 3600.0
ENDS_AT_REPEATS = 3
MIN_TTL_S = 300.0
DRILL_TTL_S = 600.0
RESOLVE_ALL_S = 15 * 60.0
"""How long a send that ends an alert is retried until every Alertmanager has accepted it
(counted from the notification's ``created_at``; Prometheus re-sends resolves as long)."""
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


def ends_an_alert(n: Notification) -> bool:
    """Whether :func:`alertmanager_alerts` ends an alert for ``n`` (pure): a resolve, a
    firing for OK, or an escalation that resolves the previous severity. A drill never
    does (it expires by itself)."""
    if n.drill:
        return False
    return (
        n.kind == "resolved"
        or n.state not in SEVERITY
        or (n.previous_state in SEVERITY and n.previous_state != n.state)
    )


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
    """Posts to Alertmanager's v2 API, of one Alertmanager or of each member of a cluster
    (``url`` a list); ``clock`` sets "now" for ``endsAt``."""

    def __init__(
        self,
        name: str,
        url: str | Sequence[str],
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        repeat_s: float = DEFAULT_REPEAT_S,
        generator_url: str = "",
        clock: Clock | None = None,
    ) -> None:
        urls = (url,) if isinstance(url, str) else tuple(url)
        if not urls:
            raise ValueError(f"Alertmanager notifier {name!r}: no URL to post to")
        self.name, self.timeout_s = name, timeout_s
        self.urls = tuple(u.rstrip("/") for u in urls)
        self.repeat_s, self.generator_url = repeat_s, generator_url
        self.clock = clock or SystemClock()
        self._headers = dict(headers or {})

    @property
    def url(self) -> str:
        """The first Alertmanager (the only one, unless several were given)."""
        return self.urls[0]

    def __repr__(self) -> str:
        shown = ", ".join(redact_url(u) for u in self.urls)
        return f"AlertmanagerNotifier({self.name!r}, {shown!r})"

    def send(self, n: Notification) -> None:
        alerts = alertmanager_alerts(
            n, self.clock.now(), repeat_s=self.repeat_s, generator_url=self.generator_url
        )
        if len(self.urls) == 1:
            self._post(self.urls[0], alerts)
            return
        with ThreadPoolExecutor(len(self.urls), thread_name_prefix=f"am-{self.name}") as pool:
            futures = [pool.submit(self._post, url, alerts) for url in self.urls]
        failed: list[tuple[str, BaseException]] = []
        for url, future in zip(self.urls, futures, strict=True):
            error = future.exception()
            if error is not None:
                failed.append((url, error))
        if len(failed) == len(self.urls):
            bug = next((e for _, e in failed if not isinstance(e, NotifyError)), None)
            if bug is not None:
                raise bug  # a notifier bug: the outbox logs it with its traceback, and retries
            errors = [e for _, e in failed if isinstance(e, NotifyError)]
            raise NotifyError(
                self.name,
                f"no Alertmanager of {len(self.urls)} accepted the alerts: "
                + "; ".join(e.reason for e in errors),
                any(e.retryable for e in errors),
            )
        if not failed:
            return
        accepted = f"{len(self.urls) - len(failed)} of {len(self.urls)} accepted"
        if ends_an_alert(n) and self.clock.now() - n.created_at < RESOLVE_ALL_S:
            refused = [
                (url, e) for url, e in failed if isinstance(e, NotifyError) and not e.retryable
            ]
            if not refused:
                bug = next((e for _, e in failed if not isinstance(e, NotifyError)), None)
                if bug is not None:
                    raise bug  # the outbox logs it with its traceback, and retries
            raise NotifyError(
                self.name,
                f"{n.kind} notification ends an alert, which every Alertmanager must accept "
                f"({accepted}): " + "; ".join(_reason(e, url) for url, e in failed),
                not refused,  # a member that refuses will refuse every retry too
            )
        catch_up = (
            f"it holds the alert as firing until its endsAt; retried for {RESOLVE_ALL_S / 60:g} min"
            if ends_an_alert(n)
            else "it catches up at the next repeat"
        )
        for url, error in failed:
            log.warning(
                "notifier %r: Alertmanager %s missed %s notification %s for %s (%s; %s): %s",
                self.name,
                redact_url(url),
                n.kind,
                n.id,
                n.monitor,
                accepted,
                catch_up,
                _reason(error, url),
                exc_info=None if isinstance(error, NotifyError) else error,
            )

    def _post(self, url: str, alerts: list[dict[str, Any]]) -> None:
        post_json(
            self.name,
            f"{url}/api/v2/alerts",
            alerts,
            headers=self._headers,
            timeout_s=self.timeout_s,
        )


def _reason(error: BaseException, url: str) -> str:
    """Why a post failed: a NotifyError's reason names the URL already, a bug's does not."""
    return error.reason if isinstance(error, NotifyError) else f"{redact_url(url)}: {error!r}"
