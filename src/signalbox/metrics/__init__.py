"""Metrics collection: the Python client for applications, and the pipeline behind it.

Applications use the client functions from here::

    from signalbox import metrics
    metrics.incr("image_processed_total")
    metrics.gauge("image_processing_time", 5.2, shard="7")
    with metrics.timer("resize"):
        ...

They are imported lazily so the collector (which imports the pipeline modules of this
package) never pays for the client's writer thread and fork hooks.
"""

from __future__ import annotations

from typing import Any

_CLIENT_API = ("configure", "flush", "gauge", "get_client", "incr", "timer")

__all__ = ["configure", "flush", "gauge", "get_client", "incr", "timer"]


def __getattr__(name: str) -> Any:
    if name in _CLIENT_API:
        from signalbox.metrics import client

        return getattr(client, name)
    raise AttributeError(f"module 'signalbox.metrics' has no attribute {name!r}")
