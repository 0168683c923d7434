"""The durable outbox: retries with backoff, dead letters, ordering, claims and the crash window.

The backoff schedule and the claim are the storage layer's: tests/storage/test_backoff.py and
tests/storage/test_claim.py pin them; here they are held to what the outbox promises.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify import Notification, NotifyError, WebhookNotifier
from signalbox.monitors.outbox.rows import decode_notification, encode_notification
from signalbox.monitors.outbox.store import Outbox
from signalbox.storage import Database, open_database
from tests.monitors.notify.notify_helpers import Receiver, make_notification, receiver

__all__ = ["receiver"]  # the real HTTP receiver fixture

T0 = 1_700_000_000_000


def _outbox(db: Database, **kw: float) -> Outbox:
    return Outbox(db, rng=random.Random(7), **kw)  # type: ignore[arg-type]


class Recorder:
    """A notifier that keeps what it was given, failing as told."""

    def __init__(self, fail: list[NotifyError] | None = None) -> None:
        self.sent: list[Notification] = []
        self.fail = fail or []

    def send(self, n: Notification) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.sent.append(n)


values = st.none() | st.floats(allow_nan=True, allow_infinity=True)


@given(
    value=values,
    labels=st.dictionaries(st.text(min_size=1), st.text(), max_size=3),
    summary=st.text(),
)
def test_a_notification_survives_the_outbox_payload_unchanged(
    value: float | None, labels: dict[str, str], summary: str
) -> None:
    n = make_notification(
        value=value, labels=tuple(labels.items()), summary=summary, ends_at=1.5, repeat_s=60.0
    )
    back = decode_notification(encode_notification(n))
    if value is not None and math.isnan(value):  # NaN != NaN: compare everything else
        assert back.value is not None and math.isnan(back.value)
        n, back = replace(n, value=0.0), replace(back, value=0.0)
    assert back == n


def test_a_sent_entry_reaches_a_real_webhook_with_its_id_as_idempotency_key(
    db: Database, receiver: Receiver
) -> None:
    box = _outbox(db)
    n = make_notification(id="abc123")
    box.enqueue("hook", n, T0)
    report = box.deliver_due(T0, {"hook": WebhookNotifier("hook", receiver.url)})
    assert report.sent == 1
    (req,) = receiver.requests
    assert req.headers["Idempotency-Key"] == "abc123" and json.loads(req.body)["id"] == "abc123"
    (e,) = box.entries()
    assert (e.status, e.attempts, e.done_ms) == ("sent", 1, T0)
    assert (
        box.deliver_due(T0 + 60_000, {"hook": WebhookNotifier("hook", receiver.url)}).deliveries
        == []
    )


def test_a_5xx_is_retried_with_growing_backoff_until_the_receiver_answers(
    db: Database, receiver: Receiver
) -> None:
    box = _outbox(db, base_delay_s=10, max_delay_s=600)
    box.enqueue("hook", make_notification(), T0)
    hook = {"hook": WebhookNotifier("hook", receiver.url)}
    receiver.status = 500
    now, delays = T0, []
    for _ in range(3):
        (d,) = box.deliver_due(now, hook).deliveries
        assert d.outcome == "retry" and "HTTP 500" in d.error
        assert d.next_attempt_ms is not None
        assert box.deliver_due(d.next_attempt_ms - 1, hook).deliveries == []  # not due yet
        delays.append(d.next_attempt_ms - now)
        now = d.next_attempt_ms
    assert (
        5_000 <= delays[0] <= 10_000
        and 10_000 <= delays[1] <= 20_000
        and 20_000 <= delays[2] <= 40_000
    )
    receiver.status = 200
    assert box.deliver_due(now, hook).sent == 1
    assert (
        len(receiver.requests) == 4
        and len({json.loads(r.body)["id"] for r in receiver.requests}) == 1
    )
    (e,) = box.entries()
    assert (e.status, e.attempts, e.last_error) == ("sent", 4, "")


def test_a_non_retryable_error_is_dead_at_once_and_logged(
    db: Database, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    box = _outbox(db)
    box.enqueue("hook", make_notification(monitor="bad_one"), T0)
    receiver.status, receiver.reply = 400, b"no such channel"
    with caplog.at_level(logging.ERROR, logger="signalbox.monitors.outbox.store"):
        (d,) = box.deliver_due(T0, {"hook": WebhookNotifier("hook", receiver.url)}).deliveries
    assert d.outcome == "dead" and "no such channel" in d.error
    assert [e.status for e in box.entries()] == ["dead"]
    (rec,) = caplog.records
    assert (
        "DEAD" in rec.getMessage()
        and "bad_one" in rec.getMessage()
        and "no such channel" in rec.getMessage()
    )


def test_an_entry_older_than_max_age_is_dead_at_its_next_failure(db: Database) -> None:
    box = _outbox(db, max_age_s=3600)
    box.enqueue("r", make_notification(), T0)
    r = Recorder([NotifyError("r", "down", True), NotifyError("r", "still down", True)])
    assert box.deliver_due(T0, {"r": r}).deliveries[0].outcome == "retry"
    (d,) = box.deliver_due(T0 + 3_600_000, {"r": r}).deliveries
    assert d.outcome == "dead" and d.error.startswith(
        "gave up after 2 attempts over 1h: still down"
    )


def test_an_entry_for_a_notifier_no_longer_configured_is_dead_with_the_reason(db: Database) -> None:
    box = _outbox(db)
    box.enqueue("gone", make_notification(), T0)
    (d,) = box.deliver_due(T0, {}).deliveries
    assert d.outcome == "dead" and "'gone' is not configured" in d.error


def test_a_notifier_bug_keeps_the_entry_for_a_retry(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    class Buggy:
        def send(self, n: Notification) -> None:
            raise KeyError("oops")

    box = _outbox(db)
    box.enqueue("b", make_notification(), T0)
    with caplog.at_level(logging.ERROR):
        (d,) = box.deliver_due(T0, {"b": Buggy()}).deliveries
    assert d.outcome == "retry" and "KeyError" in d.error


def test_a_resolved_never_overtakes_the_firing_it_resolves(db: Database) -> None:
    box = _outbox(db)
    firing = make_notification(id="f")
    resolved = make_notification(
        id="r", kind="resolved", state=State.OK, previous_state=State.CRITICAL
    )
    other = make_notification(id="o", monitor="other")
    for n in (firing, resolved, other):
        box.enqueue("r", n, T0)
    r = Recorder([NotifyError("r", "down", True)])
    report = box.deliver_due(T0, {"r": r})
    assert [(d.entry.id, d.outcome) for d in report.deliveries] == [("f", "retry"), ("o", "sent")]
    later = report.deliveries[0].next_attempt_ms
    assert later is not None
    assert box.deliver_due(later, {"r": r}).sent == 2  # firing, then resolved, in one round
    assert [n.id for n in r.sent] == ["o", "f", "r"]


def test_an_entry_claimed_by_one_process_is_not_sent_by_another(db: Database) -> None:
    other_db = open_database(db.url)
    mine, theirs = _outbox(db), _outbox(other_db)
    mine.enqueue("r", make_notification(), T0)
    seen_by_other: list[int] = []

    class Racing:
        def send(self, n: Notification) -> None:  # while we send, the other process runs a round
            seen_by_other.append(len(theirs.deliver_due(T0, {"r": Recorder()}).deliveries))

    assert mine.deliver_due(T0, {"r": Racing()}).sent == 1
    assert seen_by_other == [0]
    other_db.close()


class Crash(BaseException):
    """The process dies mid-send (not an error a notifier would raise)."""


def test_a_crash_after_sending_resends_once_the_lease_expires_with_the_same_id(
    db: Database,
) -> None:
    box = _outbox(db, lease_s=120)
    box.enqueue("r", make_notification(id="same"), T0)

    class DiesAfterSending(Recorder):
        def send(self, n: Notification) -> None:
            super().send(n)
            raise Crash

    dying = DiesAfterSending()
    with pytest.raises(Crash):
        box.deliver_due(T0, {"r": dying})
    restarted, r = _outbox(db), Recorder()
    assert restarted.deliver_due(T0 + 119_999, {"r": r}).deliveries == []  # lease still held
    assert restarted.deliver_due(T0 + 120_000, {"r": r}).sent == 1
    assert [n.id for n in dying.sent + r.sent] == [
        "same",
        "same",
    ]  # the documented at-least-once window


def test_purge_drops_old_sent_and_dead_entries_only(db: Database) -> None:
    box = _outbox(db)
    for i in range(3):
        box.enqueue("r", make_notification(id=f"n{i}", monitor=f"m{i}"), T0)
    box.deliver_due(T0, {"r": Recorder([NotifyError("r", "bad", False)])})  # n0 dead, n1 n2 sent
    box.enqueue("r", make_notification(id="fresh", monitor="m9"), T0 + 8 * 86400_000)
    assert box.purge(T0 + 8 * 86400_000) == 2
    assert sorted(e.id for e in box.entries()) == ["fresh", "n0"]
    assert box.purge(T0 + 31 * 86400_000) == 1


def test_latest_names_the_newest_real_entry_per_series(db: Database) -> None:
    box = _outbox(db)
    box.enqueue("r", make_notification(id="a"), T0, series=(("shard", "7"),))
    box.enqueue("r", make_notification(id="b", kind="repeat"), T0 + 1, series=(("shard", "7"),))
    box.enqueue("r", make_notification(id="d", kind="drill"), T0 + 2, series=())
    latest = box.latest()
    assert list(latest) == [("image_processing_slow", (("shard", "7"),))]
    assert latest[("image_processing_slow", (("shard", "7"),))].id == "b"
