"""Reading one ``[notifiers.NAME]`` table: typed getters that name the key on error.

Every getter records the key as known, and :meth:`Table.finish` refuses the rest, so a typo
(``tiemout``) is an error naming the key instead of a setting silently ignored.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from signalbox.durations import parse_duration
from signalbox.exceptions import ConfigError


class Table:
    """One notifier's settings; ``file`` and ``name`` go into every error."""

    def __init__(
        self, file: str, name: str, cfg: Mapping[str, Any], environ: Mapping[str, str]
    ) -> None:
        self.file, self.name, self.cfg, self.environ = file, name, cfg, environ
        self._known: set[str] = {"type"}

    def key(self, k: str) -> str:
        return f"notifiers.{self.name}.{k}"

    def error(self, k: str, value: object, expected: str) -> ConfigError:
        return ConfigError(self.file, self.key(k), value, expected)

    def _get(self, k: str) -> Any:
        self._known.add(k)
        return self.cfg.get(k)

    def string(self, k: str, default: str | None = None, *, required: bool = False) -> str | None:
        v = self._get(k)
        if v is None:
            if required:
                raise self.error(k, None, "a string (this setting is required)")
            return default
        if not isinstance(v, str) or (required and not v.strip()):
            raise self.error(k, v, "a non-empty string" if required else "a string")
        return v

    def required(self, k: str) -> str:
        v = self.string(k, required=True)
        assert v is not None
        return v

    def boolean(self, k: str, default: bool) -> bool:
        v = self._get(k)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.error(k, v, "true or false")
        return v

    def integer(self, k: str, default: int, low: int, high: int) -> int:
        v = self._get(k)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise self.error(k, v, f"an integer from {low} to {high}")
        return v

    def duration(self, k: str, default: float) -> float:
        """``"10s"``/``"1m"`` or a number of seconds; must be positive."""
        v = self._get(k)
        if v is None:
            return default
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            seconds = float(v)
        elif isinstance(v, str):
            try:
                seconds = parse_duration(v)
            except ValueError as e:
                raise self.error(k, v, f"a duration like 10s or 1m ({e})") from None
        else:
            raise self.error(k, v, "a duration like 10s or 1m, or a number of seconds")
        if not seconds > 0:
            raise self.error(k, v, "a positive duration")
        return seconds

    def str_list(self, k: str, *, required: bool = False) -> list[str]:
        v = self._get(k)
        if v is None:
            if required:
                raise self.error(k, None, "a non-empty list of strings (this setting is required)")
            return []
        if (
            not isinstance(v, list)
            or not all(isinstance(x, str) and x for x in v)
            or (required and not v)
        ):
            raise self.error(
                k, v, "a non-empty list of non-empty strings" if required else "a list of strings"
            )
        return list(v)

    def str_map(self, k: str) -> dict[str, str]:
        v = self._get(k)
        if v is None:
            return {}
        if not isinstance(v, Mapping) or not all(
            isinstance(a, str) and isinstance(b, str) for a, b in v.items()
        ):
            raise self.error(k, v, "a table of string values")
        return dict(v)

    def env_value(self, k: str, variable: str) -> str:
        """The value of environment variable ``variable`` named by setting ``k`` (secrets)."""
        if not variable or variable not in self.environ:
            raise self.error(
                k,
                variable,
                "the name of an environment variable that is set (secrets stay out of the config)",
            )
        return self.environ[variable]

    def http_url(self, k: str) -> str:
        url = self.required(k)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error(k, redact_url(url), "an http:// or https:// URL with a host")
        return url

    def finish(self) -> None:
        """Refuse settings no getter asked for."""
        for k in self.cfg:
            if k not in self._known:
                known = ", ".join(sorted(self._known))
                raise self.error(
                    k, self.cfg[k], f"a known setting for this notifier type ({known})"
                )


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
