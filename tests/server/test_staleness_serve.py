"""Staleness as a user sees it: a real ``signalbox serve``; a spool file is removed, and at the
next collection pass its series leave ``/metrics`` and ``/api/v1/query`` (a stale marker),
instead of lingering for the 5-minute lookback."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import free_port
from tests.serving import fetch, serve_process, wait_for
from tests.stores import pg_schema_url


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, spool dir) of ``signalbox serve`` collecting every second."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        store = ""
        if request.param == "postgresql":
            store = f'store = "{stack.enter_context(pg_schema_url())}"\n'
        (tmp_path / "signalbox.toml").write_text(
            f'{store}host = "e2e"\n[collect]\ninterval = "1s"\n[server]\nport = {port}\n'
        )
        spool = tmp_path / ".signalbox" / "spool"
        spool.mkdir(parents=True)
        base = stack.enter_context(serve_process(tmp_path, port))
        yield base, spool


def publish(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def query(base: str, expr: str) -> list[dict[str, object]]:
    status, body = fetch(base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, body
    result: list[dict[str, object]] = json.loads(body)["data"]["result"]
    return result


def metrics(base: str) -> str:
    status, body = fetch(base + "/metrics")
    assert status == 200
    return body


def value_of(base: str, expr: str) -> float | None:
    got = query(base, expr)
    return float(got[0]["value"][1]) if got else None  # type: ignore[index]


def test_a_removed_spool_file_leaves_the_api_and_metrics_at_the_next_pass(
    served: tuple[str, Path],
) -> None:
    base, spool = served
    publish(spool / "photos.metrics", "image_backlog=3\n")
    publish(spool / "other.metrics", "other_jobs=1\n")
    # a few passes: the first registers the file's layout, the next ones send frames
    for i in range(2, 5):
        publish(spool / "photos.metrics", f"image_backlog={i}\n")
        wait_for(lambda i=i: value_of(base, "image_backlog") == float(i))
    assert 'image_backlog{host="e2e"} 4' in metrics(base)

    (spool / "photos.metrics").unlink()
    publish(spool / "other.metrics", "other_jobs=2\n")
    # a pass after the removal has run once other.metrics' new value is in
    wait_for(lambda: value_of(base, "other_jobs") == 2.0, timeout=10)
    body = metrics(base)
    assert "image_backlog" not in body
    assert 'other_jobs{host="e2e"} 2' in body
    # needs engine.py's _instant_selector to pass stale=sp.stale to latest_at
    assert query(base, "image_backlog") == []
    # the samples stay for range functions, as in Prometheus
    assert (value_of(base, "count_over_time(image_backlog[5m])") or 0) >= 3
    assert 'signalbox_spool_file_age_seconds{file="photos.metrics"' not in body
