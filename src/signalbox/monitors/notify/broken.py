"""The stand-in for a notifier that cannot be built on this machine.

Its config passed validation at load, but what it needs from this machine (a secret's
environment variable, a ``ca_file``) is missing. Monitoring goes on; the outbox leaves the
notifier's rows untried — so they do not back off — until a process with the fix builds it,
which delivers them at its first round, in order.
"""

from __future__ import annotations

from signalbox.monitors.notify.notification import Notification, NotifyError


class BrokenNotifier:
    """Named ``name``; ``error`` says what to fix. ``send`` fails as retryable for any caller
    that tries it anyway (the outbox does not)."""

    def __init__(self, name: str, error: str) -> None:
        self.name, self.error = name, error

    def __repr__(self) -> str:
        return f"BrokenNotifier({self.name!r})"

    def send(self, n: Notification) -> None:
        raise NotifyError(self.name, f"not usable, fix signalbox.toml: {self.error}", True)
