"""Rollup-tier data: *_over_time stays exact using bucket min/max/sum/count; windows narrower
than a bucket are widened so coarse data still answers."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from signalbox.exceptions import StoreError
from signalbox.metrics.samples import Matcher, series_matches
from signalbox.metrics.store import SeriesPoints
from signalbox.query import Engine

T0 = 1_699_999_200_000  # a whole hour
M = 60_000
H = 3_600_000


class RollupStore:
    """Serves fixed rollup buckets through the store protocol's ``select`` (the only call the engine makes)."""

    def __init__(self, *series: SeriesPoints) -> None:
        self.series = series
        self.selects: list[tuple[int, int]] = []

    def select(
        self,
        matchers: Sequence[Matcher],
        start_ms: int,
        end_ms: int,
        *,
        step_ms: int = 0,
        aggregates: bool = True,
        align_ms: int = 0,
    ) -> list[SeriesPoints]:
        self.selects.append((start_ms, end_ms))
        out = []
        for sp in self.series:
            if not series_matches(sp.name, sp.labels, tuple(matchers)):
                continue
            keep = [i for i, t in enumerate(sp.timestamps) if start_ms <= t <= end_ms]
            if keep:
                out.append(
                    SeriesPoints(
                        sp.name,
                        sp.labels,
                        [sp.timestamps[i] for i in keep],
                        [sp.values[i] for i in keep],
                        sp.resolution,
                        _pick(sp.mins, keep),
                        _pick(sp.maxs, keep),
                        _pick(sp.sums, keep),
                        _pick(sp.counts, keep),
                    )
                )
        return out


def _pick(xs: list[float] | None, keep: list[int]) -> list[float] | None:
    return None if xs is None else [xs[i] for i in keep]


def minute_buckets() -> SeriesPoints:
    """Bucket k (ending at T0 + k minutes) held six raw samples k, k+1, ..., k+5."""
    ks = range(1, 11)
    return SeriesPoints(
        "latency",
        (("host", "a"),),
        timestamps=[T0 + k * M for k in ks],
        values=[k + 5.0 for k in ks],
        resolution=60,
        mins=[float(k) for k in ks],
        maxs=[k + 5.0 for k in ks],
        sums=[6.0 * k + 15 for k in ks],
        counts=[6.0 for _ in ks],
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # buckets 6..10 end inside (T0+5m, T0+10m]
        (
            "avg_over_time(latency[5m])",
            (6 * 40 + 75) / 30,
        ),  # sum of sums / sum of counts, not the mean of lasts (13)
        ("sum_over_time(latency[5m])", 6 * 40 + 75),
        ("count_over_time(latency[5m])", 30.0),
        ("min_over_time(latency[5m])", 6.0),
        ("max_over_time(latency[5m])", 15.0),
        ("last_over_time(latency[5m])", 15.0),
        ("latency", 15.0),
    ],
)
def test_over_time_functions_use_bucket_aggregates(query: str, expected: float) -> None:
    engine = Engine(RollupStore(minute_buckets()))
    [sample] = engine.instant(query, T0 + 10 * M).vector
    assert sample.value == pytest.approx(expected)


def test_range_query_over_rollups_is_exact_at_every_step() -> None:
    engine = Engine(RollupStore(minute_buckets()))
    [series] = engine.range("max_over_time(latency[2m])", T0 + 5 * M, T0 + 10 * M, M).matrix
    assert series.points == [(T0 + k * M, k + 5.0) for k in range(5, 11)]


def hour_counter() -> SeriesPoints:
    """A counter rising 1 per second, rolled up into hour buckets (last value per bucket)."""
    hs = range(1, 6)
    return SeriesPoints(
        "jobs_total",
        (),
        timestamps=[T0 + h * H for h in hs],
        values=[3600.0 * h for h in hs],
        resolution=3600,
        mins=[3600.0 * h - 3599 for h in hs],
        maxs=[3600.0 * h for h in hs],
        sums=[0.0 for _ in hs],
        counts=[3600.0 for _ in hs],
    )


def test_instant_selector_looks_back_a_whole_bucket_on_coarse_tiers() -> None:
    engine = Engine(RollupStore(hour_counter()))  # 5m lookback, hour buckets
    [sample] = engine.instant("jobs_total", T0 + 3 * H + 30 * M).vector
    assert sample.value == 3 * 3600.0


def test_rate_windows_widen_to_two_buckets_and_increase_is_rescaled_to_the_range_written() -> None:
    store = RollupStore(hour_counter())
    engine = Engine(store)
    at = T0 + 3 * H + 30 * M
    [rate] = engine.instant("rate(jobs_total[5m])", at).vector
    assert rate.value == pytest.approx(1.0)
    [inc] = engine.instant("increase(jobs_total[5m])", at).vector
    assert inc.value == pytest.approx(300.0)
    # the 5 minutes written hold no bucket, so the engine probes two coarsest buckets further
    assert store.selects[:2] == [(at - 5 * M, at), (at - 5 * M - 2 * H, at)]


def test_windows_are_refetched_when_buckets_are_coarser_than_the_fetched_window() -> None:
    store = RollupStore(hour_counter())
    engine = Engine(store, coarsest_resolution_s=0)  # no probe: learn resolution from data
    at = T0 + 4 * H
    [rate] = engine.instant("rate(jobs_total[5m])", at).vector
    assert rate.value == pytest.approx(1.0)
    assert store.selects == [(at - 5 * M, at), (at - 2 * H, at)]


def test_over_time_window_widens_to_one_bucket_on_coarse_tiers() -> None:
    engine = Engine(RollupStore(hour_counter()))
    [sample] = engine.instant("count_over_time(jobs_total[5m])", T0 + 2 * H + 10 * M).vector
    assert sample.value == 3600.0  # the bucket ending at T0 + 2h


def test_points_out_of_time_order_from_a_store_are_refused_not_misread() -> None:
    bad = SeriesPoints("x", (("k", "v"),), [T0 + 2 * M, T0 + M], [1.0, 2.0])
    with pytest.raises(StoreError, match=r'out of time order \(or repeated\) for x\{k="v"\}'):
        Engine(RollupStore(bad)).instant("x", T0 + 2 * M)
    repeated = SeriesPoints("x", (), [T0 + M, T0 + M], [1.0, 2.0])
    with pytest.raises(StoreError, match="out of time order"):
        Engine(RollupStore(repeated)).instant("x", T0 + 2 * M)
