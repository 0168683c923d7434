"""What ``serve`` and ``agent`` do with the election of :mod:`signalbox.storage.leader`: the
loops only the leader runs, and the metrics that say who leads.

* :func:`every_leading` runs a job (compaction, purging ended sessions) every interval while
  this instance leads, and at once when a term starts, so a new leader catches up without
  waiting a whole interval;
* :class:`LeaderMetrics` (each ``serve``): ``signalbox_leader{server}`` (not ``instance``: Prometheus gives that label to each scrape target), 1 while this
  instance leads, 0 while it stands by; a new leader also writes 0 once for the instance
  it took over from, which died with a 1 as its last value, so ``signalbox_leader == 1``
  names one instance as soon as the takeover's pass is stored;
* :class:`LeaderSeen` (each ``agent`` on PostgreSQL): ``signalbox_leader_info{leader}`` 1,
  the ``serve`` instance holding the lease at each pass, and a log line when it changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from signalbox.metrics.samples import MetricMeta, Sample
from signalbox.storage.database import Database
from signalbox.storage.leader import LEASE_NAME, Leadership, instance_of
from signalbox.storage.lease import Lease

if TYPE_CHECKING:
    from signalbox.server.loops import LoopHealth

__all__ = ["LEADER_INFO_METRIC", "LEADER_METRIC", "LeaderMetrics", "LeaderSeen", "every_leading"]

log = logging.getLogger("signalbox.leader")

LEADER_METRIC = "signalbox_leader"
LEADER_INFO_METRIC = "signalbox_leader_info"
_POLL_S = 0.25  # how often a loop that does not lead looks again (a flag in memory)

_LEADER_META = MetricMeta(
    LEADER_METRIC,
    "gauge",
    "1 while this serve instance leads (evaluates monitors, sends notifications, compacts), "
    "0 while it stands by.",
)
_INFO_META = MetricMeta(
    LEADER_INFO_METRIC, "gauge", "The serve instance this agent saw leading (always 1)."
)


def host_of(instance: str) -> str:
    """The host part of an instance name (``HOST:PORT``)."""
    return instance.rsplit(":", 1)[0]


def every_leading(
    interval_s: float,
    stop: threading.Event,
    fn: Callable[[], object],
    name: str,
    health: LoopHealth,
    leader: Leadership,
) -> threading.Thread:
    """Run ``fn`` every ``interval_s`` while ``leader`` leads, at once when a term starts,
    until ``stop``; errors are logged through ``health``, never fatal."""

    def run() -> None:
        term: str | None = None
        next_at = 0.0
        while not stop.is_set():
            current = leader.term()
            if current is None:
                term = None
                stop.wait(_POLL_S)
                continue
            if current != term:
                term, next_at = current, 0.0
            if time.monotonic() >= next_at:
                next_at = time.monotonic() + interval_s
                try:
                    fn()
                except Exception as e:
                    health.failed(name, e)
                else:
                    health.succeeded(name)
            stop.wait(max(0.0, min(next_at - time.monotonic(), 4 * _POLL_S)))

    t = threading.Thread(target=run, name=f"signalbox-{name}", daemon=True)
    t.start()
    return t


class LeaderMetrics:
    """``signalbox_leader{server}`` (not ``instance``: Prometheus gives that label to each scrape target) for each collection pass of a ``serve`` instance (a
    :class:`~signalbox.metrics.collect.SampleSource`)."""

    def __init__(self, leader: Leadership) -> None:
        self.leader = leader
        self._told_deposed: str | None = None

    def flush(self, now_ms: int) -> tuple[list[Sample], list[MetricMeta]]:
        samples = [
            Sample(LEADER_METRIC, (("server", self.leader.instance),), float(self.leader.leading()))
        ]
        deposed = self.leader.deposed()
        if deposed == self.leader.instance:  # this instance's own earlier process: its series
            deposed = None
        if deposed is not None and deposed != self._told_deposed:
            labels = (("host", host_of(deposed)), ("server", deposed))
            samples.append(Sample(LEADER_METRIC, labels, 0.0))
        self._told_deposed = deposed
        return samples, [_LEADER_META]


class LeaderSeen:
    """``signalbox_leader_info{leader}`` for each collection pass of an ``agent`` on a
    PostgreSQL store: who holds the ``serve`` leader lease (nothing while nobody does)."""

    def __init__(self, db: Database) -> None:
        self.lease = Lease(db, LEASE_NAME, 1.0, holder="(an agent: never holds it)")
        self._seen: str | None = ""

    def flush(self, now_ms: int) -> tuple[list[Sample], list[MetricMeta]]:
        try:
            holder = self.lease.holder_now(now_ms)
        except Exception as e:  # the store is away: the pass itself says so
            log.debug("cannot read the leader lease: %s", e)
            return [], []
        leader = None if holder is None else instance_of(holder)
        if leader != self._seen:
            if leader is None and self._seen == "":  # the first look: nobody may have led yet
                log.info("no serve instance leads this store (yet)")
            elif leader is None:
                log.warning("no serve instance leads now (its lease expired or was released)")
            else:
                log.warning("serve instance %s leads", leader)
            self._seen = leader
        if leader is None:
            return [], [_INFO_META]
        return [Sample(LEADER_INFO_METRIC, (("leader", leader),), 1.0)], [_INFO_META]

    def ready_line(self) -> str:
        """Who leads, for the agent's ``/-/ready``, as of its last pass."""
        seen = self._seen
        if seen == "":
            return ""  # no pass yet
        return f"leader: {seen or 'none (an election is under way)'}\n"
