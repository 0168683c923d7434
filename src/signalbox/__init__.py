"""signalbox: shared dev/ops tools for what happens after code ships.

The public surface is small on purpose; each boundary object is a subpackage:
:mod:`signalbox.metrics` (client for apps), :mod:`signalbox.query`, :mod:`signalbox.monitors`.
"""

from __future__ import annotations

from signalbox.exceptions import (
    ConfigError,
    ParseError,
    QueryError,
    SignalboxError,
    StoreError,
    UsageError,
)

TYPE_CHECKING = False  # importing typing costs a `signalbox logs grep` ~7% of its start
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0.dev0"

__all__ = [
    "ConfigError",
    "ParseError",
    "QueryError",
    "SignalboxError",
    "StoreError",
    "UsageError",
    "__version__",
    "periodic",
    "task",
]


def __getattr__(name: str) -> Any:
    """``signalbox.task`` and ``signalbox.periodic`` (:mod:`signalbox.tasks`), imported on
    first use so ``import signalbox`` stays cheap for a cron's ``collect --once``."""
    if name in ("task", "periodic"):
        from signalbox.tasks import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'signalbox' has no attribute {name!r}")
