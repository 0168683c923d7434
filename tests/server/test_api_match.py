"""``match[]`` (the metric name included, several OR-ed, a ``start``/``end`` window) on
series, labels and label values; ``/api/v1/metadata``, ``/api/v1/format_query`` and
``/api/v1/status/buildinfo`` in Prometheus' shape. In process over memory, SQLite and
PostgreSQL, and through the real ``promtool`` against a real ``signalbox serve``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from signalbox.metrics.samples import MetricMeta, Sample
from tests.cli.helpers import free_port
from tests.server.conftest import NOW, open_site
from tests.serving import fetch, serve_process, wait_for

T0 = int(NOW * 1000)
OLD = T0 - 3_600_000  # an hour ago: the only samples of ``old_job_runs``


@pytest.fixture
def client(backend: str, tmp_path: Path) -> Iterator[TestClient]:
    with open_site(backend, tmp_path) as site:
        samples = [
            Sample("image_processing_time", (("host", "a"), ("stage", "resize")), 1.5, T0),
            Sample("image_processing_time", (("host", "b"), ("stage", "crop")), 2.5, T0),
            Sample("http_requests_total", (("code", "200"), ("host", "a")), 10.0, T0),
            Sample("http_requests_total", (("code", "500"), ("host", "c")), 1.0, T0),
            Sample("old_job_runs", (("queue", "nightly"),), 3.0, OLD),
        ]
        site.store.write(samples, T0)
        site.store.write_metadata(
            [
                MetricMeta("http_requests_total", "counter", "Requests served.", ""),
                MetricMeta("image_processing_time", "gauge", "Seconds per image.", "seconds"),
                MetricMeta("old_job_runs", "untyped", "", ""),
            ]
        )
        with site.client() as c:
            yield c


def data(c: TestClient, path: str, params: Any) -> Any:
    r = c.get("/api/v1" + path, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success"
    return body["data"]


def names(series: list[dict[str, str]]) -> list[tuple[str, str]]:
    return sorted((s["__name__"], s.get("host", "")) for s in series)


def test_series_match_keeps_the_metric_name(client: TestClient) -> None:
    got = data(client, "/series", {"match[]": "image_processing_time"})
    assert names(got) == [("image_processing_time", "a"), ("image_processing_time", "b")]
    got = data(client, "/series", {"match[]": 'image_processing_time{host="b"}'})
    assert got == [{"__name__": "image_processing_time", "host": "b", "stage": "crop"}]
    # the name as a matcher, and a regex over names
    got = data(client, "/series", {"match[]": '{__name__=~"http_.*", code="500"}'})
    assert got == [{"__name__": "http_requests_total", "code": "500", "host": "c"}]


def test_several_match_are_ored_without_duplicates(client: TestClient) -> None:
    got = data(
        client,
        "/series",
        {"match[]": ["old_job_runs", '{host="a"}', 'image_processing_time{host="a"}']},
    )
    assert sorted((s["__name__"], s.get("host", "")) for s in got) == [
        ("http_requests_total", "a"),
        ("image_processing_time", "a"),
        ("old_job_runs", ""),
    ]


def test_series_start_end_keep_series_with_samples_in_the_window(client: TestClient) -> None:
    recent = {"match[]": '{__name__=~".+"}', "start": str(NOW - 60), "end": str(NOW)}
    assert "old_job_runs" not in {s["__name__"] for s in data(client, "/series", recent)}
    assert len(data(client, "/series", recent)) == 4
    around_old = {"match[]": '{__name__=~".+"}', "start": str(OLD / 1000 - 60)}
    around_old["end"] = str(OLD / 1000 + 60)
    assert data(client, "/series", around_old) == [{"__name__": "old_job_runs", "queue": "nightly"}]
    # only one end given: the other is open
    assert len(data(client, "/series", {"match[]": "old_job_runs", "end": str(NOW)})) == 1
    assert data(client, "/series", {"match[]": "old_job_runs", "start": str(NOW - 60)}) == []


def test_labels_restricted_by_match_and_window(client: TestClient) -> None:
    assert data(client, "/labels", {}) == ["__name__", "code", "host", "queue", "stage"]
    assert data(client, "/labels", {"match[]": "image_processing_time"}) == [
        "__name__",
        "host",
        "stage",
    ]
    both = {"match[]": ["old_job_runs", "http_requests_total"]}
    assert data(client, "/labels", both) == ["__name__", "code", "host", "queue"]
    assert data(client, "/labels", {"start": str(NOW - 60), "end": str(NOW)}) == [
        "__name__",
        "code",
        "host",
        "stage",
    ]
    assert data(client, "/labels", {"match[]": "no_such_metric"}) == []


def test_label_values_restricted_by_match_and_window(client: TestClient) -> None:
    assert data(client, "/label/host/values", {}) == ["a", "b", "c"]
    assert data(client, "/label/host/values", {"match[]": "image_processing_time"}) == ["a", "b"]
    assert data(
        client, "/label/host/values", {"match[]": ["image_processing_time", '{code="500"}']}
    ) == ["a", "b", "c"]
    assert data(client, "/label/__name__/values", {"match[]": '{host="a"}'}) == [
        "http_requests_total",
        "image_processing_time",
    ]
    window = {"start": str(NOW - 60), "end": str(NOW)}
    assert "old_job_runs" not in data(client, "/label/__name__/values", window)
    assert data(client, "/label/__name__/values", {}) == [
        "http_requests_total",
        "image_processing_time",
        "old_job_runs",
    ]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"match[]": "rate(image_processing_time[5m])"}, "is not a series selector"),
        ({"match[]": "image_processing_time offset 5m"}, "is not a series selector"),
        ({"match[]": "image_processing_time @ 100"}, "is not a series selector"),
        ({"match[]": '{host=~".*"}'}, "does not match the empty string"),
        ({"match[]": "x{"}, ""),
        ({"match[]": "x", "start": "yesterday"}, "'start'"),
        ({"match[]": "x", "start": str(NOW), "end": str(NOW - 1)}, "'end'"),
    ],
)
def test_bad_match_is_a_400_naming_it(
    client: TestClient, params: dict[str, str], fragment: str
) -> None:
    for path in ("/series", "/labels", "/label/host/values"):
        r = client.get("/api/v1" + path, params=params)
        assert r.status_code == 400, (path, r.text)
        body = r.json()
        assert body["status"] == "error" and body["errorType"] == "bad_data"
        assert fragment in body["error"], body["error"]


def test_series_without_match_is_refused(client: TestClient) -> None:
    r = client.get("/api/v1/series")
    assert r.status_code == 400 and "no match[] parameter provided" in r.json()["error"]


def test_metadata_in_prometheus_shape(client: TestClient) -> None:
    got = data(client, "/metadata", {})
    assert got == {
        "http_requests_total": [{"type": "counter", "help": "Requests served.", "unit": ""}],
        "image_processing_time": [
            {"type": "gauge", "help": "Seconds per image.", "unit": "seconds"}
        ],
        "old_job_runs": [{"type": "unknown", "help": "", "unit": ""}],
    }
    one = data(client, "/metadata", {"metric": "http_requests_total"})
    assert list(one) == ["http_requests_total"]
    assert data(client, "/metadata", {"metric": "no_such_metric"}) == {}
    assert list(data(client, "/metadata", {"limit": "2"})) == [
        "http_requests_total",
        "image_processing_time",
    ]
    assert len(data(client, "/metadata", {"limit": "0"})) == 3  # 0: no limit
    r = client.get("/api/v1/metadata", params={"limit": "many"})
    assert r.status_code == 400 and "'limit'" in r.json()["error"]


def test_format_query_prints_the_parsed_query(client: TestClient) -> None:
    q = "sum  by(host)(rate( http_requests_total{code='500'} [5m] ))>bool 1"
    got = data(client, "/format_query", {"query": q})
    assert got == 'sum by (host) (rate(http_requests_total{code="500"}[5m])) > bool 1'
    r = client.post("/api/v1/format_query", data={"query": "x offset 1h"})
    assert r.status_code == 200 and r.json()["data"] == "x offset 1h"
    for bad in ({"query": "sum("}, {}):
        r = client.get("/api/v1/format_query", params=bad)
        assert r.status_code == 400 and r.json()["errorType"] == "bad_data"


def test_buildinfo_has_the_fields_grafana_reads(client: TestClient) -> None:
    got = data(client, "/status/buildinfo", {})
    for key in ("version", "revision", "branch", "buildUser", "buildDate", "goVersion"):
        assert isinstance(got[key], str), key
    assert got["version"] and got["application"] == "signalbox"


@pytest.mark.peer("promtool")
def test_promtool_query_series_and_labels_against_serve(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "signalbox.toml").write_text(
        f'host = "e2e"\n[collect]\ninterval = "1s"\n[server]\nport = {port}\n'
    )
    spool = tmp_path / ".signalbox" / "spool"
    spool.mkdir(parents=True)
    (spool / "app.prom").write_text(
        '# TYPE image_processing_time gauge\nimage_processing_time{stage="resize"} 1.5\n'
        '# TYPE jobs_total counter\njobs_total{queue="a"} 7\n'
    )
    with serve_process(tmp_path, port) as base:

        def both_in() -> Any:
            status, text = fetch(base + "/api/v1/label/__name__/values")
            got = json.loads(text)["data"] if status == 200 else []
            return got if {"image_processing_time", "jobs_total"} <= set(got) else None

        wait_for(both_in)

        def promtool(*args: str) -> str:
            r = subprocess.run(
                ["promtool", "query", *args], capture_output=True, text=True, timeout=30
            )
            assert r.returncode == 0, r.stdout + r.stderr
            return r.stdout

        out = promtool("series", base, "--match=image_processing_time")
        assert out.strip() == '{__name__="image_processing_time", host="e2e", stage="resize"}'
        out = promtool("series", base, "--match=image_processing_time", "--match=jobs_total")
        assert sorted(out.strip().splitlines()) == [
            '{__name__="image_processing_time", host="e2e", stage="resize"}',
            '{__name__="jobs_total", host="e2e", queue="a"}',
        ]
        out = promtool("labels", base, "queue", "--match=jobs_total")
        assert out.split() == ["a"]
        out = promtool("labels", base, "stage", "--match=jobs_total")
        assert out.split() == []
        out = promtool("labels", base, "__name__", '--match={host="e2e"}')
        assert {"image_processing_time", "jobs_total"} <= set(out.split())
