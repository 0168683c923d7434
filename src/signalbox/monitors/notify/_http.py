"""POST JSON with the standard library, and turn every failure into a classified NotifyError.

Stdlib ``urllib`` keeps notifiers free of a runtime HTTP dependency. Redirects are not
followed: urllib would turn a redirected POST into a GET without a body, so a 3xx is
reported (not retryable) with advice to configure the final URL. Messages show the URL
only up to its origin (tokens often live in webhook paths) and never header values.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
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
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout_s) as response:
            payload: bytes = response.read(_RESPONSE_LIMIT)
            return payload
    except urllib.error.HTTPError as e:
        with e:
            detail = _snippet(e.read(_RESPONSE_LIMIT))
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
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise NotifyError(
                notifier,
                f"POST {where}: TLS certificate not trusted ({cause.verify_message})",
                False,
            ) from None
        raise NotifyError(notifier, f"POST {where}: {_describe(cause)}", True) from None
    except (TimeoutError, OSError, http.client.HTTPException) as e:
        raise NotifyError(notifier, f"POST {where}: {_describe(e)}", True) from None


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
