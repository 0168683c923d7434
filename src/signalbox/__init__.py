"""signalbox: shared dev/ops tools for what happens after code ships.

The public surface is small on purpose; each boundary object is a subpackage:
:mod:`signalbox.metrics` (client for apps), :mod:`signalbox.query`, :mod:`signalbox.monitors`.
"""

from signalbox.exceptions import (
    ConfigError,
    ParseError,
    QueryError,
    SignalboxError,
    StoreError,
    UsageError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "ConfigError",
    "ParseError",
    "QueryError",
    "SignalboxError",
    "StoreError",
    "UsageError",
    "__version__",
]
