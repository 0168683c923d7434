"""The part every forwarder shares: a bounded queue of passes and a thread that sends them.

The collection pass only appends to the queue (:meth:`Forwarder.submit`: a lock, an append,
no I/O), so a peer that is down, refuses, or accepts and never reads costs it nothing. The
thread takes the oldest pass, encodes it once (off the collection thread) and hands it to
the transport, whose every socket operation has the configured timeout. A pass that fails
is tried again whole later (backing off from 1 s to 30 s), so a peer may see part of a pass
more than once; Graphite and gmond both keep the last value of a series at a time, so a
repeat changes nothing there.

Bounds: at most ``max_buffer`` samples wait (besides the pass being sent); a pass that
would go past it pushes the oldest waiting passes out, and their samples are counted as
dropped. Samples the peer's protocol cannot carry (a NaN, a line longer than the peer
reads) are skipped by the encoder and counted as dropped too, so that
``sent + dropped + waiting`` (and the pass being sent) is every sample ever submitted, and
after :meth:`Forwarder.close` ``sent + dropped`` is. Counters, per peer:
``signalbox_forward_sent_total``, ``signalbox_forward_dropped_total`` and the gauge
``signalbox_forward_buffered_samples``, stored by each collection pass (the forwarders are
a sample source).

The log says each episode once: the first failure (with what the peer said), the first
drop, and the recovery with what was dropped meanwhile -- not one line per pass.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from signalbox.durations import format_duration
from signalbox.metrics.forward.passes import CollectedPass
from signalbox.metrics.samples import MetricMeta, Sample

__all__ = ["SELF_METRICS", "Encoded", "Encoder", "Forwarder", "Transport"]

log = logging.getLogger("signalbox.forward")

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0

SELF_METRICS = [
    MetricMeta(
        "signalbox_forward_sent_total",
        "counter",
        "Samples handed to each forwarding peer (Graphite, Ganglia).",
    ),
    MetricMeta(
        "signalbox_forward_dropped_total",
        "counter",
        "Samples a forwarder gave up on: pushed out of its full buffer, or not expressible "
        "in the peer's protocol.",
    ),
    MetricMeta(
        "signalbox_forward_buffered_samples",
        "gauge",
        "Samples waiting for each forwarding peer.",
    ),
]


@dataclass(frozen=True, slots=True)
class Encoded:
    """A pass in the peer's protocol: ``chunks`` to send in order (lines joined into
    blocks, or one datagram each), ``sent`` samples they carry, ``skipped`` samples left
    out and one ``example`` of why."""

    chunks: list[bytes]
    sent: int
    skipped: int = 0
    example: str = ""


class Encoder(Protocol):
    """A peer's protocol: a pass in, what to send out (pure, run on the sending thread)."""

    def encode(self, p: CollectedPass) -> Encoded: ...

    def describe(self, metas: Iterable[MetricMeta]) -> None:
        """Metadata (types, units) the next encodings may use; called on the collection
        thread, so it only stores."""
        ...


class Transport(Protocol):
    """A connection to one peer; ``send`` raises OSError (a timeout included) on failure."""

    def send(self, chunks: Iterable[bytes]) -> None: ...

    def close(self) -> None: ...


class _Entry:
    __slots__ = ("encoded", "p")

    def __init__(self, p: CollectedPass) -> None:
        self.p = p
        self.encoded: Encoded | None = None


class Forwarder:
    """Sends each submitted pass to one peer from a thread of its own, within bounds."""

    def __init__(
        self,
        peer: str,
        address: str,
        transport: Transport,
        encoder: Encoder,
        *,
        max_buffer: int,
        interval_s: float = 0.0,
        timeout_s: float = 2.0,
        backoff_s: float = BACKOFF_FIRST_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.peer = peer
        self.address = address
        self.transport = transport
        self.encoder = encoder
        self.max_buffer = max_buffer
        self.interval_s = interval_s
        self.timeout_s = timeout_s  # the transport's: close() gives a last send its time
        self.backoff_s = backoff_s
        self.clock = clock
        self.sent = 0
        self.dropped = 0
        self.failures = 0  # sends that failed (each pass tried again until dropped)
        self._queue: collections.deque[_Entry] = collections.deque()
        self._waiting = 0  # samples in _queue
        self._cond = threading.Condition()
        self._stop = False
        self._failing_since: float | None = None
        self._dropped_at_failure = 0
        self._dropping = False
        self._said_skip = False
        self._said_too_big = False
        self._thread: threading.Thread | None = None

    # -- the collection thread's side: no I/O, no waiting ---------------------------------

    def submit(self, p: CollectedPass) -> None:
        """Queue ``p``; push out the oldest passes past ``max_buffer`` (counted)."""
        n = p.size
        if not n:
            return
        if n > self.max_buffer and not self._said_too_big:
            self._said_too_big = True
            log.warning(
                "%s forwarder: a pass of %d samples is more than max_buffer (%d): such passes "
                "are dropped whole; raise [forward.%s] max_buffer above a pass's samples",
                self.peer,
                n,
                self.max_buffer,
                self.peer,
            )
        with self._cond:
            if self._stop:
                self.dropped += n
                return
            self._queue.append(_Entry(p))
            self._waiting += n
            pushed = self._trim_locked()
            self._cond.notify()
        if pushed:
            self._said_dropping(pushed)

    def describe(self, metas: Iterable[MetricMeta]) -> None:
        self.encoder.describe(metas)

    @property
    def waiting(self) -> int:
        with self._cond:
            return self._waiting

    def flush(self, now_ms: int) -> tuple[list[Sample], list[MetricMeta]]:
        """The counters, as a sample source for the collection pass."""
        labels = (("peer", self.peer),)
        with self._cond:
            sent, dropped, waiting = self.sent, self.dropped, self._waiting
        return [
            Sample("signalbox_forward_sent_total", labels, float(sent), now_ms),
            Sample("signalbox_forward_dropped_total", labels, float(dropped), now_ms),
            Sample("signalbox_forward_buffered_samples", labels, float(waiting), now_ms),
        ], list(SELF_METRICS)

    # -- the sending thread --------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"signalbox-forward-{self.peer}", daemon=True
        )
        self._thread.start()

    def close(self, timeout_s: float | None = None) -> None:
        """Stop; what is not sent after ``timeout_s`` of trying (default: time for a connect
        and a send) is counted as dropped."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(2 * self.timeout_s + 0.5 if timeout_s is None else timeout_s)
        with self._cond:
            left = self._waiting
            self._queue.clear()
            self._waiting = 0
            self.dropped += left
        self.transport.close()
        if left:
            log.warning(
                "%s forwarder: stopped with %d sample(s) not sent to %s",
                self.peer,
                left,
                self.address,
            )

    def _trim_locked(self) -> int:
        pushed = 0
        while self._waiting > self.max_buffer and self._queue:
            old = self._queue.popleft()
            n = old.p.size
            self._waiting -= n
            self.dropped += n
            pushed += n
        return pushed

    def _run(self) -> None:
        """Send rounds: every ``interval_s`` (at once when 0) the passes queued then, oldest
        first, one at a time; a failure ends the round and backs off."""
        next_send = self.clock()
        backoff = self.backoff_s
        left = 0  # passes of the current round not yet taken
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if not self._queue:
                    return
                left = min(left, len(self._queue))  # some may have been pushed out
                if not left:
                    delay = next_send - self.clock()
                    if delay > 0 and not self._stop:  # the interval, or the backoff
                        self._cond.wait(delay)
                        continue
                    if self._stop and self._failing_since is not None:
                        return  # the peer is down: close() counts what is left
                    left = len(self._queue)
                entry = self._queue.popleft()
                self._waiting -= entry.p.size
                left -= 1
            try:
                if entry.encoded is None:
                    entry.encoded = self.encoder.encode(entry.p)
                self.transport.send(entry.encoded.chunks)
            except OSError as e:
                self._failed(entry, e)
                next_send = self.clock() + backoff
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                left = 0
                continue
            except Exception:  # a bug in an encoder: never a reason to stop forwarding
                log.exception("%s forwarder: could not encode a pass; dropped", self.peer)
                with self._cond:
                    self.dropped += entry.p.size
                continue
            backoff = self.backoff_s
            if not left:
                next_send = self.clock() + self.interval_s
            self._succeeded(entry.encoded)

    def _failed(self, entry: _Entry, e: OSError) -> None:
        """Put the pass back at the head (it is the oldest) and say so once per episode."""
        with self._cond:
            self.failures += 1
            if self._stop:  # close() has counted the queue: this one is dropped too
                self.dropped += entry.p.size
                return
            self._queue.appendleft(entry)
            self._waiting += entry.p.size
            pushed = self._trim_locked()
            first = self._failing_since is None
            if first:
                self._failing_since = self.clock()
                self._dropped_at_failure = self.dropped - pushed
            waiting = self._waiting
        if first:
            log.warning(
                "%s forwarder: cannot send to %s (%s); passes wait, up to %d samples "
                "(%d now), and are retried with backoff",
                self.peer,
                self.address,
                str(e) or type(e).__name__,
                self.max_buffer,
                waiting,
            )
        if pushed:
            self._said_dropping(pushed)

    def _succeeded(self, encoded: Encoded) -> None:
        with self._cond:
            self.sent += encoded.sent
            self.dropped += encoded.skipped
            since, self._failing_since = self._failing_since, None
            dropped = self.dropped - self._dropped_at_failure
            drained = not self._queue
            if drained:
                self._dropping = False
        if since is not None:
            log.warning(
                "%s forwarder: %s takes passes again after %s; %d sample(s) dropped meanwhile",
                self.peer,
                self.address,
                format_duration(max(1, round(self.clock() - since))),
                dropped,
            )
        if encoded.skipped and not self._said_skip:
            self._said_skip = True
            log.warning(
                "%s forwarder: %d sample(s) of a pass cannot be sent to %s and are counted "
                "as dropped (e.g. %s); said once",
                self.peer,
                encoded.skipped,
                self.address,
                encoded.example,
            )

    def _said_dropping(self, n: int) -> None:
        with self._cond:
            first = not self._dropping
            self._dropping = True
        if first:
            log.warning(
                "%s forwarder: buffer full (%d samples waiting for %s): dropped the oldest "
                "pass(es), %d sample(s); more may follow until it catches up",
                self.peer,
                self.max_buffer,
                self.address,
                n,
            )
