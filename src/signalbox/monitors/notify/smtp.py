"""Email over SMTP: one plain-text message per notification, readable on a phone at 3am.

Config (``[notifiers.NAME]``, ``type = "email"``)::

    type = "email"
    from = "signalbox@example.com"        # required
    to = ["oncall@example.com"]           # required, one or more
    host = "smtp.example.com"             # default localhost
    port = 587                            # default 465 with ssl, 587 with starttls, else 25
    starttls = true                       # upgrade a plain connection (default false)
    ssl = false                           # TLS from the first byte, "SMTPS" (default false)
    username = "signalbox"                # optional; needs starttls or ssl unless host is loopback
    password_env = "SMTP_PASSWORD"        # the environment variable holding the password
    ca_file = "/etc/ssl/private-ca.pem"   # optional: trust this CA instead of the system's
    timeout = "30s"

Subject is the notification title (``[CRITICAL] image_processing_slow: ...``; drills start
with ``[TEST]``). ``Message-ID`` derives from the notification id, so a retried delivery is
recognisably the same mail; ``References`` derives from the fingerprint, so firing, repeats
and resolved thread together. ``Auto-Submitted: auto-generated`` keeps vacation
auto-replies away.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage

from signalbox.monitors.notify.notification import Notification, NotifyError, text_body, title

DEFAULT_TIMEOUT_S = 30.0
MAX_SUBJECT = 250
# Python folds any header past 78 characters by moving the whole value to a continuation
# line, which some clients show with a leading blank; RFC 5322 allows lines up to 998.
_POLICY = email.policy.default.clone(max_line_length=998)


def build_message(n: Notification, from_addr: str, to: Sequence[str]) -> EmailMessage:
    """The email for ``n`` (pure)."""
    msg = EmailMessage(policy=_POLICY)
    subject = title(n)
    msg["Subject"] = subject if len(subject) <= MAX_SUBJECT else subject[: MAX_SUBJECT - 3] + "..."
    msg["From"] = from_addr
    msg["To"] = ", ".join(to)
    msg["Date"] = email.utils.formatdate(n.created_at, usegmt=True)
    msg["Message-ID"] = f"<{_msgid_part(n.id)}@signalbox>"
    msg["References"] = f"<{_msgid_part(n.fingerprint)}@signalbox>"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Signalbox-Monitor"] = n.monitor
    msg["X-Signalbox-State"] = n.state.value
    msg["X-Signalbox-Kind"] = n.kind
    msg["X-Signalbox-Drill"] = "true" if n.drill else "false"
    msg["X-Signalbox-Fingerprint"] = n.fingerprint
    msg.set_content(text_body(n))
    return msg


def _msgid_part(text: str) -> str:
    """``text`` as the left part of a Message-ID (only atom characters survive)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", text) or "-"


class EmailNotifier:
    """Sends through one SMTP server; the password is held in memory, never shown."""

    def __init__(
        self,
        name: str,
        *,
        from_addr: str,
        to: Sequence[str],
        host: str = "localhost",
        port: int = 25,
        starttls: bool = False,
        use_ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.name, self.from_addr, self.to = name, from_addr, list(to)
        self.host, self.port, self.starttls, self.use_ssl = host, port, starttls, use_ssl
        self.username, self._password, self.ca_file, self.timeout_s = (
            username,
            password,
            ca_file,
            timeout_s,
        )

    def __repr__(self) -> str:
        return f"EmailNotifier({self.name!r}, {self.host}:{self.port}, to={self.to!r})"

    def send(self, n: Notification) -> None:
        msg = build_message(n, self.from_addr, self.to)
        where = f"SMTP {self.host}:{self.port}"
        try:
            refused = self._deliver(msg)
        except smtplib.SMTPRecipientsRefused as e:
            raise NotifyError(
                self.name,
                f"{where} refused every recipient: {_refusals(e.recipients)}",
                _all_transient(e.recipients),
            ) from None
        except smtplib.SMTPAuthenticationError as e:
            raise NotifyError(
                self.name,
                f"{where} refused the login for {self.username!r}: {e.smtp_code} {_text(e.smtp_error)}",
                False,
            ) from None
        except smtplib.SMTPNotSupportedError as e:
            raise NotifyError(
                self.name, f"{where}: {e} (check starttls/ssl/username)", False
            ) from None
        except smtplib.SMTPResponseException as e:
            raise NotifyError(
                self.name,
                f"{where} answered {e.smtp_code} {_text(e.smtp_error)}",
                400 <= e.smtp_code < 500,
            ) from None
        except ssl.SSLCertVerificationError as e:
            raise NotifyError(
                self.name, f"{where}: TLS certificate not trusted ({e.verify_message})", False
            ) from None
        except smtplib.SMTPException as e:
            raise NotifyError(self.name, f"{where}: {e}", True) from None
        except TimeoutError:
            raise NotifyError(
                self.name, f"{where}: timed out after {self.timeout_s:g}s", True
            ) from None
        except OSError as e:
            raise NotifyError(self.name, f"{where}: {e.strerror or e}", True) from None
        if refused:
            delivered = [a for a in self.to if a not in refused]
            # Not retryable: a retry would mail the accepted recipients twice.
            raise NotifyError(
                self.name,
                f"{where} delivered to {', '.join(delivered)} but refused {_refusals(refused)}",
                False,
            )

    def _deliver(self, msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
        context = (
            ssl.create_default_context(cafile=self.ca_file)
            if self.use_ssl or self.starttls
            else None
        )
        smtp: smtplib.SMTP
        if self.use_ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with smtp:
            if self.starttls:
                smtp.starttls(context=context)
            if self.username is not None:
                smtp.login(self.username, self._password or "")
            return smtp.send_message(msg, from_addr=self.from_addr, to_addrs=self.to)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _refusals(recipients: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{addr} ({code} {_text(msg)})" for addr, (code, msg) in recipients.items())


def _all_transient(recipients: dict[str, tuple[int, bytes]]) -> bool:
    return bool(recipients) and all(400 <= code < 500 for code, _ in recipients.values())
