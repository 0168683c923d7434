"""Webhook notifier against a real HTTP server."""

from __future__ import annotations

import base64
import json

import pytest

from signalbox.monitors.notify import NotifyError, WebhookNotifier, build_notifier, to_payload
from tests.monitors.notify.notify_helpers import MakeNotification, Receiver


def test_posts_the_documented_json_payload_with_an_idempotency_key(
    receiver: Receiver, notification: MakeNotification
) -> None:
    n = notification()
    WebhookNotifier("ops", receiver.url + "/hooks/abc").send(n)
    (req,) = receiver.requests
    assert (req.method, req.path) == ("POST", "/hooks/abc")
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Idempotency-Key"] == "n-0001"
    assert json.loads(req.body) == to_payload(n)


def test_a_drill_is_marked_in_the_payload(
    receiver: Receiver, notification: MakeNotification
) -> None:
    WebhookNotifier("ops", receiver.url).send(notification(kind="drill"))
    body = json.loads(receiver.requests[0].body)
    assert body["drill"] is True and body["title"].startswith("[TEST] ")


def test_configured_headers_and_headers_from_env_are_sent(
    receiver: Receiver, notification: MakeNotification
) -> None:
    cfg = {
        "type": "webhook",
        "url": receiver.url,
        "headers": {"X-Team": "photos"},
        "headers_from_env": {"Authorization": "HOOK_AUTH"},
    }
    hook = build_notifier("ops", cfg, environ={"HOOK_AUTH": "Bearer s3cret"})
    hook.send(notification())
    headers = receiver.requests[0].headers
    assert (headers["X-Team"], headers["Authorization"]) == ("photos", "Bearer s3cret")
    assert "s3cret" not in repr(hook)


def test_userinfo_in_the_url_becomes_basic_auth(
    receiver: Receiver, notification: MakeNotification
) -> None:
    url = receiver.url.replace("http://", "http://bot:p%40ss@")
    WebhookNotifier("ops", url).send(notification())
    expected = "Basic " + base64.b64encode(b"bot:p@ss").decode()
    assert receiver.requests[0].headers["Authorization"] == expected


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (429, True), (408, True), (400, False), (404, False), (410, False)],
)
def test_non_2xx_is_an_error_retryable_only_when_the_receiver_may_recover(
    receiver: Receiver, notification: MakeNotification, status: int, retryable: bool
) -> None:
    receiver.status, receiver.reply = status, b'{"error": "nope"}'
    with pytest.raises(NotifyError) as info:
        WebhookNotifier("ops", receiver.url + "/t0ken").send(notification())
    e = info.value
    assert (e.notifier_name, e.retryable) == ("ops", retryable)
    assert f"answered HTTP {status}" in e.reason and '{"error": "nope"}' in e.reason
    assert "t0ken" not in str(e)  # paths often hold tokens: shown as /...


def test_secret_header_values_never_appear_in_errors(
    receiver: Receiver, notification: MakeNotification
) -> None:
    receiver.status, receiver.reply = 401, b"unauthorized"
    hook = WebhookNotifier("ops", receiver.url, headers={"Authorization": "Bearer s3cret"})
    with pytest.raises(NotifyError) as info:
        hook.send(notification())
    assert "s3cret" not in str(info.value) and "s3cret" not in repr(hook)
    assert info.value.retryable is False


def test_a_redirect_is_not_followed_and_says_to_configure_the_final_url(
    receiver: Receiver, notification: MakeNotification
) -> None:
    receiver.status, receiver.reply_headers = 301, {"Location": "https://elsewhere.example/new"}
    with pytest.raises(
        NotifyError, match=r"redirect to https://elsewhere.example/\.\.\.; configure the final URL"
    ) as info:
        WebhookNotifier("ops", receiver.url).send(notification())
    assert info.value.retryable is False
    assert len(receiver.requests) == 1


def test_connection_refused_is_retryable(closed_port: int, notification: MakeNotification) -> None:
    with pytest.raises(NotifyError, match="connection refused") as info:
        WebhookNotifier("ops", f"http://127.0.0.1:{closed_port}/").send(notification())
    assert info.value.retryable is True


def test_a_receiver_that_does_not_answer_times_out_retryably(
    receiver: Receiver, notification: MakeNotification
) -> None:
    receiver.hang = True
    with pytest.raises(NotifyError, match="timed out") as info:
        WebhookNotifier("ops", receiver.url, timeout_s=0.2).send(notification())
    assert info.value.retryable is True
