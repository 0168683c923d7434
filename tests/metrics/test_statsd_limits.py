"""StatsD under a misbehaving client: the new-series budget, the memory bound, overflow.

The aggregator's bounds are checked on the pure object (live series counted in it, not
RSS), through the real UDP listener with the ``statsd`` client library, and end to end
through ``signalbox serve --statsd`` on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import statsd

from signalbox.config import load_settings
from signalbox.exceptions import ConfigError
from signalbox.metrics.samples import format_series
from signalbox.metrics.settings import StatsdSettings
from signalbox.metrics.statsd.admission import NewSeriesBudget, SourceLabels
from signalbox.metrics.statsd.aggregate import StatsdAggregator
from signalbox.metrics.statsd.server import StatsdServer
from tests.cli.helpers import SIGNALBOX, StoreProject, free_port, store_project
from tests.serving import fetch, wait_for

__all__ = ["store_project"]  # the fixture, used by the end-to-end tests below

NOW = 1_700_000_000_000
MINUTE = 60_000
OWN = "signalbox_statsd_"


def flushed(agg: StatsdAggregator, now_ms: int = NOW) -> dict[str, float]:
    """Flush and return ``{series: value}``, self-metrics included."""
    samples, _ = agg.flush(now_ms)
    return {format_series(s.name, s.labels): s.value for s in samples}


def theirs(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if not k.startswith(OWN)}


def refused(values: dict[str, float], source: str, reason: str) -> float:
    return values.get(f'{OWN}refused_total{{reason="{reason}",source="{source}"}}', 0.0)


def send(agg: StatsdAggregator, sender: str, *lines: str) -> None:
    agg.add_packet("\n".join(lines).encode(), f"statsd {sender}:5000", sender=sender)


# ---------------------------------------------------------------------------------------
# the new-series budget


def test_a_flood_is_bounded_per_interval_and_existing_series_keep_updating() -> None:
    agg = StatsdAggregator(max_new_series_per_interval=100, max_new_series_per_source=10)
    send(agg, "10.0.0.1", "app_ok:1|c")
    flushed(agg)
    send(agg, "10.0.0.5", *(f"flood_{i}:1|c" for i in range(1000)))
    send(agg, "10.0.0.1", "app_ok:1|c")  # an existing series: not a new one, always updates
    got = flushed(agg, NOW + 1)
    assert len([k for k in theirs(got) if k.startswith("flood_")]) == 10
    assert got["app_ok_total"] == 2.0
    assert refused(got, "10.0.0.5", "new_series_budget") == 990.0
    assert got[OWN + "bad_lines_total"] == 990.0
    assert agg.series_count == 11


def test_one_source_spending_its_share_leaves_the_others_theirs() -> None:
    agg = StatsdAggregator(max_new_series_per_interval=100, max_new_series_per_source=10)
    send(agg, "10.0.0.5", *(f"flood_{i}:1|c" for i in range(1000)))
    send(agg, "10.0.0.1", "legit_new:1|c")  # same interval, another address
    got = flushed(agg)
    assert got["legit_new_total"] == 1.0
    assert refused(got, "10.0.0.1", "new_series_budget") == 0.0


def test_the_total_budget_caps_many_sources_together() -> None:
    agg = StatsdAggregator(max_new_series_per_interval=25, max_new_series_per_source=10)
    for n in range(5):
        send(agg, f"10.0.1.{n}", *(f"s{n}_{i}:1|g" for i in range(10)))
    got = flushed(agg)
    assert len(theirs(got)) == 25  # 10 + 10 + 5, then nothing for the last two sources
    assert [refused(got, f"10.0.1.{n}", "new_series_budget") for n in range(5)] == [
        0.0,
        0.0,
        5.0,
        10.0,
        10.0,
    ]


def test_new_names_are_accepted_again_once_the_flood_stops() -> None:
    agg = StatsdAggregator(max_new_series_per_interval=50, max_new_series_per_source=50)
    send(agg, "127.0.0.1", *(f"flood_{i}:1|c" for i in range(5000)))
    send(agg, "127.0.0.1", "legit_new:1|c")  # same address, same interval: refused
    first = flushed(agg)
    assert "legit_new_total" not in first
    send(agg, "127.0.0.1", "legit_new:1|c")  # the next interval
    assert flushed(agg, NOW + 1)["legit_new_total"] == 1.0


def test_refusals_are_logged_once_per_interval_per_source_with_the_count() -> None:
    agg = StatsdAggregator(max_new_series_per_interval=20, max_new_series_per_source=5)
    for _ in range(50):  # fifty packets, 15 new names refused in each: one summary
        send(agg, "10.0.0.5", *(f"flood_{i}:1|c" for i in range(20)))
    send(agg, "10.0.0.6", *(f"other_{i}:1|c" for i in range(7)))
    assert agg.take_errors() == []  # nothing until the interval ends
    flushed(agg)
    summaries = agg.take_errors()
    assert [(e.source, e.line) for e in summaries] == [
        ("statsd 10.0.0.5", 0),
        ("statsd 10.0.0.6", 0),
    ]
    assert summaries[0].reason.startswith("750 lines refused this interval (new_series_budget)")
    assert "5 per source, 20 in all per interval" in summaries[0].reason
    assert summaries[0].text == "first: flood_5:1.0 (counter)"
    assert summaries[1].reason.startswith("2 lines refused this interval")
    flushed(agg, NOW + 1)
    assert agg.take_errors() == []  # a quiet interval says nothing


def test_the_source_label_is_bounded_and_the_rest_is_other() -> None:
    agg = StatsdAggregator(
        max_new_series_per_interval=1, max_new_series_per_source=1, max_sources=3
    )
    for n in range(100):  # e.g. spoofed source addresses
        send(agg, f"10.9.0.{n}", f"x{n}:1|c", f"y{n}:1|c")
    got = flushed(agg)
    sources = {k for k in got if k.startswith(OWN + "refused_total")}
    assert len(sources) == 4
    assert refused(got, "other", "new_series_budget") == 97 * 2
    assert sum(v for k, v in got.items() if k in sources) == 199.0
    assert len(agg.take_errors()) == 4  # the log is bounded the same way


def test_budget_object_admits_per_source_then_in_all() -> None:
    b = NewSeriesBudget(per_interval=3, per_source=2)
    assert [b.admit("a"), b.admit("a"), b.admit("a"), b.admit("b"), b.admit("c")] == [
        True,
        True,
        False,
        True,
        False,
    ]
    b.reset()
    assert b.admit("a") and b.spent == 1
    with pytest.raises(ValueError, match="per_source"):
        NewSeriesBudget(per_interval=1, per_source=2)
    labels = SourceLabels(1)
    assert [labels("a"), labels("b"), labels("a")] == ["a", "other", "a"]


# ---------------------------------------------------------------------------------------
# the memory bound: live series, expiry, per-series state


def test_live_series_never_exceed_max_series_under_any_flood() -> None:
    agg = StatsdAggregator(
        max_series=300, max_new_series_per_interval=100, max_new_series_per_source=100
    )
    peak = 0
    for interval in range(20):  # 20 intervals x 10 sources x 50 new names, all kinds
        for n in range(10):
            kind = "cgsh"[n % 4]
            send(
                agg,
                f"10.0.2.{n}",
                *(f"f{interval}_{n}_{i}:1|{kind}" for i in range(50)),
            )
            peak = max(peak, agg.series_count)
        flushed(agg, NOW + interval * 1000)
    assert peak == 300
    got = flushed(agg, NOW + 20_000)
    assert got[OWN + "series"] == 300.0
    assert sum(v for k, v in got.items() if "max_series" in k) > 0


def test_idle_series_are_forgotten_so_one_shot_names_do_not_pin_memory() -> None:
    agg = StatsdAggregator(stale_after_ms=5 * MINUTE)
    send(agg, "127.0.0.1", *(f"once_{i}:1|c" for i in range(1000)), "kept:5|g")
    flushed(agg, NOW)
    for m in range(1, 5):
        send(agg, "127.0.0.1", "kept:+1|g")
        assert agg.series_count == 1001
        flushed(agg, NOW + m * MINUTE)
    send(agg, "127.0.0.1", "kept:+1|g")
    got = flushed(agg, NOW + 5 * MINUTE)  # five minutes without a line: forgotten
    assert theirs(got) == {"kept": 10.0}
    assert got[OWN + "series_expired_total"] == 1000.0
    assert agg.series_count == 1
    send(agg, "127.0.0.1", "once_1:1|c")  # comes back as a new counter: reads as a reset
    assert flushed(agg, NOW + 6 * MINUTE)["once_1_total"] == 1.0


def test_a_full_aggregator_makes_room_as_series_expire() -> None:
    agg = StatsdAggregator(
        max_series=10,
        max_new_series_per_interval=10,
        max_new_series_per_source=10,
        stale_after_ms=MINUTE,
    )
    send(agg, "127.0.0.1", *(f"flood_{i}:1|c" for i in range(10)))
    flushed(agg, NOW)
    send(agg, "127.0.0.1", "legit_new:1|c")
    got = flushed(agg, NOW + 1000)
    assert "legit_new_total" not in got
    assert refused(got, "127.0.0.1", "max_series") == 1.0
    assert "max_series" in agg.take_errors()[0].reason
    flushed(agg, NOW + MINUTE)  # the flood's names expire
    send(agg, "127.0.0.1", "legit_new:1|c")
    assert theirs(flushed(agg, NOW + MINUTE + 1000)) == {"legit_new_total": 1.0}


def test_set_members_are_bounded_in_all_and_their_length_costs_nothing() -> None:
    agg = StatsdAggregator(max_set_members=50, max_set_members_total=80)
    long = "m" * 60_000
    send(agg, "127.0.0.1", *(f"a:{long}{i}|s" for i in range(60)))
    send(agg, "127.0.0.1", *(f"b:{i}|s" for i in range(60)))
    got = flushed(agg)
    assert (got["a"], got["b"]) == (50.0, 30.0)
    assert refused(got, "127.0.0.1", "max_set_members") == 40.0
    (summary,) = agg.take_errors()
    assert "lower bounds" in summary.reason
    send(agg, "127.0.0.1", "b:x|s")  # the next interval has the whole pool again
    assert flushed(agg, NOW + 1)["b"] == 1.0


def test_timer_samples_are_bounded_in_all_and_count_sum_stay_exact() -> None:
    agg = StatsdAggregator(max_timer_samples=100, max_timer_samples_total=150)
    for name in ("a", "b", "c"):
        send(agg, "127.0.0.1", *(f"{name}:{ms}|ms" for ms in range(1, 201)))
    got = flushed(agg)
    for name in ("a", "b", "c"):
        assert got[f"{name}_seconds_count"] == 200.0
        assert got[f"{name}_seconds_sum"] == pytest.approx(20.1)
    assert 0.001 <= got['a_seconds{quantile="0.5"}'] <= 0.2  # a held 100, b 50: sampled
    assert 0.001 <= got['b_seconds{quantile="0.5"}'] <= 0.2
    assert 'c_seconds{quantile="0.5"}' not in got  # the pool was used up: no quantiles
    assert got["c_seconds_max"] == 0.2


# ---------------------------------------------------------------------------------------
# values that would overflow


def test_a_counter_that_would_overflow_is_refused_and_keeps_its_last_value() -> None:
    agg = StatsdAggregator()
    send(agg, "127.0.0.1", "x:1e308|c")
    send(agg, "127.0.0.1", "x:1e308|c")
    got = flushed(agg)
    assert got["x_total"] == 1e308
    assert got[OWN + "bad_lines_total"] == 1.0
    assert refused(got, "127.0.0.1", "invalid") == 1.0
    (err,) = agg.take_errors()
    assert (err.source, err.line) == ("statsd 127.0.0.1:5000", 1)
    assert err.reason == "counter 'x_total' would become inf; it keeps 1e+308"
    send(agg, "127.0.0.1", "x:1|c")  # still usable
    assert math.isfinite(flushed(agg, NOW + 1)["x_total"])


@pytest.mark.parametrize(
    ("lines", "kept"),
    [
        (["g:1e308|g", "g:+1e308|g"], {"g": 1e308}),
        (["g:-1e308|g", "g:-1e308|g"], {"g": -1e308}),
        (["big:1e308|c|@0.5"], {}),  # scaled by 1/rate: infinite on its own, never created
        (["t:1e308|h", "t:1e308|h"], {"t_count": 1.0, "t_sum": 1e308}),
        (["t:1|h|@1e-308", "t:1|h|@1e-308"], {"t_count": 1e308, "t_sum": 1e308}),
        (["t:1e308|h|@1e-300"], {}),
    ],
)
def test_gauge_deltas_and_observations_that_would_overflow_are_refused(
    lines: list[str], kept: dict[str, float]
) -> None:
    agg = StatsdAggregator()
    for line in lines:
        send(agg, "127.0.0.1", line)
    got = flushed(agg)
    assert {
        k: v for k, v in theirs(got).items() if "{" not in k and k[-4:] not in ("_min", "_max")
    } == kept
    assert all(math.isfinite(v) for v in got.values())
    (err,) = agg.take_errors()
    assert "would" in err.reason
    assert got[OWN + "bad_lines_total"] == 1.0


# ---------------------------------------------------------------------------------------
# settings


def test_statsd_bounds_come_from_signalbox_toml(tmp_path: Path) -> None:
    assert load_settings(None, environ={}, cwd=tmp_path).metrics.statsd == StatsdSettings(
        True, "127.0.0.1", 8125, 100_000, 10_000, 5_000, 900.0
    )
    (tmp_path / "signalbox.toml").write_text(
        "[statsd]\nmax_series = 500\nmax_new_series_per_interval = 50\n"
        'max_new_series_per_source = 20\nstale_after = "2m"\n'
    )
    s = load_settings(None, environ={}, cwd=tmp_path).metrics.statsd
    agg = StatsdAggregator.from_settings(s)
    assert (agg.max_series, agg.budget.per_interval, agg.budget.per_source) == (500, 50, 20)
    assert agg.stale_after_ms == 120_000


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("max_series = 0", "statsd.max_series", "a positive number"),
        (
            "max_new_series_per_interval = 200_000",
            "statsd.max_new_series_per_interval",
            "at most statsd.max_series (100000)",
        ),
        ("max_new_series_per_source = 0", "statsd.max_new_series_per_source", "a positive number"),
        (
            "max_new_series_per_source = 20_000",
            "statsd.max_new_series_per_source",
            "at most statsd.max_new_series_per_interval",
        ),
        ('stale_after = "0s"', "statsd.stale_after", "at least 1s"),
        ('stale_after = "soon"', "statsd.stale_after", "a duration"),
        ("max_series = -1", "statsd.max_series", "a positive number"),
    ],
)
def test_bad_statsd_bounds_are_errors_naming_the_key(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    (tmp_path / "signalbox.toml").write_text(f"[statsd]\n{text}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={}, cwd=tmp_path)
    assert info.value.key == key and expected in info.value.expected


# ---------------------------------------------------------------------------------------
# the real UDP listener and the statsd client library


@pytest.fixture
def limited() -> Iterator[StatsdServer]:
    agg = StatsdAggregator(max_new_series_per_interval=200, max_new_series_per_source=100)
    with StatsdServer(agg, port=0) as srv:
        yield srv


def test_a_client_flood_over_udp_is_bounded_and_counted(limited: StatsdServer) -> None:
    agg = limited.aggregator
    client = statsd.StatsClient(*limited.address)
    try:
        client.incr("app.requests")
        assert agg.wait_for_lines(1, timeout=10)
        flushed(agg)
        with client.pipeline() as pipe:  # many lines per packet, as a busy client sends
            for i in range(20_000):
                pipe.incr(f"flood.{i}")
        client.incr("app.requests")
        assert agg.wait_for_lines(20_002, timeout=10), f"{agg.lines_total} lines arrived"
        got = flushed(agg, NOW + 1)
        assert agg.series_count == 101
        assert got["app_requests_total"] == 2.0
        assert refused(got, "127.0.0.1", "new_series_budget") == 19_900.0
        client.incr("legit.new")  # the flood has stopped: the next interval takes it
        assert agg.wait_for_lines(20_003, timeout=10)
        assert flushed(agg, NOW + 2)["legit_new_total"] == 1.0
        client.incr("overflow", 10**308)
        client.incr("overflow", 10**308)
        assert agg.wait_for_lines(20_005, timeout=10)
        got = flushed(agg, NOW + 3)
        assert got["overflow_total"] == 1e308
        assert refused(got, "127.0.0.1", "invalid") == 1.0
    finally:
        client.close()


# ---------------------------------------------------------------------------------------
# end to end: signalbox serve --statsd


@contextlib.contextmanager
def serve_statsd(project: StoreProject, port: int, udp: int) -> Iterator[tuple[str, Path]]:
    """``signalbox serve --statsd 127.0.0.1:UDP`` in ``project``, healthy; yields the base
    URL and the file its log goes to (read after the process ends, so every line is in)."""
    log = project.root / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SIGNALBOX, "serve", "--statsd", f"127.0.0.1:{udp}"],
            cwd=project.root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: fetch(base + "/-/healthy")[0] == 200)
            yield base, log
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    text = log.read_text(errors="replace")
    assert proc.returncode in (0, -15), text
    assert "Traceback" not in text, text


def query(base: str, expr: str) -> dict[str, float]:
    status, body = fetch(base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, body
    return {
        json.dumps(r["metric"], sort_keys=True): float(r["value"][1])
        for r in json.loads(body)["data"]["result"]
    }


def one(base: str, expr: str) -> float | None:
    got = query(base, expr)
    assert len(got) <= 1, got
    return next(iter(got.values()), None)


def test_serve_bounds_a_flood_reports_it_and_still_stores_a_new_name(
    store_project: StoreProject,
) -> None:
    port, udp = free_port(), free_port(socket.SOCK_DGRAM)
    store_project.configure(
        f'host = "e2e"\n[collect]\ninterval = "1s"\n[server]\nport = {port}\n'
        "[statsd]\nmax_new_series_per_interval = 200\nmax_new_series_per_source = 100\n"
    )
    with serve_statsd(store_project, port, udp) as (base, log):
        client = statsd.StatsClient("127.0.0.1", udp)
        try:
            with client.pipeline() as pipe:
                for i in range(5000):
                    pipe.incr(f"flood.{i}")
            # every flood line is accounted for: stored as a series or counted as refused
            refused_q = 'signalbox_statsd_refused_total{reason="new_series_budget"}'
            stored_q = 'count({__name__=~"flood_.*"})'
            wait_for(lambda: (one(base, refused_q) or 0) + (one(base, stored_q) or 0) == 5000)
            stored = one(base, stored_q) or 0
            assert 100 <= stored <= 500  # 100 per interval: a 5,000-line flood spans a few
            assert query(base, refused_q) == {
                json.dumps(
                    {
                        "__name__": "signalbox_statsd_refused_total",
                        "host": "e2e",
                        "reason": "new_series_budget",
                        "source": "127.0.0.1",
                    },
                    sort_keys=True,
                ): 5000 - stored
            }
            client.incr("legit.new")  # after the flood: stored
            assert wait_for(lambda: one(base, "legit_new_total")) == 1.0
            client.incr("overflow", 10**308)  # 1e308 twice: the second is refused
            client.incr("overflow", 10**308)
            assert (
                wait_for(lambda: one(base, 'signalbox_statsd_refused_total{reason="invalid"}'))
                == 1.0
            )
            assert one(base, "overflow_total") == 1e308  # never +Inf
        finally:
            client.close()
    text = log.read_text()
    summaries = [
        ln for ln in text.splitlines() if "refused this interval (new_series_budget)" in ln
    ]
    assert 1 <= len(summaries) <= 5, text  # one per interval with refusals, not one per line
    assert all("statsd 127.0.0.1" in ln for ln in summaries)
    counts = [re.search(r"statsd 127\.0\.0\.1: (\d+) lines? refused", ln) for ln in summaries]
    assert sum(int(m.group(1)) for m in counts if m) == 5000 - stored, summaries
    assert "counter 'overflow_total' would become inf; it keeps 1e+308" in text
