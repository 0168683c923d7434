"""``histogram_quantile`` over classic ``_bucket`` series. Cases follow Prometheus'
``histograms.test`` (the classic-bucket ones), written as our own tests."""

from __future__ import annotations

import math

import pytest

from signalbox.exceptions import QueryError
from signalbox.query import Engine
from signalbox.query.histogram import bucket_quantile, parse_le
from tests.query.test_at_modifier import M, counting, load, vec

AT = 50 * M


def lab(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


Series = list[tuple[str, dict[str, str], list[float | None]]]


def buckets(name: str, labels: dict[str, str], per_le: dict[str, float]) -> Series:
    """``name{le=..., labels}`` counting up by ``per_le[le]`` every 5 minutes, 10 times."""
    return [(name, {**labels, "le": le}, counting(0, step, 10)) for le, step in per_le.items()]


@pytest.fixture(scope="module")
def hist() -> Engine:
    series: Series = [
        *buckets(
            "testhistogram_bucket",
            {"start": "positive"},
            {"0.1": 5, ".2": 7, "1e0": 11, "+Inf": 12},
        ),
        *buckets(
            "testhistogram_bucket",
            {"start": "negative"},
            {"-.2": 1, "-0.1": 2, "0.3": 2, "+Inf": 3},
        ),
        *buckets("testhistogram2_bucket", {}, {"0": 0, "2": 1, "4": 2, "6": 3, "+Inf": 3}),
        *buckets(
            "testhistogram3_bucket",
            {"start": "positive"},
            {"0": 0, "0.1": 5, ".2": 7, "1e0": 11, "+Inf": 11},
        ),
        *buckets(
            "testhistogram3_bucket",
            {"start": "negative"},
            {"-.25": 0, "-.2": 1, "-0.1": 2, "0.3": 2, "+Inf": 2},
        ),
        *buckets(
            "nonmonotonic_bucket",
            {},
            {"0.1": 2, "1": 1, "10": 5, "100": 4, "1000": 9, "+Inf": 8},
        ),
        *buckets(
            "mixed_bucket",
            {"job": "job1", "instance": "ins1"},
            {"0.1": 1, "0.2": 1, "2e-1": 1, "2.0e-1": 1, "+Inf": 4},
        ),
        *buckets("mixed_bucket", {"job": "job1", "instance": "ins2"}, {"+inf": 0, "+Inf": 0}),
    ]
    for job, instance, counts in (
        ("job1", "ins1", (1, 3, 4)),
        ("job1", "ins2", (2, 5, 6)),
        ("job2", "ins1", (3, 4, 6)),
        ("job2", "ins2", (4, 7, 9)),
    ):
        series += buckets(
            "request_duration_seconds_bucket",
            {"job": job, "instance": instance},
            dict(zip(("0.1", "0.2", "+Inf"), counts, strict=True)),
        )
    series += buckets(
        "request_duration_seconds2_bucket",
        {"job": "job1", "instance": "ins1"},
        {"0.1": 1, "0.2": 3, "+Inf": 4},
    )
    return load(300, series)


POS, NEG = lab(start="positive"), lab(start="negative")


@pytest.mark.parametrize(
    ("query", "want"),
    [
        ("histogram_quantile(0, testhistogram3_bucket)", {POS: 0.0, NEG: -0.25}),
        ("histogram_quantile(0.25, testhistogram3_bucket)", {POS: 0.055, NEG: -0.225}),
        ("histogram_quantile(0.5, testhistogram3_bucket)", {POS: 0.125, NEG: -0.2}),
        ("histogram_quantile(0.75, testhistogram3_bucket)", {POS: 0.45, NEG: -0.15}),
        ("histogram_quantile(1, testhistogram3_bucket)", {POS: 1.0, NEG: -0.1}),
        ("histogram_quantile(-0.1, testhistogram_bucket)", {POS: -math.inf, NEG: -math.inf}),
        ("histogram_quantile(1.01, testhistogram_bucket)", {POS: math.inf, NEG: math.inf}),
        ("histogram_quantile(0, testhistogram_bucket)", {POS: 0.0, NEG: -0.2}),
        ("histogram_quantile(1, testhistogram_bucket)", {POS: 1.0, NEG: 0.3}),
        ("histogram_quantile(0.2, testhistogram_bucket)", {POS: 0.048, NEG: -0.2}),
        ("histogram_quantile(0.5, testhistogram_bucket)", {POS: 0.15, NEG: -0.15}),
        ("histogram_quantile(0.8, testhistogram_bucket)", {POS: 0.72, NEG: 0.3}),
        ("histogram_quantile(0.2, rate(testhistogram_bucket[10m]))", {POS: 0.048, NEG: -0.2}),
        ("histogram_quantile(0.5, rate(testhistogram_bucket[10m]))", {POS: 0.15, NEG: -0.15}),
        ("histogram_quantile(0.8, rate(testhistogram_bucket[10m]))", {POS: 0.72, NEG: 0.3}),
    ],
)
def test_quantiles_of_two_histograms_told_apart_by_a_label(
    hist: Engine, query: str, want: dict[tuple[tuple[str, str], ...], float]
) -> None:
    assert vec(hist.instant(query, AT)) == pytest.approx(want)


def test_nan_quantile_gives_nan_for_every_histogram(hist: Engine) -> None:
    got = vec(hist.instant("histogram_quantile(NaN, testhistogram_bucket)", AT))
    assert set(got) == {POS, NEG} and all(math.isnan(v) for v in got.values())


@pytest.mark.parametrize(
    ("phi", "want", "at_m", "rate"),
    [
        ("1./6.", 1.0, 7, False),
        ("0.5", 3.0, 7, False),
        ("5./6.", 5.0, 7, False),
        ("1./6.", 1.0, 47, True),
        ("0.5", 3.0, 47, True),
        ("5./6.", 5.0, 47, True),
    ],
)
def test_quantiles_in_the_middle_of_a_bucket(
    hist: Engine, phi: str, want: float, at_m: int, rate: bool
) -> None:
    arg = "rate(testhistogram2_bucket[15m])" if rate else "testhistogram2_bucket"
    got = vec(hist.instant(f"histogram_quantile({phi}, {arg})", at_m * M))
    assert got == {(): pytest.approx(want)}


@pytest.mark.parametrize(
    ("query", "want"),
    [
        (
            "histogram_quantile(0.3, sum(rate(request_duration_seconds_bucket[10m])) by (le))",
            {(): 0.075},
        ),
        (
            "histogram_quantile(0.5, sum(rate(request_duration_seconds_bucket[10m])) by (le))",
            {(): 0.1277777777777778},
        ),
        (
            "histogram_quantile(0.3, avg(rate(request_duration_seconds_bucket[10m])) by (le))",
            {(): 0.075},
        ),
        (
            "histogram_quantile(0.5, sum(rate(request_duration_seconds_bucket[10m])) "
            "by (le, instance))",
            {lab(instance="ins1"): 0.1333333333, lab(instance="ins2"): 0.125},
        ),
        (
            "histogram_quantile(0.3, sum(rate(request_duration_seconds_bucket[10m])) by (le, job))",
            {lab(job="job1"): 0.1, lab(job="job2"): 0.0642857142857143},
        ),
        (
            "histogram_quantile(0.5, rate(request_duration_seconds_bucket[10m]))",
            {
                lab(instance="ins1", job="job1"): 0.15,
                lab(instance="ins2", job="job1"): 0.13333333333333333,
                lab(instance="ins1", job="job2"): 0.1,
                lab(instance="ins2", job="job2"): 0.11666666666666667,
            },
        ),
    ],
)
def test_aggregated_histograms(
    hist: Engine, query: str, want: dict[tuple[tuple[str, str], ...], float]
) -> None:
    assert vec(hist.instant(query, AT)) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(("phi", "want"), [("0.01", 0.0045), ("0.5", 8.5), ("0.99", 979.75)])
def test_nonmonotonic_buckets_are_made_monotonic(hist: Engine, phi: str, want: float) -> None:
    got = vec(hist.instant(f"histogram_quantile({phi}, nonmonotonic_bucket)", AT))
    assert got == {(): pytest.approx(want)}


@pytest.mark.parametrize(("phi", "want"), [("0.5", 0.15), ("0.75", 0.2), ("1", 0.2)])
def test_one_upper_bound_written_several_ways_is_one_bucket(
    hist: Engine, phi: str, want: float
) -> None:
    got = vec(hist.instant(f"histogram_quantile({phi}, rate(mixed_bucket[10m]))", AT))
    assert got[lab(instance="ins1", job="job1")] == pytest.approx(want)
    # +inf and +Inf coalesce: one bucket is fewer than two, so NaN
    assert math.isnan(got[lab(instance="ins2", job="job1")])


def test_two_histograms_with_the_same_labels_but_names_is_an_error(hist: Engine) -> None:
    with pytest.raises(QueryError, match="same labelset"):
        hist.instant(
            'histogram_quantile(0.99, {__name__=~"request_duration_seconds\\\\d*_bucket"})', AT
        )


def test_over_a_range_query_each_step_is_its_own_histogram() -> None:
    engine = load(
        60,
        [
            ("h_bucket", {"le": "1"}, [1.0, 1.0, 0.0, 0.0]),
            ("h_bucket", {"le": "2"}, [2.0, 2.0, 2.0, 0.0]),
            ("h_bucket", {"le": "+Inf"}, [2.0, 4.0, 4.0, 0.0]),
        ],
    )
    got = engine.range("histogram_quantile(0.5, h_bucket)", 0, 3 * M, M)
    [series] = got.matrix
    assert series.metric == {}
    ts = [t for t, _ in series.points]
    vals = [v for _, v in series.points]
    assert ts == [0, M, 2 * M, 3 * M]
    assert vals[:3] == [1.0, 2.0, 2.0] and math.isnan(vals[3])  # no observations: NaN


def test_series_without_a_numeric_le_are_skipped_and_inf_bucket_is_required() -> None:
    engine = load(
        60,
        [
            ("h_bucket", {"le": "1"}, [1.0]),
            ("h_bucket", {"le": "2"}, [2.0]),
            ("h_bucket", {"le": "lots"}, [9.0]),
            ("h_count", {}, [2.0]),
        ],
    )
    got = vec(engine.instant("histogram_quantile(0.5, h_bucket or h_count)", 0))
    assert set(got) == {()} and math.isnan(got[()])  # no +Inf bucket


def test_bucket_quantile_edges() -> None:
    inf = math.inf
    assert bucket_quantile(0.5, [(inf, 4.0)]) != bucket_quantile(0.5, [(inf, 4.0)])  # NaN
    assert bucket_quantile(0.5, [(1.0, 2.0), (inf, 4.0)]) == 1.0  # rank in +Inf: its lower bound
    assert bucket_quantile(0.25, [(-1.0, 1.0), (inf, 4.0)]) == -1.0  # in a bucket <= 0
    assert bucket_quantile(0.5, [(inf, 4.0), (2.0, 4.0), (1.0, 0.0)]) == 1.5  # any order
    assert bucket_quantile(0.5, [(1.0, 0.0), (inf, 0.0)]) != 0.0  # NaN: no observations
    # a difference within 1e-12 relative is float noise, not observations of their own:
    # without the fix the rank below would fall inside (1, 2] and give 1.5
    clean = [(1.0, 10.0), (2.0, 10.0), (inf, 20.0)]
    noisy = [(1.0, 10.0), (2.0, 10.0 + 1e-12), (inf, 20.0)]
    for q in (0.25, 0.5, 0.5 + 2.5e-14, 0.75):
        assert bucket_quantile(q, noisy) == bucket_quantile(q, clean)
    assert bucket_quantile(0.5 + 2.5e-14, noisy) == 2.0
    # a real decrease is ignored: the bucket keeps its predecessor's count
    assert bucket_quantile(0.5, [(1.0, 10.0), (2.0, 4.0), (inf, 20.0)]) == 1.0


def test_le_is_read_as_go_reads_floats() -> None:
    assert parse_le("+Inf") == math.inf and parse_le("+inf") == math.inf
    assert parse_le("2e-1") == 0.2 and parse_le(".2") == 0.2 and parse_le("1.") == 1.0
    assert parse_le("0x1p-2") == 0.25
    for bad in ("", " 1", "1_000", "lots", "1e400", "0x1"):
        assert parse_le(bad) is None, bad
