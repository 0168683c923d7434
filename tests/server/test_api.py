"""The Prometheus-compatible HTTP API, in process (starlette's TestClient drives real ASGI),
over the memory store, SQLite and PostgreSQL alike."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from signalbox.metrics.samples import MetricMeta, Sample
from tests.server.conftest import NOW, open_site


@pytest.fixture
def client(backend: str, tmp_path: Path) -> Iterator[TestClient]:
    with open_site(backend, tmp_path) as site:
        t0 = int(NOW * 1000)
        samples = []
        for i in range(40):
            ts = t0 - (39 - i) * 15_000
            samples.append(Sample("req_total", (("code", "200"), ("host", "a")), float(i * 30), ts))
            samples.append(Sample("req_total", (("code", "500"), ("host", "a")), float(i * 3), ts))
            samples.append(Sample("temp", (("room", 'a "quoted" room'),), 20.5, ts))
        site.store.write(samples, t0)
        site.store.write_metadata(
            [MetricMeta("req_total", "counter", "Requests."), MetricMeta("temp", "gauge", "")]
        )
        with site.client() as c:
            yield c


def test_instant_query_has_the_prometheus_shape(client: TestClient) -> None:
    r = client.get("/api/v1/query", params={"query": 'req_total{code="500"}'})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "vector"
    [item] = body["data"]["result"]
    assert item["metric"] == {"__name__": "req_total", "code": "500", "host": "a"}
    assert item["value"] == [NOW, "117"]


def test_query_accepts_post_forms_like_grafana(client: TestClient) -> None:
    r = client.post("/api/v1/query", data={"query": "sum(rate(req_total[5m]))", "time": str(NOW)})
    assert r.status_code == 200
    [item] = r.json()["data"]["result"]
    assert item["metric"] == {}
    assert math.isclose(float(item["value"][1]), 2.2, rel_tol=1e-9)  # (30 + 3) per 15 s


def test_range_query_returns_a_matrix(client: TestClient) -> None:
    r = client.get(
        "/api/v1/query_range",
        params={"query": "temp", "start": NOW - 300, "end": NOW, "step": "60s"},
    )
    assert r.status_code == 200
    [series] = r.json()["data"]["result"]
    assert series["metric"]["room"] == 'a "quoted" room'
    assert [v for _, v in series["values"]] == ["20.5"] * 6


def test_range_query_accepts_rfc3339_times(client: TestClient) -> None:
    r = client.get(
        "/api/v1/query_range",
        params={
            "query": "temp",
            "start": "2023-11-14T22:10:40Z",
            "end": "2023-11-14T22:14:00Z",
            "step": "60",
        },
    )
    assert r.status_code == 200 and r.json()["data"]["resultType"] == "matrix"


@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        ("/api/v1/query", {}, "missing parameter 'query'"),
        ("/api/v1/query", {"query": "sum("}, "position"),
        ("/api/v1/query", {"query": "holt_winters(x[5m], 0.5, 0.5)"}, "not supported"),
        ("/api/v1/query", {"query": "x", "time": "soon"}, "invalid parameter 'time'"),
        (
            "/api/v1/query_range",
            {"query": "x", "start": "1", "end": "0", "step": "1"},
            "end timestamp must not be before start",
        ),
        (
            "/api/v1/query_range",
            {"query": "x", "start": "0", "end": "1", "step": "-1"},
            "zero or negative",
        ),
        (
            "/api/v1/query_range",
            {"query": "x", "start": "0", "end": "100000", "step": "1"},
            "exceeded maximum resolution",
        ),
        ("/api/v1/series", {}, "no match[]"),
    ],
)
def test_bad_requests_get_400_with_a_prometheus_error_body(
    client: TestClient, path: str, params: dict[str, str], fragment: str
) -> None:
    r = client.get(path, params=params)
    assert r.status_code == 400
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert fragment.lower() in body["error"].lower()


def test_series_labels_and_label_values(client: TestClient) -> None:
    r = client.get("/api/v1/series", params={"match[]": 'req_total{code=~"5.."}'})
    assert r.json()["data"] == [{"__name__": "req_total", "code": "500", "host": "a"}]
    assert client.get("/api/v1/labels").json()["data"] == ["__name__", "code", "host", "room"]
    assert client.get("/api/v1/label/__name__/values").json()["data"] == ["req_total", "temp"]
    assert client.get("/api/v1/label/code/values").json()["data"] == ["200", "500"]


def test_metrics_endpoint_exposes_latest_values(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "text/plain; version=0.0.4"
    )
    text = r.text
    assert "# TYPE req_total counter" in text
    assert 'req_total{code="500",host="a"} 117' in text
    assert 'temp{room="a \\"quoted\\" room"} 20.5' in text


def test_index_and_health(client: TestClient) -> None:
    assert client.get("/-/healthy").status_code == 200
    page = client.get("/").text
    assert "req_total" in page and "temp" in page


def test_metrics_leaves_out_series_with_no_sample_since_stale_after(
    backend: str, tmp_path: Path
) -> None:
    from signalbox.server.app import AppOptions

    with open_site(backend, tmp_path) as site:
        now = int(NOW * 1000)
        site.store.write(
            [Sample("fresh", (), 1.0, now - 60_000), Sample("old", (), 2.0, now - 600_000)], now
        )
        with site.client(AppOptions(stale_after_s=300)) as c:
            text = c.get("/metrics").text
        with site.client(AppOptions(stale_after_s=3600)) as c:
            longer = c.get("/metrics").text
    assert "fresh 1" in text and "old" not in text
    assert "fresh 1" in longer and "old 2" in longer


def test_buildinfo_names_the_application(client: TestClient) -> None:
    body = client.get("/api/v1/status/buildinfo").json()
    assert body["status"] == "success" and body["data"]["application"] == "signalbox"


@pytest.mark.parametrize(
    "query",
    [
        "(" * 5000 + "req_total" + ")" * 5000,
        "-" * 5000 + "req_total",
        " + ".join(["req_total"] * 5000),
        "abs(" * 500 + "req_total" + ")" * 500,
    ],
    ids=["parentheses", "unary minus", "chain of +", "nested calls"],
)
def test_deeply_nested_queries_are_a_400_naming_the_limit(client: TestClient, query: str) -> None:
    for path, extra in (
        ("/api/v1/query", {}),
        ("/api/v1/query_range", {"start": str(NOW - 600), "end": str(NOW), "step": "60"}),
    ):
        r = client.post(path, data={"query": query, **extra})  # a form: no URL length limit
        assert r.status_code == 400, r.text
        assert "nests deeper than 100 levels" in r.json()["error"]


def test_a_query_nested_up_to_the_limit_is_answered(client: TestClient) -> None:
    query = "(" * 90 + 'abs(req_total{code="500"})' + ")" * 90
    r = client.get("/api/v1/query", params={"query": query})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["result"]


@pytest.mark.parametrize("step", ["1e-9", "0.0001"])
def test_a_step_below_a_millisecond_is_a_400(client: TestClient, step: str) -> None:
    params = {"query": "req_total", "start": str(NOW - 600), "end": str(NOW), "step": step}
    r = client.get("/api/v1/query_range", params=params)
    assert r.status_code == 400, r.text
    assert "1ms" in r.json()["error"]
