"""One id from the request to its log records and to the jobs it enqueues, run by a real
worker on a SQLite queue whose log records carry the id; the logging filter and the
structlog processor."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from tests.instrument.conftest import Harness
from tests.stores import sqlite_url

from signalbox.clock import FrozenClock
from signalbox.instrument import ASGIMiddleware, RequestFilter, note, structlog_processor
from signalbox.instrument.context import job_scope
from signalbox.storage import open_database
from signalbox.tasks import registry
from signalbox.tasks.jobs import decode_args, decode_call, encode_args
from signalbox.tasks.registry import Registry, Task
from signalbox.tasks.settings import TasksSettings
from signalbox.tasks.sqlstore import SQLQueueStore
from signalbox.tasks.worker import Worker

NOW = 1_700_000_000.0
app_log = logging.getLogger("tests.instrument.app")


class Records(logging.Handler):
    """Keeps the records that passed its filters."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Records]:
    h = Records()
    root = logging.getLogger()
    old = root.level
    root.addHandler(h)
    root.setLevel(logging.DEBUG)
    yield h
    root.removeHandler(h)
    root.setLevel(old)


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SQLQueueStore]:
    s = SQLQueueStore(open_database(sqlite_url(tmp_path), page_size=4096))
    registry.configure(s, clock=FrozenClock(NOW))
    yield s
    registry.reset()
    s.close()


def test_a_job_enqueued_by_a_request_runs_with_its_id_in_the_worker_log_records(
    harness: Harness, queue: SQLQueueStore, captured: Records
) -> None:
    reg = Registry()
    ran: list[str] = []

    def resize(photo: int) -> None:
        app_log.info("resizing %d", photo)
        ran.append(str(photo))
        if photo == 2:
            raise ValueError("corrupt photo")

    task = Task(resize, name="resize", registry=reg, retries=0)

    async def upload(request: Request) -> Response:
        photo = int(request.path_params["photo"])
        note(user_id=5555)
        app_log.info("upload of %d", photo)
        task.enqueue(photo)
        return PlainTextResponse("queued")

    app = ASGIMiddleware(Starlette(routes=[Route("/upload/{photo}", upload)]), core=harness.core)
    with TestClient(app) as c:
        one = c.get("/upload/1", headers={"X-Request-ID": "req-one"})
        two = c.get("/upload/2")
    task.enqueue(3)  # outside any request: no id travels
    rid_two = two.headers["x-request-id"]
    assert one.headers["x-request-id"] == "req-one"

    by_msg = {r.getMessage(): r for r in captured.records}
    assert by_msg["upload of 1"].request_id == "req-one"  # type: ignore[attr-defined]
    assert by_msg["upload of 1"].notes == "user_id=5555"  # type: ignore[attr-defined]

    clock = FrozenClock(NOW)
    settings = TasksSettings(retries=0, poll_interval_s=0.05)
    w = Worker(queue, registry=reg, settings=settings, clock=clock, name="w1")
    assert sum(w.work_batch() for _ in range(5)) == 3
    assert sorted(ran) == ["1", "2", "3"]
    by_msg = {r.getMessage(): r for r in captured.records}
    assert by_msg["resizing 1"].request_id == "req-one"  # type: ignore[attr-defined]
    assert by_msg["resizing 2"].request_id == rid_two  # type: ignore[attr-defined]
    assert by_msg["resizing 3"].request_id == "-"  # type: ignore[attr-defined]
    failed = [r for r in captured.records if r.getMessage().startswith("task resize failed")]
    assert [r.request_id for r in failed] == [rid_two]  # type: ignore[attr-defined]
    # and the access log has the same ids
    assert [r.request_id for r in harness.records()] == ["req-one", rid_two]


def test_the_id_travels_as_a_third_element_old_rows_still_read() -> None:
    text = encode_args("t", [1], {}, {"request_id": "r1"})
    assert text == '[[1],{},{"request_id":"r1"}]'
    assert decode_call(text) == ([1], {}, {"request_id": "r1"})
    assert decode_args(text) == ([1], {})
    assert decode_call("[[1]]") == ([1], {}, {})
    assert decode_call('[[1],{"a":2}]') == ([1], {"a": 2}, {})
    with pytest.raises(ValueError, match="args, kwargs, meta"):
        decode_call("[[1],{},{},{}]")
    with pytest.raises(ValueError, match="args, kwargs, meta"):
        decode_call('[[1],{},"r1"]')


def test_the_filter_marks_records_outside_a_request_and_hides_secret_notes(
    captured: Records,
) -> None:
    app_log.info("idle")
    with job_scope("job-req") as ctx:
        assert ctx is not None
        ctx.note(user_id=1, api_key="sk_secret", path='a "b"')
        app_log.info("busy")
    idle, busy = captured.records[-2:]
    assert (idle.request_id, idle.notes) == ("-", "")  # type: ignore[attr-defined]
    assert busy.request_id == "job-req"  # type: ignore[attr-defined]
    assert busy.notes == "user_id=1 path='a \"b\"'"  # type: ignore[attr-defined]
    assert "sk_secret" not in busy.notes  # type: ignore[attr-defined]


def test_structlog_processor_adds_the_id_and_notes() -> None:
    seen: list[dict[str, Any]] = []

    def keep(logger: Any, method: str, event: Any) -> str:
        seen.append(dict(event))
        return ""

    structlog.configure(processors=[structlog_processor, keep])
    try:
        log = structlog.get_logger()
        log.info("outside")
        with job_scope("r-9") as ctx:
            assert ctx is not None
            ctx.note(user_id=3, api_key="sk")
            log.info("inside")
    finally:
        structlog.reset_defaults()
    assert "request_id" not in seen[0]
    assert seen[1]["request_id"] == "r-9" and seen[1]["notes"] == {"user_id": 3}
