"""A buffered request keeps nothing of its request alive until its line is written.

The buffer holds up to ``buffer_lines`` finished requests; under a real server each one's
ASGI scope (headers, the app's state, the router's objects) held that long made the garbage
collector run several times a flush, where the bare app frees everything it makes. So the
core makes the line as the request finishes and queues only strings and numbers: these
tests pin that, and that the line is the one an unbuffered core writes.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from signalbox.instrument import ASGIMiddleware, note
from signalbox.instrument.accesslog import parse_line
from signalbox.instrument.core import Instrument
from signalbox.instrument.metrics import RequestMetrics
from signalbox.metrics.client import Client


class _Marker:
    """Something a weak reference can watch, put inside a request's scope or source."""


def _core(
    tmp: Path, *, access_log: bool = True, metrics: bool = True, buffer_lines: int = 256
) -> Instrument:
    (tmp / "spool").mkdir(exist_ok=True)
    client = Client(tmp / "spool", background=False, pid_label=None, prog="t")
    return Instrument(
        access_log=tmp / "access.log" if access_log else None,
        format="combined",
        host="web1",
        secret_notes=("api_key",),
        secret=b"k",
        metrics=RequestMetrics(client, background=False) if metrics else False,
        request_id_header="X-Request-ID",
        trust_request_id=True,
        max_note_chars=200,
        buffer_lines=buffer_lines,
        flush_interval=60.0,
    )


async def _item(request: Request) -> Response:
    note(user_id=7, api_method="items.get")
    return PlainTextResponse("ok")


def _scope(marker: _Marker) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/items/3",
        "raw_path": b"/items/3",
        "query_string": b"page=2",
        "root_path": "",
        "headers": [(b"user-agent", b"ua/1"), (b"x-request-id", b"abc-1")],
        "client": ("10.0.0.9", 5000),
        "server": ("127.0.0.1", 8000),
        "marker": marker,
    }


def test_a_queued_asgi_request_holds_neither_its_scope_nor_its_objects(tmp_path: Path) -> None:
    core = _core(tmp_path)
    app = ASGIMiddleware(Starlette(routes=[Route("/items/{n}", _item)]), core=core)
    marker = _Marker()
    watch = weakref.ref(marker)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(_scope(marker), receive, send))
    del marker
    gc.collect()
    assert watch() is None  # the scope died with its request, though its line is not written
    assert not (tmp_path / "access.log").exists()  # still buffered
    core.close()
    (line,) = (tmp_path / "access.log").read_text().splitlines()
    r = parse_line(line)
    assert (r.method, r.path, r.query, r.protocol, r.client) == (
        "GET",
        "/items/3",
        "page=2",
        "HTTP/1.1",
        "10.0.0.9",
    )
    assert (r.status, r.bytes, r.route, r.request_id, r.user_agent) == (
        200,
        2,
        "/items/{n}",
        "abc-1",
        "ua/1",
    )
    assert dict(r.notes) == {"user_id": "7", "api_method": "items.get"}
    assert sent[0]["status"] == 200 and (b"x-request-id", b"abc-1") in sent[0]["headers"]


def test_a_queued_request_has_the_line_it_would_have_had_unbuffered(tmp_path: Path) -> None:
    """Its notes are read as it finishes, as an unbuffered line's are: one added later (a
    thread the request started, still running) is not in it, buffered or not."""
    lines = []
    for buffer_lines in (256, 1):
        d = tmp_path / str(buffer_lines)
        d.mkdir()
        core = _core(d, buffer_lines=buffer_lines)
        source = _Marker()
        watch = weakref.ref(source)
        ctx = core.begin("rid-9", None)
        ctx.note(user_id=1, api_method="a.b")
        core.finish(ctx, 1.7e9, 0.002, 201, 5, _post_fields, source)
        del source
        gc.collect()
        assert watch() is None
        ctx.note(late="yes")
        core.close()
        (line,) = (d / "access.log").read_text().splitlines()
        lines.append(line)
    assert lines[0] == lines[1]
    r = parse_line(lines[0])
    assert dict(r.notes) == {"user_id": "1", "api_method": "a.b"}
    assert (r.method, r.status, r.bytes, r.duration_us, r.request_id) == (
        "POST",
        201,
        5,
        2000,
        "rid-9",
    )


def _post_fields(source: object) -> tuple[str, str, str, str, str, str, str, str]:
    return ("POST", "/a", "", "HTTP/1.1", "c", "", "", "/a")


def test_with_no_access_log_and_no_metrics_nothing_of_the_request_is_read(
    tmp_path: Path,
) -> None:
    core = _core(tmp_path, access_log=False, metrics=False)
    read: list[object] = []

    def fields(source: object) -> tuple[str, str, str, str, str, str, str, str]:
        read.append(source)
        return ("GET", "/", "", "HTTP/1.1", "", "", "", "")

    core.finish(core.begin(None, None), 1.7e9, 0.001, 200, 0, fields, object())
    core.close()
    assert read == []


def _counted(tmp: Path, buffer_lines: int, requests: list[tuple[str, str, int, float]]) -> str:
    (tmp / "spool").mkdir(parents=True, exist_ok=True)
    client = Client(tmp / "spool", background=False, pid_label=None, prog="t")
    core = Instrument(
        access_log=tmp / "access.log",
        format="combined",
        host="web1",
        secret_notes=(),
        secret=b"k",
        metrics=RequestMetrics(client, background=False),
        request_id_header="X-Request-ID",
        trust_request_id=True,
        max_note_chars=200,
        buffer_lines=buffer_lines,
        flush_interval=60.0,
    )
    for route, method, status, seconds in requests:
        fields = (method, "/x", "", "HTTP/1.1", "c", "", "", route)
        core.finish(core.begin(None, None), 1.7e9, seconds, status, 0, lambda _, f=fields: f, None)
    core.close()
    assert len((tmp / "access.log").read_text().splitlines()) == len(requests)
    out = client.render()
    client.close()
    return out


def test_buffered_requests_are_counted_as_unbuffered_ones(tmp_path: Path) -> None:
    requests = [
        (route, method, status, seconds)
        for route in ("/a", "", "/b/{id}")
        for method in ("GET", "POST", "BREW")
        for status in (200, 201, 404, 503, 99)
        for seconds in (2**-9, 2**-7, 0.25, 12.0)  # sums exact in any order
    ]
    assert _counted(tmp_path / "b", 7, requests) == _counted(tmp_path / "u", 1, requests)


def test_requests_finishing_in_threads_that_flush_are_all_written_and_counted(
    tmp_path: Path,
) -> None:
    import threading

    (tmp_path / "spool").mkdir()
    client = Client(tmp_path / "spool", background=False, pid_label=None, prog="t")
    core = Instrument(
        access_log=tmp_path / "access.log",
        format="combined",
        host="web1",
        secret_notes=(),
        secret=b"k",
        metrics=RequestMetrics(client, background=False),
        request_id_header="X-Request-ID",
        trust_request_id=True,
        max_note_chars=200,
        buffer_lines=50,  # every thread flushes now and then, beside the others
        flush_interval=60.0,
    )

    def work(n: int) -> None:
        fields = ("GET", f"/t{n}", "", "HTTP/1.1", "c", "", "", "/t")
        for i in range(3000):
            core.finish(
                core.begin(None, None), 1.7e9, 0.001, 200 + i % 2, 1, lambda _: fields, None
            )

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    core.close()
    lines = (tmp_path / "access.log").read_text().splitlines()
    assert len(lines) == 12_000
    assert {parse_line(x).path for x in lines} == {"/t0", "/t1", "/t2", "/t3"}
    out = client.render()
    client.close()
    assert 'http_requests_total{method="GET",route="/t",status="2xx"}=12000' in out
