"""Database URLs for gates: parsed once, shown without their password.

A gate's reason, reading and repr end up in job rows, logs and the dashboard, so the
password of a DSN lives only in :class:`MySQLDSN` and is never part of anything it shows.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

__all__ = ["MySQLDSN", "parse_mysql_dsn", "shown_dsn", "url_password"]


@dataclass(frozen=True, slots=True)
class MySQLDSN:
    """``mysql://user:password@host:port/database`` (or ``mariadb://``), parsed."""

    host: str
    port: int = 3306
    user: str = "root"
    password: str = field(default="", repr=False)
    database: str | None = None
    unix_socket: str | None = None

    @property
    def label(self) -> str:
        """``host:port`` -- how reasons name the server (never the password)."""
        if self.unix_socket:
            return self.unix_socket
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_mysql_dsn(url: str) -> MySQLDSN:
    """Parse ``mysql://user[:password]@host[:port][/database][?unix_socket=PATH]``.

    Raises:
        ValueError: not a mysql:// or mariadb:// URL, or a bad port (the message never
            holds the password).
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"not a MySQL URL ({e}): {shown_dsn(url)}") from None
    if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
        raise ValueError(f"expected mysql://user@host:port/database, got {shown_dsn(url)}")
    query = urllib.parse.parse_qs(parts.query)
    sock = query.get("unix_socket", [None])[0]
    if not parts.hostname and not sock:
        raise ValueError(f"no host in {shown_dsn(url)}")
    return MySQLDSN(
        host=parts.hostname or "localhost",
        port=port or 3306,
        user=urllib.parse.unquote(parts.username) if parts.username else "root",
        password=urllib.parse.unquote(parts.password) if parts.password else "",
        database=urllib.parse.unquote(parts.path.lstrip("/")) or None,
        unix_socket=sock,
    )


def shown_dsn(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for reprs, reasons and readings)."""
    if "@" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        password, host, port = parts.password, parts.hostname or "", parts.port
    except ValueError:
        return "(unparseable URL)"
    if password is None:
        return url
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{port}" if port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def url_password(url: str) -> str | None:
    """The password in ``url`` (raw and decoded forms are both hidden by gates), or None."""
    try:
        return urllib.parse.urlsplit(url).password
    except ValueError:
        return None
