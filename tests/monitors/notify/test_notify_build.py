"""build_notifier: signalbox.toml tables -> notifiers, with errors naming file, key and value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from signalbox.exceptions import ConfigError
from signalbox.monitors.notify import (
    AlertmanagerNotifier,
    CommandNotifier,
    EmailNotifier,
    LogNotifier,
    WebhookNotifier,
    build_notifier,
)

ENV = {"SMTP_PASSWORD": "pw", "HOOK_AUTH": "Bearer tok"}


@pytest.mark.parametrize(
    ("cfg", "cls"),
    [
        ({"type": "webhook", "url": "https://hooks.example/x", "timeout": "5s"}, WebhookNotifier),
        (
            {"type": "alertmanager", "url": "http://am:9093", "generator_url": "http://sb:8910/"},
            AlertmanagerNotifier,
        ),
        ({"type": "command", "command": ["/bin/true"], "timeout": 3}, CommandNotifier),
        (
            {"type": "email", "from": "sb@example.com", "to": ["a@example.com"], "starttls": True},
            EmailNotifier,
        ),
        ({"type": "log"}, LogNotifier),
    ],
)
def test_each_type_builds_from_its_table(cfg: dict[str, Any], cls: type) -> None:
    assert isinstance(build_notifier("n", cfg, environ=ENV), cls)


def test_settings_reach_the_notifier() -> None:
    cfg = {
        "type": "email",
        "from": "sb@example.com",
        "to": ["a@example.com"],
        "host": "smtp.example.com",
        "starttls": True,
        "username": "bot",
        "password_env": "SMTP_PASSWORD",
        "timeout": "1m",
    }
    mailer = build_notifier("n", cfg, environ=ENV)
    assert isinstance(mailer, EmailNotifier)
    assert (mailer.host, mailer.port, mailer.starttls, mailer.username, mailer.timeout_s) == (
        "smtp.example.com",
        587,
        True,
        "bot",
        60.0,
    )
    assert "pw" not in repr(mailer)


@pytest.mark.parametrize(
    ("cfg", "key", "expected"),
    [
        ({}, "notifiers.ops.type", "a notifier type: webhook, alertmanager, command, email, log"),
        ({"type": "pager"}, "notifiers.ops.type", "a notifier type"),
        ({"type": "webhook"}, "notifiers.ops.url", "required"),
        ({"type": "webhook", "url": "ftp://x/"}, "notifiers.ops.url", "an http:// or https:// URL"),
        (
            {"type": "webhook", "url": "http://x/", "tiemout": "5s"},
            "notifiers.ops.tiemout",
            "a known setting",
        ),
        (
            {"type": "webhook", "url": "http://x/", "timeout": "soon"},
            "notifiers.ops.timeout",
            "a duration",
        ),
        (
            {"type": "webhook", "url": "http://x/", "timeout": 0},
            "notifiers.ops.timeout",
            "a positive duration",
        ),
        (
            {"type": "webhook", "url": "http://x/", "headers": {"X": 1}},
            "notifiers.ops.headers",
            "a table of string values",
        ),
        (
            {"type": "webhook", "url": "http://x/", "headers": {"Bad Name": "v"}},
            "notifiers.ops.headers.Bad Name",
            "header name",
        ),
        (
            {"type": "webhook", "url": "http://x/", "headers": {"X": "a\nb"}},
            "notifiers.ops.headers.X",
            "on one line",
        ),
        (
            {"type": "webhook", "url": "http://x/", "headers_from_env": {"Authorization": "NOPE"}},
            "notifiers.ops.headers_from_env.Authorization",
            "environment variable that is set",
        ),
        (
            {"type": "alertmanager", "url": "http://am/", "generator_url": "dashboard"},
            "notifiers.ops.generator_url",
            "URL",
        ),
        ({"type": "command"}, "notifiers.ops.command", "required"),
        ({"type": "command", "command": []}, "notifiers.ops.command", "non-empty list"),
        ({"type": "command", "command": "'unclosed"}, "notifiers.ops.command", "splits into words"),
        ({"type": "email", "to": ["a@example.com"]}, "notifiers.ops.from", "required"),
        ({"type": "email", "from": "sb@example.com"}, "notifiers.ops.to", "required"),
        (
            {"type": "email", "from": "nobody", "to": ["a@example.com"]},
            "notifiers.ops.from",
            "an email address",
        ),
        (
            {"type": "email", "from": "sb@example.com", "to": "a@example.com"},
            "notifiers.ops.to",
            "list",
        ),
        (
            {"type": "email", "from": "sb@example.com", "to": ["a@example.com"], "port": 70000},
            "notifiers.ops.port",
            "1 to 65535",
        ),
        (
            {
                "type": "email",
                "from": "sb@example.com",
                "to": ["a@example.com"],
                "ssl": True,
                "starttls": True,
            },
            "notifiers.ops.starttls",
            "choose one",
        ),
        (
            {
                "type": "email",
                "from": "sb@example.com",
                "to": ["a@example.com"],
                "password": "clear",
            },
            "notifiers.ops.password",
            "a known setting",
        ),
        (
            {
                "type": "email",
                "from": "sb@example.com",
                "to": ["a@example.com"],
                "starttls": True,
                "username": "bot",
                "password_env": "MISSING",
            },
            "notifiers.ops.password_env",
            "environment variable that is set",
        ),
        (
            {
                "type": "email",
                "from": "sb@example.com",
                "to": ["a@example.com"],
                "username": "bot",
                "starttls": True,
            },
            "notifiers.ops.password_env",
            "password",
        ),
        (
            {
                "type": "email",
                "from": "sb@example.com",
                "to": ["a@example.com"],
                "host": "smtp.example.com",
                "username": "bot",
                "password_env": "SMTP_PASSWORD",
            },
            "notifiers.ops.username",
            "never sent in clear",
        ),
        (
            {
                "type": "email",
                "from": "sb@example.com",
                "to": ["a@example.com"],
                "ca_file": "/nonexistent.pem",
            },
            "notifiers.ops.ca_file",
            "an existing PEM file",
        ),
        ({"type": "log", "level": "loud"}, "notifiers.ops.level", "one of debug, info"),
    ],
)
def test_bad_tables_are_refused_naming_file_key_and_expectation(
    cfg: dict[str, Any], key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_notifier("ops", cfg, file="/etc/signalbox.toml", environ=ENV)
    e = info.value
    assert (e.file, e.key) == ("/etc/signalbox.toml", key)
    assert expected in e.expected


def test_a_refused_url_is_shown_without_its_secret_path() -> None:
    with pytest.raises(ConfigError) as info:
        build_notifier("ops", {"type": "webhook", "url": "ftp://hooks.example/T0/SECRET"})
    assert "SECRET" not in str(info.value)


def test_a_refused_header_value_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        build_notifier(
            "ops",
            {
                "type": "webhook",
                "url": "http://x/",
                "headers": {"Authorization": "Bearer s3cret\n"},
            },
        )
    assert "s3cret" not in str(info.value)


def test_a_ca_file_that_exists_is_accepted(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = {
        "type": "email",
        "from": "sb@example.com",
        "to": ["a@example.com"],
        "ssl": True,
        "ca_file": str(ca),
    }
    mailer = build_notifier("ops", cfg)
    assert isinstance(mailer, EmailNotifier) and (mailer.port, mailer.ca_file) == (465, str(ca))
