"""The one record every notifier sends, its JSON form, and the error a notifier raises.

A :class:`Notification` is built once (by the monitor runner) and may be sent many times
(retries from the outbox), so everything a notifier puts on the wire is derived from it:
``id`` makes each send idempotent for receivers that dedup, ``fingerprint`` names the
alert (monitor + series labels) across firing, repeat and resolved.

JSON payload (webhook body, command stdin), version 1::

    {
      "version": 1,
      "id": "5f0c...",                  unique per notification; same on every retry
      "fingerprint": "a1b2c3d4e5f60718", same for every notification of this alert
      "kind": "firing",                  firing | resolved | repeat | drill
      "drill": false,                    true: a TEST sent by `monitors drill`, not a real problem
      "monitor": "image_processing_slow",
      "state": "CRITICAL",               OK | WARNING | CRITICAL | UNKNOWN
      "previous_state": "OK",
      "title": "[CRITICAL] image_processing_slow: ...",  one line for subjects and chat
      "summary": "...", "description": "...", "owner": "photos", "runbook": "https://...",
      "labels": {"shard": "7"},          the series' labels
      "value": 9.2,                      null when none; "NaN", "+Inf", "-Inf" when not finite
      "started_at": "2023-11-14T22:13:20.000Z",  RFC 3339 UTC, when the problem began
      "ends_at": null,                   when it ended (resolved), else null
      "created_at": "2023-11-14T22:16:20.000Z",  when this notification was made
      "silenced": false, "suppressed_by": "",
      "repeat_s": 14400,                 seconds until the next repeat, or null
      "generator_url": ""
    }
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from signalbox.exceptions import SignalboxError
from signalbox.metrics.samples import Labels, labels_of
from signalbox.monitors.definitions.model import State

NotificationKind = Literal["firing", "resolved", "repeat", "drill"]
KINDS: tuple[str, ...] = ("firing", "resolved", "repeat", "drill")
PAYLOAD_VERSION = 1
_YEAR_9999 = 253_402_300_800.0


class NotifyError(SignalboxError):
    """A notifier could not deliver; ``retryable`` says whether trying again may help.

    Retryable: the receiver is down, slow or overloaded (connection errors, timeouts, HTTP
    5xx/408/429, SMTP 4xx). Not retryable: the request itself is wrong (HTTP 4xx, SMTP 5xx,
    bad credentials, a command that does not exist) and will fail the same way again.
    """

    def __init__(self, notifier_name: str, reason: str, retryable: bool) -> None:
        self.notifier_name, self.reason, self.retryable = notifier_name, reason, retryable
        verdict = "will retry" if retryable else "not retryable"
        super().__init__(f"notifier {notifier_name!r}: {reason} ({verdict})")


class Notifier(Protocol):
    """Anything that can deliver a notification; raises :class:`NotifyError` on failure."""

    def send(self, n: Notification) -> None: ...


def fingerprint_of(monitor: str, labels: Labels, *, drill: bool = False) -> str:
    """A stable id for one alert (monitor + series labels); a drill never shares a real one's."""
    h = hashlib.sha256(monitor.encode())
    for k, v in labels:
        h.update(b"\x00" + k.encode() + b"\x00" + v.encode())
    if drill:
        h.update(b"\x00drill")
    return h.hexdigest()[:16]


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Notification:
    """One message about one alert; times are seconds since the epoch.

    ``fingerprint`` is derived from monitor and labels when left empty; ``id`` is fresh
    per notification unless given (give it when rebuilding one from the outbox).
    """

    monitor: str
    state: State
    previous_state: State
    kind: NotificationKind
    summary: str
    started_at: float
    created_at: float
    description: str = ""
    owner: str = ""
    runbook: str = ""
    labels: Labels = ()
    value: float | None = None
    ends_at: float | None = None
    silenced: bool = False
    suppressed_by: str = ""
    repeat_s: float | None = None
    generator_url: str = ""
    fingerprint: str = ""
    id: str = field(default_factory=_new_id)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"notification kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        for name in ("started_at", "created_at", "ends_at"):
            ts = getattr(self, name)
            if ts is not None and not (math.isfinite(ts) and 0 <= ts < _YEAR_9999):
                raise ValueError(f"notification {name} {ts!r}: expected seconds since the epoch")
        object.__setattr__(self, "state", State(self.state))
        object.__setattr__(self, "previous_state", State(self.previous_state))
        object.__setattr__(self, "labels", labels_of(self.labels))
        if not self.fingerprint:
            fp = fingerprint_of(self.monitor, self.labels, drill=self.drill)
            object.__setattr__(self, "fingerprint", fp)

    @property
    def drill(self) -> bool:
        """A test of the notification path, to be shown as such everywhere."""
        return self.kind == "drill"


def rfc3339(ts: float) -> str:
    """``2023-11-14T22:13:20.000Z``: what Alertmanager, JSON consumers and people all read."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_number(value: float | None) -> float | str | None:
    """A value for strict JSON: non-finite numbers as Prometheus spells them."""
    if value is None or math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def show_value(value: float | None) -> str:
    """A value as people read it (``9.2``, ``NaN``, empty for none)."""
    if value is None:
        return ""
    if not math.isfinite(value):
        return str(json_number(value))
    return f"{value:g}" if abs(value) < 1e15 else repr(value)


def title(n: Notification) -> str:
    """One line: ``[CRITICAL] image_processing_slow: summary``; drills start with ``[TEST]``."""
    tag = "[RESOLVED]" if n.kind == "resolved" else f"[{n.state.value}]"
    text = f"{tag} {n.monitor}"
    if n.labels:
        text += "{" + ",".join(f"{k}={v}" for k, v in n.labels) + "}"
    if n.summary:
        text += f": {n.summary}"
    if n.kind == "repeat":
        text += " (still firing)"
    if n.drill:
        text = f"[TEST] {text}"
    return " ".join(text.split())  # never a multi-line subject


def to_payload(n: Notification) -> dict[str, Any]:
    """The documented JSON form (see the module docstring); every field, always present."""
    return {
        "version": PAYLOAD_VERSION,
        "id": n.id,
        "fingerprint": n.fingerprint,
        "kind": n.kind,
        "drill": n.drill,
        "monitor": n.monitor,
        "state": n.state.value,
        "previous_state": n.previous_state.value,
        "title": title(n),
        "summary": n.summary,
        "description": n.description,
        "owner": n.owner,
        "runbook": n.runbook,
        "labels": dict(n.labels),
        "value": json_number(n.value),
        "started_at": rfc3339(n.started_at),
        "ends_at": None if n.ends_at is None else rfc3339(n.ends_at),
        "created_at": rfc3339(n.created_at),
        "silenced": n.silenced,
        "suppressed_by": n.suppressed_by,
        "repeat_s": n.repeat_s,
        "generator_url": n.generator_url,
    }


def to_json(n: Notification) -> bytes:
    """The payload as strict UTF-8 JSON bytes."""
    return json.dumps(to_payload(n), allow_nan=False, ensure_ascii=False).encode()


def text_body(n: Notification) -> str:
    """Plain text with everything on-call needs, for email and chat-like receivers."""
    lines: list[str] = []
    if n.drill:
        lines += ["THIS IS A TEST (drill). Nothing is wrong; check that this reached you.", ""]
    lines.append(title(n))
    lines.append("")
    rows = [
        ("Monitor", n.monitor),
        ("State", f"{n.state.value} (was {n.previous_state.value})"),
        ("Kind", n.kind),
        ("Value", show_value(n.value)),
        ("Labels", ", ".join(f"{k}={v}" for k, v in n.labels)),
        ("Summary", n.summary),
        ("Owner", n.owner),
        ("Runbook", n.runbook),
        ("Started", rfc3339(n.started_at)),
        ("Ended", "" if n.ends_at is None else rfc3339(n.ends_at)),
        ("Silenced", "yes" if n.silenced else ""),
        ("Suppressed by", n.suppressed_by),
        ("Link", n.generator_url),
    ]
    lines += [f"{k + ':':<15}{v}" for k, v in rows if v]
    if n.description:
        lines += ["", n.description]
    lines += ["", f"fingerprint {n.fingerprint} · notification {n.id}"]
    return "\n".join(lines) + "\n"
