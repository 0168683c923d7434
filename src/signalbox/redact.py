"""Showing configured values to people without showing their secrets.

Config errors and reprs end up in terminals, CI logs and bug reports, so a value that may
be a secret (a password, a token, a URL carrying credentials or a token in its path) is
shown only as much as a person needs to find the setting: never in clear.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

__all__ = ["HIDDEN", "redact_credentials", "redact_url", "shown"]

HIDDEN = "(hidden)"
# Key names whose values are secrets (``password_env`` and friends name a variable instead).
_SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "auth", "apikey", "api_key")


def redact_url(url: str) -> str:
    """``scheme://host:port/...``: enough to find the receiver, never a token in the path or userinfo."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unparseable URL)"
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    return origin + ("/..." if parts.path.strip("/") or parts.query else "")


def redact_credentials(url: str) -> str:
    """The URL with its password replaced (database URLs: the path is no secret, the password is)."""
    if "@" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        password, host, port = parts.password, parts.hostname or "", parts.port
    except ValueError:
        return "(unparseable URL)"
    if password is None:
        return url
    netloc = f"{parts.username or ''}:***@{host}" + (f":{port}" if port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _secret_key(key: str) -> bool:
    *head, last = key.lower().split(".")
    if last.endswith("_env") or (head and head[-1].endswith("_env")):
        return False  # the name of an environment variable, not its value
    return any(w in last for w in _SECRET_WORDS)


def shown(key: str, value: object) -> object:
    """``value`` of setting ``key`` as an error message may show it.

    Hidden: the values of keys named like secrets (``password``, ``token``, ...) and of
    HTTP headers; URLs are cut to their origin. Everything else is shown as given.
    """
    parts = key.split(".")
    if _secret_key(key) or (len(parts) >= 2 and parts[-2] == "headers"):
        return HIDDEN
    if parts[-1] == "headers" and isinstance(value, Mapping):
        return {k: HIDDEN for k in value}
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value
