"""The request logs over HTTP: what ``signalbox logs grep`` and ``logs trace`` find.

Reads (the read role: open on loopback, a token or a session elsewhere, as every read):

* ``GET /api/v1/logs/requests?request_id=&user=&api_key_fp=&method=&status=&since=&until=
  &limit=100&after=&resume=``: access-log records matching every filter given, newest first,
  a page at a time. ``status`` is a code (``503``) or a class (``5xx``); ``since`` and
  ``until`` a duration before now (``1h``) or an ISO 8601 time. Pages go by ``next_after``
  (the arrival time and a digest of the last line), which stays valid while the log grows
  and rotates.

  One answer reads at most :data:`SCAN_BYTES` of log text and :data:`SCAN_SECONDS` (a
  request never ties a worker to a huge log): the files are read newest first, and when
  the budget runs out the answer holds the newest matches of the lines read so far,
  ``"stopped_early": true`` and a ``resume`` token. Page through those with ``next_after``
  as usual (same filters, same ``resume`` or none), then pass ``resume`` (and no ``after``)
  to read on from where the scan stopped: the rest of that file, then the older files.
  Across a stopped scan the order is newest first within each stretch read. A ``resume``
  whose file rotated meanwhile is a 400 saying so (search again without it).
* ``GET /api/v1/logs/trace/{request_id}?resume=``: every line of the access, application
  and worker logs for one request, in time order (at most :data:`MAX_TRACE_LINES`). The id
  is the rest of the path, so an id holding ``/`` (X-Request-ID allows one) is traced as
  ``/logs/trace/a/b`` or ``/logs/trace/a%2Fb``. The same budget bounds one answer: the
  files are read newest first (every log's live file, smallest first, then every ``.1``,
  ...), and when it runs out the answer holds the lines of what was read,
  ``"stopped_early": true`` and a ``resume`` token to read on (the lines of the next
  stretch; a stale one is a 400 too). Smallest first: a live access log bigger than the
  budget does not keep the first answer from the application logs' lines.

The files come from the server's config only (:class:`ConfiguredLogs`: ``[instrument]
access_log`` and ``[logs] files``): nothing in a request names a path. Answers name files
by their base name (a ``resume`` token by its place among them and its base name, so two logs
of one name in different folders differ; no path is in it). Malformed lines are skipped and counted, the first few with file, line
and why.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from signalbox.exceptions import NotFoundError, UsageError
from signalbox.instrument.context import REQUEST_ID
from signalbox.instrument.logblocks import Malformed
from signalbox.instrument.logscan import Budget, ScanPoint, page, trace_scan
from signalbox.instrument.logsources import ConfiguredLogs
from signalbox.instrument.search import RequestQuery, format_cursor, parse_cursor
from signalbox.server.api import ok
from signalbox.server.api.monitors import parse_limit
from signalbox.server.services import services

__all__ = [
    "MALFORMED_SHOWN",
    "MAX_TRACE_LINES",
    "SCAN_BYTES",
    "SCAN_SECONDS",
    "requests_page",
    "routes",
    "trace_lines",
]

MAX_TRACE_LINES = 1000
"""Lines of one trace answered; ``truncated`` says when there were more."""
SCAN_BYTES = 512 << 20
"""Log text one ``/logs/requests`` or ``/logs/trace`` answer reads at most (1.5-3 s on a loaded 2-core machine
for a filter on a value; more when most lines must be parsed, which the time bounds)."""
SCAN_SECONDS = 5.0
"""Time one ``/logs/requests`` or ``/logs/trace`` answer scans at most (checked between blocks of 1 MB)."""
MALFORMED_SHOWN = 10
"""Malformed lines described in an answer; the rest are counted."""
FILTERS = ("request_id", "user", "api_key_fp", "method", "status", "since", "until")


class _Skipped:
    def __init__(self) -> None:
        self.count = 0
        self.first: list[dict[str, Any]] = []

    def __call__(self, bad: Malformed) -> None:
        self.count += 1
        if len(self.first) < MALFORMED_SHOWN:
            name = bad.file.rpartition("/")[2]
            self.first.append({"file": name, "line": bad.line, "why": bad.why})

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "first": self.first}


def _logs(request: Request) -> ConfiguredLogs:
    found = services(request).logs
    if found is None:  # the area is mounted only with logs; a guard, not a path
        raise NotFoundError("area", "logs", "this server reads no logs")
    return found


def _now(request: Request) -> datetime:
    return datetime.fromtimestamp(services(request).clock.now(), UTC)


def requests_page(
    logs: ConfiguredLogs,
    params: dict[str, str],
    now: datetime,
    budget: Budget | None = None,
) -> dict[str, Any]:
    """One page of matching records, as the route answers it (the page reads it too);
    ``budget``: how much to read (default :data:`SCAN_BYTES` and :data:`SCAN_SECONDS`)."""
    g = params.get
    query = RequestQuery.build(
        request_id=g("request_id"),
        user=g("user"),
        api_key_fp=g("api_key_fp"),
        method=g("method"),
        status=g("status"),
        since=g("since"),
        until=g("until"),
        now=now,
        secret_notes=logs.secret_notes,
    )
    limit = parse_limit(params.get("limit"))
    after = parse_cursor(params.get("after"))
    resume_text = params.get("resume") or None
    resume = ScanPoint.parse(resume_text) if resume_text else None
    if budget is None:
        budget = Budget(bytes=SCAN_BYTES, seconds=SCAN_SECONDS)
    skipped = _Skipped()
    files = logs.files()
    found = page(
        files.access,
        query,
        limit=limit,
        after=after,
        on_bad=skipped,
        budget=budget,
        resume=resume,
    )
    return {
        "requests": [
            {**f.record.to_dict(), "file": f.file.name, "line": f.line} for f in found.found
        ],
        "next_after": format_cursor(found.next_after) if found.next_after else None,
        "stopped_early": found.stopped is not None,
        "resume": found.stopped.token() if found.stopped is not None else None,
        "malformed": skipped.to_dict(),
        "files": [p.name for p in files.access],
    }


def trace_lines(
    logs: ConfiguredLogs,
    request_id: str,
    resume_text: str | None = None,
    budget: Budget | None = None,
) -> dict[str, Any]:
    """A request's lines, as the route answers them (the page reads them too), from the
    scan point ``resume_text`` when given; ``budget``: how much to read (default
    :data:`SCAN_BYTES` and :data:`SCAN_SECONDS`)."""
    if not REQUEST_ID.match(request_id):
        raise UsageError(
            f"invalid request id {request_id[:80]!r}: expected up to 128 letters, digits and "
            "._:@+=/-"
        )
    resume = ScanPoint.parse(resume_text) if resume_text else None
    if budget is None:
        budget = Budget(bytes=SCAN_BYTES, seconds=SCAN_SECONDS)
    skipped = _Skipped()
    found = trace_scan(logs.files(), request_id, skipped, budget=budget, resume=resume)
    lines = found.lines
    return {
        "request_id": request_id,
        "lines": [
            {
                "time": t.time.isoformat(timespec="microseconds") if t.time else None,
                "file": t.file.name,
                "line": t.line,
                "text": t.text,
                "record": t.record.to_dict() if t.record is not None else None,
            }
            for t in lines[:MAX_TRACE_LINES]
        ],
        "truncated": len(lines) > MAX_TRACE_LINES,
        "stopped_early": found.stopped is not None,
        "resume": found.stopped.token() if found.stopped is not None else None,
        "malformed": skipped.to_dict(),
    }


async def requests(request: Request) -> Response:
    logs, now = _logs(request), _now(request)
    params = {k: v for k, v in request.query_params.items()}
    return ok(await run_in_threadpool(requests_page, logs, params, now))


async def trace_one(request: Request) -> Response:
    logs = _logs(request)
    rid = str(request.path_params["request_id"])
    resume = request.query_params.get("resume") or None
    return ok(await run_in_threadpool(trace_lines, logs, rid, resume))


def routes() -> list[BaseRoute]:
    """This area's routes, relative to ``/api/v1`` (mounted when the server reads logs)."""
    return [
        Route("/logs/requests", requests, methods=["GET"]),
        Route("/logs/trace/{request_id:path}", trace_one, methods=["GET"]),
    ]
