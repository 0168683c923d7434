"""Gates: load feedback for offline work ("is the database hurting right now?").

A :class:`Gate` answers :meth:`Gate.check` with a :class:`Decision` -- open, or closed with
a reason and a suggested delay. Probes are cached for a short interval and shared by every
caller in the process, and a probe that fails closes the gate (fail closed). The task queue
defers jobs behind closed gates; any other code (a Celery task, a cron script) can call
``gate.check()`` the same way.
"""

from __future__ import annotations

from signalbox.gates.base import Decision, Gate, as_gate

__all__ = ["Decision", "Gate", "as_gate"]
