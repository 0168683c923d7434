"""Notifiers: deliver a :class:`Notification` somewhere people (or Alertmanager) will see it.

One module per kind: ``webhook``, ``alertmanager``, ``command``, ``email`` (module
``smtp``), ``log``. Each is a small synchronous sender whose ``send`` either returns
(delivered) or raises :class:`NotifyError` saying why and whether a retry can help;
retrying, backoff and the persisted outbox live above this layer. A drill (``kind =
"drill"``) is marked as a TEST in every notifier's output.

A ``[notifiers.NAME]`` table of ``signalbox.toml`` is checked when the config is loaded and
becomes a frozen spec (:mod:`signalbox.monitors.notify._config`); :func:`build_notifier`
turns a spec into a notifier, reading the secrets it names from the environment.

The senders are imported on first use (PEP 562), so loading the config — which parses the
specs — does not import HTTP, SMTP and subprocess machinery.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signalbox.exceptions import ConfigError
from signalbox.monitors.notify._config import (
    NOTIFIER_TYPES,
    AlertmanagerSpec,
    CommandSpec,
    EmailSpec,
    LogSpec,
    NotifierSpec,
    WebhookSpec,
    env_lookup,
    parse_notifier,
)

if TYPE_CHECKING:
    from signalbox.clock import Clock
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
    "AlertmanagerSpec",
    "CommandNotifier",
    "CommandSpec",
    "EmailNotifier",
    "EmailSpec",
    "LogNotifier",
    "LogSpec",
    "Notification",
    "NotificationKind",
    "Notifier",
    "NotifierSpec",
    "NotifyError",
    "WebhookNotifier",
    "WebhookSpec",
    "alertmanager_alerts",
    "build_notifier",
    "fingerprint_of",
    "notification_env",
    "parse_notifier",
    "text_body",
    "title",
    "to_json",
    "to_payload",
]

_LAZY = {
    "AlertmanagerNotifier": "alertmanager",
    "alertmanager_alerts": "alertmanager",
    "CommandNotifier": "command",
    "notification_env": "command",
    "LogNotifier": "log",
    "EmailNotifier": "smtp",
    "WebhookNotifier": "webhook",
    **dict.fromkeys(
        (
            "KINDS",
            "Notification",
            "NotificationKind",
            "Notifier",
            "NotifyError",
            "fingerprint_of",
            "text_body",
            "title",
            "to_json",
            "to_payload",
        ),
        "notification",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def build_notifier(
    spec: NotifierSpec | str,
    cfg: Mapping[str, Any] | None = None,
    *,
    file: str = "signalbox.toml",
    environ: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    repeat_s: float | None = None,
) -> Notifier:
    """The notifier ``spec`` describes (or ``spec`` names, with its table ``cfg``, parsed first).

    ``file`` names the config in errors; ``environ`` supplies the secrets named by
    ``password_env``/``headers_from_env`` and the command notifier's base environment
    (default: this process's); ``repeat_s`` is the repeat interval Alertmanager's
    ``endsAt`` is computed from; ``clock`` gives Alertmanager its "now". A secret that is
    not in ``environ`` or a ``ca_file`` that does not exist is a ConfigError.
    """
    if isinstance(spec, str):
        spec = parse_notifier(spec, {} if cfg is None else cfg, file=file)
    env = os.environ if environ is None else environ
    if isinstance(spec, WebhookSpec):
        from signalbox.monitors.notify.webhook import WebhookNotifier

        headers = spec.resolved_headers(file, env)
        return WebhookNotifier(spec.name, spec.url, headers=headers, timeout_s=spec.timeout_s)
    if isinstance(spec, AlertmanagerSpec):
        from signalbox.monitors.notify import alertmanager

        return alertmanager.AlertmanagerNotifier(
            spec.name,
            spec.targets,
            headers=spec.resolved_headers(file, env),
            timeout_s=spec.timeout_s,
            repeat_s=alertmanager.DEFAULT_REPEAT_S if repeat_s is None else repeat_s,
            generator_url=spec.generator_url,
            clock=clock,
        )
    if isinstance(spec, CommandSpec):
        from signalbox.monitors.notify.command import CommandNotifier

        return CommandNotifier(spec.name, spec.argv, timeout_s=spec.timeout_s, environ=env)
    if isinstance(spec, EmailSpec):
        from signalbox.monitors.notify.smtp import EmailNotifier

        key = f"notifiers.{spec.name}"
        password = (
            None
            if spec.password_env is None
            else env_lookup(file, f"{key}.password_env", spec.password_env, env)
        )
        if spec.ca_file is not None and not Path(spec.ca_file).is_file():
            raise ConfigError(
                file,
                f"{key}.ca_file",
                spec.ca_file,
                "an existing PEM file of trusted CA certificates",
            )
        return EmailNotifier(
            spec.name,
            from_addr=spec.from_addr,
            to=spec.to,
            host=spec.host,
            port=spec.port,
            starttls=spec.starttls,
            use_ssl=spec.use_ssl,
            username=spec.username,
            password=password,
            ca_file=spec.ca_file,
            timeout_s=spec.timeout_s,
        )
    assert isinstance(spec, LogSpec)
    from signalbox.monitors.notify.log import LogNotifier

    return LogNotifier(spec.name, level=spec.level)
