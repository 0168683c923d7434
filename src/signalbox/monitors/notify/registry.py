"""The notifiers a runner sends through, built from ``[notifiers.NAME]`` in signalbox.toml.

A notifier whose config is wrong must not stop monitoring or lose notifications: it is
replaced by a :class:`BrokenNotifier` whose sends fail as retryable, so its rows wait in
the outbox (visible in ``monitors status``) until the config is fixed or they age out.
"""

from __future__ import annotations

from collections.abc import Mapping

from signalbox.clock import Clock
from signalbox.config import Settings
from signalbox.exceptions import ConfigError
from signalbox.monitors.notify import Notification, Notifier, NotifyError, build_notifier


class BrokenNotifier:
    """Stands in for a notifier whose config is wrong: rows for it stay pending (retryable)
    until the config is fixed or they age out as dead, visible, never silently dropped."""

    def __init__(self, name: str, error: str) -> None:
        self.name, self.error = name, error

    def send(self, n: Notification) -> None:
        raise NotifyError(
            self.name, f"not usable, fix signalbox.toml: {self.error}", retryable=True
        )


def build_notifiers(
    settings: Settings, *, clock: Clock | None = None, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Notifier], list[ConfigError]]:
    """Every ``[notifiers.NAME]``; a bad one becomes a :class:`BrokenNotifier` plus an error."""
    out: dict[str, Notifier] = {}
    errors: list[ConfigError] = []
    for name, cfg in settings.notifiers.items():
        try:
            out[name] = build_notifier(
                name,
                cfg,
                file=settings.source,
                environ=environ,
                clock=clock,
                repeat_s=settings.monitor_repeat_s,
            )
        except ConfigError as e:
            errors.append(e)
            out[name] = BrokenNotifier(name, str(e))
    return out, errors


def describe_notifier(settings: Settings, name: str) -> str:
    """``webhook http://host:port/...``: where a notifier delivers, with no secret in it."""
    from signalbox.monitors.notify._config import redact_url

    cfg = settings.notifiers.get(name)
    if cfg is None:
        return "not configured"
    kind = str(cfg.get("type"))
    if isinstance(cfg.get("url"), str):
        return f"{kind} {redact_url(cfg['url'])}"
    if kind == "email" and isinstance(cfg.get("to"), list):
        return f"email to {', '.join(map(str, cfg['to']))}"
    if kind == "command":
        cmd = cfg.get("command")
        first = (
            cmd.split()[0]
            if isinstance(cmd, str) and cmd.split()
            else (cmd[0] if isinstance(cmd, list) and cmd else "")
        )
        return f"command {first}"
    return kind
