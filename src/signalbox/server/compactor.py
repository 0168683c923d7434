"""Which ``agent`` compacts a shared PostgreSQL store: rollups and retention must run
somewhere even where no ``serve`` instance runs (an agents-only install), and once, not by
every agent.

The rule, at each compaction turn of each agent (every minute):

* a live ``serve`` leader (the ``serve:leader`` lease held, :mod:`signalbox.storage.leader`)
  compacts: the agent leaves it alone, whatever else holds;
* otherwise the agents elect one among themselves through a lease of their own,
  ``agent:compactor`` (TTL :data:`COMPACTOR_TTL_S`): the agent that holds it (or takes it,
  free or expired) compacts and renews it by doing so; the others skip their turn.

An agent that stops cleanly releases the lease and another takes it at its next turn; one
that dies is replaced once its lease expires (three turns). Compaction itself runs one
process at a time per store anyway (``Database.exclusive("compact")``) and builds each
bucket once (each tier's watermark), so the lease only saves the others' useless turns and
the race at the edges (a ``serve`` leader appearing while an agent compacts) is harmless.

Each change of the decision is logged once, so an operator reading one agent's log knows
who compacts.
"""

from __future__ import annotations

import logging
import os
import uuid

from signalbox.clock import Clock
from signalbox.storage.database import Database
from signalbox.storage.leader import LEASE_NAME, instance_of
from signalbox.storage.lease import Lease

__all__ = ["COMPACTOR_LEASE", "COMPACTOR_TTL_S", "AgentCompactor"]

log = logging.getLogger("signalbox.compact")

COMPACTOR_LEASE = "agent:compactor"
COMPACTOR_TTL_S = 180.0
"""Three compaction turns: a dead compacting agent is replaced within four minutes."""


class AgentCompactor:
    """One agent's say in who compacts (see the module docstring).

    Args:
        db: the shared PostgreSQL store.
        host: the agent's ``host``, how the log names it to operators.
    """

    def __init__(
        self,
        db: Database,
        host: str,
        *,
        ttl_s: float = COMPACTOR_TTL_S,
        clock: Clock | None = None,
    ) -> None:
        self.host = host
        self.serve = Lease(db, LEASE_NAME, 1.0, holder="(an agent: never holds it)", clock=clock)
        token = f"{host}/{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.lease = Lease(db, COMPACTOR_LEASE, ttl_s, holder=token, clock=clock)
        self._said: str | None = None
        self._holding = False

    def turn(self) -> bool:
        """Whether this agent compacts now (it then holds the lease for another TTL)."""
        leader = self.serve.holder_now()
        if leader is not None:
            if self._holding:  # let a later agent take over at once when serve goes
                self.lease.release()
                self._holding = False
            self._say(f"compaction is left to serve instance {instance_of(leader)}, which leads")
            return False
        self._holding = self.lease.acquire()
        if self._holding:
            self._say(f"this agent ({self.host}) compacts this store: no serve instance leads")
            return True
        holder = self.lease.holder_now()
        who = "another agent" if holder is None else f"agent {instance_of(holder)}"
        self._say(f"compaction is left to {who}: no serve instance leads")
        return False

    def stop(self) -> None:
        """Give the lease up (if held), so another agent compacts from its next turn."""
        if self._holding:
            self.lease.release()
            self._holding = False

    def _say(self, what: str) -> None:
        if what != self._said:
            log.warning("%s", what)
            self._said = what
