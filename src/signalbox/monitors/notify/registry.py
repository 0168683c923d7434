"""The notifiers a runner sends through, built from the validated specs in the settings.

A spec is checked when the config loads; what can still fail when building it is what
depends on the delivering machine (a secret's environment variable, a ``ca_file``). Such a
notifier must not stop monitoring or lose notifications: it is replaced by a
:class:`~signalbox.monitors.notify.broken.BrokenNotifier` whose rows wait in the outbox.
"""

from __future__ import annotations

from collections.abc import Mapping

from signalbox.clock import Clock
from signalbox.config import Settings
from signalbox.exceptions import ConfigError
from signalbox.monitors.notify import build_notifier
from signalbox.monitors.notify.broken import BrokenNotifier
from signalbox.monitors.notify.notification import Notifier

__all__ = ["BrokenNotifier", "build_notifiers", "describe_notifier"]


def build_notifiers(
    settings: Settings, *, clock: Clock | None = None, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Notifier], list[ConfigError]]:
    """Every configured notifier; one that cannot be built becomes a :class:`BrokenNotifier`
    plus its error."""
    out: dict[str, Notifier] = {}
    errors: list[ConfigError] = []
    for name, spec in settings.monitors.notifiers.items():
        try:
            out[name] = build_notifier(
                spec,
                file=settings.source,
                environ=environ,
                clock=clock,
                repeat_s=settings.monitors.repeat_s,
            )
        except ConfigError as e:
            errors.append(e)
            out[name] = BrokenNotifier(name, str(e))
    return out, errors


def describe_notifier(settings: Settings, name: str) -> str:
    """``webhook http://host:port/...``: where a notifier delivers, with no secret in it."""
    spec = settings.monitors.notifiers.get(name)
    return "not configured" if spec is None else spec.describe()
