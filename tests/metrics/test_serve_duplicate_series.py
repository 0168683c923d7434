"""A series two spool files give, under a real ``signalbox serve`` (a subprocess: its
collector loop, its store, its HTTP app), on SQLite and PostgreSQL: ``/metrics`` keeps
answering, the second file's other series is stored and queryable, also after it goes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import pytest

from tests.cli.helpers import free_port
from tests.serving import fetch as get
from tests.serving import serve_process, wait_for
from tests.stores import pg_schema_url

T = TypeVar("T")


def publish(path: Path, text: str) -> None:
    """As writers must: a temp file renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def serve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, spool dir) of ``signalbox serve`` collecting every second."""
    port = free_port()
    with ExitStack() as stack:
        store = ""
        if request.param == "postgresql":
            store = f'store = "{stack.enter_context(pg_schema_url())}"\n'
        spool = tmp_path / "spool"
        spool.mkdir()
        (tmp_path / "signalbox.toml").write_text(
            f'{store}host = "h"\n[collect]\ninterval = "1s"\nspool_dir = "{spool}"\n'
            f"[statsd]\nenabled = false\n[server]\nport = {port}\n"
        )
        yield stack.enter_context(serve_process(tmp_path, port)), spool


def value(base: str, expr: str) -> float | None:
    status, body = get(base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, body
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def exposed(base: str) -> str:
    status, body = get(base + "/metrics")
    assert status == 200, body
    return body


def test_a_series_in_two_files_keeps_metrics_answering_and_the_rest_stored(
    serve: tuple[str, Path],
) -> None:
    base, spool = serve
    publish(spool / "a.metrics", "shared=1\nonly_a=1\n")
    wait_for(lambda: value(base, "only_a") == 1.0)
    wait_for(lambda: 'only_a{host="h"} 1' in exposed(base))  # a.metrics is framed now
    publish(spool / "b.metrics", "shared=99\nonly_b=7\n")
    wait_for(lambda: value(base, "only_b") == 7.0)
    errors = 'signalbox_spool_errors_total{file="b.metrics",host="h"}'
    wait_for(lambda: (value(base, errors) or 0) >= 2)  # counted every pass, stored by each
    for i in range(5):  # pass after pass, with frames tried and redone each time
        if i:
            time.sleep(0.4)
        body = exposed(base)
        assert 'only_b{host="h"} 7' in body and 'shared{host="h"} 1' in body
    assert value(base, "shared") == 1.0  # the first file's value is kept
    (spool / "b.metrics").unlink()
    publish(spool / "a.metrics", "shared=2\nonly_a=2\n")
    wait_for(lambda: value(base, "shared") == 2.0)
    for i in range(3):  # b.metrics' series ended at the pass that found it gone
        if i:
            time.sleep(0.4)
        body = exposed(base)
        assert 'only_a{host="h"} 2' in body and "only_b{" not in body
    assert value(base, "only_b") is None
