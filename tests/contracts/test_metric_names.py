"""``names()``: every metric name with a series, sorted, on every store -- the overview's
list and ``/api/v1/label/__name__/values`` without reading every series."""

from __future__ import annotations

from typing import Any

from signalbox.metrics.samples import Sample
from tests.contracts.conftest import T0


def test_names_are_the_distinct_metric_names_sorted(store: Any) -> None:
    assert store.names() == []
    store.write(
        [Sample("b_total", (("i", str(i)),), 1.0) for i in range(50)]
        + [Sample("a", (), 2.0), Sample("c", (("x", "y"),), 3.0), Sample("b_total", (), 4.0)],
        T0,
    )
    assert store.names() == ["a", "b_total", "c"]
    assert store.names() == sorted({n for n, _ in store.series()})
