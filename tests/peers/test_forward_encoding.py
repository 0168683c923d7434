"""The forwarders' pure parts: names (lossless escaping, documented forms), what is skipped and
counted, gmetric messages as XDR, and the [forward] settings' errors."""

from __future__ import annotations

import math
import struct
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.config import settings_from_dict
from signalbox.exceptions import ConfigError
from signalbox.metrics.forward import CollectedPass
from signalbox.metrics.forward.ganglia import (
    GangliaEncoder,
    ganglia_name,
    metadata_message,
    value_message,
)
from signalbox.metrics.forward.graphite import GraphiteEncoder, graphite_path
from signalbox.metrics.forward.naming import escape
from signalbox.metrics.samples import Sample

label_values = st.text(min_size=1, max_size=12)


def test_graphite_names_in_both_forms() -> None:
    labels = (("code", "500"), ("host", "web1"), ("path", "/api/v1"), ("x", ""))
    assert graphite_path("reqs_total", labels) == "reqs_total;code=500;host=web1;path=%2Fapi%2Fv1"
    assert (
        graphite_path("reqs_total", labels, prefix="sb.prod", naming="dotted")
        == "sb.prod.reqs_total.code.500.host.web1.path.%2Fapi%2Fv1"
    )
    assert graphite_path("up", ()) == "up"
    assert graphite_path("m", (("v", "~x;y z"),)) == "m;v=%7Ex%3By%20z"
    assert graphite_path("m", (("v", "1.5"),), naming="dotted") == "m.v.1%2E5"


@given(st.lists(label_values, min_size=2, max_size=6, unique=True))
def test_escaping_is_lossless_distinct_values_stay_distinct_series(values: list[str]) -> None:
    for naming in ("tags", "dotted"):
        paths = {graphite_path("m", (("v", v),), naming=naming) for v in values}
        assert len(paths) == len(values)
    for v in values:
        assert urllib.parse.unquote(escape(v)) == v
        e = escape(v, "-.:@+")
        assert e.isascii() and not any(c in e for c in " ;~/\n\"<>&'") and e


def lines(p: CollectedPass, **kw: str) -> tuple[list[str], int, str]:
    enc = GraphiteEncoder(**kw).encode(p)
    text = b"".join(enc.chunks).decode()
    assert enc.sent == text.count("\n")
    return text.splitlines(), enc.skipped, enc.example


def test_graphite_lines_carry_each_sample_at_its_second_and_skip_what_carbon_cannot_take() -> None:
    p = CollectedPass(
        1_700_000_000_999,
        (("host", "web1"),),
        [
            Sample("a", (), 3.0),
            Sample("b", (("host", "db1"),), 0.25, 1_699_999_990_000),
            Sample("c", (), math.nan),
            Sample("d", (), math.inf),
            Sample("e", (("v", "x" * 20_000),), 1.0),
            Sample("f", (), 1e20),
        ],
    )
    got, skipped, example = lines(p)
    assert got == [
        "a;host=web1 3 1700000000",
        "b;host=db1 0.25 1699999990",  # its own stamp, its own host
        "f;host=web1 1e+20 1700000000",
    ]
    assert skipped == 3 and 'c{host="web1"} is NaN' in example


def test_many_samples_go_in_blocks() -> None:
    p = CollectedPass(0, (), [Sample("m", (("i", str(i)),), float(i)) for i in range(20_000)])
    enc = GraphiteEncoder().encode(p)
    assert len(enc.chunks) > 3 and all(len(c) < 70_000 for c in enc.chunks)
    assert enc.sent == 20_000 and b"".join(enc.chunks).count(b"\n") == 20_000


def xdr_unpack(data: bytes, spec: str) -> list[object]:
    """Read ``data`` as XDR: ``i`` an int, ``u`` an unsigned int, ``s`` a string."""
    out: list[object] = []
    pos = 0
    for kind in spec:
        if kind in "iu":
            out.append(struct.unpack_from(">i" if kind == "i" else ">I", data, pos)[0])
            pos += 4
        else:
            (n,) = struct.unpack_from(">I", data, pos)
            out.append(data[pos + 4 : pos + 4 + n].decode())
            pos += 4 + n + (-n % 4)
    assert pos == len(data)
    return out


def test_gmetric_messages_are_the_xdr_gmetric_sends() -> None:
    meta = metadata_message(
        "web1", "m.a.b", units="s", slope="positive", tmax=15, dmax=600, group="g"
    )
    assert xdr_unpack(meta, "ississsiuuissss") == [
        128, "web1:web1", "m.a.b", 1, "double", "m.a.b", "s", 1, 15, 600,
        2, "GROUP", "g", "SPOOF_HOST", "web1:web1",
    ]  # fmt: skip
    assert xdr_unpack(value_message("web1", "m.a.b", "2.5"), "ississ") == [
        133, "web1:web1", "m.a.b", 1, "%s", "2.5",
    ]  # fmt: skip


def test_ganglia_skips_what_gmond_cannot_read() -> None:
    enc = GangliaEncoder(host="web1", tmax_s=15, dmax_s=0, group="signalbox")
    p = CollectedPass(
        0,
        (("host", "web1"),),
        [
            Sample("ok", (("q", "a b"),), 1.0),
            Sample("nan", (), math.nan),
            Sample("long", (("v", "x" * 2000),), 1.0),
        ],
    )
    out = enc.encode(p)
    assert (out.sent, out.skipped, len(out.chunks)) == (1, 2, 2)
    assert ganglia_name("ok", (("host", "web1"), ("q", "a b"))) == "ok.q.a%20b"
    assert all(len(c) <= 1472 for c in out.chunks)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"graphite": {}}, "forward.graphite.address"),
        ({"graphite": {"address": "h:2003", "naming": "flat"}}, "forward.graphite.naming"),
        ({"graphite": {"address": "h:2003", "prefix": "a b"}}, "forward.graphite.prefix"),
        ({"graphite": {"address": "h:2003", "max_buffer": 0}}, "forward.graphite.max_buffer"),
        ({"graphite": {"address": "h:2003", "interval": "soon"}}, "forward.graphite.interval"),
        ({"graphite": {"address": "h:2003", "adress": "x"}}, "forward.graphite.adress"),
        ({"ganglia": {"address": "h:70000"}}, "forward.ganglia.address"),
        ({"ganglia": {"address": "h", "timeout": "5m"}}, "forward.ganglia.timeout"),
        ({"ganglia": {"address": "h", "group": " "}}, "forward.ganglia.group"),
        ({"statsd": {}}, "forward.statsd"),
    ],
)
def test_forward_settings_errors_name_the_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        settings_from_dict({"forward": table}, source="sb.toml", base_dir=Path("."))
    assert e.value.key == key and "sb.toml" in str(e.value)


def test_forward_settings_defaults_and_ports() -> None:
    s = settings_from_dict(
        {"forward": {"graphite": {"address": "carbon"}, "ganglia": {"address": "[::1]"}}},
        source="sb.toml",
        base_dir=Path("."),
    ).forward
    assert s.graphite is not None and (s.graphite.host, s.graphite.port) == ("carbon", 2003)
    assert s.graphite.naming == "tags" and s.graphite.max_buffer == 100_000
    assert s.ganglia is not None and s.ganglia.port == 8649
    assert not settings_from_dict({}, source="-", base_dir=Path(".")).forward.any


def test_init_shows_the_forward_tables_commented_with_their_defaults() -> None:
    import tomllib

    from signalbox.metrics.forward.settings import forward_settings
    from signalbox.scaffold import CONFIG
    from signalbox.section import Source

    lines, on = [], False
    for line in CONFIG.splitlines():
        on = line.startswith("# [forward.") or (on and line.startswith("# "))
        if on:
            lines.append(line[2:])
    raw = tomllib.loads("\n".join(lines))
    assert set(raw["forward"]) == {"graphite", "ganglia"}
    shown = forward_settings(Source("init", Path("."), {}), raw)
    defaults = forward_settings(
        Source("init", Path("."), {}),
        {"forward": {k: {"address": v["address"]} for k, v in raw["forward"].items()}},
    )
    assert shown == defaults  # what init shows is each default
