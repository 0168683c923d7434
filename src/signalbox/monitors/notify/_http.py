"""POST JSON with the standard library, and turn every failure into a classified NotifyError.

Stdlib ``urllib`` keeps notifiers free of a runtime HTTP dependency. Redirects are not
followed: urllib would turn a redirected POST into a GET without a body, so a 3xx is
reported (not retryable) with advice to configure the final URL. Messages show the URL
only up to its origin (tokens often live in webhook paths) and never header values.

``timeout`` bounds the whole attempt, not each socket operation: urllib's own timeout
restarts at every read, so a receiver that trickles a byte now and then (or a proxy that
keeps the connection alive) could hold a delivery forever. A :class:`_Deadline` cuts the
connection when the attempt's time is up.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from signalbox.monitors.notify._config import redact_url
from signalbox.monitors.notify.notification import NotifyError

USER_AGENT = "signalbox-notifier/1"
_RESPONSE_LIMIT = 64 * 1024
RETRYABLE_STATUS: frozenset[int] = frozenset({408, 425, 429})
"""4xx statuses that mean "not now" rather than "never": retried like 5xx."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Deadline:
    """Shuts the attempt's connection down once ``seconds`` have passed since it began.

    A blocked read then fails at once (end of stream or reset), which ``post_json`` reports
    as a timeout: the attempt took its whole budget without a complete answer.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []

    def watch(self, sock: socket.socket) -> None:
        """Cut ``sock`` at the deadline (now, if it has passed)."""
        timer = threading.Timer(max(0.0, self.ends - time.monotonic()), self._cut, (sock,))
        timer.daemon = True
        with self._lock:
            self._timers.append(timer)
        timer.start()

    def _cut(self, sock: socket.socket) -> None:
        self.expired = True
        # the plain socket's shutdown, also for TLS: it only ends the TCP stream; already
        # closed means the attempt is over anyway
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def cancel(self) -> None:
        with self._lock:
            for t in self._timers:
                t.cancel()


def _deadline_handlers(deadline: _Deadline) -> list[urllib.request.BaseHandler]:
    """urllib's HTTP and HTTPS handlers, opening connections that ``deadline`` watches
    (proxies from the environment keep working: they go through the same connections)."""

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    class TLSConn(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Conn, req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(TLSConn, req)  # the default context, as urllib's own

    return [HTTP(), HTTPS()]


def split_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """``http://u:p@host/x`` -> (``http://host/x``, Basic auth header); urllib would not send it."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), {
        "Authorization": f"Basic {token}"
    }


def post_json(
    notifier: str, url: str, body: Any, *, headers: Mapping[str, str], timeout_s: float
) -> bytes:
    """POST ``body`` as JSON; return the response body or raise a classified NotifyError."""
    where = redact_url(url)
    target, auth = split_userinfo(url)
    data = json.dumps(body, allow_nan=False, ensure_ascii=False).encode()
    all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **auth, **headers}
    request = urllib.request.Request(target, data=data, method="POST", headers=all_headers)
    deadline = _Deadline(timeout_s)
    opener = urllib.request.build_opener(_NoRedirect, *_deadline_handlers(deadline))
    try:
        with opener.open(request, timeout=timeout_s) as response:
            payload: bytes = response.read(_RESPONSE_LIMIT)
            return payload
    except urllib.error.HTTPError as e:
        with e:
            try:
                detail = _snippet(e.read(_RESPONSE_LIMIT))
            except (OSError, http.client.HTTPException):
                detail = ""  # cut while reading the error body: the status still counts
        status = f"POST {where} answered HTTP {e.code} {e.reason}"
        if 300 <= e.code < 400:
            location = (
                redact_url(e.headers.get("Location", ""))
                if e.headers.get("Location")
                else "elsewhere"
            )
            raise NotifyError(
                notifier, f"{status}, a redirect to {location}; configure the final URL", False
            ) from None
        retryable = e.code >= 500 or e.code in RETRYABLE_STATUS
        raise NotifyError(
            notifier, f"{status}: {detail}" if detail else status, retryable
        ) from None
    except urllib.error.URLError as e:
        cause = e.reason
        if deadline.expired:
            raise NotifyError(notifier, _timed_out(where, timeout_s), True) from None
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise NotifyError(
                notifier,
                f"POST {where}: TLS certificate not trusted ({cause.verify_message})",
                False,
            ) from None
        raise NotifyError(notifier, f"POST {where}: {_describe(cause)}", True) from None
    except (TimeoutError, OSError, http.client.HTTPException) as e:
        if deadline.expired:
            raise NotifyError(notifier, _timed_out(where, timeout_s), True) from None
        raise NotifyError(notifier, f"POST {where}: {_describe(e)}", True) from None
    finally:
        deadline.cancel()


def _timed_out(where: str, timeout_s: float) -> str:
    return f"POST {where}: timed out (no complete answer within {timeout_s:g}s)"


def _describe(cause: object) -> str:
    if isinstance(cause, TimeoutError):
        return "timed out"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause) or type(cause).__name__


def _snippet(raw: bytes, limit: int = 300) -> str:
    text = " ".join(raw.decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[:limit] + "..."
