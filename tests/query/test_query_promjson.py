"""Results in the Prometheus HTTP API shape (what Grafana's Prometheus datasource parses)."""

from __future__ import annotations

import json
import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.query import Engine, format_value
from signalbox.query.promjson import result_json, result_to_prometheus
from signalbox.query.values import MatrixSeries, QueryResult

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


# --- the API's bytes: result_json writes what encoding result_to_prometheus gives -------

_finite_or_not = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 5.0, 1e15, 1e16, 1e21, 1.5e-7, 1e-5, 123456789012345680.0]
)


@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
            st.lists(
                st.tuples(st.integers(-(2**45), 2**45), _finite_or_not),
                max_size=6,
                unique_by=lambda p: p[0],
            ),
        ),
        max_size=4,
    ),
    st.booleans(),
)
def test_result_json_is_the_encoded_dict_byte_for_byte(
    series: list[tuple[dict[str, str], list[tuple[int, float]]]], shared_steps: bool
) -> None:
    if shared_steps and series:  # the common case: every series on the same steps
        steps = [t for t, _ in series[0][1]]
        series = [(m, [(t, v) for t, (_, v) in zip(steps, pts, strict=False)]) for m, pts in series]
    result = QueryResult("matrix", matrix=[MatrixSeries(m, sorted(pts)) for m, pts in series])
    assert result_json(result) == msgspec.json.encode(result_to_prometheus(result))


def test_result_json_of_the_other_result_types(engine: Engine) -> None:
    for result in (
        engine.instant("up", T0 + 1_500),
        engine.instant("1 / 0", T0),
        engine.instant('"text"', T0),
    ):
        assert result_json(result) == msgspec.json.encode(result_to_prometheus(result))
