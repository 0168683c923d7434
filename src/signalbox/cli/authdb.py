"""The store's access-control tables as the ``tokens`` and ``users`` commands open them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from signalbox.cli.base import Context
from signalbox.server.auth.roles import Role

if TYPE_CHECKING:
    from signalbox.storage.database import Database

ROLES = tuple(r.label for r in Role)
"""The role names a ``--role`` option takes, lowest first."""


def now_ms() -> int:
    return int(time.time() * 1000)


@contextmanager
def auth_database(ctx: Context, *, create: bool, version: int) -> Iterator[Database | None]:
    """The configured store, closed afterwards; None (``create`` False) when it has no
    access-control tables of schema ``version`` yet -- without creating a store or a table
    to say there is nothing (``tokens list`` on a new project)."""
    from signalbox.storage import open_database

    url: str = ctx.settings.store_url
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if not create and path and path != ":memory:" and not Path(path).is_file():
        yield None
        return
    db = open_database(url)
    try:
        yield db if create or db.schema_version("auth") >= version else None
    finally:
        db.close()
