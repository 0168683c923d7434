"""Webhook: POST the notification's JSON payload to a URL.

Config (``[notifiers.NAME]``)::

    type = "webhook"
    url = "https://hooks.example/signalbox"     # required; userinfo becomes Basic auth
    timeout = "10s"                             # optional
    headers = {X-Team = "photos"}               # optional, sent as given
    headers_from_env = {Authorization = "HOOK_AUTH"}   # optional: header -> env var holding the value

The body is :func:`~signalbox.monitors.notify.notification.to_payload` (documented there);
``Idempotency-Key`` carries the notification id so a receiver can drop a retried delivery.
Header values are secrets as far as signalbox is concerned: they appear in no message and
no ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping

from signalbox.monitors.notify._config import redact_url
from signalbox.monitors.notify._http import post_json
from signalbox.monitors.notify.notification import Notification, to_payload

DEFAULT_TIMEOUT_S = 10.0


class WebhookNotifier:
    """Sends one JSON POST per notification; non-2xx raises NotifyError."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.name, self.url, self.timeout_s = name, url, timeout_s
        self._headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.name!r}, {redact_url(self.url)!r}, headers={sorted(self._headers)!r})"

    def send(self, n: Notification) -> None:
        headers = {**self._headers, "Idempotency-Key": n.id}
        post_json(self.name, self.url, to_payload(n), headers=headers, timeout_s=self.timeout_s)
