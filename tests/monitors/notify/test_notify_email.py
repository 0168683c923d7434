"""Email notifier against a real SMTP server (aiosmtpd), with and without TLS and AUTH."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from signalbox.monitors.definitions.model import State
from signalbox.monitors.notify import EmailNotifier, NotifyError, build_notifier
from tests.monitors.notify.notify_helpers import MakeNotification, free_port


@dataclass
class Mailbox:
    """What the SMTP server accepted; ``refuse`` lists recipients it answers 550 for."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"bot",
            b"s3cret",
        )
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@dataclass
class Server:
    port: int
    mailbox: Mailbox


@contextmanager
def running(mailbox: Mailbox, **smtp_kwargs: Any) -> Iterator[int]:
    """An aiosmtpd server on a free port; its event loop is ours to close (aiosmtpd leaves it open)."""
    loop = asyncio.new_event_loop()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), loop=loop, **smtp_kwargs
    )
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()
        loop.close()


@pytest.fixture
def smtp_server() -> Iterator[Server]:
    mailbox = Mailbox()
    with running(mailbox) as port:
        yield Server(port, mailbox)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made by the real openssl tool."""
    work = tmp_path_factory.mktemp("tls")
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certificate)
    return ctx


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[Server]:
    mailbox = Mailbox()
    with running(
        mailbox,
        tls_context=_server_context(certificate),
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=mailbox.authenticate,
    ) as port:
        yield Server(port, mailbox)


def test_sends_a_plain_text_mail_with_everything_on_call_needs(
    smtp_server: Server, notification: MakeNotification
) -> None:
    n = notification()
    EmailNotifier(
        "mail",
        from_addr="signalbox@example.com",
        to=["oncall@example.com", "lead@example.com"],
        host="127.0.0.1",
        port=smtp_server.port,
    ).send(n)
    ((sender, recipients, msg),) = smtp_server.mailbox.messages
    assert (sender, recipients) == (
        "signalbox@example.com",
        ["oncall@example.com", "lead@example.com"],
    )
    assert msg["Subject"] == "[CRITICAL] image_processing_slow{shard=7}: resize p95 is 9.2s (> 8)"
    assert msg["Message-ID"] == "<n-0001@signalbox>"
    assert msg["References"] == f"<{n.fingerprint}@signalbox>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Signalbox-Drill"] == "false"
    body = msg.get_content()
    for needle in (
        "CRITICAL (was OK)",
        "https://wiki.example/runbooks/resize",
        "photos",
        "shard=7",
        "9.2",
    ):
        assert needle in body


def test_a_drill_mail_says_test_in_subject_header_and_body(
    smtp_server: Server, notification: MakeNotification
) -> None:
    EmailNotifier(
        "mail",
        from_addr="sb@example.com",
        to=["oncall@example.com"],
        host="127.0.0.1",
        port=smtp_server.port,
    ).send(notification(kind="drill"))
    ((_, _, msg),) = smtp_server.mailbox.messages
    assert msg["Subject"].startswith("[TEST] [CRITICAL] image_processing_slow")
    assert msg["X-Signalbox-Drill"] == "true"
    assert msg.get_content().startswith("THIS IS A TEST")


def test_a_resolved_mail_says_resolved(smtp_server: Server, notification: MakeNotification) -> None:
    n = notification(kind="resolved", state=State.OK, summary="back to 2s")
    EmailNotifier(
        "mail",
        from_addr="sb@example.com",
        to=["o@example.com"],
        host="127.0.0.1",
        port=smtp_server.port,
    ).send(n)
    assert (
        smtp_server.mailbox.messages[0][2]["Subject"]
        == "[RESOLVED] image_processing_slow{shard=7}: back to 2s"
    )


def test_starttls_and_login_with_the_password_from_the_environment(
    tls_server: Server, certificate: tuple[Path, Path], notification: MakeNotification
) -> None:
    cfg = {
        "type": "email",
        "host": "127.0.0.1",
        "port": tls_server.port,
        "starttls": True,
        "username": "bot",
        "password_env": "SMTP_PASSWORD",
        "from": "sb@example.com",
        "to": ["oncall@example.com"],
        "ca_file": str(certificate[0]),
    }
    mailer = build_notifier("mail", cfg, environ={"SMTP_PASSWORD": "s3cret"})
    mailer.send(notification())
    assert tls_server.mailbox.logins == ["bot"]
    assert len(tls_server.mailbox.messages) == 1
    assert "s3cret" not in repr(mailer)


def test_a_wrong_password_is_not_retryable(
    tls_server: Server, certificate: tuple[Path, Path], notification: MakeNotification
) -> None:
    mailer = EmailNotifier(
        "mail",
        from_addr="sb@example.com",
        to=["o@example.com"],
        host="127.0.0.1",
        port=tls_server.port,
        starttls=True,
        username="bot",
        password="wrong",
        ca_file=str(certificate[0]),
        timeout_s=5,
    )
    with pytest.raises(NotifyError, match="refused the login for 'bot': 535") as info:
        mailer.send(notification())
    assert info.value.retryable is False and "wrong" not in str(info.value)


def test_an_untrusted_certificate_is_refused_and_not_retryable(
    tls_server: Server, notification: MakeNotification
) -> None:
    mailer = EmailNotifier(
        "mail",
        from_addr="sb@example.com",
        to=["o@example.com"],
        host="127.0.0.1",
        port=tls_server.port,
        starttls=True,
        username="bot",
        password="s3cret",
    )
    with pytest.raises(NotifyError, match="TLS certificate not trusted") as info:
        mailer.send(notification())
    assert info.value.retryable is False
    assert tls_server.mailbox.logins == []


def test_implicit_tls_smtps(certificate: tuple[Path, Path], notification: MakeNotification) -> None:
    mailbox = Mailbox()
    with running(mailbox, ssl_context=_server_context(certificate)) as port:
        mailer = EmailNotifier(
            "mail",
            from_addr="sb@example.com",
            to=["o@example.com"],
            host="127.0.0.1",
            port=port,
            use_ssl=True,
            ca_file=str(certificate[0]),
        )
        mailer.send(notification())
    assert len(mailbox.messages) == 1


def test_every_recipient_refused_is_an_error_naming_them(
    smtp_server: Server, notification: MakeNotification
) -> None:
    smtp_server.mailbox.refuse = {"ghost@example.com"}
    with pytest.raises(
        NotifyError, match=r"refused every recipient: ghost@example.com \(550 5.1.1 no such user\)"
    ) as info:
        EmailNotifier(
            "mail",
            from_addr="sb@example.com",
            to=["ghost@example.com"],
            host="127.0.0.1",
            port=smtp_server.port,
        ).send(notification())
    assert info.value.retryable is False


def test_a_partly_refused_mail_names_who_got_it_and_is_not_retried(
    smtp_server: Server, notification: MakeNotification
) -> None:
    smtp_server.mailbox.refuse = {"ghost@example.com"}
    with pytest.raises(
        NotifyError, match=r"delivered to oncall@example\.com but refused ghost@example\.com"
    ) as info:
        EmailNotifier(
            "mail",
            from_addr="sb@example.com",
            to=["oncall@example.com", "ghost@example.com"],
            host="127.0.0.1",
            port=smtp_server.port,
        ).send(notification())
    assert info.value.retryable is False  # a retry would mail oncall twice
    assert smtp_server.mailbox.messages[0][1] == ["oncall@example.com"]


def test_no_server_listening_is_retryable(closed_port: int, notification: MakeNotification) -> None:
    with pytest.raises(NotifyError, match=f"SMTP 127.0.0.1:{closed_port}: ") as info:
        EmailNotifier(
            "mail",
            from_addr="sb@example.com",
            to=["o@example.com"],
            host="127.0.0.1",
            port=closed_port,
            timeout_s=2,
        ).send(notification())
    assert info.value.retryable is True


def test_an_odd_notification_id_still_makes_a_valid_message_id(
    smtp_server: Server, notification: MakeNotification
) -> None:
    mailer = EmailNotifier(
        "mail",
        from_addr="sb@example.com",
        to=["o@example.com"],
        host="127.0.0.1",
        port=smtp_server.port,
    )
    mailer.send(notification(id="outbox 17/<a>"))
    assert smtp_server.mailbox.messages[0][2]["Message-ID"] == "<outbox-17--a-@signalbox>"
