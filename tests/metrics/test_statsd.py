"""StatsD: the pure parser and aggregator, and the UDP listener fed by the real ``statsd`` client."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest
import statsd
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.metrics.parse.lex import LineError
from signalbox.metrics.samples import MetricMeta, format_series
from signalbox.metrics.statsd.aggregate import StatsdAggregator
from signalbox.metrics.statsd.parse import StatsdLine, parse_packet
from signalbox.metrics.statsd.server import StatsdListenError, StatsdServer

NOW = 1_700_000_000_000
OWN = "signalbox_statsd_"


def values(agg: StatsdAggregator, now_ms: int = NOW, *, own: bool = False) -> dict[str, float]:
    """Flush and return ``{series: value}``; self-metrics only when asked."""
    samples, _ = agg.flush(now_ms)
    assert all(s.timestamp_ms == now_ms for s in samples)
    out = {format_series(s.name, s.labels): s.value for s in samples}
    assert len(out) == len(samples), "a series was emitted twice"
    return out if own else {k: v for k, v in out.items() if not k.startswith(OWN)}


def feed(agg: StatsdAggregator, *packets: str) -> None:
    for p in packets:
        agg.add_packet(p.encode(), "test")


# ---------------------------------------------------------------------------------------
# parse_packet


def test_parse_each_type_and_its_options() -> None:
    lines, errors = parse_packet(
        b"hits:3|c|@0.5\n"
        b"temp:21.5|g\n"
        b"temp:+2|g\n"
        b"temp:-1.5|g\n"
        b"resize:250|ms\n"
        b"size:1024|h\n"
        b"lat:7|d\n"
        b"users:alice|s\n",
        "t",
    )
    assert errors == []
    assert lines == [
        StatsdLine("hits", "counter", 3.0, (), 0.5, line=1),
        StatsdLine("temp", "gauge", 21.5, line=2),
        StatsdLine("temp", "gauge", 2.0, delta=True, line=3),
        StatsdLine("temp", "gauge", -1.5, delta=True, line=4),
        StatsdLine("resize", "timer", 250.0, line=5),
        StatsdLine("size", "histogram", 1024.0, line=6),
        StatsdLine("lat", "histogram", 7.0, line=7),
        StatsdLine("users", "set", 0.0, member="alice", line=8),
    ]


def test_parse_sanitizes_graphite_style_names() -> None:
    lines, errors = parse_packet(b"api.v1/photos-resize:1|c", "t")
    assert errors == []
    assert [ln.name for ln in lines] == ["api_v1_photos_resize"]


def test_parse_dogstatsd_tags_become_sorted_labels_and_bare_tags_read_true() -> None:
    lines, errors = parse_packet(b"req:1|c|#route:/photos,env:prod,canary,url:http://x:80/", "t")
    assert errors == []
    assert lines[0].labels == (
        ("canary", "true"),
        ("env", "prod"),
        ("route", "/photos"),
        ("url", "http://x:80/"),
    )


def test_parse_tag_names_are_sanitized_like_metric_names() -> None:
    lines, errors = parse_packet(b"req:1|c|#availability-zone:eu.1", "t")
    assert errors == []
    assert lines[0].labels == (("availability_zone", "eu.1"),)


def test_parse_multi_value_lines_yield_one_line_per_value() -> None:
    lines, errors = parse_packet(b"lat:1:2.5:3|h|@0.5|#a:b", "t")
    assert errors == []
    assert [(ln.value, ln.sample_rate, ln.labels, ln.line) for ln in lines] == [
        (1.0, 0.5, (("a", "b"),), 1),
        (2.5, 0.5, (("a", "b"),), 1),
        (3.0, 0.5, (("a", "b"),), 1),
    ]


def test_parse_set_member_is_the_whole_value_even_with_colons() -> None:
    lines, errors = parse_packet(b"peers:10.0.0.1:8080|s", "t")
    assert errors == []
    assert lines[0].member == "10.0.0.1:8080"


def test_parse_ignores_blank_lines_and_container_ids_but_keeps_line_numbers() -> None:
    lines, errors = parse_packet(b"\n  \na:1|c|c:abc123\r\n\nb:2|g\n", "t")
    assert errors == []
    assert [(ln.name, ln.line) for ln in lines] == [("a", 3), ("b", 5)]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("nocolon", "found no ':'"),
        (":1|c", "empty metric name"),
        ("a b:1|c", "invalid metric name 'a b'"),
        ("a:1", "found no '|type'"),
        ("a:1|x", "unknown metric type 'x'"),
        ("a:one|c", "value 'one' is not a number"),
        ("a:|c", "value '' is not a number"),
        ("a:nan|g", "value 'nan' is not a number"),
        ("a:1e999|g", "value '1e999' is out of range"),
        ("a:-1|c", "negative counter increment '-1'"),
        ("a:-5|ms", "negative timer duration '-5'"),
        ("a:1|c|@0", "sample rate '0' is not in (0, 1]"),
        ("a:1|c|@1.5", "sample rate '1.5' is not in (0, 1]"),
        ("a:1|c|@x", "sample rate 'x' is not a number"),
        ("a:1|c|@0.5|@0.5", "sample rate given twice"),
        ("a:1|c|#x:1|#y:2", "tags given twice"),
        ("a:1|c|#9lives:1", "invalid tag name '9lives'"),
        ("a:1|c|#__name__:x", "invalid tag name '__name__'"),
        ("a:1|c|#env:a,env:b", "tag 'env' given twice"),
        ("a:1|c|#env:", "tag 'env' has an empty value"),
        ("a:1|ms|#quantile:0.5", "tag 'quantile' is reserved"),
        ("a:1|c|T1656581400", "timestamps ('|T') are not supported"),
        ("a:1|c|zz", "unknown field 'zz'"),
        ("a:|s", "empty set member"),
        ("a:1|c|#env:x\x01y", "control character \\x01"),
        ("n" * 201 + ":1|c", "metric name of 201 characters (at most 200)"),
        ("a:1|c|#t:" + "v" * 999, "tags of 1001 characters (at most 1000)"),
    ],
)
def test_parse_refuses_a_malformed_line_with_a_reason(text: str, reason: str) -> None:
    lines, errors = parse_packet(
        b"good:1|c\n" + text.encode() + b"\nalso_good:2|g", "udp 1.2.3.4:5"
    )
    assert [ln.name for ln in lines] == ["good", "also_good"], "the good lines still count"
    assert len(errors) == 1
    err = errors[0]
    assert (err.source, err.line) == ("udp 1.2.3.4:5", 2)
    assert reason in err.reason
    assert err.text


def test_parse_refuses_a_line_that_is_not_utf8() -> None:
    lines, errors = parse_packet(b"a:1|c\n\xff\xfe:1|c", "t")
    assert len(lines) == 1
    assert errors == [LineError("t", 2, "line is not valid UTF-8", "\\ufffd\\ufffd:1|c")]


_EXTRAS = ["|@0.5", "|@2", "|#env:prod,canary", "|#", "|#9:x", "|c:x", "|T1", "|zz", "\x00"]
_statsd_line = st.tuples(
    st.sampled_from(["a", "b.c", "", "x y", "é"]),
    st.sampled_from([":", ""]),
    st.sampled_from(["1", "-2", "+3", "1.5", "1:2", "", "x", "1e999"]),
    st.sampled_from(["|c", "|g", "|ms", "|s", "|h", "|d", "|q", ""]),
    st.lists(st.sampled_from(_EXTRAS), max_size=3).map("".join),
).map("".join)
_statsd_ish = st.lists(_statsd_line, max_size=5).map("\n".join)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300), _statsd_ish.map(str.encode)))
def test_parse_never_raises_and_accounts_for_every_line(data: bytes) -> None:
    lines, errors = parse_packet(data, "fuzz")
    nonblank = {i for i, raw in enumerate(data.split(b"\n"), 1) if raw.strip()}
    parsed_lines = {ln.line for ln in lines}
    error_lines = [e.line for e in errors]
    assert len(error_lines) == len(set(error_lines)), "at most one error per line"
    assert parsed_lines.isdisjoint(error_lines), "a line is parsed or an error, not both"
    assert parsed_lines | set(error_lines) == nonblank


_names = st.from_regex(r"[a-z][a-z0-9_.]{0,10}", fullmatch=True)
_tags = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True),
    st.from_regex(r"[a-zA-Z0-9_./:]{1,8}", fullmatch=True),
    max_size=3,
)


@settings(max_examples=100, deadline=None)
@given(
    _names,
    st.sampled_from(["c", "g", "ms", "h", "d"]),
    st.integers(0, 10**6),
    st.sampled_from([None, 0.1, 0.5, 1.0]),
    _tags,
)
def test_parse_reads_back_any_well_formed_line(
    name: str, code: str, value: int, rate: float | None, tags: dict[str, str]
) -> None:
    text = f"{name}:{value}|{code}"
    if rate is not None:
        text += f"|@{rate}"
    if tags:
        text += "|#" + ",".join(f"{k}:{v}" for k, v in tags.items())
    lines, errors = parse_packet(text.encode(), "t")
    assert errors == []
    (ln,) = lines
    assert ln.name == name.replace(".", "_")
    assert ln.value == value
    assert ln.sample_rate == (rate or 1.0)
    assert ln.labels == tuple(sorted(tags.items()))


# ---------------------------------------------------------------------------------------
# StatsdAggregator


def test_counters_are_cumulative_total_series_scaled_by_sample_rate() -> None:
    agg = StatsdAggregator()
    feed(agg, "hits:1|c\nhits:2|c", "hits:1|c|@0.25", "errors_total:1|c")
    assert values(agg) == {"hits_total": 7.0, "errors_total": 1.0}
    feed(agg, "hits:3|c")
    assert values(agg, NOW + 10_000) == {"hits_total": 10.0, "errors_total": 1.0}


def test_gauges_keep_their_value_and_signed_values_are_deltas() -> None:
    agg = StatsdAggregator()
    feed(agg, "temp:20|g", "temp:+5|g", "temp:-7.5|g", "fresh:-3|g")
    assert values(agg) == {"temp": 17.5, "fresh": -3.0}
    assert values(agg, NOW + 1) == {"temp": 17.5, "fresh": -3.0}
    feed(agg, "temp:0|g", "temp:-2|g")  # how a client sets a negative gauge
    assert values(agg, NOW + 2) == {"temp": -2.0, "fresh": -3.0}


def test_timers_become_a_seconds_summary_with_per_flush_quantiles() -> None:
    agg = StatsdAggregator()
    feed(agg, "\n".join(f"resize:{ms}|ms" for ms in range(100, 0, -1)))
    assert values(agg) == pytest.approx(
        {
            "resize_seconds_count": 100.0,
            "resize_seconds_sum": 5.05,
            'resize_seconds{quantile="0.5"}': 0.05,
            'resize_seconds{quantile="0.9"}': 0.09,
            'resize_seconds{quantile="0.99"}': 0.099,
            "resize_seconds_min": 0.001,
            "resize_seconds_max": 0.1,
        }
    )
    # an interval without observations: the cumulative parts stay, the per-flush parts go
    assert values(agg, NOW + 1) == pytest.approx(
        {"resize_seconds_count": 100.0, "resize_seconds_sum": 5.05}
    )
    feed(agg, "resize:500|ms|@0.5")
    assert values(agg, NOW + 2) == pytest.approx(
        {
            "resize_seconds_count": 102.0,
            "resize_seconds_sum": 6.05,
            'resize_seconds{quantile="0.5"}': 0.5,
            'resize_seconds{quantile="0.9"}': 0.5,
            'resize_seconds{quantile="0.99"}': 0.5,
            "resize_seconds_min": 0.5,
            "resize_seconds_max": 0.5,
        }
    )


def test_histograms_and_distributions_keep_their_unit_and_name() -> None:
    agg = StatsdAggregator()
    feed(agg, "size:100|h", "size:300|d|#env:prod")
    got = values(agg)
    assert got["size_count"] == 1.0
    assert got["size_sum"] == 100.0
    assert got['size{env="prod",quantile="0.5"}'] == 300.0
    _, metas = agg.flush(NOW)
    assert MetricMeta("size", "summary", "StatsD histogram", "") in metas


def test_sets_count_distinct_members_per_flush_interval() -> None:
    agg = StatsdAggregator()
    feed(agg, "users:alice|s\nusers:bob|s\nusers:alice|s", "users:carol|s|#app:web")
    assert values(agg) == {"users": 2.0, 'users{app="web"}': 1.0}
    assert values(agg, NOW + 1) == {"users": 0.0, 'users{app="web"}': 0.0}


def test_flush_reports_types_so_rate_and_summaries_are_understood() -> None:
    agg = StatsdAggregator()
    feed(agg, "hits:1|c", "temp:1|g", "resize:1|ms", "users:a|s")
    _, metas = agg.flush(NOW)
    types = {m.name: (m.type, m.unit) for m in metas}
    assert types == {
        "hits_total": ("counter", ""),
        "temp": ("gauge", ""),
        "users": ("gauge", ""),
        "resize_seconds": ("summary", "seconds"),
        "resize_seconds_min": ("gauge", "seconds"),
        "resize_seconds_max": ("gauge", "seconds"),
        "signalbox_statsd_packets_total": ("counter", ""),
        "signalbox_statsd_lines_total": ("counter", ""),
        "signalbox_statsd_bad_lines_total": ("counter", ""),
        "signalbox_statsd_series_expired_total": ("counter", ""),
        "signalbox_statsd_series": ("gauge", ""),
    }


def test_bad_lines_are_counted_and_kept_for_the_collector_never_fatal() -> None:
    agg = StatsdAggregator(max_errors=2)
    feed(agg, "ok:1|c\nbroken\nworse|x", "", "a:1|c|@9")
    assert values(agg, own=True) == {
        "ok_total": 1.0,
        "signalbox_statsd_packets_total": 3.0,
        "signalbox_statsd_lines_total": 4.0,
        "signalbox_statsd_bad_lines_total": 3.0,
        'signalbox_statsd_refused_total{reason="invalid",source="test"}': 3.0,
        "signalbox_statsd_series": 1.0,
        "signalbox_statsd_series_expired_total": 0.0,
    }
    errors = agg.take_errors()
    assert [(e.source, e.line) for e in errors] == [("test", 3), ("test", 1)]  # the last two
    assert "sample rate '9'" in errors[1].reason
    assert agg.take_errors() == []


def test_one_name_cannot_be_two_types() -> None:
    agg = StatsdAggregator()
    feed(agg, "x:1|g", "x:1|s", "x:1|c")
    assert values(agg) == {"x": 1.0, "x_total": 1.0}
    (err,) = agg.take_errors()
    assert err.reason == "'x' is already a gauge, not a set"


def test_new_series_beyond_the_cap_are_refused_counted_and_summarised_once() -> None:
    agg = StatsdAggregator(max_series=2)
    feed(agg, "a:1|c\nb:1|g\nc:1|c\na:1|c\nd:1:2:3|h")
    got = values(agg, own=True)
    assert {k: v for k, v in got.items() if not k.startswith(OWN)} == {"a_total": 2.0, "b": 1.0}
    assert got['signalbox_statsd_refused_total{reason="max_series",source="test"}'] == 2.0
    assert agg.series_count == 2
    (summary,) = agg.take_errors()  # one line per interval and source, not one per line
    assert (summary.source, summary.line) == ("statsd test", 0)
    assert summary.reason.startswith("2 lines refused this interval (max_series)")
    assert summary.text == "first: c:1.0 (counter)"
    assert agg.bad_lines_total == 2


def test_set_members_beyond_the_cap_are_refused_and_counted() -> None:
    agg = StatsdAggregator(max_set_members=2)
    feed(agg, "u:a|s\nu:b|s\nu:a|s\nu:c|s")
    assert values(agg) == {"u": 2.0}
    (summary,) = agg.take_errors()
    assert summary.reason.startswith("1 line refused this interval (max_set_members)")
    assert "u:c" in summary.text
    feed(agg, "u:c|s")  # a new interval has room again
    assert values(agg) == {"u": 1.0}


def test_timer_memory_is_bounded_but_count_sum_min_max_stay_exact() -> None:
    agg = StatsdAggregator(max_timer_samples=10)
    feed(agg, "\n".join(f"t:{ms}|ms" for ms in range(1, 1001)))
    got = values(agg)
    assert got["t_seconds_count"] == 1000.0
    assert got["t_seconds_sum"] == pytest.approx(500.5)
    assert (got["t_seconds_min"], got["t_seconds_max"]) == (0.001, 1.0)
    assert 0.001 <= got['t_seconds{quantile="0.5"}'] <= 1.0


def test_add_accepts_already_parsed_lines() -> None:
    agg = StatsdAggregator()
    agg.add([StatsdLine("jobs", "counter", 2.0, (("q", "a"),))])
    assert values(agg) == {'jobs_total{q="a"}': 2.0}


# ---------------------------------------------------------------------------------------
# StatsdServer with the real statsd client library


@pytest.fixture
def server() -> Iterator[StatsdServer]:
    with StatsdServer(StatsdAggregator(), port=0) as srv:
        yield srv


@pytest.fixture
def client(server: StatsdServer) -> Iterator[statsd.StatsClient]:
    host, port = server.address
    c = statsd.StatsClient(host, port)
    yield c
    c.close()


def received(server: StatsdServer, lines: int) -> dict[str, float]:
    assert server.aggregator.wait_for_lines(lines, timeout=10), (
        f"only {server.aggregator.lines_total} of {lines} lines arrived"
    )
    return values(server.aggregator)


def test_server_binds_an_ephemeral_port(server: StatsdServer) -> None:
    host, port = server.address
    assert host == "127.0.0.1"
    assert port > 0


def test_statsd_client_counters(server: StatsdServer, client: statsd.StatsClient) -> None:
    client.incr("api.hits")
    client.incr("api.hits", 4)
    client.decr("api.hits")  # a decrement would break the counter: refused, reported
    assert received(server, 3) == {"api_hits_total": 5.0}
    (err,) = server.aggregator.take_errors()
    assert err.source.startswith("statsd 127.0.0.1:")
    assert "negative counter increment '-1'" in err.reason


def test_statsd_client_gauges_with_deltas(server: StatsdServer, client: statsd.StatsClient) -> None:
    client.gauge("temp", 20)
    client.gauge("temp", 5, delta=True)
    client.gauge("temp", -3, delta=True)
    client.gauge("level", -4)  # sent as "level:0|g" then "level:-4|g" in one packet
    assert received(server, 5) == {"temp": 22.0, "level": -4.0}
    assert server.aggregator.take_errors() == []


def test_statsd_client_timers(server: StatsdServer, client: statsd.StatsClient) -> None:
    client.timing("resize", 250)
    client.timing("resize", 750)
    with client.timer("block"):
        pass
    got = received(server, 3)
    assert got["resize_seconds_count"] == 2.0
    assert got["resize_seconds_sum"] == 1.0
    assert (got["resize_seconds_min"], got["resize_seconds_max"]) == (0.25, 0.75)
    assert got["block_seconds_count"] == 1.0
    assert got["block_seconds_sum"] >= 0.0


def test_statsd_client_sets(server: StatsdServer, client: statsd.StatsClient) -> None:
    for user in ("alice", "bob", "alice", "carol", "bob"):
        client.set("users", user)
    assert received(server, 5) == {"users": 3.0}


def test_statsd_client_sample_rates(server: StatsdServer, client: statsd.StatsClient) -> None:
    state = random.getstate()
    try:  # the client drops randomly: replay its choices to know what it sent
        random.seed(20240601)
        sent = sum(random.random() <= 0.25 for _ in range(200))
        random.seed(20240601)
        for _ in range(200):
            client.incr("sampled", rate=0.25)
    finally:
        random.setstate(state)
    assert 0 < sent < 200
    assert received(server, sent) == {"sampled_total": sent * 4.0}


def test_statsd_client_pipeline_packs_many_lines_in_one_packet(
    server: StatsdServer, client: statsd.StatsClient
) -> None:
    with client.pipeline() as pipe:
        pipe.incr("a")
        pipe.gauge("b", 2)
        pipe.timing("c", 10)
    assert received(server, 3) == {
        "a_total": 1.0,
        "b": 2.0,
        "c_seconds_count": 1.0,
        "c_seconds_sum": 0.01,
        'c_seconds{quantile="0.5"}': 0.01,
        'c_seconds{quantile="0.9"}': 0.01,
        'c_seconds{quantile="0.99"}': 0.01,
        "c_seconds_min": 0.01,
        "c_seconds_max": 0.01,
    }
    assert server.aggregator.packets_total == 1


def test_dogstatsd_tags_over_udp(server: StatsdServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"page.views:1|c|#route:/home,env:prod", server.address)
        sock.sendto(b"page.views:2|c|#env:prod,route:/home", server.address)
        sock.sendto(b"queue.depth:7|g|#queue:photos,canary", server.address)
    assert received(server, 3) == {
        'page_views_total{env="prod",route="/home"}': 3.0,
        'queue_depth{canary="true",queue="photos"}': 7.0,
    }


def test_server_survives_garbage_and_huge_packets(server: StatsdServer) -> None:
    rng = random.Random(7)
    junk = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(50)]
    junk_lines = sum(1 for p in junk for piece in p.split(b"\n") if piece.strip())
    huge = b"\n".join(b"big:1|c" for _ in range(8000))  # 63,999 bytes in one datagram
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in junk:
            sock.sendto(packet, server.address)
        sock.sendto(huge, server.address)
        sock.sendto(b"after:1|c", server.address)
    agg = server.aggregator
    assert agg.wait_for_lines(junk_lines + 8001, timeout=10)
    got = values(agg, own=True)
    assert got["big_total"] == 8000.0
    assert got["after_total"] == 1.0
    assert got["signalbox_statsd_packets_total"] == 52.0
    assert got["signalbox_statsd_bad_lines_total"] == got["signalbox_statsd_lines_total"] - 8001


def test_stop_is_clean_and_idempotent() -> None:
    srv = StatsdServer(StatsdAggregator(), port=0)
    srv.start()
    address = srv.address
    srv.stop()
    srv.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(address)  # the port is free again


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(
            StatsdListenError, match=f"cannot listen for StatsD on 127.0.0.1:{port}"
        ):
            StatsdServer(StatsdAggregator(), port=port).start()
