"""Fixtures for notifier tests (the builders live in ``notify_helpers``)."""

from __future__ import annotations

from tests.monitors.notify.notify_helpers import closed_port, notification, receiver

__all__ = ["closed_port", "notification", "receiver"]
