"""How an outbox row is stored: the notification as lossless JSON, and the row read back.

The payload keeps every field of a :class:`Notification`, including values JSON has no
number for (NaN and the infinities travel as ``"NaN"``, ``"+Inf"``, ``"-Inf"``), so a
notification is sent exactly as it was made however long it waits; the statements that use
:data:`COLS` live in :mod:`signalbox.monitors.outbox.store`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec

from signalbox.metrics.labelcodec import decode_labels
from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify.notification import Notification
from signalbox.monitors.outbox.delivery import OutboxEntry

__all__ = ["COLS", "decode_notification", "encode_notification", "entry_from_row"]


def _float_out(v: float | None) -> Any:
    if v is None or math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")


def _float_in(v: Any) -> float | None:
    return None if v is None else float(v.replace("Inf", "inf") if isinstance(v, str) else v)


def encode_notification(n: Notification) -> str:
    """JSON text that :func:`decode_notification` turns back into an equal Notification."""
    return msgspec.json.encode(
        {
            "monitor": n.monitor,
            "state": n.state.value,
            "previous_state": n.previous_state.value,
            "kind": n.kind,
            "summary": n.summary,
            "started_at": n.started_at,
            "created_at": n.created_at,
            "description": n.description,
            "owner": n.owner,
            "runbook": n.runbook,
            "labels": [list(p) for p in n.labels],
            "value": _float_out(n.value),
            "ends_at": n.ends_at,
            "silenced": n.silenced,
            "suppressed_by": n.suppressed_by,
            "repeat_s": n.repeat_s,
            "generator_url": n.generator_url,
            "fingerprint": n.fingerprint,
            "id": n.id,
        }
    ).decode()


def decode_notification(text: str) -> Notification:
    d = msgspec.json.decode(text)
    d["labels"] = tuple((k, v) for k, v in d["labels"])
    d["value"] = _float_in(d["value"])
    d["state"], d["previous_state"] = State(d["state"]), State(d["previous_state"])
    return Notification(**d)


COLS = "seq, id, notifier, payload, status, attempts, created_ms, next_attempt_ms, last_error, done_ms, labels"


def entry_from_row(row: Sequence[Any]) -> OutboxEntry:
    seq, id_, notifier, payload, status, attempts, created, next_at, error, done, labels = row
    return OutboxEntry(
        id_,
        notifier,
        decode_notification(payload),
        status,
        int(attempts),
        int(created),
        int(next_at),
        error,
        None if done is None else int(done),
        int(seq),
        decode_labels(labels),
    )
