"""The pure part of access control: roles, token format, what counts as loopback."""

from __future__ import annotations

import pytest

from signalbox.exceptions import UsageError
from signalbox.oneline import check_line
from signalbox.server.auth import check_bind
from signalbox.server.auth.roles import (
    Caller,
    Role,
    hash_token,
    is_loopback_address,
    is_loopback_host,
    looks_like_token,
    new_token,
)


def test_roles_are_ordered_and_parsed_by_name() -> None:
    assert Role.READ < Role.OPERATE < Role.ADMIN
    assert Role.parse("Operate") is Role.OPERATE and Role.OPERATE.label == "operate"
    assert Role.OPERATE.at_least() == "operate or admin"
    with pytest.raises(ValueError, match="expected one of read, operate, admin"):
        Role.parse("root")


def test_tokens_are_prefixed_random_and_hashed() -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith("sbx_") and len(a) == 47
    assert looks_like_token(a) and not looks_like_token(a[4:])
    assert not looks_like_token("sbx_" + "x" * 200) and not looks_like_token("sbx_é")
    assert hash_token(a) != hash_token(b) and len(hash_token(a)) == 64


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", False),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("testclient", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_peers(address: str | None, loopback: bool) -> None:
    assert is_loopback_address(address) is loopback


def test_loopback_binds() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]"):
        assert is_loopback_host(host), host
        check_bind(host, 8910, reads_need_token=False)
    for host in ("0.0.0.0", "::", "192.168.1.5", "myhost.example"):
        assert not is_loopback_host(host), host
        with pytest.raises(UsageError, match="refusing to serve"):
            check_bind(host, 8910, reads_need_token=False)
        check_bind(host, 8910, reads_need_token=True)


def test_callers_are_named_for_the_audit_trail() -> None:
    assert Caller(Role.OPERATE, 3, "grafana").who == "grafana (token #3)"
    assert Caller(Role.READ).who == "loopback" and Caller(None).who == "anonymous"


@pytest.mark.parametrize(
    "text",
    [
        "a\nb",
        "a\rb",
        "\x1b[2J",
        "tab\there",
        "rtl \u202e override",
        "nul\x00",
        "a\u2028b",
        "a\u2029b",
    ],
)
def test_one_line_refuses_control_characters(text: str) -> None:
    with pytest.raises(UsageError, match="reason: character U"):
        check_line(text, "reason", max_chars=100)


def test_one_line_keeps_printable_text_as_given() -> None:
    text = '<b>ok</b> & "quoted" \u00a0 🔥 \u200d'
    assert check_line(f"  {text} ", "reason", max_chars=100) == text
    with pytest.raises(UsageError, match="reason: must not be empty"):
        check_line("  ", "reason", max_chars=10)
    assert check_line("", "reason", max_chars=10, required=False) == ""
