"""API tokens over HTTP, for admins: what ``signalbox tokens list|create|revoke`` do.

Every route needs the ``admin`` role (a token, or a signed-in user with their session's
CSRF token on the writes: :mod:`signalbox.server.auth.middleware`):

* ``GET /api/v1/tokens?limit=100&offset=0``: a page of tokens, oldest first, revoked ones
  too, with ``total`` and ``next_offset`` (null on the last page). Never a token or its hash;
* ``POST /api/v1/tokens`` ``{"role": "read", "name": "grafana"}``: a new token; the answer
  carries it once (``token``), the store keeps its hash. No caller can grant a role above
  its own;
* ``DELETE /api/v1/tokens/{id}``: revoke it, from the next request on. Revoking a revoked
  token changes nothing (``already_revoked``). A token revoking *itself* must say so with
  ``?own=true`` (409 otherwise): a script that meant another id would lock itself out.

The audit trail is the token's row: ``created_by`` and ``revoked_by`` name the caller as
monitor writes do (``deploy (token #4)``, ``alice (dashboard)``), and each write is logged.
"""

from __future__ import annotations

import logging

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from signalbox.exceptions import AccessError, NotFoundError, UsageError
from signalbox.server.api import ok, read_json
from signalbox.server.api.monitors import parse_limit, parse_offset
from signalbox.server.auth.middleware import require
from signalbox.server.auth.roles import Role
from signalbox.server.auth.store import TokenStore, check_token_name
from signalbox.server.services import services

__all__ = ["DEFAULT_PAGE", "MAX_ID", "parse_id", "routes"]

log = logging.getLogger("signalbox.server.auth")

DEFAULT_PAGE = 100
MAX_ID = 2**63 - 1
"""Token ids are 64-bit serials; a larger one is a bad request, not a lookup."""


class CreateBody(msgspec.Struct, forbid_unknown_fields=True):
    role: str
    name: str


def _tokens(request: Request) -> TokenStore:
    found = services(request).tokens
    if found is None:  # mounted only with a token store; a guard, not a path
        raise NotFoundError("area", "tokens", "this server has no access control")
    return found


def parse_id(text: str) -> int:
    """A token id from the path: a whole number from 1 to :data:`MAX_ID`, else a 400."""
    if text.isascii() and text.isdigit() and len(text) <= 19 and 0 < int(text) <= MAX_ID:
        return int(text)
    raise UsageError(f"invalid token id {text[:40]!r}: expected a whole number from 1 to {MAX_ID}")


def _flag(text: str | None, name: str) -> bool:
    if text is None or text in ("", "false"):
        return False
    if text == "true":
        return True
    raise UsageError(f"invalid parameter {name!r}: expected true or false, got {text[:40]!r}")


async def list_tokens(request: Request) -> Response:
    require(request, Role.ADMIN)
    q = request.query_params
    limit = parse_limit(q.get("limit")) if q.get("limit") else DEFAULT_PAGE
    offset = parse_offset(q.get("offset"))
    tokens = _tokens(request)
    page, total = await run_in_threadpool(lambda: tokens.page(limit=limit, offset=offset))
    end = offset + len(page)
    return ok(
        {
            "tokens": [t.to_dict() for t in page],
            "total": total,
            "next_offset": end if end < total else None,
        }
    )


async def create_token(request: Request) -> Response:
    caller = require(request, Role.ADMIN)
    body = await read_json(request, CreateBody)
    try:
        role = Role.parse(body.role)
    except ValueError as e:
        raise UsageError(f"role: {e}") from None
    name = check_token_name(body.name)
    assert caller.role is not None  # require() let it through
    if role > caller.role:  # admins only today; the rule holds if that ever changes
        raise AccessError(
            f"{caller.who} has role {caller.role.label}; it cannot make a {role.label} token",
            needed=role.label,
            known=True,
        )
    tokens, now = _tokens(request), services(request).now_ms()
    record, secret = await run_in_threadpool(
        lambda: tokens.create(role=role, name=name, by=caller.who, now_ms=now)
    )
    log.info("%s created by %s", record.describe(), caller.who)
    return ok({**record.to_dict(), "token": secret})


async def revoke_token(request: Request) -> Response:
    caller = require(request, Role.ADMIN)
    token_id = parse_id(str(request.path_params["id"]))
    own = _flag(request.query_params.get("own"), "own")
    tokens, now = _tokens(request), services(request).now_ms()
    if caller.token_id == token_id and not own:
        raise HTTPException(
            409,
            f"token #{token_id} is the token this request is made with: revoking it locks "
            "this caller out; add ?own=true to revoke it anyway",
        )
    found = await run_in_threadpool(tokens.find, token_id)
    if found is None:  # rows are never deleted: what exists now still exists below
        raise NotFoundError("token", f"#{token_id}", "GET /api/v1/tokens lists them")
    record, done = await run_in_threadpool(
        lambda: tokens.revoke(token_id, by=caller.who, now_ms=now)
    )
    if done:
        log.info("%s revoked by %s", record.describe(), caller.who)
    return ok({"token": record.to_dict(), "already_revoked": not done})


def routes() -> list[BaseRoute]:
    """This area's routes, relative to ``/api/v1`` (mounted with a token store only)."""
    return [
        Route("/tokens", list_tokens, methods=["GET"]),
        Route("/tokens", create_token, methods=["POST"]),
        Route("/tokens/{id}", revoke_token, methods=["DELETE"]),
    ]
