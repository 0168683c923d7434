"""Notifiers: deliver a :class:`Notification` somewhere people (or Alertmanager) will see it.

One module per kind: ``webhook``, ``alertmanager``, ``command``, ``email`` (module
``smtp``), ``log``. Each is a small synchronous sender whose ``send`` either returns
(delivered) or raises :class:`NotifyError` saying why and whether a retry can help;
retrying, backoff and the persisted outbox live above this layer. A drill (``kind =
"drill"``) is marked as a TEST in every notifier's output.

:func:`build_notifier` turns one ``[notifiers.NAME]`` table of ``signalbox.toml`` into a
notifier, refusing unknown keys and wrong types with a ConfigError naming
``notifiers.NAME.KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from signalbox.clock import Clock
from signalbox.exceptions import ConfigError
from signalbox.monitors.notify import alertmanager, command, log, smtp, webhook
from signalbox.monitors.notify._config import Table
from signalbox.monitors.notify.alertmanager import AlertmanagerNotifier, alertmanager_alerts
from signalbox.monitors.notify.command import CommandNotifier, notification_env
from signalbox.monitors.notify.log import LogNotifier
from signalbox.monitors.notify.notification import (
    KINDS,
    Notification,
    NotificationKind,
    Notifier,
    NotifyError,
    fingerprint_of,
    text_body,
    title,
    to_json,
    to_payload,
)
from signalbox.monitors.notify.smtp import EmailNotifier
from signalbox.monitors.notify.webhook import WebhookNotifier

__all__ = [
    "KINDS",
    "NOTIFIER_TYPES",
    "AlertmanagerNotifier",
    "CommandNotifier",
    "EmailNotifier",
    "LogNotifier",
    "Notification",
    "NotificationKind",
    "Notifier",
    "NotifyError",
    "WebhookNotifier",
    "alertmanager_alerts",
    "build_notifier",
    "fingerprint_of",
    "notification_env",
    "text_body",
    "title",
    "to_json",
    "to_payload",
]

NOTIFIER_TYPES: tuple[str, ...] = ("webhook", "alertmanager", "command", "email", "log")


def build_notifier(
    name: str,
    cfg: Mapping[str, Any],
    *,
    file: str = "signalbox.toml",
    environ: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    repeat_s: float = alertmanager.DEFAULT_REPEAT_S,
) -> Notifier:
    """Build the notifier ``[notifiers.<name>]`` describes.

    ``file`` names the config in errors; ``environ`` supplies secrets named by
    ``password_env``/``headers_from_env`` and the command notifier's base environment
    (default: this process's); ``repeat_s`` is the repeat interval Alertmanager's
    ``endsAt`` is computed from; ``clock`` gives Alertmanager its "now".
    """
    env = os.environ if environ is None else environ
    t = Table(file, name, cfg, env)
    kind = cfg.get("type")
    builders: dict[str, Callable[[], Notifier]] = {
        "webhook": lambda: webhook.from_table(t),
        "alertmanager": lambda: alertmanager.from_table(t, clock=clock, repeat_s=repeat_s),
        "command": lambda: command.from_table(t, environ=env),
        "email": lambda: smtp.from_table(t),
        "log": lambda: log.from_table(t),
    }
    if not isinstance(kind, str) or kind not in builders:
        raise ConfigError(
            file, t.key("type"), kind, "a notifier type: " + ", ".join(NOTIFIER_TYPES)
        )
    return builders[kind]()
