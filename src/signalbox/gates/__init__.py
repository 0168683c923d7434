"""Gates: load feedback for offline work ("is the database hurting right now?").

A :class:`Gate` answers :meth:`Gate.check` with a :class:`Decision` -- open, or closed with
a reason and a suggested delay. Probes are cached for a short interval and shared by every
caller in the process, and a probe that fails closes the gate (fail closed). Under a worker
whose queue store is SQLite or PostgreSQL, a probe is also shared by every process using
that store: one probe per gate per interval across the cluster, through a record in the
store (:mod:`signalbox.gates.shared`; ``[gates] shared = false`` keeps probes local). The
task queue defers jobs behind closed gates; any other code (a Celery task, a cron script)
can call ``gate.check()`` the same way::

    from signalbox import gates

    db = gates.mysql_load("mysql://monitor@db1:3306/", max_running=40)
    d = db.check()
    if not d.open:
        retry_in(d.delay_s, because=d.reason)

Built in: :func:`mysql_load`, :func:`mysql_replication`, :func:`postgres_load`,
:func:`metric`, :func:`monitor`, :func:`flag`, :func:`file`; any callable returning
``bool`` or a :class:`Decision` through :func:`as_gate`. Gates declared in
``signalbox.toml`` (``[gates.NAME]``) are built by :func:`signalbox.gates.settings.build_gates`.

The database gates' modules are imported on first use, so loading the config (which checks
``[gates]`` tables) does not import them. ``file``, ``flag``, ``metric`` and ``monitor`` share
their names with their modules and are imported here, before anything else can import the
module and bind its name on this package to the module instead of the function.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from signalbox.gates.base import Decision, Gate, as_gate
from signalbox.gates.file import file
from signalbox.gates.flag import flag
from signalbox.gates.metric import metric
from signalbox.gates.monitor import monitor

if TYPE_CHECKING:
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

_LAZY = {
    "mysql_load": "signalbox.gates.mysql",
    "mysql_replication": "signalbox.gates.replication",
    "postgres_load": "signalbox.gates.postgres",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'signalbox.gates' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
