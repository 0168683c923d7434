"""``[notifiers.NAME]`` tables → validated, frozen notifier specs.

Validation happens when ``signalbox.toml`` is loaded (so every command that loads it refuses
a bad notifier with exit 2), and needs nothing but the table: no network, no environment.
What depends on the machine that delivers — the environment variables holding secrets
(``password_env``, ``headers_from_env``) and ``ca_file`` — is looked up when a notifier is
built from its spec (:func:`signalbox.monitors.notify.build_notifier`), because ``monitors
lint`` in CI has no production secrets and need not have them.

Every getter of :class:`Table` records the key as known and :meth:`Table.finish` refuses
the rest, so a typo (``tiemout``) is an error naming the key instead of a setting silently
ignored. Specs never show a secret in their ``repr``, and errors never show one either
(:func:`signalbox.redact.shown`).

This module is light on purpose (no HTTP, SMTP or subprocess imports): loading the config
for ``collect --once`` from cron must not pay for the senders.
"""

from __future__ import annotations

import re
import shlex
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from signalbox.durations import parse_duration
from signalbox.exceptions import ConfigError
from signalbox.redact import redact_url, shown

__all__ = [
    "LEVELS",
    "NOTIFIER_TYPES",
    "AlertmanagerSpec",
    "CommandSpec",
    "EmailSpec",
    "LogSpec",
    "NotifierSpec",
    "Table",
    "WebhookSpec",
    "parse_notifier",
    "redact_url",
]

NOTIFIER_TYPES: tuple[str, ...] = ("webhook", "alertmanager", "command", "email", "log")
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}  # logging's
HTTP_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
EMAIL_TIMEOUT_S = 30.0
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


class Table:
    """One notifier's table; ``file`` and ``name`` go into every error."""

    def __init__(self, file: str, name: str, cfg: Mapping[str, Any]) -> None:
        self.file, self.name, self.cfg = file, name, cfg
        self._known: set[str] = {"type"}

    def key(self, k: str) -> str:
        return f"notifiers.{self.name}.{k}"

    def error(self, k: str, value: object, expected: str) -> ConfigError:
        key = self.key(k)
        return ConfigError(self.file, key, shown(key, value), expected)

    def _get(self, k: str) -> Any:
        self._known.add(k)
        return self.cfg.get(k)

    def value(self, k: str) -> Any:
        """``k``'s raw value (None if absent), for a setting the typed getters do not cover."""
        return self._get(k)

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

    def http_url(self, k: str) -> str:
        return self.check_http_url(k, self.required(k))

    def check_http_url(self, k: str, url: str) -> str:
        """``url`` (the value of ``k``) if it is http(s) with a host and a valid port."""
        expected = "an http:// or https:// URL with a host"
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 -- raises on a port that is not a number in 0-65535
        except ValueError as e:
            raise self.error(k, url, f"{expected} ({e})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error(k, url, expected)
        return url

    def finish(self) -> None:
        """Refuse settings no getter asked for."""
        for k in self.cfg:
            if k not in self._known:
                known = ", ".join(sorted(self._known))
                raise self.error(
                    str(k), self.cfg[k], f"a known setting for this notifier type ({known})"
                )


def env_lookup(file: str, key: str, variable: str, environ: Mapping[str, str]) -> str:
    """The value of ``variable``, which setting ``key`` names (a secret kept out of the file)."""
    if variable not in environ:
        raise ConfigError(
            file,
            key,
            variable,
            "the name of an environment variable that is set (secrets stay out of the config)",
        )
    return environ[variable]


# -- specs ---------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class _Spec:
    name: str
    type: ClassVar[str]

    def describe(self) -> str:
        """Where this notifier delivers, with no secret in it."""
        return self.type

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.describe()!r})"


@dataclass(frozen=True, repr=False)
class _HTTPSpec(_Spec):
    url: str
    headers: tuple[tuple[str, str], ...] = ()  # values are secrets: never shown
    headers_from_env: tuple[tuple[str, str], ...] = ()  # header -> variable name
    timeout_s: float = HTTP_TIMEOUT_S

    def describe(self) -> str:
        return f"{self.type} {redact_url(self.url)}"

    def resolved_headers(self, file: str, environ: Mapping[str, str]) -> dict[str, str]:
        """The headers to send: the configured ones plus those read from the environment."""
        headers = dict(self.headers)
        for header, variable in self.headers_from_env:
            key = f"notifiers.{self.name}.headers_from_env.{header}"
            value = env_lookup(file, key, variable, environ)
            if any(c in value for c in "\r\n\0"):
                raise ConfigError(file, key, variable, "a variable holding a one-line header value")
            headers[header] = value
        return headers


@dataclass(frozen=True, repr=False)
class WebhookSpec(_HTTPSpec):
    type: ClassVar[str] = "webhook"


@dataclass(frozen=True, repr=False)
class AlertmanagerSpec(_HTTPSpec):
    """``url`` is the first of ``urls`` (every member of an Alertmanager cluster, each
    sent every alert); a spec made with ``url`` alone targets that one."""

    generator_url: str = ""
    urls: tuple[str, ...] = ()
    type: ClassVar[str] = "alertmanager"

    @property
    def targets(self) -> tuple[str, ...]:
        """Every Alertmanager this notifier posts to."""
        return self.urls or (self.url,)

    def describe(self) -> str:
        return f"{self.type} " + ", ".join(redact_url(u) for u in self.targets)


@dataclass(frozen=True, repr=False)
class CommandSpec(_Spec):
    argv: tuple[str, ...]  # may carry tokens: only argv[0] is ever shown
    timeout_s: float = COMMAND_TIMEOUT_S
    type: ClassVar[str] = "command"

    def describe(self) -> str:
        return f"command {self.argv[0]}"


@dataclass(frozen=True, repr=False)
class EmailSpec(_Spec):
    from_addr: str
    to: tuple[str, ...]
    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    use_ssl: bool = False
    username: str | None = None
    password_env: str | None = None  # the variable's name; its value is read at build
    ca_file: str | None = None
    timeout_s: float = EMAIL_TIMEOUT_S
    type: ClassVar[str] = "email"

    def describe(self) -> str:
        return f"email to {', '.join(self.to)}"


@dataclass(frozen=True, repr=False)
class LogSpec(_Spec):
    level: int | None = None  # None: by state (see signalbox.monitors.notify.log)
    type: ClassVar[str] = "log"


NotifierSpec = WebhookSpec | AlertmanagerSpec | CommandSpec | EmailSpec | LogSpec


def parse_notifier(name: str, cfg: object, *, file: str = "signalbox.toml") -> NotifierSpec:
    """``[notifiers.<name>]`` checked key by key, as a frozen spec; a ConfigError names
    ``notifiers.<name>.<key>`` otherwise."""
    if not isinstance(cfg, Mapping):
        key = f"notifiers.{name}"
        raise ConfigError(file, key, shown(key, cfg), f"a table ([notifiers.{name}] type = ...)")
    t = Table(file, name, cfg)
    kind = cfg.get("type")
    if not isinstance(kind, str) or kind not in _PARSERS:
        raise t.error("type", kind, "a notifier type: " + ", ".join(NOTIFIER_TYPES))
    spec = _PARSERS[kind](t)
    t.finish()
    return spec


def _header_names(t: Table, k: str, headers: Mapping[str, str]) -> None:
    for header in headers:
        if not _TOKEN.match(header):
            raise t.error(f"{k}.{header}", header, "an HTTP header name (letters, digits, -)")


def _http_parts(t: Table, url: str | None = None) -> dict[str, Any]:
    url = t.http_url("url") if url is None else url
    headers = t.str_map("headers")
    _header_names(t, "headers", headers)
    for header, value in headers.items():
        if any(c in value for c in "\r\n\0"):
            raise t.error(f"headers.{header}", value, "a header value on one line")
    from_env = t.str_map("headers_from_env")
    _header_names(t, "headers_from_env", from_env)
    for header, variable in from_env.items():
        if not variable:
            raise t.error(
                f"headers_from_env.{header}", variable, "the name of an environment variable"
            )
    return {
        "url": url,
        "headers": tuple(sorted(headers.items())),
        "headers_from_env": tuple(sorted(from_env.items())),
        "timeout_s": t.duration("timeout", HTTP_TIMEOUT_S),
    }


def _webhook(t: Table) -> WebhookSpec:
    return WebhookSpec(t.name, **_http_parts(t))


def _alertmanager(t: Table) -> AlertmanagerSpec:
    urls = _alertmanager_urls(t)
    parts = _http_parts(t, urls[0])
    generator_url = t.http_url("generator_url") if "generator_url" in t.cfg else ""
    return AlertmanagerSpec(t.name, **parts, generator_url=generator_url, urls=urls)


def _alertmanager_urls(t: Table) -> tuple[str, ...]:
    """``url = "..."`` (one Alertmanager) or ``urls = [...]`` (each member of a cluster).

    Items are checked and shown one by one (``urls[1]``), so an error never shows another
    item's URL, and a URL listed twice is refused: it would get every alert twice.
    """
    if "urls" not in t.cfg:
        if "url" not in t.cfg:
            raise t.error(
                "url",
                None,
                'an Alertmanager URL (url = "http://am:9093") or a list of them '
                '(urls = ["http://am1:9093", "http://am2:9093"]): one is required',
            )
        return (t.http_url("url"),)
    if "url" in t.cfg:
        raise t.error("url", t.cfg["url"], "url or urls, not both (put every URL in urls)")
    raw = t.value("urls")
    if not isinstance(raw, list) or not raw:
        raise t.error("urls", _opaque(raw), 'a non-empty list of URLs, like ["http://am1:9093"]')
    urls: list[str] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        key = f"urls[{i}]"
        if not isinstance(item, str) or not item.strip():
            raise t.error(key, _opaque(item), "an http:// or https:// URL (a non-empty string)")
        url = t.check_http_url(key, item)
        same = url.rstrip("/")
        if same in seen:
            raise t.error(key, url, f"a URL not listed already (it is urls[{seen[same]}])")
        seen[same] = i
        urls.append(url)
    return tuple(urls)


def _opaque(value: object) -> object:
    """A table or list is shown by its kind only: its strings may be URLs carrying tokens."""
    if isinstance(value, Mapping):
        return "<a table>"
    if isinstance(value, list) and value:
        return "<a list>"
    return value


def _command(t: Table) -> CommandSpec:
    raw = t.cfg.get("command")
    argv: list[str]
    if isinstance(raw, str):
        t.string("command", required=True)
        try:
            argv = shlex.split(raw)
        except ValueError as e:
            raise t.error("command", raw, f"a command line that splits into words ({e})") from None
        if not argv:
            raise t.error("command", raw, "a non-empty command")
    else:
        argv = t.str_list("command", required=True)
    return CommandSpec(t.name, tuple(argv), t.duration("timeout", COMMAND_TIMEOUT_S))


def _address(t: Table, k: str, value: str) -> str:
    import email.utils  # here: only an email notifier pays for it

    _, addr = email.utils.parseaddr(value)
    if "@" not in addr or any(c in value for c in "\r\n"):
        raise t.error(k, value, "an email address like oncall@example.com")
    return value


def _email(t: Table) -> EmailSpec:
    from_addr = _address(t, "from", t.required("from"))
    to = tuple(_address(t, "to", a) for a in t.str_list("to", required=True))
    host = t.string("host", "localhost") or "localhost"
    use_ssl = t.boolean("ssl", False)
    starttls = t.boolean("starttls", False)
    if use_ssl and starttls:
        raise t.error(
            "starttls", starttls, "false when ssl = true (choose one: ssl is TLS from the start)"
        )
    port = t.integer("port", 465 if use_ssl else 587 if starttls else 25, 1, 65535)
    username = t.string("username")
    password_env = t.string("password_env")
    if password_env is not None and not password_env:
        raise t.error("password_env", password_env, "the name of an environment variable")
    if username is not None and password_env is None:
        raise t.error(
            "password_env",
            None,
            "the name of the environment variable holding the password for username",
        )
    if password_env is not None and username is None:
        raise t.error("username", None, "a username to go with password_env")
    if username is not None and not (use_ssl or starttls) and host not in LOOPBACK:
        raise t.error(
            "username",
            username,
            "starttls = true or ssl = true as well (a password is never sent in clear)",
        )
    return EmailSpec(
        t.name,
        from_addr=from_addr,
        to=to,
        host=host,
        port=port,
        starttls=starttls,
        use_ssl=use_ssl,
        username=username,
        password_env=password_env,
        ca_file=t.string("ca_file"),
        timeout_s=t.duration("timeout", EMAIL_TIMEOUT_S),
    )


def _log(t: Table) -> LogSpec:
    raw = t.string("level")
    if raw is not None and raw.lower() not in LEVELS:
        raise t.error("level", raw, "one of " + ", ".join(LEVELS))
    return LogSpec(t.name, None if raw is None else LEVELS[raw.lower()])


_PARSERS: dict[str, Callable[[Table], NotifierSpec]] = {
    "webhook": _webhook,
    "alertmanager": _alertmanager,
    "command": _command,
    "email": _email,
    "log": _log,
}
