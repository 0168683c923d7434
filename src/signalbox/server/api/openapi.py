"""``GET /openapi.json``: the HTTP API described as OpenAPI 3.1, built from the mounted routes.

The description is data: one entry per ``(path, method)`` in :data:`OPERATIONS`, with the
parameters, request bodies and responses (success *and* the error shape of
:mod:`signalbox.server.errors`, for each status the route can answer) that the code in
:mod:`~signalbox.server.api.prom`, :mod:`~signalbox.server.api.monitors`,
:mod:`~signalbox.server.api.tokens`, :mod:`~signalbox.server.health` and
:mod:`~signalbox.server.exposition` really has.
:func:`document` walks the app's routes and describes those that are mounted (a server
without a monitor store advertises no monitor routes), and :func:`undescribed` names every
API route without an entry, so a new route without a description fails a test
(``tests/server/test_openapi_fuzz.py``, which also fuzzes the app against this document
with schemathesis).

Which routes are the API: everything under ``/api/``, the health checks under ``/-/``,
``/metrics`` and this document; pages (HTML for people) are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from signalbox import __version__
from signalbox.monitors.operate import MAX_REASON_CHARS
from signalbox.server.api import MAX_BODY_BYTES
from signalbox.server.api.monitors import MAX_HISTORY
from signalbox.server.api.prom import MAX_POINTS, MAX_TIME_S
from signalbox.server.api.tasks import MAX_JOB_ID
from signalbox.server.api.tokens import DEFAULT_PAGE, MAX_ID
from signalbox.server.auth.roles import Role
from signalbox.server.auth.store import MAX_NAME_CHARS

__all__ = ["ERROR_TYPES", "OPERATIONS", "api_operations", "document", "endpoint", "undescribed"]

Schema = dict[str, Any]

ERROR_TYPES: dict[int, tuple[str, ...]] = {
    400: ("bad_data",),
    401: ("unauthorized",),
    403: ("forbidden",),
    404: ("not_found",),
    409: ("bad_data",),
    413: ("bad_data",),
    415: ("bad_data",),
    422: ("execution",),
    503: ("unavailable", "timeout"),
}
"""The ``errorType`` each status carries, as :func:`signalbox.server.errors.classify` maps
them (``internal``, a 500, is a bug and described nowhere: the fuzz test fails on it)."""

WHY = {
    400: "A parameter or the body is wrong; the message names it.",
    401: 'No valid token: off loopback (or with `auth = "required"`) every request needs '
    "one, writes always do; a garbage or revoked token is refused everywhere.",
    403: "The token's role is too low for this route (or a session's write lacks its CSRF token).",
    404: "It names something that does not exist.",
    409: "It would revoke the token the request is made with; `?own=true` says that is meant.",
    413: f"The request body is over {MAX_BODY_BYTES} bytes.",
    415: "The body is not `Content-Type: application/json`.",
    422: "The query was valid but could not be executed (a sample limit).",
    503: "The store is unavailable, or the query timed out or found the queue full.",
}

API_PREFIXES = ("/api/", "/-/")
API_PATHS = frozenset({"/metrics", "/openapi.json"})

# -- schemas ------------------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STR = {"type": "string"}
INT = {"type": "integer"}
LABELS = {"type": "object", "additionalProperties": STR, "description": "label name -> value"}
NUMBER_OR_SPECIAL = {
    "anyOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "+Inf", "-Inf"]}],
    "description": "a number; non-finite values spelled as Prometheus spells them",
}
STATES = ["OK", "WARNING", "CRITICAL", "UNKNOWN"]
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w|y))+$"
SAMPLE_PAIR = {
    "type": "array",
    "prefixItems": [{"type": "number"}, STR],
    "items": False,
    "minItems": 2,
    "description": "[unix seconds, value as a string]",
}


def _envelope(data: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["status", "data"],
        "properties": {
            "status": {"const": "success"},
            "data": data,
            "warnings": {"type": "array", "items": STR},
        },
        "additionalProperties": False,
    }


def _object(properties: dict[str, Schema], optional: Sequence[str] = ()) -> Schema:
    return {
        "type": "object",
        "required": [k for k in properties if k not in optional],
        "properties": properties,
        "additionalProperties": False,
    }


SILENCE = _object(
    {
        "id": INT,
        "series": LABELS,
        "by": STR,
        "reason": STR,
        "since_ms": INT,
        "until_ms": INT,
        "ended_ms": INT,
        "ended_by": STR,
    },
    optional=("ended_ms", "ended_by"),
)
OUTBOX_ENTRY = _object(
    {
        "id": STR,
        "notifier": STR,
        "monitor": STR,
        "kind": STR,
        "labels": LABELS,
        "created_ms": INT,
        "attempts": INT,
        "next_attempt_ms": _nullable(INT),
        "last_error": _nullable(STR),
        "status": STR,
    }
)
SERIES_STATUS = _object(
    {
        "labels": LABELS,
        "state": {"enum": STATES},
        "since_ms": INT,
        "value": _nullable(NUMBER_OR_SPECIAL),
        "reason": STR,
        "pending": _nullable({"enum": STATES}),
        "pending_since_ms": _nullable(INT),
        "silenced": _nullable(STR),
        "acknowledged": _nullable(STR),
        "suppressed_by": _nullable(STR),
        "flapping": {"type": "boolean"},
        "flap_percent": {"type": "number"},
        "last_notification": _nullable(
            _object(
                {
                    "kind": STR,
                    "at_ms": INT,
                    "delivery": _nullable(
                        _object(
                            {
                                "notifier": STR,
                                "status": STR,
                                "attempts": INT,
                                "last_error": _nullable(STR),
                            }
                        )
                    ),
                }
            )
        ),
    }
)
MONITOR = _object(
    {
        "name": STR,
        "kind": STR,
        "loaded": {"type": "boolean"},
        "state": {"enum": STATES},
        "owner": _nullable(STR),
        "file": _nullable(STR),
        "line": _nullable(INT),
        "silences": {"type": "array", "items": ref("Silence")},
        "series": {"type": "array", "items": ref("SeriesStatus")},
    }
)
STATUS_REPORT = _object(
    {
        "at_ms": INT,
        "monitors": {"type": "array", "items": ref("Monitor")},
        "lint_errors": {"type": "array", "items": STR},
        "outbox": _object(
            {
                "pending": {"type": "array", "items": ref("OutboxEntry")},
                "dead": {"type": "array", "items": ref("OutboxEntry")},
            }
        ),
        "total": {"type": "integer", "minimum": 0},
        "next_offset": _nullable({"type": "integer", "minimum": 0}),
    },
    optional=("total", "next_offset"),
)
HISTORY_ENTRY = _object(
    {
        "at_ms": INT,
        "at": {"type": "string", "format": "date-time"},
        "labels": LABELS,
        "event": STR,
        "from": _nullable({"enum": STATES}),
        "to": _nullable({"enum": STATES}),
        "value": _nullable(NUMBER_OR_SPECIAL),
        "reason": STR,
        "note": _nullable(STR),
    }
)
TOKEN_FIELDS: dict[str, Schema] = {
    "id": {"type": "integer", "minimum": 1},
    "name": STR,
    "role": {"enum": [r.label for r in Role]},
    "created_ms": INT,
    "created_by": {**STR, "description": "who made it: a CLI user, a token, a dashboard user"},
    "last_used_ms": _nullable(INT),
    "revoked_ms": _nullable(INT),
    "revoked_by": _nullable(STR),
}
TOKEN = _object(TOKEN_FIELDS)
ACK = _object({"labels": LABELS, "state": {"enum": STATES}, "by": STR, "reason": STR, "at_ms": INT})
REASON = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_REASON_CHARS,
    "pattern": r"\S",
    "description": "why, for the audit trail: one line of printable text (no control "
    f"characters), at most {MAX_REASON_CHARS} characters once stripped",
}
JOB = _object(
    {
        "id": {"type": "integer", "minimum": 1},
        "queue": STR,
        "task": STR,
        "args": {
            "description": "the call as stored: [args] or [args, kwargs] (a corrupt "
            "row's text as it is)"
        },
        "state": {"enum": ["ready", "running", "scheduled", "dead"]},
        "priority": INT,
        "due_ms": INT,
        "enqueued_ms": INT,
        "attempts": INT,
        "failures": INT,
        "defers": INT,
        "claimed_by": _nullable(STR),
        "checkpoint": _nullable(STR),
        "last_error": {**STR, "description": "the last failure's traceback, or why it is held"},
        "gate": _nullable({**STR, "description": "the gate that last deferred it"}),
        "gate_reason": _nullable(STR),
        "finished_ms": _nullable(INT),
    }
)
QUEUE_STATUS = _object(
    {
        "queue": STR,
        "depth": {"type": "integer", "minimum": 0, "description": "jobs ready to run now"},
        "oldest_age_seconds": {"type": "number", "minimum": 0},
        "running": {"type": "integer", "minimum": 0},
        "scheduled": {"type": "integer", "minimum": 0},
        "dead": {"type": "integer", "minimum": 0},
        "paused": {"type": "boolean"},
        "paused_by": STR,
        "paused_reason": STR,
        "counts": {
            "type": "object",
            "additionalProperties": {"type": "integer", "minimum": 0},
            "description": "runs since the queue began: done, failed, dead, deferred",
        },
        "holding": {
            "type": "array",
            "items": _object({"gate": STR, "reason": STR, "jobs": INT}),
            "description": "gates whose deferrals hold this queue's jobs back now",
        },
    }
)
TASK_AUDIT = _object(
    {
        "id": {"type": "integer", "minimum": 1},
        "at": {"type": "string", "format": "date-time"},
        "at_ms": INT,
        "by": {
            **STR,
            "description": "who: `alice (dashboard)`, `ci-bot (token #3)`, `cli (user@host)`",
        },
        "action": {"enum": ["retry", "retry_dead", "pause", "resume"]},
        "queue": STR,
        "job_id": _nullable({"type": "integer", "minimum": 1}),
        "reason": STR,
        "count": {
            "type": "integer",
            "minimum": 0,
            "description": "jobs retried; for pause and resume 1 if the queue changed state",
        },
    }
)
QUERY_DATA = {
    "oneOf": [
        _object(
            {
                "resultType": {"const": "vector"},
                "result": {
                    "type": "array",
                    "items": _object({"metric": LABELS, "value": SAMPLE_PAIR}),
                },
            }
        ),
        _object(
            {
                "resultType": {"const": "matrix"},
                "result": {
                    "type": "array",
                    "items": _object(
                        {"metric": LABELS, "values": {"type": "array", "items": SAMPLE_PAIR}}
                    ),
                },
            }
        ),
        _object({"resultType": {"const": "scalar"}, "result": SAMPLE_PAIR}),
        _object({"resultType": {"const": "string"}, "result": SAMPLE_PAIR}),
    ]
}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["status", "errorType", "error"],
        "properties": {
            "status": {"const": "error"},
            "errorType": {"enum": sorted({k for ks in ERROR_TYPES.values() for k in ks})},
            "error": {"type": "string", "minLength": 1},
        },
        "additionalProperties": False,
        "description": "The one error shape of every route (Prometheus' error body).",
    },
    "Labels": LABELS,
    "QueryData": QUERY_DATA,
    "Silence": SILENCE,
    "OutboxEntry": OUTBOX_ENTRY,
    "SeriesStatus": SERIES_STATUS,
    "Monitor": MONITOR,
    "StatusReport": STATUS_REPORT,
    "HistoryEntry": HISTORY_ENTRY,
    "Ack": ACK,
    "Token": TOKEN,
    "Job": JOB,
    "QueueStatus": QUEUE_STATUS,
    "TaskAuditEntry": TASK_AUDIT,
}

# -- parameters ---------------------------------------------------------------------------

TIME = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "number", "minimum": -MAX_TIME_S, "maximum": MAX_TIME_S},
    ],
    "description": "RFC 3339, or unix seconds with optional decimals",
}
STEP = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIME_S},
        {"type": "string", "pattern": DURATION_PATTERN},
    ],
    "description": "a duration (15s, 1m) or seconds; at least 1ms",
}
SELECTOR = {"type": "string", "minLength": 1, "description": 'a series selector: up{job="api"}'}


EXAMPLES: dict[str, Any] = {
    "query": 'sum by (code) (rate(http_requests_total{job="api"}[5m]))',
    "time": "2023-11-14T22:13:20Z",
    "start": "2023-11-14T21:13:20Z",
    "end": "2023-11-14T22:13:20Z",
    "step": "15s",
    "match[]": ['http_requests_total{job="api"}'],
    "limit": 100,
}
"""An example value of each query parameter (in the document, for people and tools)."""


def _param(
    name: str, schema: Schema, description: str, *, where: str = "query", required: bool = False
) -> Schema:
    out: Schema = {"name": name, "in": where, "schema": schema, "description": description}
    if name in EXAMPLES:
        out["example"] = EXAMPLES[name]
    if required or where == "path":
        out["required"] = True
    if schema.get("type") == "array":
        out["style"], out["explode"] = "form", True
    return out


P_QUERY = ("query", {"type": "string", "minLength": 1}, "a PromQL expression")
P_TIME = ("time", TIME, "evaluation time (default: now)")
P_START = ("start", TIME, "start of the range")
P_END = ("end", TIME, "end of the range")
P_STEP = ("step", STEP, f"resolution step; at most {MAX_POINTS} points per series")
P_MATCH = (
    "match[]",
    {"type": "array", "items": SELECTOR},
    "series selectors, OR-ed (repeat the parameter)",
)
P_LIMIT = (
    "limit",
    {"type": "integer", "minimum": 0},
    "at most this many entries (0: no limit); a truncated answer carries the warning "
    "'results truncated due to limit', as Prometheus does",
)


def _prom(
    summary: str,
    params: Sequence[tuple[str, Schema, str]],
    data: Schema,
    *,
    required: Sequence[str] = (),
    post: bool = True,
    path_params: Sequence[Schema] = (),
    errors: Sequence[int] = (400, 422, 503),
) -> dict[str, Schema]:
    """A Prometheus read route: GET with query parameters and (``post``) the same
    parameters as a form body, as Grafana sends them."""
    responses = _responses(_envelope(data), errors)
    get: Schema = {
        "summary": summary,
        "tags": ["metrics"],
        "parameters": [
            *path_params,
            *(_param(n, s, d, required=n in required) for n, s, d in params),
        ],
        "responses": responses,
    }
    out = {"get": get}
    if post:
        form = {
            "type": "object",
            "properties": {n: s for n, s, _ in params},
            "required": list(required),
        }
        out["post"] = {
            "summary": summary + " (parameters as a form body)",
            "tags": ["metrics"],
            "parameters": list(path_params),
            "requestBody": {
                "required": bool(required),
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": form,
                        "example": {n: EXAMPLES[n] for n, _, _ in params if n in EXAMPLES},
                        "encoding": {"match[]": {"style": "form", "explode": True}},
                    }
                },
            },
            "responses": responses,
        }
    return out


def _responses(
    success: Schema, errors: Sequence[int], *, media: str = "application/json"
) -> dict[str, Schema]:
    out: dict[str, Schema] = {
        "200": {"description": "success", "content": {media: {"schema": success}}}
    }
    for status in sorted({*errors, 401}):
        kinds = ERROR_TYPES[status]
        schema = {"allOf": [ref("Error"), {"properties": {"errorType": {"enum": list(kinds)}}}]}
        out[str(status)] = {
            "description": WHY[status],
            "content": {"application/json": {"schema": schema}},
        }
    return out


# -- operations ---------------------------------------------------------------------------

READ: list[dict[str, list[str]]] = [
    {},
    {"bearer": []},
]  # open on loopback; a token of any role otherwise
OPERATE: list[dict[str, list[str]]] = [{"bearer": []}]
ADMIN = OPERATE  # a token (or a session); the role is checked by the route
ADMIN_ONLY = (
    "Needs role admin: a token, or a signed-in user whose writes send the session's CSRF token. "
)
NAME = _param(
    "name", {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}, "monitor name", where="path"
)


def _monitor_write(
    summary: str, body: Schema | None, data: Schema, example: Schema | None = None
) -> Schema:
    op: Schema = {
        "summary": summary,
        "description": "Needs a token of role operate or admin (loopback or not); recorded in "
        "the monitor's history with the token as who did it.",
        "tags": ["monitors"],
        "security": OPERATE,
        "x-signalbox-role": "operate",
        "parameters": [NAME],
        "responses": _responses(_envelope(data), (400, 401, 403, 404, 413, 415, 503)),
    }
    if body is None:
        body = {"type": "object", "maxProperties": 0, "description": "no fields: {} or no body"}
    op["requestBody"] = {
        "required": "required" in body,
        "content": {"application/json": {"schema": body, "example": example or {}}},
    }
    return op


QUEUE = _param(
    "queue",
    {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
    "queue name: letters, digits, _ . : - (up to 100)",
    where="path",
)
JOB_ID = _param(
    "id", {"type": "integer", "minimum": 1, "maximum": MAX_JOB_ID}, "the job's id", where="path"
)
NO_FIELDS = {"type": "object", "maxProperties": 0, "description": "no fields: {} or no body"}
REASON_BODY = {
    "type": "object",
    "required": ["reason"],
    "properties": {"reason": REASON},
    "additionalProperties": False,
}
OPTIONAL_REASON_BODY = {
    "type": "object",
    "properties": {"reason": REASON},
    "additionalProperties": False,
    "description": "why, optional ({} or no body: no reason); kept in the tasks audit trail",
}


def _tasks_write(
    summary: str,
    params: Sequence[Schema],
    body: Schema,
    data: Schema,
    errors: Sequence[int],
    example: Schema | None = None,
) -> Schema:
    return {
        "summary": summary,
        "description": "Needs role operate or admin: a token, or a signed-in user whose "
        "writes send the session's CSRF token. Recorded in the audit trail "
        "(/api/v1/tasks/audit) and logged on signalbox.tasks.audit with who did it "
        "(`by` in the answer).",
        "tags": ["tasks"],
        "security": OPERATE,
        "x-signalbox-role": "operate",
        "parameters": list(params),
        "requestBody": {
            "required": "required" in body,
            "content": {"application/json": {"schema": body, "example": example or {}}},
        },
        "responses": _responses(_envelope(data), errors),
    }


def _tasks_read(
    summary: str, params: Sequence[Schema], data: Schema, errors: Sequence[int]
) -> Schema:
    return {
        "summary": summary,
        "tags": ["tasks"],
        "parameters": list(params),
        "responses": _responses(_envelope(data), errors),
    }


TASKS_OPERATIONS: dict[str, dict[str, Schema]] = {
    "/api/v1/tasks/queues": {
        "get": _tasks_read(
            "Every queue: depth, oldest age, running, scheduled, dead, counts, paused, the "
            "gates holding work back; deferrals per gate (`signalbox tasks status --json`)",
            [],
            _object(
                {
                    "at_ms": INT,
                    "queues": {"type": "array", "items": ref("QueueStatus")},
                    "gate_closures": {
                        "type": "object",
                        "additionalProperties": {"type": "integer", "minimum": 0},
                        "description": "deferrals counted per gate",
                    },
                }
            ),
            (503,),
        )
    },
    "/api/v1/tasks/queues/{queue}": {
        "get": _tasks_read(
            "One queue",
            [QUEUE],
            _object({"at_ms": INT, "queue": ref("QueueStatus")}),
            (400, 404, 503),
        )
    },
    "/api/v1/tasks/queues/{queue}/pause": {
        "post": _tasks_write(
            "Pause a queue: no worker claims its jobs until it is resumed (running ones finish)",
            [QUEUE],
            REASON_BODY,
            _object({"queue": ref("QueueStatus"), "by": STR}),
            (400, 403, 404, 413, 415, 503),
            {"reason": "replica rebuild on db3"},
        )
    },
    "/api/v1/tasks/queues/{queue}/resume": {
        "post": _tasks_write(
            "Resume a paused queue (`was_paused` false: it was not paused)",
            [QUEUE],
            REASON_BODY,
            _object({"queue": ref("QueueStatus"), "was_paused": {"type": "boolean"}, "by": STR}),
            (400, 403, 404, 413, 415, 503),
            {"reason": "rebuild done"},
        )
    },
    "/api/v1/tasks/queues/{queue}/retry_dead": {
        "post": _tasks_write(
            "Run every dead job of a queue again now, their failures forgotten",
            [QUEUE],
            OPTIONAL_REASON_BODY,
            _object({"queue": STR, "retried": {"type": "integer", "minimum": 0}, "by": STR}),
            (400, 403, 404, 413, 415, 503),
        )
    },
    "/api/v1/tasks/dead": {
        "get": _tasks_read(
            "Dead jobs with their errors, oldest first, a page at a time (by id: a retry "
            "made from one page does not shift the next)",
            [
                _param("queue", {"type": "string"}, "only this queue's"),
                _param(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY},
                    "at most this many jobs (default 100)",
                ),
                _param(
                    "after",
                    {"type": "integer", "minimum": 0, "maximum": MAX_JOB_ID},
                    "only jobs with a larger id: the `next_after` of the page before",
                ),
            ],
            _object(
                {
                    "jobs": {"type": "array", "items": ref("Job")},
                    "total": {"type": "integer", "minimum": 0},
                    "next_after": _nullable({"type": "integer", "minimum": 1}),
                }
            ),
            (400, 503),
        )
    },
    "/api/v1/tasks/audit": {
        "get": _tasks_read(
            "Who retried, paused or resumed what, when, why and how many, newest first, a "
            "page at a time (by id: actions recorded meanwhile do not shift the next page; "
            "`signalbox tasks history`)",
            [
                _param("queue", {"type": "string"}, "only this queue's"),
                _param(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY},
                    "at most this many entries (default 100)",
                ),
                _param(
                    "after",
                    {"type": "integer", "minimum": 0, "maximum": MAX_JOB_ID},
                    "only entries older than this id: the `next_after` of the page before",
                ),
            ],
            _object(
                {
                    "entries": {"type": "array", "items": ref("TaskAuditEntry")},
                    "next_after": _nullable({"type": "integer", "minimum": 1}),
                }
            ),
            (400, 503),
        )
    },
    "/api/v1/tasks/jobs/{id}": {
        "get": _tasks_read(
            "One job (`signalbox tasks show`); done jobs are deleted",
            [JOB_ID],
            _object({"job": ref("Job")}),
            (400, 404, 503),
        )
    },
    "/api/v1/tasks/jobs/{id}/retry": {
        "post": _tasks_write(
            "Run a dead job again now, its failures forgotten (400 when it is not dead)",
            [JOB_ID],
            OPTIONAL_REASON_BODY,
            _object({"job": ref("Job"), "by": STR}),
            (400, 403, 404, 413, 415, 503),
        )
    },
}

PERCENT = {"type": "number", "minimum": 0, "maximum": 100}
FLAG_STATE = _object(
    {
        "switch": {
            "enum": ["on", "off", "rollout"],
            "description": "on: everyone; off: nobody (the kill switch beats every gate); "
            "rollout: the gates below decide",
        },
        "percentage_of_actors": PERCENT,
        "percentage_of_time": PERCENT,
        "actors": {"type": "array", "items": STR},
        "groups": {"type": "array", "items": STR},
    }
)
FLAG = _object(
    {
        "name": STR,
        "declared": {"type": "boolean", "description": "false: only in the store (it is off)"},
        "description": STR,
        "owner": STR,
        "where": {**STR, "description": "the declaring file:line (empty: not declared)"},
        "default": _nullable(ref("FlagState")),
        "state": ref("FlagState"),
        "describe": {**STR, "description": "the state in words: `on`, `30% of actors`"},
        "version": {"type": "integer", "minimum": 0, "description": "0: never changed"},
        "updated_ms": _nullable(INT),
        "updated_by": _nullable(STR),
        "reason": _nullable(STR),
        "evaluations": {"type": "integer", "minimum": 0},
        "last_evaluated_ms": _nullable(INT),
        "stale": _nullable({**STR, "description": "why it is flag debt (null: it is not)"}),
    }
)
FLAG_AUDIT = _object(
    {
        "id": {"type": "integer", "minimum": 1},
        "name": STR,
        "at_ms": INT,
        "by": {
            **STR,
            "description": "who: `alice (dashboard)`, `ci-bot (token #3)`, `cli (user@host)`, "
            "`monitor:disk_full`",
        },
        "reason": STR,
        "old": _nullable(ref("FlagState")),
        "new": ref("FlagState"),
    }
)
SCHEMAS.update({"FlagState": FLAG_STATE, "Flag": FLAG, "FlagAuditEntry": FLAG_AUDIT})
FLAG_NAME = _param(
    "name",
    {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
    "flag name: lowercase letters, digits, _ . - (up to 100)",
    where="path",
)
HISTORY_PAGE = [
    _param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY},
        "at most this many entries (default 100)",
    ),
    _param(
        "after",
        {"type": "integer", "minimum": 0, "maximum": MAX_JOB_ID},
        "only entries older than this id: the `next_after` of the page before",
    ),
]
HISTORY_DATA = _object(
    {
        "entries": {"type": "array", "items": ref("FlagAuditEntry")},
        "next_after": _nullable({"type": "integer", "minimum": 1}),
    }
)
SET_BODY = {
    "type": "object",
    "required": ["value", "reason"],
    "properties": {
        "value": {
            "type": "string",
            "pattern": r"^(on|off|[0-9]{1,3}(\.[0-9]{1,3})?%)$",
            "description": "on, off (the kill switch) or a percentage of actors like 30% "
            "(0% to 100%, at most 3 decimals)",
        },
        "reason": REASON,
        "actors": _nullable(
            {"type": "array", "items": STR, "description": "replaces the actor allowlist"}
        ),
        "groups": _nullable(
            {"type": "array", "items": STR, "description": "replaces the group allowlist"}
        ),
        "time": _nullable({**STR, "description": "percentage of time (of calls), like 5%"}),
    },
    "additionalProperties": False,
}


def _flags_read(
    summary: str, params: Sequence[Schema], data: Schema, errors: Sequence[int]
) -> Schema:
    return {
        "summary": summary,
        "tags": ["flags"],
        "parameters": list(params),
        "responses": _responses(_envelope(data), errors),
    }


FLAGS_OPERATIONS: dict[str, dict[str, Schema]] = {
    "/api/v1/flags": {
        "get": _flags_read(
            "Every flag declared or stored: state, declaration, last change, evaluations, "
            "flag debt (`signalbox flags list --json`)",
            [_param("stale", {"type": "boolean"}, "true: only flag debt (`flags list --stale`)")],
            _object(
                {
                    "at_ms": INT,
                    "stale_after_s": {"type": "number"},
                    "refresh_s": {"type": "number"},
                    "flags": {"type": "array", "items": ref("Flag")},
                    "declaration_errors": {
                        "type": "array",
                        "items": STR,
                        "description": "file:line: problem, for each error in flags/*.yaml",
                    },
                }
            ),
            (400, 503),
        )
    },
    "/api/v1/flags/-/history": {
        "get": _flags_read(
            "Every flag's changes, newest first, a page at a time (`signalbox flags history`)",
            HISTORY_PAGE,
            HISTORY_DATA,
            (400, 503),
        )
    },
    "/api/v1/flags/{name}": {
        "get": _flags_read(
            "One flag (`signalbox flags show`)",
            [FLAG_NAME],
            _object({"at_ms": INT, "flag": ref("Flag")}),
            (400, 404, 503),
        )
    },
    "/api/v1/flags/{name}/history": {
        "get": _flags_read(
            "One flag's changes: who, when, why, from what to what; newest first, a page at "
            "a time (by id: changes made meanwhile do not shift the next page)",
            [FLAG_NAME, *HISTORY_PAGE],
            HISTORY_DATA,
            (400, 404, 503),
        )
    },
    "/api/v1/flags/{name}/set": {
        "post": {
            "summary": "Switch a flag on, off (the kill switch) or roll it out to a percentage "
            "of actors, with allowlists; a reason is required (`signalbox flags set`)",
            "description": "Needs role operate or admin: a token, or a signed-in user whose "
            "writes send the session's CSRF token. The change and its audit entry are one "
            "transaction, with the caller as who did it (`by`); logged on "
            "signalbox.flags.audit; every process sees it within `refresh_s`.",
            "tags": ["flags"],
            "security": OPERATE,
            "x-signalbox-role": "operate",
            "parameters": [FLAG_NAME],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": SET_BODY,
                        "example": {"value": "off", "reason": "uploads overload the db"},
                    }
                },
            },
            "responses": _responses(
                _envelope(
                    _object(
                        {
                            "flag": ref("Flag"),
                            "change": ref("FlagAuditEntry"),
                            "by": STR,
                            "refresh_s": {"type": "number"},
                        }
                    )
                ),
                (400, 403, 404, 413, 415, 503),
            ),
        }
    },
}

ACCESS_FIELDS: dict[str, Schema] = {
    "time": {**STR, "description": "arrival, ISO 8601 in UTC with microseconds"},
    "host": {**STR, "description": "the machine that served it"},
    "client": STR,
    "method": STR,
    "path": {**STR, "description": "as sent (percent-encoding kept)"},
    "query": {**STR, "description": "the query string without its ?"},
    "protocol": STR,
    "status": {"type": "integer", "minimum": 0},
    "bytes": {"type": "integer", "minimum": 0},
    "duration_us": {"type": "integer", "minimum": 0},
    "request_id": STR,
    "route": {**STR, "description": "the route template (empty: none matched)"},
    "referer": STR,
    "user_agent": STR,
    "notes": {
        "type": "object",
        "additionalProperties": STR,
        "description": "note name -> text; API keys as fp: fingerprints, never in clear",
    },
}
ACCESS_RECORD = _object(ACCESS_FIELDS)
LOG_MALFORMED = _object(
    {
        "count": {"type": "integer", "minimum": 0, "description": "malformed lines skipped"},
        "first": {
            "type": "array",
            "items": _object(
                {
                    "file": STR,
                    "line": {"type": "integer", "minimum": 0, "description": "0: the whole file"},
                    "why": STR,
                }
            ),
        },
    }
)
SCHEMAS.update({"AccessRecord": ACCESS_RECORD, "LogMalformed": LOG_MALFORMED})
_WHEN = {
    "type": "string",
    "description": "a duration before now (1h, 30m) or an ISO 8601 time (UTC unless it says)",
}
LOGS_OPERATIONS: dict[str, dict[str, Schema]] = {
    "/api/v1/logs/requests": {
        "get": {
            "summary": "Access-log records matching every filter given, newest first, a page "
            "at a time (`signalbox logs grep`); the files are the server's "
            "[instrument] access_log and its rotated siblings",
            "tags": ["logs"],
            "parameters": [
                _param("request_id", STR, "this request's record"),
                _param("user", STR, "requests noted with this user_id"),
                _param(
                    "api_key_fp",
                    {"type": "string", "pattern": "^fp:[0-9a-f]{16}$"},
                    "requests made with the API key of this fingerprint (`signalbox logs fp KEY`)",
                ),
                _param(
                    "method",
                    {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_-]{0,31}$"},
                    "this HTTP method",
                ),
                _param(
                    "status",
                    {"type": "string", "pattern": "^[1-5]([0-9]{2}|xx|XX)$"},
                    "a status (503) or a class (5xx)",
                ),
                _param("since", _WHEN, "arrived at or after"),
                _param("until", _WHEN, "arrived before"),
                _param(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY},
                    "at most this many records (default 100)",
                ),
                _param(
                    "after",
                    {"type": "string", "pattern": "^[0-9]{1,19}-[0-9a-f]{16}$"},
                    "the `next_after` of the page before (valid while the log grows and rotates)",
                ),
                _param(
                    "resume",
                    STR,
                    "the `resume` of an answer whose scan stopped early: read on from there",
                ),
            ],
            "responses": _responses(
                _envelope(
                    _object(
                        {
                            "requests": {
                                "type": "array",
                                "items": _object(
                                    {
                                        **ACCESS_FIELDS,
                                        "file": STR,
                                        "line": {"type": "integer", "minimum": 1},
                                    }
                                ),
                            },
                            "next_after": _nullable(STR),
                            "stopped_early": {"type": "boolean"},
                            "resume": _nullable(STR),
                            "malformed": ref("LogMalformed"),
                            "files": {"type": "array", "items": STR},
                        }
                    )
                ),
                (400, 503),
            ),
        }
    },
    "/api/v1/logs/trace/{request_id}": {
        "get": {
            "summary": "Every line for one request id in the access, application and worker "
            "logs ([instrument] access_log, [logs] files), in time order (`signalbox logs "
            "trace`); one answer reads a bounded stretch of the logs, newest files first, and "
            "says `stopped_early` with a `resume` to read on",
            "tags": ["logs"],
            "parameters": [
                _param(
                    "request_id",
                    {"type": "string", "pattern": "^[A-Za-z0-9._:@+=/-]{1,128}$"},
                    "the request id (X-Request-ID, the access log's request_id); the rest of "
                    "the path, so one holding / is traced as it is",
                    where="path",
                ),
                _param(
                    "resume",
                    STR,
                    "the `resume` of an answer whose scan stopped early: read on from there",
                ),
            ],
            "responses": _responses(
                _envelope(
                    _object(
                        {
                            "request_id": STR,
                            "lines": {
                                "type": "array",
                                "items": _object(
                                    {
                                        "time": _nullable(STR),
                                        "file": STR,
                                        "line": {"type": "integer", "minimum": 1},
                                        "text": STR,
                                        "record": _nullable(ref("AccessRecord")),
                                    }
                                ),
                            },
                            "truncated": {"type": "boolean"},
                            "stopped_early": {"type": "boolean"},
                            "resume": _nullable(STR),
                            "malformed": ref("LogMalformed"),
                        }
                    )
                ),
                (400, 404, 503),
            ),
        }
    },
}


OPERATIONS: dict[str, dict[str, Schema]] = {
    "/api/v1/query": _prom(
        "Evaluate an instant query", [P_QUERY, P_TIME], ref("QueryData"), required=["query"]
    ),
    "/api/v1/query_range": _prom(
        "Evaluate a range query",
        [P_QUERY, P_START, P_END, P_STEP],
        {"allOf": [ref("QueryData"), {"properties": {"resultType": {"const": "matrix"}}}]},
        required=["query", "start", "end", "step"],
    ),
    "/api/v1/series": _prom(
        "Series matching selectors",
        [P_MATCH, P_START, P_END, P_LIMIT],
        {"type": "array", "items": ref("Labels")},
        required=["match[]"],
    ),
    "/api/v1/labels": _prom(
        "Label names", [P_MATCH, P_START, P_END, P_LIMIT], {"type": "array", "items": STR}
    ),
    "/api/v1/label/{name}/values": _prom(
        "Values of one label (`__name__`: metric names)",
        [P_MATCH, P_START, P_END, P_LIMIT],
        {"type": "array", "items": STR},
        post=False,
        path_params=[
            _param(
                "name",
                {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
                "label name",
                where="path",
            )
        ],
        errors=(400, 404, 422, 503),
    ),
    "/api/v1/status/buildinfo": _prom(
        "Version of this server, in Prometheus' fields",
        [],
        _object(
            {
                k: STR
                for k in (
                    "version",
                    "revision",
                    "branch",
                    "buildUser",
                    "buildDate",
                    "goVersion",
                    "application",
                    "pythonVersion",
                )
            }
        ),
        post=False,
        errors=(),
    ),
    "/api/v1/metadata": _prom(
        "Metric metadata (type, help, unit) by metric name",
        [
            ("metric", STR, "only this metric"),
            ("limit", INT, "at most this many metrics (0 or negative: no limit)"),
            ("limit_per_metric", INT, "accepted; one entry per metric is kept anyway"),
        ],
        {
            "type": "object",
            "additionalProperties": {
                "type": "array",
                "items": _object({"type": STR, "help": STR, "unit": STR}),
            },
        },
        post=False,
        errors=(400, 503),
    ),
    "/api/v1/format_query": _prom(
        "The query as the parser understood it, printed back", [P_QUERY], STR, required=["query"]
    ),
    "/api/v1/monitors": {
        "get": {
            "summary": "Every monitor with its series, silences, lint errors and outbox "
            "(the JSON of `signalbox monitors status --json`)",
            "tags": ["monitors"],
            "parameters": [
                _param(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY},
                    "at most this many monitors (default: all); with `limit` or `offset` the answer "
                    "also has `total` and `next_offset` (null on the last page)",
                ),
                _param(
                    "offset",
                    {"type": "integer", "minimum": 0},
                    "skip this many monitors first",
                ),
            ],
            "responses": _responses(_envelope(ref("StatusReport")), (400, 503)),
        }
    },
    "/api/v1/monitors/{name}": {
        "get": {
            "summary": "One monitor and its newest history",
            "tags": ["monitors"],
            "parameters": [
                NAME,
                _param(
                    "since",
                    {"type": "string", "pattern": DURATION_PATTERN},
                    "history this far back (default 1d)",
                ),
                _param(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY},
                    "at most this many history entries, newest first (default 100)",
                ),
            ],
            "responses": _responses(
                _envelope(
                    _object(
                        {
                            "at_ms": INT,
                            "monitor": ref("Monitor"),
                            "history": {"type": "array", "items": ref("HistoryEntry")},
                        }
                    )
                ),
                (400, 404, 503),
            ),
        }
    },
    "/api/v1/monitors/{name}/backtest": {
        "get": {
            "summary": "The monitor replayed over stored history (monitors backtest --json)",
            "tags": ["monitors"],
            "parameters": [
                NAME,
                _param(
                    "since",
                    {"type": "string", "pattern": DURATION_PATTERN},
                    "how far back to replay, at most 400d (default 7d)",
                ),
            ],
            "responses": _responses(
                _envelope(
                    {
                        "type": "object",
                        "required": ["start", "end", "step_s", "file", "monitors"],
                        "properties": {
                            "start": {"type": "number"},
                            "end": {"type": "number"},
                            "step_s": {"type": "number"},
                            "file": STR,
                            "monitors": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["name", "incidents", "firing_s", "notifications"],
                                    "properties": {
                                        "name": STR,
                                        "incidents": {"type": "array", "items": {"type": "object"}},
                                        "firing_s": {"type": "number"},
                                        "notifications": {"type": "object"},
                                    },
                                },
                            },
                        },
                    }
                ),
                (400, 404, 503),
            ),
        }
    },
    "/api/v1/monitors/{name}/silence": {
        "post": _monitor_write(
            "Silence a monitor's notifications (all series, or those matching `series`)",
            {
                "type": "object",
                "required": ["duration", "reason"],
                "properties": {
                    "duration": {
                        "anyOf": [
                            {"type": "string", "pattern": DURATION_PATTERN},
                            {"type": "number", "exclusiveMinimum": 0},
                        ],
                        "description": "how long: 30m, 2h, or seconds",
                    },
                    "reason": REASON,
                    "series": {
                        "anyOf": [
                            {
                                "type": "object",
                                "propertyNames": {"pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                                "additionalProperties": {
                                    "type": "string",
                                    "maxLength": MAX_REASON_CHARS,
                                },
                            },
                            {"type": "string", "description": "label=value[,label=value...]"},
                            {"type": "null"},
                        ],
                        "description": "only series with these labels (default: all)",
                    },
                },
                "additionalProperties": False,
            },
            _object({"monitor": STR, "silence": ref("Silence")}),
            {"duration": "2h", "reason": "disk swap tonight", "series": {"mount": "/var"}},
        )
    },
    "/api/v1/monitors/{name}/unsilence": {
        "post": _monitor_write(
            "End every active silence of a monitor",
            None,
            _object({"monitor": STR, "ended": {"type": "array", "items": ref("Silence")}}),
        )
    },
    "/api/v1/monitors/{name}/ack": {
        "post": _monitor_write(
            "Acknowledge every series of a monitor that is not OK (400 when all are OK)",
            {
                "type": "object",
                "required": ["reason"],
                "properties": {"reason": REASON},
                "additionalProperties": False,
            },
            _object({"monitor": STR, "acknowledged": {"type": "array", "items": ref("Ack")}}),
            {"reason": "looking into it"},
        )
    },
    "/api/v1/monitors/{name}/drill": {
        "post": _monitor_write(
            "Send a TEST notification through the monitor's notifiers now",
            None,
            _object(
                {
                    "monitor": STR,
                    "deliveries": {
                        "type": "array",
                        "items": _object(
                            {"notifier": STR, "outcome": STR, "error": _nullable(STR)}
                        ),
                    },
                }
            ),
        )
    },
    "/api/v1/tokens": {
        "get": {
            "summary": "A page of API tokens, oldest first, revoked ones too (never a token)",
            "description": ADMIN_ONLY,
            "tags": ["tokens"],
            "security": ADMIN,
            "x-signalbox-role": "admin",
            "parameters": [
                _param(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY},
                    f"at most this many tokens (default {DEFAULT_PAGE})",
                ),
                _param("offset", {"type": "integer", "minimum": 0}, "skip this many first"),
            ],
            "responses": _responses(
                _envelope(
                    _object(
                        {
                            "tokens": {"type": "array", "items": ref("Token")},
                            "total": {"type": "integer", "minimum": 0},
                            "next_offset": _nullable({"type": "integer", "minimum": 1}),
                        }
                    )
                ),
                (400, 403, 503),
            ),
        },
        "post": {
            "summary": "Create a token; the answer carries it, once (only its hash is kept)",
            "description": ADMIN_ONLY + "No caller can grant a role above its own. Audited: "
            "the token's created_by names the caller.",
            "tags": ["tokens"],
            "security": ADMIN,
            "x-signalbox-role": "admin",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["role", "name"],
                            "properties": {
                                "role": {"enum": [r.label for r in Role]},
                                "name": {
                                    "type": "string",
                                    "minLength": 1,
                                    "maxLength": MAX_NAME_CHARS,
                                    "pattern": r"\S",
                                    "description": "what or who it is for (one line of "
                                    "printable text); the audit trail names it",
                                },
                            },
                            "additionalProperties": False,
                        },
                        "example": {"role": "read", "name": "grafana"},
                    }
                },
            },
            "responses": _responses(
                _envelope(
                    _object(
                        {
                            **TOKEN_FIELDS,
                            "token": {
                                "type": "string",
                                "pattern": "^sbx_[A-Za-z0-9_-]{43}$",
                                "description": "send as 'Authorization: Bearer <token>'; "
                                "shown only here",
                            },
                        }
                    )
                ),
                (400, 403, 413, 415, 503),
            ),
        },
    },
    "/api/v1/tokens/{id}": {
        "delete": {
            "summary": "Revoke a token: refused from the next request on",
            "description": ADMIN_ONLY + "Revoking a revoked token changes nothing "
            "(`already_revoked`). The token the request is made with is revoked only with "
            "`?own=true` (409 otherwise). Audited: the token's revoked_by names the caller.",
            "tags": ["tokens"],
            "security": ADMIN,
            "x-signalbox-role": "admin",
            "parameters": [
                _param(
                    "id",
                    {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                    "the token's id (GET /api/v1/tokens)",
                    where="path",
                ),
                _param(
                    "own",
                    {"type": "boolean"},
                    "true: the id may be the calling token's own (default false)",
                ),
            ],
            "responses": _responses(
                _envelope(_object({"token": ref("Token"), "already_revoked": {"type": "boolean"}})),
                (400, 403, 404, 409, 503),
            ),
        }
    },
    **TASKS_OPERATIONS,
    **LOGS_OPERATIONS,
    **FLAGS_OPERATIONS,
    "/-/healthy": {
        "get": {
            "summary": "The process answers",
            "tags": ["health"],
            "security": [],
            "responses": {
                "200": {"description": "healthy", "content": {"text/plain": {"schema": STR}}}
            },
        }
    },
    "/-/ready": {
        "get": {
            "summary": "The store answers too (and collection can write)",
            "tags": ["health"],
            "security": [],
            "responses": {
                "200": {"description": "ready", "content": {"text/plain": {"schema": STR}}},
                "503": {
                    "description": "not ready: the failing check and why",
                    "content": {
                        "application/json": {
                            "schema": {
                                "allOf": [
                                    ref("Error"),
                                    {"properties": {"errorType": {"const": "unavailable"}}},
                                ]
                            }
                        }
                    },
                },
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "The latest value of every fresh series, in Prometheus text format",
            "tags": ["metrics"],
            "responses": _responses(STR, (503,), media="text/plain"),
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "tags": ["meta"],
            "responses": _responses({"type": "object"}, ()),
        }
    },
}
"""Every API route's description, by path and lower-case method."""


# -- the document -------------------------------------------------------------------------


_CONVERTOR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[a-z]+\}")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in API_PATHS


def api_operations(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(path, method)`` of every API route mounted in ``routes`` (HEAD, which Starlette
    adds to each GET, left out)."""
    for route in routes:
        if isinstance(route, Mount):
            yield from api_operations(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            path = _CONVERTOR.sub(r"{\1}", prefix + route.path)  # {id:path}: {id}
            if is_api_path(path):
                for method in sorted(route.methods or ()):
                    if method != "HEAD":
                        yield path, method.lower()


def undescribed(routes: Sequence[BaseRoute]) -> list[tuple[str, str]]:
    """The mounted API routes :data:`OPERATIONS` has no entry for (a test keeps it empty)."""
    return [(p, m) for p, m in api_operations(routes) if m not in OPERATIONS.get(p, {})]


def document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API routes mounted in ``routes``."""
    paths: dict[str, dict[str, Schema]] = {}
    for path, method in api_operations(routes):
        op = OPERATIONS.get(path, {}).get(method)
        if op is not None:
            paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "signalbox",
            "version": __version__,
            "description": "Metrics (the Prometheus read API, same shapes, for Grafana), "
            "monitors (states, history, silence, unsilence, acknowledge, drill), task queues "
            "(status, dead jobs, retry, pause, resume), feature flags (list, show, set, history), "
            "API tokens "
            "(admins), health and /metrics. Every error has one shape: "
            '{"status": "error", "errorType": ..., "error": ...}. Reads are open to '
            'loopback connections unless `[server] auth = "required"`; every write needs a '
            "token of role operate or admin (`signalbox tokens create`).",
        },
        "servers": [{"url": "/"}],
        "security": READ,
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token (sbx_...) from `signalbox tokens create`",
                }
            },
        },
    }


async def endpoint(request: Request) -> Response:
    """``GET /openapi.json``: built once per app from its routes."""
    state = request.app.state
    body: bytes | None = getattr(state, "openapi_json", None)
    if body is None:
        body = msgspec.json.encode(document(request.app.routes))
        state.openapi_json = body
    return Response(body, media_type="application/json")
