"""Gates: load feedback for offline work ("is the database hurting right now?").

A :class:`Gate` answers :meth:`Gate.check` with a :class:`Decision` -- open, or closed with
a reason and a suggested delay. Probes are cached for a short interval and shared by every
caller in the process, and a probe that fails closes the gate (fail closed). The task queue
defers jobs behind closed gates; any other code (a Celery task, a cron script) can call
``gate.check()`` the same way::

    from signalbox import gates

    db = gates.mysql_load("mysql://monitor@db1:3306/", max_running=40)
    d = db.check()
    if not d.open:
        retry_in(d.delay_s, because=d.reason)

Built in: :func:`mysql_load`, :func:`mysql_replication`, :func:`postgres_load`,
:func:`metric`, :func:`monitor`, :func:`flag`, :func:`file`; any callable returning
``bool`` or a :class:`Decision` through :func:`as_gate`. Gates declared in
``signalbox.toml`` (``[gates.NAME]``) are built by :func:`signalbox.gates.config.build_gates`.
"""

from __future__ import annotations

from signalbox.gates.base import Decision, Gate, as_gate
from signalbox.gates.file import file
from signalbox.gates.flag import flag
from signalbox.gates.metric import metric
from signalbox.gates.monitor import monitor
from signalbox.gates.mysql import mysql_load
from signalbox.gates.postgres import postgres_load
from signalbox.gates.replication import mysql_replication

__all__ = [
    "Decision",
    "Gate",
    "as_gate",
    "file",
    "flag",
    "metric",
    "monitor",
    "mysql_load",
    "mysql_replication",
    "postgres_load",
]
