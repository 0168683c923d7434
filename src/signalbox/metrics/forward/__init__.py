"""Forwarders: each stored collection pass also sent to the peers users already run.

    collector ──stored pass──▶ PassTap ──submit (no I/O)──▶ Forwarder ──thread──▶ peer
                                  │                          (bounded queue,
                                  └──▶ the agent's /metrics   timeouts, counters)

* :mod:`.graphite`: the plaintext protocol over TCP (``[forward.graphite]``);
* :mod:`.ganglia`: gmetric messages over UDP to a gmond (``[forward.ganglia]``);
* :mod:`.sender`: what both share -- the bounded queue, the sending thread, the
  ``signalbox_forward_*`` counters and the once-per-episode log lines;
* :mod:`.passes`: a pass as forwarders read it, and the tap the collector hands it to;
* :mod:`.scrape`: the last pass as Prometheus text, for ``agent --listen``;
* :mod:`.wiring`: the forwarders ``[forward]`` configures, started and stopped together.

A peer that is down or hangs never slows a collection pass: the pass only appends to each
forwarder's queue. See :mod:`.sender` for the bounds and what is counted.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signalbox.metrics.forward.passes import CollectedPass, PassSink, PassTap, TappedStore
    from signalbox.metrics.forward.sender import Forwarder
    from signalbox.metrics.forward.wiring import Forwarders, build_forwarders, start_forwarding

__all__ = [
    "CollectedPass",
    "Forwarder",
    "Forwarders",
    "PassSink",
    "PassTap",
    "TappedStore",
    "build_forwarders",
    "start_forwarding",
]

_HOME = {
    "CollectedPass": "passes",
    "PassSink": "passes",
    "PassTap": "passes",
    "TappedStore": "passes",
    "Forwarder": "sender",
    "Forwarders": "wiring",
    "build_forwarders": "wiring",
    "start_forwarding": "wiring",
}


def __getattr__(name: str) -> Any:
    """Import on first use: every command reads ``[forward]`` (its settings), and only
    the processes that forward need sockets, threads and an HTTP server."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
