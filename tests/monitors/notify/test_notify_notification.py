"""The Notification record, its JSON payload and the shared text forms."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify import (
    Notification,
    NotifyError,
    fingerprint_of,
    text_body,
    title,
    to_json,
    to_payload,
)
from tests.monitors.notify.notify_helpers import T0, MakeNotification


def test_payload_carries_every_field_of_the_notification(notification: MakeNotification) -> None:
    n = notification(ends_at=T0 + 600, silenced=True, suppressed_by="silence:42", repeat_s=3600.0)
    payload = to_payload(n)
    field_names = {f.name for f in dataclasses.fields(Notification)}
    assert field_names <= set(payload)
    assert payload == {
        "version": 1,
        "id": "n-0001",
        "fingerprint": n.fingerprint,
        "kind": "firing",
        "drill": False,
        "monitor": "image_processing_slow",
        "state": "CRITICAL",
        "previous_state": "OK",
        "title": "[CRITICAL] image_processing_slow{shard=7}: resize p95 is 9.2s (> 8)",
        "summary": "resize p95 is 9.2s (> 8)",
        "description": "Resizes slower than users tolerate.",
        "owner": "photos",
        "runbook": "https://wiki.example/runbooks/resize",
        "labels": {"shard": "7"},
        "value": 9.2,
        "started_at": "2023-11-14T22:13:20.000Z",
        "ends_at": "2023-11-14T22:23:20.000Z",
        "created_at": "2023-11-14T22:16:20.000Z",
        "silenced": True,
        "suppressed_by": "silence:42",
        "repeat_s": 3600.0,
        "generator_url": "",
    }


@pytest.mark.parametrize(
    ("value", "shown"), [(math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (None, None)]
)
def test_json_is_strict_even_for_values_that_are_not_finite(
    notification: MakeNotification, value: float | None, shown: str | None
) -> None:
    assert json.loads(to_json(notification(value=value)))["value"] == shown


def test_fingerprint_is_stable_per_alert_and_independent_of_label_order(
    notification: MakeNotification,
) -> None:
    a = notification(labels=(("a", "1"), ("b", "2")), id="x")
    b = notification(labels=(("b", "2"), ("a", "1")), id="y", kind="resolved", state=State.OK)
    assert (
        a.fingerprint
        == b.fingerprint
        == fingerprint_of("image_processing_slow", (("a", "1"), ("b", "2")))
    )
    assert a.labels == (("a", "1"), ("b", "2"))
    assert notification(labels=(("a", "2"),)).fingerprint != a.fingerprint


def test_a_drill_never_shares_the_fingerprint_of_the_real_alert(
    notification: MakeNotification,
) -> None:
    assert notification(kind="drill").fingerprint != notification().fingerprint


def test_each_notification_gets_its_own_id_unless_given(notification: MakeNotification) -> None:
    fields = {f.name: getattr(notification(), f.name) for f in dataclasses.fields(Notification)}
    del fields["id"]
    assert Notification(**fields).id != Notification(**fields).id


def test_unknown_kind_is_refused(notification: MakeNotification) -> None:
    with pytest.raises(ValueError, match="notification kind 'page'"):
        notification(kind="page")


def test_state_spelled_as_text_becomes_the_enum(notification: MakeNotification) -> None:
    assert notification(state="WARNING").state is State.WARNING


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "[CRITICAL] image_processing_slow{shard=7}: resize p95 is 9.2s (> 8)"),
        (
            {"kind": "resolved", "state": State.OK, "summary": "back to 2s"},
            "[RESOLVED] image_processing_slow{shard=7}: back to 2s",
        ),
        (
            {"kind": "repeat", "labels": ()},
            "[CRITICAL] image_processing_slow: resize p95 is 9.2s (> 8) (still firing)",
        ),
        ({"kind": "drill", "summary": ""}, "[TEST] [CRITICAL] image_processing_slow{shard=7}"),
        ({"summary": "two\nlines"}, "[CRITICAL] image_processing_slow{shard=7}: two lines"),
    ],
)
def test_title_says_state_and_monitor_on_one_line(
    notification: MakeNotification, overrides: dict[str, object], expected: str
) -> None:
    assert title(notification(**overrides)) == expected


def test_text_body_has_what_on_call_needs(notification: MakeNotification) -> None:
    body = text_body(notification())
    for needle in (
        "CRITICAL (was OK)",
        "9.2",
        "shard=7",
        "photos",
        "https://wiki.example/runbooks/resize",
        "2023-11-14T22:13:20.000Z",
        "Resizes slower than users tolerate.",
        "n-0001",
    ):
        assert needle in body
    assert "TEST" not in body


def test_text_body_of_a_drill_opens_with_test(notification: MakeNotification) -> None:
    assert text_body(notification(kind="drill")).startswith("THIS IS A TEST")


def test_notify_error_names_notifier_and_retry_verdict() -> None:
    e = NotifyError("ops", "POST http://x answered HTTP 500", True)
    assert (e.notifier_name, e.reason, e.retryable) == (
        "ops",
        "POST http://x answered HTTP 500",
        True,
    )
    assert str(e) == "notifier 'ops': POST http://x answered HTTP 500 (will retry)"


@pytest.mark.parametrize("field", ["started_at", "created_at", "ends_at"])
def test_times_that_are_not_epoch_seconds_are_refused(
    notification: MakeNotification, field: str
) -> None:
    with pytest.raises(ValueError, match=f"notification {field} nan"):
        notification(**{field: math.nan})
