"""Results in the Prometheus HTTP API shape (what Grafana's Prometheus datasource parses)."""

from __future__ import annotations

import json
import math

import pytest

from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.query import Engine, format_value

T0 = 1_700_000_000_000


@pytest.fixture
def engine() -> Engine:
    store = MemoryMetricStore()
    store.write(
        [
            Sample("up", (("job", "api"),), 1.0, T0),
            Sample("up", (("job", "api"),), 0.0, T0 + 60_000),
            Sample("load", (), 0.25, T0 + 60_000),
        ],
        T0,
    )
    return Engine(store)


def test_instant_vector_shape(engine: Engine) -> None:
    data = engine.instant("up", T0 + 1_500).to_prometheus()
    assert data == {
        "resultType": "vector",
        "result": [{"metric": {"__name__": "up", "job": "api"}, "value": [1_700_000_001.5, "1"]}],
    }
    json.dumps(data)


def test_scalar_shape(engine: Engine) -> None:
    assert engine.instant("1 / 0", T0).to_prometheus() == {
        "resultType": "scalar",
        "result": [1_700_000_000, "+Inf"],
    }


def test_range_matrix_shape(engine: Engine) -> None:
    data = engine.range("up * 2", T0, T0 + 60_000, 30_000).to_prometheus()
    assert data == {
        "resultType": "matrix",
        "result": [
            {
                "metric": {"job": "api"},
                "values": [[1_700_000_000, "2"], [1_700_000_030, "2"], [1_700_000_060, "0"]],
            }
        ],
    }


def test_instant_range_selector_is_a_matrix(engine: Engine) -> None:
    data = engine.instant("up[2m]", T0 + 60_000).to_prometheus()
    assert data["resultType"] == "matrix"
    assert data["result"][0]["values"] == [[1_700_000_000, "1"], [1_700_000_060, "0"]]


def test_empty_results_are_empty_lists(engine: Engine) -> None:
    assert engine.instant("nothing", T0).to_prometheus() == {"resultType": "vector", "result": []}
    assert engine.range("nothing", T0, T0 + 60_000, 15_000).to_prometheus() == {
        "resultType": "matrix",
        "result": [],
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.25, "0.25"),
        (-3.0, "-3"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e20, "100000000000000000000"),
        (1.2345678901234567e19, "12345678901234567000"),
        (1.5e-7, "0.00000015"),
        (0.0, "0"),
        (-0.0, "-0"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
    ],
)
def test_values_are_formatted_like_go_strconv(value: float, text: str) -> None:
    assert format_value(value) == text
    if not math.isnan(value):
        assert float(text.replace("Inf", "inf")) == value
